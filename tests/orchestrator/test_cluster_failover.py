"""Three real `strato serve --maintain` processes on one PostgreSQL (each its own STRATO_HOME, one shared secret.key),
and what happens when one of them dies, freezes, stops, or the database restarts under them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest

from drivers.local import free_port
from orchestrator.state import StateStore
from tests.conftest import REPO
from tests.orchestrator.api_server import READ_TOKEN, WRITE_TOKEN, wait_healthz
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
LEASE = ("--lease", "3s", "--renew-deadline", "2s", "--retry", "0.5s")
TERMINAL = ("succeeded", "failed", "interrupted")


class Member:
    """One `strato serve --maintain` of the cluster."""

    def __init__(self, home, state_url: str, *extra: str):
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, STRATO_HOME=str(home), STRATO_API_TOKEN=WRITE_TOKEN, STRATO_API_READ_TOKEN=READ_TOKEN,
                   PYTHONPATH=REPO)
        self.log = open(os.path.join(str(home), "serve.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(self.port),
                                      "--state", state_url, "--maintain", "--maintain-interval", "0.5s", *LEASE,
                                      "--allow-local-processes", *extra], env=env, cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 40) -> "Member":
        wait_healthz(self.proc, self.url, timeout, self.output)
        return self

    def output(self) -> str:
        with open(self.log.name, "rb") as fh:
            return fh.read().decode(errors="replace")[-3000:]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, timeout=30)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def end(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def members(tmp_path, pg_url):  # noqa: F811
    """start(n) -> n servers (ready), all stopped at the end."""
    started: list[Member] = []
    key_home = tmp_path / "home0"
    key_home.mkdir()
    from orchestrator import sealing
    sealing.seal_inputs({"x": "y"}, {"x"}, str(key_home))   # makes home0/secret.key: the one key of the cluster

    def start(n: int, *extra: str) -> list[Member]:
        batch = []
        for _ in range(n):
            home = tmp_path / f"home{len(started)}"
            home.mkdir(exist_ok=True)
            if not (home / "secret.key").exists():
                shutil.copy2(key_home / "secret.key", home / "secret.key")
            member = Member(home, pg_url, *extra)
            started.append(member)
            batch.append(member)
        return [m.wait_ready() for m in batch]
    yield start
    for member in started:
        member.end()


def server_of(members: list[Member], server_id: str | None) -> Member | None:
    """The member whose server id (host:pid:random) this is."""
    return next((m for m in members if server_id and server_id.split(":")[1] == str(m.proc.pid)), None)


def wait_for(what, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return what()


def operation(client: httpx.Client, op_id: str) -> dict:
    return client.get(f"/v1/operations/{op_id}").json()


def processes_marked(marker: str) -> dict[str, list[int]]:
    """Live processes carrying CLUSTER_TEST=marker, by their instance key."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = dict(p.split(b"=", 1) for p in fh.read().split(b"\0") if b"=" in p)
        except OSError:
            continue
        if env.get(b"CLUSTER_TEST") == marker.encode():
            found.setdefault(env.get(b"STRATO_INSTANCE_KEY", b"").decode(), []).append(int(entry))
    return found


def kill_marked(marker: str) -> None:
    for pids in processes_marked(marker).values():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def slow_processes(marker: str, count: int) -> str:
    """Processes that take a second to answer on their port: a build of them is long enough to be cut."""
    return textwrap.dedent(f"""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            p:
              type: strato.nodes.Process
              properties:
                port: auto
                env: {{CLUSTER_TEST: {marker}}}
                command: ["{{python}}", "-c", "import socket, sys, time; time.sleep(1.0); s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)", "{{port}}"]
              capabilities: {{scalable: {{properties: {{default_instances: {count}}}}}}}
        """)  # noqa: E501


def sleeps(seconds: float, count: int) -> str:
    return textwrap.dedent(f"""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            s:
              type: strato.nodes.Sleep
              properties: {{seconds: {seconds}}}
              capabilities: {{scalable: {{properties: {{default_instances: {count}}}}}}}
        """)


def test_kill_9_of_the_server_running_a_build_another_finishes_it_without_duplicates(members, pg_url):  # noqa: F811
    servers = members(3)
    marker = uuid.uuid4().hex[:10]
    try:
        with servers[0].client() as client:
            resp = client.post("/v1/infrastructures", json={"name": "cut", "descriptor": slow_processes(marker, 4),
                                                            "parallelism": 2})
            assert resp.status_code == 202, resp.text
            op_id = resp.json()["operation"]
            # mid-operation: it runs on some server, and some processes already exist
            assert wait_for(lambda: operation(client, op_id)["state"] == "running" and processes_marked(marker), 30)
            victim = server_of(servers, operation(client, op_id)["server"])
            assert victim is not None
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            survivor = next(m for m in servers if m is not victim)
        with survivor.client() as client:
            op = wait_for(lambda: (o := operation(client, op_id))["state"] in TERMINAL and o, 60)
            assert op["state"] == "succeeded", op
            assert op["attempts"] == 2 and server_of(servers, op["server"]) is not victim
        store = StateStore(pg_url)
        rows = store.instances("cut")
        store.close()
        assert len(rows) == 4 and {r.status for r in rows} == {"ready"}
        running = processes_marked(marker)
        assert sorted(running) == sorted(r.key for r in rows)            # none leaked
        assert all(len(pids) == 1 for pids in running.values())          # none twice
    finally:
        kill_marked(marker)


