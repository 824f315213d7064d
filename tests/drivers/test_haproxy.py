"""The haproxy driver on a real HAProxy (Debian's 2.6) and real HTTP servers on loopback: weighted splits, live
weight changes and server churn with no reload and no failed request, retries past a killed server, metrics,
private config, and the one-line error when haproxy is missing. Skipped with the reason where haproxy is absent
(tests/env/haproxy.sh installs it)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.haproxy import MISSING_BINARY, HaproxyAdmin, HaproxyDriver, ServerSlot, server_name, slots_for
from drivers.local import free_port
from tests.conftest import REPO

BACKEND = os.path.join(os.path.dirname(os.path.abspath(__file__)), "router_backend.py")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="haproxy is not installed (tests/env/haproxy.sh installs Debian's haproxy)")


class Backends:
    """Tiny HTTP servers (tests/drivers/router_backend.py), started on free loopback ports."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, delay: float = 0.0) -> ServerSlot:
        port = free_port()
        self.procs[name] = subprocess.Popen([sys.executable, BACKEND, str(port), name, str(delay)])
        self.ports[name] = port
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return self.slot(name)
            except OSError:
                assert time.monotonic() < deadline, f"backend {name} did not start"
                time.sleep(0.05)

    def slot(self, name: str, weight: int = 1, drain: bool = False) -> ServerSlot:
        return ServerSlot(name, "127.0.0.1", self.ports[name], weight, drain)

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(5)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(5)


@pytest.fixture
def backends():
    started = Backends()
    yield started
    started.stop()


