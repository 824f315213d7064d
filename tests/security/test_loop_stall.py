"""A maintain loop that can't be stalled (issue 17, items 10-12): hostile metrics endpoints, runaway rules, stopped replicas.

Real servers on 127.0.0.1 (in this process, or replicas the loop started), real processes
stopped with SIGSTOP, rules with endless loops in the real sandbox, the real `strato validate`.
The time bounds only prove "no stall": each is far below what the stall used to cost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.health import probe_all
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.metrics import ScrapeSource
from orchestrator.state import InstanceRecord, StateStore
from policies.base import Observation, PolicyError
from policies.rule import MAX_USERDATA_BYTES, RulePolicy
from policies.rulecheck import check_rule
from policies.sandbox import Sandbox
from tests.conftest import run_strato

EXPOSITION = b"# TYPE queue_depth gauge\nqueue_depth 1\n"
BIG = 25 * 2 ** 20

# One handler for the in-process servers and the replicas the loop starts (written out as a script).
HANDLER = '''
import os
import time
from http.server import BaseHTTPRequestHandler

EXPOSITION = b"# TYPE queue_depth gauge\\nqueue_depth 1\\n"


class Hostile(BaseHTTPRequestHandler):
    """mode: ok | trickle (the body at 1 byte/s) | slowhead (the status line at 1 byte/s) |
    big (25 MB, no Content-Length) | bigcl (25 MB with its Content-Length) for /metrics; /health
    answers at once, or like slowhead once a file `slow-health` exists in the working directory."""

    mode = "ok"

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            slow_health = self.path == "/health" and os.path.exists("slow-health")
            if not slow_health and (self.path == "/health" or self.mode == "ok"):
                self._send(EXPOSITION)
            elif self.mode == "slowhead" or slow_health:
                for byte in b"HTTP/1.0 200 OK\\r\\n\\r\\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
            elif self.mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", str(len(EXPOSITION)))
                self.end_headers()
                for i in range(len(EXPOSITION)):
                    self.wfile.write(EXPOSITION[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            else:
                self.send_response(200)
                if self.mode == "bigcl":
                    self.send_header("Content-Length", str(25 * 2 ** 20))
                self.end_headers()
                line = b"queue_depth 1\\n" * 4096
                for _ in range(25 * 2 ** 20 // len(line) + 1):
                    self.wfile.write(line)
        except OSError:
            pass  # the scraper gave up on us: that is the point

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
'''
namespace: dict = {}
exec(compile(HANDLER, "hostile-handler", "exec"), namespace)
Hostile = namespace["Hostile"]

REPLICA = HANDLER + '''
import sys
from http.server import ThreadingHTTPServer

ThreadingHTTPServer.daemon_threads = True
Hostile.mode = sys.argv[2]
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hostile).serve_forever()
'''


@pytest.fixture
def hostile_servers():
    """mode -> base URL of an in-process server behaving that way."""
    servers, urls = [], {}
    for mode in ("ok", "trickle", "slowhead", "big", "bigcl"):
        handler = type(f"Hostile_{mode}", (Hostile,), {"mode": mode})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[mode] = f"http://127.0.0.1:{server.server_port}"
    yield urls
    for server in servers:
        server.shutdown()
        server.server_close()


# -- 10. metrics endpoints ---------------------------------------------------------------------------

def test_one_scrape_of_hostile_endpoints_ends_within_its_deadline(hostile_servers):
    targets = {mode: f"{url}/metrics" for mode, url in hostile_servers.items()}
    source = ScrapeSource(timeout=2.0)
    started = time.monotonic()
    source.scrape(targets)
    took = time.monotonic() - started
    assert took < 4, f"one scrape took {took:.1f} s (a trickle used to cost 40 s, 25 MB 17.8 s)"
    assert set(source.current) == {"ok"} and source.query("queue_depth", ["ok"]) == 1
    for mode in ("trickle", "slowhead"):
        assert "no complete answer within the scrape's 2 s deadline" in source.errors[mode], source.errors
    for mode in ("big", "bigcl"):
        assert "over the 4 MiB limit" in source.errors[mode], source.errors


HOSTILE_DESCRIPTOR = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    slow:
      type: strato.nodes.Process
      properties:
        command: ["{python}", "replica.py", "{port}", "trickle"]
        port: auto
        stop_grace_period: 1
    big:
      type: strato.nodes.Process
      properties:
        command: ["{python}", "replica.py", "{port}", "big"]
        port: auto
        stop_grace_period: 1
  policies:
    - watch:
        type: strato.policies.Alert
        targets: [slow, big]
        properties: {metric: queue_depth, above: 5}
"""