def test_a_frozen_owner_loses_its_lease_and_stops_its_loop_when_it_wakes(members, pg_url):  # noqa: F811
    servers = members(3)
    store = StateStore(pg_url)
    try:
        with servers[0].client() as client:
            op_id = client.post("/v1/infrastructures", json={"name": "frozen", "descriptor": sleeps(0, 2)}).json()[
                "operation"]
            assert wait_for(lambda: operation(client, op_id)["state"] == "succeeded", 30)
        first = wait_for(lambda: store.lease_holder("frozen"), 20)
        owner = server_of(servers, first["owner"])
        owner.signal(signal.SIGSTOP)
        # another server takes the loop once the lease has run out (3 s)
        second = wait_for(lambda: (h := store.lease_holder("frozen")) and h["owner"] != first["owner"] and h, 20)
        assert second and second["token"] > first["token"]
        owner.signal(signal.SIGCONT)
        lost = wait_for(lambda: [e for e in store.events("frozen", 200) if e["kind"] == "lease_lost"
                                 and e["detail"].get("owner") == first["owner"]], 15)
        assert lost, "the woken server did not say it lost its lease"
        time.sleep(1.5)   # the woken server's loop stays stopped: the lease stays where it went
        assert store.lease_holder("frozen")["owner"] == second["owner"]
        with servers[0].client() as client:
            view = client.get("/v1/cluster").json()
        woken = next(s for s in view["servers"] if s["id"] == first["owner"])
        assert not any(lease["infrastructure"] == "frozen" for lease in woken["leases"])
    finally:
        store.close()


def pg_restart(cluster) -> None:
    """`pg_ctl restart -m immediate` on the test cluster (as the postgres user when root)."""
    bindir = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
    argv = [f"/usr/lib/postgresql/{bindir}/bin/pg_ctl", "-D", os.path.join(cluster.directory, "data"), "-l",
            os.path.join(cluster.directory, "log"), "-m", "immediate", "-w", "-t", "60", "restart"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    # the log to a file: a server started with our pipes as its output would hold them open
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)


def test_a_database_restart_during_a_build_is_survived(members, pg_cluster, pg_url):  # noqa: F811
    servers = members(2)
    with servers[0].client() as client:
        op_id = client.post("/v1/infrastructures", json={"name": "bounce", "descriptor": sleeps(0.4, 12),
                                                         "parallelism": 2}).json()["operation"]
        assert wait_for(lambda: operation(client, op_id)["state"] == "running", 20)
        time.sleep(0.5)
        pg_restart(pg_cluster)

        def settled():
            try:
                op = operation(client, op_id)
            except (httpx.HTTPError, ValueError):
                return None
            return op if op.get("state") in TERMINAL else None
        op = wait_for(settled, 60, step=0.3)
        assert op is not None, "the build neither finished nor failed after the database came back"
        if op["state"] != "succeeded":   # failed cleanly: applying again resumes it
            resp = client.put("/v1/infrastructures/bounce", json={"descriptor": sleeps(0.4, 12)})
            assert resp.status_code == 202, resp.text
            op = wait_for(lambda: (o := operation(client, resp.json()["operation"]))["state"] in TERMINAL and o, 60)
            assert op["state"] == "succeeded", op
        infra = client.get("/v1/infrastructures/bounce").json()
    assert len(infra["instances"]) == 12 and {i["status"] for i in infra["instances"]} == {"ready"}


def test_operations_are_each_claimed_once_and_a_graceful_stop_hands_loops_over(members, pg_url):  # noqa: F811
    servers = members(3, "--lease", "8s", "--renew-deadline", "5s")   # a long lease: a handover is not an expiry
    ops = []
    for i in range(9):
        with servers[i % 3].client() as client:
            resp = client.post("/v1/infrastructures", json={"name": f"many{i}", "descriptor": sleeps(0.2, 2)},
                               headers={"Idempotency-Key": f"many-{i}"})
            assert resp.status_code == 202, resp.text
            again = client.post("/v1/infrastructures", json={"name": f"many{i}", "descriptor": sleeps(0.2, 2)},
                                headers={"Idempotency-Key": f"many-{i}"})
            assert again.json()["operation"] == resp.json()["operation"]   # a retry is the same operation
            ops.append(resp.json()["operation"])
    with servers[0].client() as client:
        done = wait_for(lambda: all(operation(client, op_id)["state"] in TERMINAL for op_id in ops), 60)
        assert done
        results = [operation(client, op_id) for op_id in ops]
    assert [o["state"] for o in results] == ["succeeded"] * 9
    assert all(o["attempts"] == 1 for o in results)                   # each claimed exactly once
    store = StateStore(pg_url)
    try:
        names = [f"many{i}" for i in range(9)]
        assert wait_for(lambda: all(store.lease_holder(n) for n in names), 20)
        counts = {}
        for n in names:
            counts[store.lease_holder(n)["owner"]] = counts.get(store.lease_holder(n)["owner"], 0) + 1
        leaving = server_of(servers, max(counts, key=counts.get))
        held = [n for n in names if store.lease_holder(n)["owner"].split(":")[1] == str(leaving.proc.pid)]
        leaving.signal(signal.SIGTERM)
        leaving.proc.wait(30)
        stopped = time.monotonic()
        assert wait_for(lambda: all((h := store.lease_holder(n)) and h["owner"].split(":")[1] != str(leaving.proc.pid)
                                    for n in held), 10, step=0.05)
        # handed back, not left to expire: taken within a retry or two (0.5 s each), well before the 8 s lease
        assert time.monotonic() - stopped < 5
        rows = store.database.execute("SELECT id FROM servers").rows
        assert len(rows) == 2 and all(r[0].split(":")[1] != str(leaving.proc.pid) for r in rows)   # it said goodbye
    finally:
        store.close()