@pytest.fixture
def router(tmp_path):
    """A real router instance built by the driver: (driver, handle, admin)."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (tests/env/haproxy.sh installs Debian's haproxy)")
    driver = HaproxyDriver()
    spec = InstanceSpec(key=f"rt-{tmp_path.name}/lb/0@t", infra="rt", node="lb", index=0, type="strato.nodes.ai.Router",
                        properties={"check_interval": 0.5, "drain_timeout": 5}, infra_dir=str(tmp_path),
                        descriptor_dir=str(tmp_path), timeout=30)
    handle = driver.create(spec)
    try:
        yield driver, handle, HaproxyAdmin(handle["router"]["admin_socket"])
    finally:
        driver.delete(handle)


class Client(threading.Thread):
    """One keep-alive connection sending requests (GET, or POST with a body) until stopped; counts who answered
    and every failure, and notes whether the connection ever had to be opened again."""

    def __init__(self, port: int, method: str = "GET", limit: int | None = None):
        super().__init__(daemon=True)
        self.port, self.method, self.limit = port, method, limit
        self.stop_event = threading.Event()
        self.answers: Counter = Counter()
        self.failures: list[str] = []
        self.sockets: set[int] = set()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = 0
        while not self.stop_event.is_set() and (self.limit is None or sent < self.limit):
            sent += 1
            try:
                body = f"req-{sent}".encode() if self.method == "POST" else None
                conn.request(self.method, "/", body=body)
                resp = conn.getresponse()
                data = resp.read()
                self.sockets.add(id(conn.sock))
                if resp.status != 200 or (body and not data.endswith(b":" + body)):
                    self.failures.append(f"{resp.status} {data[:80]!r}")
                else:
                    self.answers[resp.headers.get("X-Server")] += 1
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def finish(self) -> "Client":
        self.stop_event.set()
        self.join(30)
        return self


def _count(port: int, requests: int) -> Counter:
    client = Client(port, limit=requests)
    client.run()
    assert client.failures == []
    return client.answers


def _pid_of(admin: HaproxyAdmin) -> int:
    return int(next(ln.split(":")[1] for ln in admin.command("show info").splitlines() if ln.startswith("Pid:")))


# -- pure parts --------------------------------------------------------------------------------------------
def test_slots_for_reads_host_port_or_url_and_weighs_by_name():
    attrs = [{"name": "web-0", "host": "127.0.0.1", "port": 8001}, {"name": "web-1", "url": "http://127.0.0.2:8002/x"},
             {"name": "web-2"}, {"name": "web 3", "url": "https://10.0.0.3"}]   # 10.0.0.3: data, never contacted
    equal = slots_for(attrs)
    assert [(s.name, s.host, s.port, s.weight) for s in equal] == [
        ("web-0", "127.0.0.1", 8001, 1), ("web-1", "127.0.0.2", 8002, 1), ("web_3", "10.0.0.3", 443, 1)]  # never contacted
    weighted = slots_for(attrs, {"web-0": 90, "web-1": 10})
    assert [s.weight for s in weighted] == [90, 10, 0]   # a rollout names every server it wants traffic on
    with pytest.raises(ValueError):
        ServerSlot("x", "127.0.0.1", 1, 257)
    assert server_name("web", 3) == "web-3"


def test_missing_binary_is_one_line_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = InstanceSpec(key="m/lb/0@t", infra="m", node="lb", index=0, type="strato.nodes.ai.Router",
                        properties={}, infra_dir=str(tmp_path), descriptor_dir=str(tmp_path))
    with pytest.raises(DriverError) as err:
        HaproxyDriver().create(spec)
    assert str(err.value) == MISSING_BINARY == "HAPROXY_MISSING: haproxy is not installed: apt-get install haproxy"


def test_a_build_without_haproxy_fails_with_that_one_line(tmp_path):
    descriptor = tmp_path / "router.yaml"
    descriptor.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n"
                          "  node_templates:\n    lb:\n      type: strato.nodes.ai.Router\n")
    env = {**os.environ, "STRATO_HOME": str(tmp_path / "home"), "PATH": str(tmp_path / "bin"),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "build", str(descriptor), "--name", "nohaproxy"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert [ln for ln in out.splitlines() if "haproxy is not installed" in ln and "FAILED" not in ln] == [
        "  lb[0]: create failed: " + MISSING_BINARY]


# -- a real HAProxy ------------------------------------------------------------------------------------------
@needs_haproxy
def test_config_is_private_and_binds_loopback_only(router):
    _, handle, admin = router
    work_dir = os.path.dirname(handle["attributes_file"])
    config = os.path.join(work_dir, "haproxy.cfg")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(work_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(admin.socket_path).st_mode) == 0o600
    binds = [ln.split()[1] for ln in open(config) if ln.strip().startswith("bind ")]
    assert len(binds) == 2 and all(b.startswith("127.0.0.1:") for b in binds)
    text = open(config).read()
    for needed in ("retry-on all-retryable-errors", "option redispatch", "option http-buffer-request",
                   "option httpchk GET /health", "level admin", "prometheus-exporter", "nbthread 1"):
        assert needed in text


def test_threads_property_sets_nbthread(tmp_path):
    from drivers.haproxy import render_config, router_settings
    spec = InstanceSpec(key="th/lb/0@t", infra="th", node="lb", index=0, type="strato.nodes.ai.Router",
                        properties={"threads": 3}, infra_dir=str(tmp_path), descriptor_dir=str(tmp_path), timeout=30)
    text = render_config(spec, router_settings(spec, str(tmp_path)))
    assert [ln.split() for ln in text.splitlines() if "nbthread" in ln] == [["nbthread", "3"]]


@needs_haproxy
def test_weights_split_traffic_as_set(router, backends):
    _, handle, admin = router
    backends.start("a")
    backends.start("b")
    report = admin.sync("lb", [backends.slot("a", 10), backends.slot("b", 90)])
    assert sorted(report.added) == ["a", "b"]
    assert admin.weights("lb") == {"a": 10, "b": 90}
    counts = _count(handle["port"], 2000)
    assert sum(counts.values()) == 2000
    assert 0.07 <= counts["a"] / 2000 <= 0.13, counts
    stats = admin.server_stats("lb")
    assert stats["a"].requests + stats["b"].requests >= 2000
    assert stats["a"].errors_5xx == stats["b"].errors_5xx == 0
    assert stats["a"].connections + stats["b"].connections <= 10   # kept alive, not one connection per request


@needs_haproxy
def test_sync_is_idempotent(router, backends):
    _, _, admin = router
    slots = [backends.start("a"), backends.start("b")]
    assert admin.sync("lb", slots).added == ["a", "b"]
    again = admin.sync("lb", slots)
    assert not again.changed and again.draining == []
    drained = admin.sync("lb", [backends.slot("a", drain=True), backends.slot("b")])
    assert drained.updated == ["a"] and admin.weights("lb") == {"a": 0, "b": 1}
    assert admin.server_stats("lb")["a"].status.startswith("DRAIN")
    assert admin.sync("lb", [backends.slot("a"), backends.slot("b")]).updated == ["a"]   # back in service
    assert admin.weights("lb") == {"a": 1, "b": 1}


@needs_haproxy
def test_weight_changes_live_keep_the_connection_and_lose_no_request(router, backends):
    _, handle, admin = router
    admin.sync("lb", [backends.start("a"), backends.start("b")])
    pid = _pid_of(admin)
    client = Client(handle["port"])
    client.start()
    for weights in ((100, 0), (0, 100), (1, 1), (0, 256), (256, 0), (5, 5)):
        time.sleep(0.3)
        admin.sync("lb", [backends.slot("a", weights[0]), backends.slot("b", weights[1])])
        assert admin.weights("lb") == {"a": weights[0], "b": weights[1]}
    time.sleep(0.3)
    client.finish()
    assert client.failures == []
    assert sum(client.answers.values()) > 100 and set(client.answers) == {"a", "b"}
    assert len(client.sockets) == 1          # one keep-alive connection throughout
    assert _pid_of(admin) == pid == handle["pid"]   # never restarted nor reloaded
    admin.sync("lb", [backends.slot("a", 0), backends.slot("b", 7)])
    assert set(_count(handle["port"], 50)) == {"b"}


@needs_haproxy
def test_a_server_killed_mid_stream_fails_no_request(router, backends):
    _, handle, admin = router
    admin.sync("lb", [backends.start("a", delay=0.02), backends.start("b", delay=0.02)])
    clients = [Client(handle["port"]), Client(handle["port"], "POST"), Client(handle["port"], "POST")]
    for client in clients:
        client.start()
    time.sleep(0.5)
    backends.kill("a")               # requests in flight on it and new ones to it are retried on b
    time.sleep(2.0)
    for client in clients:
        client.finish()
    assert [c.failures for c in clients] == [[], [], []]
    assert all(c.answers["b"] > 0 for c in clients)
    killed = admin.server_stats("lb")["a"]
    assert killed.status.startswith("DOWN")   # its health check saw it go
    assert killed.redispatches > 0            # ...and until then, what went to it was sent again to b


@needs_haproxy
def test_servers_added_and_removed_live(router, backends):
    _, handle, admin = router
    pid = _pid_of(admin)
    admin.sync("lb", [backends.start("a")])
    client = Client(handle["port"], "POST")
    client.start()
    time.sleep(0.3)
    assert admin.sync("lb", [backends.slot("a"), backends.start("b")]).added == ["b"]
    time.sleep(0.5)
    removed = admin.sync("lb", [backends.slot("b")], wait=5)
    assert removed.removed == ["a"] and removed.draining == []
    time.sleep(0.2)   # the answer to a request that finished on `a` as it left may still be on its way
    seen_before = client.answers["a"]
    time.sleep(0.5)
    client.finish()
    assert client.failures == []
    assert seen_before > 0 and client.answers["a"] == seen_before and client.answers["b"] > 0
    assert admin.weights("lb") == {"b": 1}
    assert _pid_of(admin) == pid


@needs_haproxy
def test_a_freed_slot_serves_the_next_server_and_never_the_old_one(router, backends):
    _, handle, admin = router
    admin.sync("lb", [backends.start("a"), backends.start("b")])
    clients = [Client(handle["port"]), Client(handle["port"], "POST")]
    for client in clients:
        client.start()
    time.sleep(0.3)
    assert admin.sync("lb", [backends.slot("b")], wait=5).removed == ["a"]   # `a` still runs: only unrouted
    time.sleep(0.2)
    before = [c.answers["a"] for c in clients]
    assert admin.sync("lb", [backends.slot("b"), backends.start("c")]).added == ["c"]   # takes a's free slot
    time.sleep(0.5)
    for client in clients:
        client.finish()
    assert [c.failures for c in clients] == [[], []]
    assert [c.answers["a"] for c in clients] == before and all(c.answers["c"] > 0 for c in clients)
    assert set(admin.weights("lb")) == {"b", "c"}


@needs_haproxy
def test_more_servers_than_slots_is_a_clear_error(tmp_path, backends):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (tests/env/haproxy.sh installs Debian's haproxy)")
    driver = HaproxyDriver()
    spec = InstanceSpec(key="cap/lb/0@t", infra="cap", node="lb", index=0, type="strato.nodes.ai.Router",
                        properties={"max_servers": 1}, infra_dir=str(tmp_path), descriptor_dir=str(tmp_path))
    handle = driver.create(spec)
    try:
        admin = HaproxyAdmin(handle["router"]["admin_socket"])
        with pytest.raises(DriverError, match="no free server slot for 'b'.*max_servers"):
            admin.sync("lb", [backends.start("a"), backends.start("b")])
        assert admin.weights("lb") == {"a": 1}
    finally:
        driver.delete(handle)


@needs_haproxy
def test_a_leaving_server_is_drained_before_it_is_deleted(router, backends):
    _, handle, admin = router
    admin.sync("lb", [backends.start("slow", delay=1.5)])
    answers = []

    def slow_request():
        with urllib.request.urlopen(f"http://127.0.0.1:{handle['port']}/", timeout=10) as resp:
            answers.append((resp.status, resp.read()))
    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.4)                               # the request is in flight on `slow`
    first = admin.sync("lb", [backends.start("b")])
    assert first.draining == ["slow"] and first.removed == []
    assert admin.weights("lb") == {"slow": 0, "b": 1}
    thread.join(10)
    assert answers == [(200, b"slow")]            # it finished on the draining server
    done = admin.sync("lb", [backends.slot("b")], wait=5)
    assert done.removed == ["slow"] and admin.weights("lb") == {"b": 1}


@needs_haproxy
def test_the_metrics_endpoint_serves_haproxy_metrics(router, backends):
    driver, handle, admin = router
    admin.sync("lb", [backends.start("a")])
    _count(handle["port"], 5)
    attrs = driver.observe(handle).attributes
    assert {"url", "admin_socket", "metrics_url", "backend", "pid"} <= set(attrs)
    assert attrs["url"] == f"http://127.0.0.1:{handle['port']}" and attrs["backend"] == "lb"
    with urllib.request.urlopen(attrs["metrics_url"], timeout=5) as resp:
        text = resp.read().decode()
    assert 'haproxy_backend_http_requests_total{proxy="lb"}' in text
    slot = admin.slots("lb")["a"]
    assert f'haproxy_server_http_responses_total{{proxy="lb",server="{slot}",code="2xx"}} 5' in text
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(attrs["metrics_url"].replace("/metrics", "/other"), timeout=5)
    assert err.value.code == 404


@needs_haproxy
def test_an_adopted_router_keeps_its_attributes(router):
    driver, handle, _ = router
    found = driver.find(handle["key"], None)
    assert found["pid"] == handle["pid"] and found["router"] == handle["router"]
    assert driver.observe(found).attributes["admin_socket"] == handle["router"]["admin_socket"]


@needs_haproxy
def test_the_benchmark_piece_reports_the_added_latency():
    from benchmarks.mlops_router import router_latency
    figures = router_latency(requests=50)
    assert figures["requests_per_path"] == 50
    assert figures["router_added_latency_p99_ms"] == pytest.approx(figures["router_p99_ms"] - figures["direct_p99_ms"],
                                                                   abs=1e-3)