def build(tmp_path, strato_home, name: str, descriptor: str, inputs: dict | None = None) -> StateStore:
    (tmp_path / "replica.py").write_text(REPLICA)
    path = tmp_path / f"{name}.yaml"
    path.write_text(descriptor)
    store = StateStore(str(strato_home / "state.db"))
    report = service.build(str(path), name, inputs or {}, store, RunOptions())
    assert report["ok"], report
    return store


@pytest.fixture
def hostile_infra(tmp_path, strato_home):
    store = build(tmp_path, strato_home, "hostile", HOSTILE_DESCRIPTOR)
    yield store
    service.destroy(store, "hostile", RunOptions())
    store.close()


def test_a_trickling_and_a_25_mb_replica_cost_a_pass_one_scrape_deadline(hostile_infra):
    store = hostile_infra
    keys = {r.node: r.key for r in store.instances("hostile")}
    maintainer = Maintainer(store, "hostile", MaintainOptions(interval=1))
    for _ in range(2):
        report = maintainer.run_pass()
        assert report.duration < 8, f"a pass took {report.duration:.1f} s"
    failed = {e["key"]: e["detail"]["error"] for e in store.events("hostile", 200) if e["kind"] == "scrape_failed"}
    assert set(failed) == {keys["slow"], keys["big"]}, failed          # an event naming each instance, once
    assert "no complete answer within the scrape's 2 s deadline" in failed[keys["slow"]]
    assert "over the 4 MiB limit" in failed[keys["big"]]


# -- 12. health probes -----------------------------------------------------------------------------

def record(key: str, host: str | None, port: int | None) -> InstanceRecord:
    return InstanceRecord(key, "t", "web", 0, "local", {"host": host, "port": port}, {"host": host, "port": port},
                          "ready", None, None, 1, 0.0)


