"""Soak: a `strato serve --maintain` (1 s passes) under API PUTs scaling one node 1 <-> 12, CLI `status` and `scale` of another node
every second
and kill -9 of the server every 2 minutes (restarted at once); afterwards nothing written is lost, no instance runs
twice and no process is left untracked.

    flock /work/bench.lock python benchmarks/soak.py [--minutes 10] [--kill-every 120] [--json]

What counts:
- writes_lost: acknowledged writes missing at the end: infrastructures the API created (operation succeeded)
  that are gone, ones it deleted that are back, CLI scale requests (exit 0, with a request id) not in state;
- duplicates: extra live processes for one instance key (each key must run at most once), the most seen in any
  one-second sample during the run or at its end;
- leaked_processes: live processes of the soak whose key state does not know, plus any left after destroy.
Ends with one JSON line holding these and the counts behind them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers.local import free_port  # noqa: E402
from tests.processes import processes_of  # noqa: E402

TOKEN = "soak-w-" + "s" * 32
APP = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    replicas: {type: integer, default: 1}
  node_templates:
    web:
      type: strato.nodes.Process
      properties: {command: ["sleep", "3600"]}
      capabilities:
        scalable: {properties: {default_instances: {get_input: replicas}, max_instances: 20}}
    side:
      type: strato.nodes.Process
      properties: {command: ["sleep", "3600"]}
      capabilities:
        scalable: {properties: {default_instances: 1, max_instances: 20}}
"""
MARK = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    n: {type: strato.nodes.Noop}
"""


class Soak:
    def __init__(self, home: str, tag: str):
        self.home, self.tag = home, tag
        self.env = dict(os.environ, STRATO_HOME=home, STRATO_API_TOKEN=TOKEN, PYTHONPATH=REPO)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.created: set[str] = set()      # acknowledged API creates
        self.deleted: set[str] = set()      # acknowledged API deletes
        self.requests: list[int] = []       # acknowledged CLI scale requests
        self.failures: list[str] = []       # the first few CLI failures, shown at the end
        self.counts = {"puts_ok": 0, "puts_failed": 0, "marks_ok": 0, "cli_ok": 0, "cli_failed": 0, "kills": 0}

    # -- the server --------------------------------------------------------------------------------
    def start_server(self) -> None:
        log = open(os.path.join(self.home, "serve.log"), "ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve", "--port", str(self.port), "--allow-local-processes",
             "--maintain", "--maintain-interval", "1s"], env=self.env, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("strato serve did not come up; see serve.log in " + self.home)

    def kill_server(self) -> None:
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.wait(30)
        self.counts["kills"] += 1

    def stop_server(self) -> None:
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_server()

    # -- the workers -------------------------------------------------------------------------------
    def operation(self, client: httpx.Client, response: httpx.Response, timeout: float = 180) -> str:
        """The operation's end state; 'lost' when the server died under it."""
        if response.status_code != 202:
            return f"refused {response.status_code}"
        op_id = response.json()["operation"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:   # even when told to stop: a write in flight is followed to its end
            try:
                state = client.get(f"/v1/operations/{op_id}").json()["state"]
            except (httpx.HTTPError, ValueError, KeyError):
                return "lost"
            if state != "running":
                return state
            time.sleep(0.2)
        return "timeout"

    def api_worker(self) -> None:
        client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        replicas, i = 12, 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                put = client.put(f"/v1/infrastructures/{self.tag}",
                                 json={"descriptor": APP, "inputs": {"replicas": replicas}, "parallelism": 4})
                ok = self.operation(client, put) == "succeeded"
                self.counts["puts_ok" if ok else "puts_failed"] += 1
                replicas = 1 if replicas == 12 else 12
                mark = f"{self.tag}-m{i}"
                if self.operation(client, client.post("/v1/infrastructures", json={"name": mark,
                                                                                     "descriptor": MARK})) == "succeeded":
                    with self.lock:
                        self.created.add(mark)
                    self.counts["marks_ok"] += 1
                if i % 3 == 2 and (gone := f"{self.tag}-m{i - 1}") in self.created:
                    if self.operation(client, client.delete(f"/v1/infrastructures/{gone}")) == "succeeded":
                        with self.lock:
                            self.deleted.add(gone)
                i += 1
            except httpx.HTTPError:
                time.sleep(0.5)   # the server is being restarted
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
        client.close()

    def cli_worker(self) -> None:
        up = True   # `side` goes 1 -> 2 -> 1 ...: the CLI's scale requests, while the API scales `web`
        while not self.stop.is_set():
            started = time.monotonic()
            status = self.strato("status", "--json")
            step = "+1" if up else "-1"
            up = not up
            scale = self.strato("scale", self.tag, "side", "--by", step, "--no-apply", "--json")
            if scale.returncode == 0:
                request = json.loads(scale.stdout).get("request")
                if request is not None:
                    with self.lock:
                        self.requests.append(request)
            for proc in (status, scale):
                self.counts["cli_ok" if proc.returncode == 0 else "cli_failed"] += 1
                if proc.returncode != 0 and len(self.failures) < 5:
                    self.failures.append((proc.stdout + proc.stderr).strip()[-300:])
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def strato(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    # -- the verdict -------------------------------------------------------------------------------
    def processes(self) -> dict[str, int]:
        """How many live processes carry each instance key of the soak's infrastructure."""
        return {key: len(pids) for key, pids in processes_of(self.tag).items()}

    def verdict(self) -> dict:
        db = sqlite3.connect(f"file:{os.path.join(self.home, 'state.db')}?mode=ro", uri=True)
        names = {r[0] for r in db.execute("SELECT name FROM infrastructures")}
        keys = {r[0] for r in db.execute("SELECT key FROM instances WHERE infra=?", (self.tag,))}
        requests = {r[0] for r in db.execute("SELECT id FROM scale_requests WHERE infra=?", (self.tag,))}
        db.close()
        self.lost = {"created_missing": sorted(self.created - self.deleted - names),
                     "deleted_present": sorted(self.deleted & names),
                     "requests_missing": sorted(set(self.requests) - requests)}
        lost = sum(len(v) for v in self.lost.values())
        running = self.processes()
        return {"writes_lost": lost, "duplicates": sum(n - 1 for n in running.values() if n > 1),
                "untracked": len(set(running) - keys), "instances": len(keys), "processes": sum(running.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds between kill -9 of the server")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="strato-soak-")
    soak = Soak(home, f"soak{os.getpid()}")
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    say(f"soak: {args.minutes} min, kill -9 of the server every {args.kill_every:.0f} s, home {home}")
    soak.start_server()
    workers = [threading.Thread(target=soak.api_worker, daemon=True), threading.Thread(target=soak.cli_worker,
                                                                                          daemon=True)]
    for w in workers:
        w.start()
    end = time.monotonic() + args.minutes * 60
    next_kill = time.monotonic() + args.kill_every
    seen_duplicates = 0
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        seen_duplicates = max(seen_duplicates, sum(n - 1 for n in soak.processes().values() if n > 1))
        if time.monotonic() >= next_kill and time.monotonic() < end - 10:
            soak.kill_server()
            say(f"  {time.strftime('%H:%M:%S')} kill -9 of the server ({soak.counts}); restarting")
            soak.start_server()
            next_kill += args.kill_every
    soak.stop.set()
    for w in workers:
        w.join(200)
    time.sleep(5)  # the loop's last passes (it adopts or recreates what a killed operation left)
    soak.stop_server()
    figures = soak.verdict()
    say(f"  after the soak: {figures}")
    if figures["writes_lost"]:
        say(f"  lost: {soak.lost}")
    for failure in soak.failures:
        say(f"  a CLI command failed: {failure}")
    destroyed = soak.strato("destroy", soak.tag, "--yes", "--json")
    time.sleep(1)
    left = sum(soak.processes().values())
    result = {"writes_lost": figures["writes_lost"], "duplicates": max(figures["duplicates"], seen_duplicates),
              "leaked_processes": figures["untracked"] + left, "left_after_destroy": left,
              "destroy_rc": destroyed.returncode, "minutes": args.minutes, **soak.counts,
              "requests_checked": len(soak.requests), "infras_checked": len(soak.created)}
    say(f"  writes lost {result['writes_lost']}, duplicates {result['duplicates']}, leaked processes "
        f"{result['leaked_processes']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
