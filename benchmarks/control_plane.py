"""Control plane figures on PostgreSQL: builds against SQLite, the critical path, failover, kill -9 cycles and how
many infrastructures three servers keep.

    flock /work/bench.lock python benchmarks/control_plane.py [--cycles 20] [--max-infrastructures 400] [--only-builds]

Starts a private PostgreSQL (tests/env/postgres.sh) and real `strato serve --maintain` processes on loopback (each
its own STRATO_HOME, one shared secret.key). Prints figures, then one JSON line: build_1000_noop_s {sqlite,
postgresql, ratio}, critical_path_ratio_pg, failover_s (with lease_s and interval_s), operations_lost, duplicates,
maintained_infrastructures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from orchestrator import sealing, service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402
from tests.pg import free_port, start_cluster  # noqa: E402

TOKEN, READ = "bench-w-" + "a" * 30, "bench-r-" + "b" * 30
LEASE_S, RENEW_S, RETRY_S, INTERVAL_S = 4.0, 2.5, 1.0, 2.0


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def noop(n: int) -> str:
    return f"""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    base: {{type: strato.nodes.Noop}}
    web:
      type: strato.nodes.Noop
      capabilities: {{scalable: {{properties: {{default_instances: {n}, max_instances: {2 * n}}}}}}}
      requirements: [{{dependency: base}}]
"""


def levels(depth: int, width: int, seconds: float) -> str:
    """depth levels of width Sleep nodes; each node waits for its column's node one level up."""
    lines = ["tosca_definitions_version: tosca_simple_yaml_1_3", "topology_template:", "  node_templates:"]
    for level in range(depth):
        for col in range(width):
            lines.append(f"    n{level}_{col}:")
            lines.append("      type: strato.nodes.Sleep")
            lines.append(f"      properties: {{seconds: {seconds}}}")
            if level:
                lines.append(f"      requirements: [{{dependency: n{level - 1}_{col}}}]")
    return "\n".join(lines) + "\n"


def processes(marker: str, count: int) -> str:
    return f"""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    p:
      type: strato.nodes.Process
      properties:
        port: auto
        env: {{BENCH_MARK: {marker}}}
        command: ["{{python}}", "-c", "import socket, sys, time; time.sleep(1.0); s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(900)", "{{port}}"]
      capabilities: {{scalable: {{properties: {{default_instances: {count}}}}}}}
"""  # noqa: E501


def timed_build(location: str, path: str, name: str, parallelism: int = 32) -> float:
    store = StateStore(location)
    try:
        started = time.perf_counter()
        result = service.build(path, name, {}, store, RunOptions(parallelism=parallelism))
        elapsed = time.perf_counter() - started
        assert result.get("ok"), result
        return elapsed
    finally:
        store.close()