@pytest.fixture
def stopped_process(tmp_path):
    """A real replica answering /health, then stopped with SIGSTOP: (pid, port)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "replica.py").write_text(REPLICA)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "replica.py"), str(port), "ok"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    proc.send_signal(signal.SIGSTOP)
    yield proc.pid, port
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait(timeout=10)


def test_probe_all_returns_within_the_largest_probe_timeout(hostile_servers, stopped_process):
    pid, port = stopped_process
    good = hostile_servers["ok"].rsplit(":", 1)[1]
    slow = hostile_servers["slowhead"].rsplit(":", 1)[1]
    targets = [
        (record("good", "127.0.0.1", int(good)), {"http": "/health", "tcp": True}),
        (record("stopped", "127.0.0.1", port), {"http": "/health", "tcp": True, "timeout": 1.5}),
        (record("slowhead", "127.0.0.1", int(slow)), {"urls": [f"{hostile_servers['slowhead']}/metrics"],
                                                       "timeout": 1}),
        # the shell's child keeps the output pipe open: killing the shell alone would leave the probe waiting
        (record("wedged", "127.0.0.1", None), {"command": "sleep 30; true", "timeout": 1}),
        (record("remote", "10.1.2.3", 80), {"http": "/health"}),   # never contacted
    ]
    started = time.monotonic()
    results = probe_all(targets, timeout=2.0)
    took = time.monotonic() - started
    assert took < 2 + 1.0, f"probing took {took:.1f} s; the largest probe timeout is 2 s"
    assert results["good"].ok and results["remote"] is None
    assert not results["stopped"].ok and "no answer within 1.5 s" in results["stopped"].detail
    assert not results["slowhead"].ok and "no answer within 1 s" in results["slowhead"].detail
    assert not results["wedged"].ok and "timed out after 1 s" in results["wedged"].detail
    assert all(r.probed for r in results.values() if r is not None)


def probe_command() -> str:
    """A command check that asks the replica itself, as an operator's `curl ... || exit 1` would: the shell
    forks the client, which holds the output pipe (killing only the shell used to leave the probe waiting)."""
    code = ("import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' "
            "% os.environ['STRATO_INSTANCE_PORT'], timeout=30)")
    return json.dumps(f'{sys.executable} -c "{code}" || exit 1')


def replicas_descriptor(grace: str) -> str:
    return textwrap.dedent(f"""
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Process
              properties:
                command: ["{{python}}", "replica.py", "{{port}}", "ok"]
                port: auto
                stop_grace_period: 5
                health_check: {{http: /health, command: {probe_command()}, timeout: 3, grace_period: {grace}}}
              capabilities:
                scalable: {{properties: {{default_instances: 3}}}}
        """)


@pytest.fixture
def replicas(tmp_path, strato_home, request):
    store = build(tmp_path, strato_home, "web", replicas_descriptor(request.param))
    stopped = [r.handle["pid"] for r in store.instances("web")[:2]]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    yield store, stopped
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    service.destroy(store, "web", RunOptions())
    store.close()


@pytest.mark.parametrize("replicas", ["60 s"], indirect=True)
def test_stopped_and_trickling_replicas_cost_a_pass_one_probe_timeout(replicas, tmp_path):
    store, stopped = replicas
    (tmp_path / "slow-health").write_text("")   # the third replica now sends its status line at 1 byte/s
    report = Maintainer(store, "web", MaintainOptions(interval=1)).run_pass()
    assert report.duration < 5, f"a pass took {report.duration:.1f} s; the probe timeout is 3 s"
    assert sorted(report.unhealthy) == sorted(r.key for r in store.instances("web"))
    assert report.healthy == 3 and not report.failed      # within their grace period: still counted
    details = [e["detail"]["detail"] for e in store.events("web", 200) if e["kind"] == "unhealthy"]
    assert len(details) == 3 and all("no answer within 3 s" in d for d in details), details


@pytest.mark.parametrize("replicas", ["0 s"], indirect=True)
def test_sigstopped_replicas_are_replaced_without_waiting_out_their_stop_grace(replicas):
    store, stopped = replicas
    report = Maintainer(store, "web", MaintainOptions(interval=1)).run_pass()
    assert report.acted and len(report.failed) == 2, report.to_dict()
    assert report.duration < 6.5, f"the replacing pass took {report.duration:.1f} s"
    for pid in stopped:   # the stopped replicas are gone (or zombies of this process), not left behind
        stat = f"/proc/{pid}/stat"
        assert not os.path.exists(stat) or open(stat).read().split(")")[-1].split()[0] == "Z"
    assert sorted(r.status for r in store.instances("web")) == ["ready"] * 3


# -- 11. rules ---------------------------------------------------------------------------------------

def rules_descriptor(rules: list[tuple[str, str]]) -> str:
    """A noop node steered by one Rule policy per (rule, timeout)."""
    text = textwrap.dedent("""
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Noop
              capabilities:
                scalable: {properties: {default_instances: 2, min_instances: 1, max_instances: 6}}
          policies:
        """)
    for i, (rule, timeout) in enumerate(rules):
        text += (f"    - rule{i}:\n        type: strato.policies.Scaling.Rule\n        targets: [web]\n"
                 f"        properties:\n          period: 0.01 s\n          timeout: {timeout}\n"
                 f"          scaling_rule: {json.dumps(rule)}\n")
    return text


def test_four_runaway_rules_cost_a_pass_one_rule_time_limit(tmp_path, strato_home):
    store = build(tmp_path, strato_home, "rules", rules_descriptor([("while True:\n    pass", "2 s")] * 4))
    report = Maintainer(store, "rules", MaintainOptions(interval=1)).run_pass()
    assert report.duration < 5, f"a pass took {report.duration:.1f} s (4 rules one after another took ~9 s)"
    errors = [d.get("error", "") for d in report.decisions]
    assert len(errors) == 4 and all("longer than its 2 s limit" in e for e in errors), report.decisions
    assert sorted(r.index for r in store.instances("rules")) == [0, 1]   # nothing scaled


def test_one_deadline_for_all_the_policies_of_a_pass(tmp_path, strato_home):
    rules = [("while True:\n    pass", "20 s")] * 6
    store = build(tmp_path, strato_home, "rules", rules_descriptor(rules))
    maintainer = Maintainer(store, "rules", MaintainOptions(interval=1, policy_timeout=1.5))
    report = maintainer.run_pass()
    assert report.duration < 4, f"a pass took {report.duration:.1f} s; its policy deadline is 1.5 s"
    errors = [d["error"] for d in report.decisions if "error" in d]
    assert len(errors) == 6 and all("deadline" in e for e in errors), report.decisions
    broken = [e for e in store.events("rules", 200) if e["kind"] == "policy_broken"]
    assert len(broken) == 6


def test_m_userdata_is_capped_and_the_previous_value_kept(tmp_path, strato_home):
    rule = "m_userdata = (m_userdata or 'x') * 4"
    store = build(tmp_path, strato_home, "rules", rules_descriptor([(rule, "2 s")]))
    maintainer = Maintainer(store, "rules", MaintainOptions(interval=1))
    for _ in range(10):   # 4 ** 10 bytes (1 MiB) by now without the cap; 40 MB in 6 passes in the report
        maintainer.run_pass()
    state = store.policy_states("rules")[("rule0", "web")]
    assert state["userdata"] == "x" * 4 ** 7       # the last one under 64 KiB, kept
    broken = [e["detail"]["error"] for e in store.events("rules", 500) if e["kind"] == "policy_broken"]
    assert broken and "m_userdata is 65538 bytes, over its 64 KiB limit" in broken[0]
    assert "previous m_userdata is kept" in broken[0]
    assert os.path.getsize(store.path) < 2 * 2 ** 20


def test_a_rule_answer_too_large_and_an_oversized_stored_userdata_are_refused():
    box = Sandbox()
    try:
        policy = RulePolicy("m_userdata = ['x' * 200000 for i in range(40)]", sandbox=box, timeout_s=10)
        obs = Observation(now=1.0, node="web", instances=2, ready=2, instance_ids=("a", "b"))
        with pytest.raises(PolicyError, match="larger than 4 MiB"):
            policy.decide(obs)
        assert policy.state()["userdata"] is None
        assert RulePolicy("m_node_count = 3", sandbox=box).decide(obs).desired == 3   # the sandbox recovered
    finally:
        box.close()
    restored = RulePolicy("m_node_count = 1")
    with pytest.raises(PolicyError, match="stored m_userdata .* over its 64 KiB limit"):
        restored.restore({"last_count": 2, "changed_at": 1.0, "userdata": "y" * (MAX_USERDATA_BYTES + 1)})
    assert restored.state() == {"last_count": 2, "changed_at": 1.0, "userdata": None}


RULE_IN_A_DESCRIPTOR = """\
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    web:
      type: strato.nodes.Noop
  policies:
    - scale:
        type: strato.policies.Scaling.Rule
        targets: [web]
        properties:
          scaling_rule: |
            if m_node_count < 3:
                import os
                m_node_count = 3
"""


def test_strato_validate_refuses_a_rule_the_sandbox_refuses(tmp_path, strato_home):
    path = tmp_path / "rule.yaml"
    path.write_text(RULE_IN_A_DESCRIPTOR)
    proc = run_strato("validate", str(path), home=strato_home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"{path}:13:17: POLICY_RULE_REFUSED: the scaling rule may not import modules "
            "(at topology_template.policies[0].scale.properties.scaling_rule)") in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(run_strato("validate", "--json", str(path), home=strato_home).stdout)
    assert doc["error"]["code"] == "POLICY_RULE_REFUSED"
    # the very check the loop's sandbox runs
    with pytest.raises(PolicyError, match="may not import modules"):
        check_rule("if m_node_count < 3:\n    import os\n    m_node_count = 3\n")
    path.write_text(RULE_IN_A_DESCRIPTOR.replace("import os", "m_node_count = ceil(2.5)"))
    assert run_strato("validate", str(path), home=strato_home).returncode == 0