# -- servers ---------------------------------------------------------------------------------------------
class Member:
    def __init__(self, home: str, url: str, interval: float = INTERVAL_S):
        self.home, self.state, self.interval = home, url, interval
        self.start()

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ, STRATO_HOME=self.home, STRATO_API_TOKEN=TOKEN, STRATO_API_READ_TOKEN=READ,
                   PYTHONPATH=REPO)
        self.log = open(os.path.join(self.home, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve", "--port", str(self.port), "--state", self.state,
             "--maintain", "--maintain-interval", f"{self.interval}s", "--lease", f"{LEASE_S}s", "--renew-deadline",
             f"{RENEW_S}s", "--retry", f"{RETRY_S}s", "--allow-local-processes", "--workers", "4"],
            env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> "Member":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strato serve exited {self.proc.returncode} (log {self.log.name})")
            try:
                if self.get("/healthz", auth=False) is not None:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("strato serve did not answer")

    def get(self, path: str, auth: bool = True, raw: bool = False):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {READ}"} if auth else {})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
        return body if raw else json.loads(body)

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {TOKEN}",
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


def start_members(root: str, url: str, n: int, interval: float = INTERVAL_S) -> list[Member]:
    key_home = os.path.join(root, "key")
    os.makedirs(key_home, exist_ok=True)
    if not os.path.exists(os.path.join(key_home, "secret.key")):
        sealing.seal_inputs({"x": "y"}, {"x"}, key_home)
    members = []
    for i in range(n):
        home = tempfile.mkdtemp(prefix=f"m{i}-", dir=root)
        shutil.copy2(os.path.join(key_home, "secret.key"), os.path.join(home, "secret.key"))
        members.append(Member(home, url, interval))
    return [m.wait_ready() for m in members]


def member_of(members: list[Member], server_id: str | None) -> Member | None:
    return next((m for m in members if server_id and server_id.split(":")[1] == str(m.proc.pid)), None)


def wait_for(what, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return what()


# -- figures ---------------------------------------------------------------------------------------------
def build_figures(directory: str, pg) -> dict:
    path = write(directory, "noop1000.yaml", noop(999))
    sqlite = timed_build(os.path.join(directory, "build.db"), path, "b1000")
    postgres = timed_build(pg.url(pg.create_database()), path, "b1000")
    print(f"build of 1,000 noop instances: SQLite {sqlite:.2f} s, PostgreSQL {postgres:.2f} s "
          f"({postgres / sqlite:.2f}x)", flush=True)
    graph = write(directory, "levels.yaml", levels(10, 20, 0.5))
    wall = timed_build(pg.url(pg.create_database()), graph, "levels", parallelism=64)
    print(f"200 sleep nodes x 0.5 s in 10 levels on PostgreSQL: {wall:.2f} s over a 5 s critical path "
          f"({wall / 5:.3f})", flush=True)
    return {"build_1000_noop_s": {"sqlite": round(sqlite, 3), "postgresql": round(postgres, 3),
                                  "ratio": round(postgres / sqlite, 2)},
            "critical_path_ratio_pg": round(wall / 5.0, 4)}


def failover(directory: str, pg) -> float:
    """kill -9 of the server holding most loops -> every one of its infrastructures held by a live server."""
    url = pg.url(pg.create_database())
    path = write(directory, "noop10.yaml", noop(9))
    for i in range(6):
        timed_build(url, path, f"f{i}")
    members = start_members(tempfile.mkdtemp(dir=directory), url, 3)
    store = StateStore(url)
    try:
        names = [f"f{i}" for i in range(6)]
        wait_for(lambda: all(store.lease_holder(n) for n in names), 60)
        time.sleep(2 * RETRY_S)  # the shares settle
        owners = {n: store.lease_holder(n)["owner"] for n in names}
        victim_id = max(set(owners.values()), key=list(owners.values()).count)
        victim = member_of(members, victim_id)
        theirs = [n for n, o in owners.items() if o == victim_id]
        started = time.monotonic()
        victim.kill()
        wait_for(lambda: all((h := store.lease_holder(n)) and h["owner"] != victim_id for n in theirs), 60)
        elapsed = time.monotonic() - started
        print(f"failover: {len(theirs)} loops of a kill -9'd server running elsewhere after {elapsed:.2f} s "
              f"(lease {LEASE_S:g} s, pass interval {INTERVAL_S:g} s)", flush=True)
        return elapsed
    finally:
        store.close()
        for m in members:
            m.stop()


def marked(marker: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = dict(p.split(b"=", 1) for p in fh.read().split(b"\0") if b"=" in p)
        except OSError:
            continue
        if env.get(b"BENCH_MARK") == marker.encode():
            found.setdefault(env.get(b"STRATO_INSTANCE_KEY", b"").decode(), []).append(int(entry))
    return found


def kill_cycles(directory: str, pg, cycles: int) -> tuple[int, int]:
    """Each cycle: a build of 3 processes, kill -9 of the server running it mid-way, that server restarted."""
    url = pg.url(pg.create_database())
    members = start_members(tempfile.mkdtemp(dir=directory), url, 3)
    marker, ops, rng = uuid.uuid4().hex[:10], [], random.Random(7)
    store = StateStore(url)
    try:
        for cycle in range(cycles):
            entry = rng.choice(members)
            op_id = entry.post("/v1/infrastructures", {"name": f"k{cycle}", "descriptor": processes(marker, 3),
                                                       "parallelism": 1})["operation"]
            ops.append((f"k{cycle}", op_id))
            running = wait_for(lambda: (o := store.get_operation(op_id)) and o["state"] == "running" and o, 30)
            victim = member_of(members, running and running["server"])
            time.sleep(0.5 + rng.random())   # somewhere within the build (3 x ~1 s)
            if victim is not None:
                victim.kill()
                victim.start()
                victim.wait_ready()
        wait_for(lambda: all(store.get_operation(o)["state"] in ("succeeded", "failed", "interrupted")
                             for _, o in ops), 180, step=0.5)
        lost = sum(1 for _, o in ops if store.get_operation(o)["state"] != "succeeded")
        running = marked(marker)
        rows = {n: store.instances(n) for n, _ in ops}
        duplicates = sum(max(0, len(pids) - 1) for pids in running.values())
        duplicates += sum(max(0, len(r) - 3) for r in rows.values())
        duplicates += len(set(running) - {r.key for recs in rows.values() for r in recs})   # leaked processes
        attempts = [store.get_operation(o)["attempts"] for _, o in ops]
        print(f"{cycles} kill -9 cycles across 3 servers: {lost} operations lost, {duplicates} duplicated or "
              f"leaked instances; attempts per operation {attempts}", flush=True)
        return lost, duplicates
    finally:
        store.close()
        for m in members:
            m.stop()
        for pids in marked(marker).values():
            for pid in pids:
                os.kill(pid, signal.SIGKILL)


PASSES = re.compile(r'^strato_maintain_pass_seconds_count\{infrastructure="([^"]+)"\} ([0-9.e+]+)$', re.M)


def pass_counts(members: list[Member]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for m in members:
        for name, value in PASSES.findall(m.get("/metrics", raw=True)):
            counts[name] = counts.get(name, 0.0) + float(value)
    return counts


def keeps(directory: str, pg, n: int, interval: float = 10.0, window: float = 21.0) -> bool:
    """Whether 3 servers keep n 10-instance noop infrastructures with every loop passing on time."""
    url = pg.url(pg.create_database())
    path = write(directory, "noop10.yaml", noop(9))
    store = StateStore(url)
    for i in range(n):
        service.build(path, f"m{i}", {}, store, RunOptions(parallelism=16))
    members = start_members(tempfile.mkdtemp(dir=directory), url, 3, interval)
    try:
        names = [f"m{i}" for i in range(n)]
        if not wait_for(lambda: sum(1 for x in names if store.lease_holder(x)) == n, 90, step=0.5):
            print(f"  {n}: not every infrastructure got a loop", flush=True)
            return False
        time.sleep(interval)    # the shares settle
        before = pass_counts(members)
        time.sleep(window)
        after = pass_counts(members)
        expected = math.floor(window / interval)
        late = [x for x in names if after.get(x, 0) - before.get(x, 0) < expected]
        print(f"  {n} infrastructures: {n - len(late)} passed {expected}+ times in {window:g} s", flush=True)
        return not late
    finally:
        store.close()
        for m in members:
            m.stop()


def maintained(directory: str, pg, ceiling: int) -> int:
    kept, n = 0, 25
    print("infrastructures of 10 noop instances that 3 servers keep at a 10 s interval:", flush=True)
    while n <= ceiling and keeps(directory, pg, n):
        kept, n = n, n * 2
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--max-infrastructures", type=int, default=400)
    parser.add_argument("--only-builds", action="store_true", help="Only build_1000_noop_s and critical_path_ratio_pg.")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="strato-cp-")
    os.environ["STRATO_HOME"] = directory
    pg = start_cluster()
    try:
        result = build_figures(directory, pg)
        if args.only_builds:
            print(json.dumps(result))
            return
        result["failover_s"] = round(failover(directory, pg), 3)
        result["lease_s"], result["interval_s"] = LEASE_S, INTERVAL_S
        lost, duplicates = kill_cycles(directory, pg, args.cycles)
        result["operations_lost"], result["duplicates"] = lost, duplicates
        result["maintained_infrastructures"] = maintained(directory, pg, args.max_infrastructures)
    finally:
        pg.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
