"""The maintain loop on fast backends: healing, scale requests, policies with cooldowns, broken policies, leases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from drivers import providers
from drivers.base import DriverError, Observed
from drivers.noop import NoopDriver
from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.scaling import resolve_instance
from orchestrator.state import LockHeld, StateStore
import policies.rule  # noqa: F401 - the rule policy the rule tests run: a broken import fails, never skips
from policies.base import Observation, PolicyError, ScalingDecision, ScalingPolicy
from tests.conftest import REPO


class ToggleDriver(NoopDriver):
    """Instances vanish when their key is in `gone`; observing a key in `broken` raises."""

    name = "test-toggle"

    def __init__(self):
        self.gone: set[str] = set()
        self.broken: set[str] = set()
        self.created: list[str] = []
        self.deleted: list[str] = []

    def create(self, spec):
        key = spec.key
        self.created.append(key)
        self.gone.discard(key)
        return {"key": key}

    def observe(self, handle):
        if handle["key"] in self.broken:
            raise DriverError("backend API timed out", retryable=True)
        return Observed("missing" if handle["key"] in self.gone else "running", {"id": handle["key"]})

    def delete(self, handle):
        self.deleted.append(handle["key"])

    def find(self, key, spec=None):
        return None


DESCRIPTOR = """
tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  test.Toggle:
    derived_from: strato.nodes.Noop
    metadata: {strato.driver: test-toggle}
topology_template:
  node_templates:
    base:
      type: test.Toggle
    web:
      type: test.Toggle
      capabilities:
        scalable: {properties: {default_instances: 3, min_instances: 1, max_instances: 6}}
      requirements:
        - dependency: base
"""


@pytest.fixture
def toggle():
    driver = ToggleDriver()
    providers._instances["test-toggle"] = driver
    yield driver
    providers._instances.pop("test-toggle", None)


@pytest.fixture
def infra(strato_home, toggle, tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(DESCRIPTOR)
    store = StateStore(str(strato_home / "state.db"))
    report = service.build(str(path), "app", {}, store, RunOptions())
    assert report["ok"], report
    yield store, str(path)
    store.close()


@pytest.fixture
def noop_infra(strato_home, tmp_path):
    """The same app on the noop driver, for tests that run the CLI in a subprocess."""
    path = tmp_path / "app.yaml"
    path.write_text(DESCRIPTOR.replace("metadata: {strato.driver: test-toggle}", "metadata: {strato.driver: noop}"))
    store = StateStore(str(strato_home / "state.db"))
    report = service.build(str(path), "app", {}, store, RunOptions())
    assert report["ok"], report
    yield store, str(path)
    store.close()


def stop(proc: subprocess.Popen, sig: int) -> None:
    """Ask a CLI process to stop as a user would; kill it if it does not within 10 s."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def web_instances(store):
    return sorted((r.index, r.status) for r in store.instances("app") if r.node == "web")


def test_vanished_instance_is_recreated_and_counted_as_a_heal(infra, toggle):
    store, _ = infra
    key = [r.key for r in store.instances("app") if r.node == "web"][1]
    toggle.gone.add(key)
    m = Maintainer(store, "app", MaintainOptions(interval=0.1))
    report = m.run_pass()
    assert report.missing == [key] and report.acted
    assert web_instances(store) == [(0, "ready"), (1, "ready"), (2, "ready")]
    assert toggle.created.count(key) == 2
    kinds = [e["kind"] for e in store.events("app")]
    assert "missing" in kinds and "maintain_acted" in kinds
    heals = m.loop_metrics.registry.get_sample_value("strato_heals_total", {"infrastructure": "app", "node": "web"})
    assert heals == 1.0
    # nothing to do now: a pass changes nothing
    again = m.run_pass()
    assert not again.acted and again.planned == [] and again.errors == []


def test_driver_error_is_reported_and_the_loop_goes_on(infra, toggle):
    store, _ = infra
    keys = [r.key for r in store.instances("app") if r.node == "web"]
    toggle.broken.add(keys[0])
    toggle.gone.add(keys[1])
    report = Maintainer(store, "app", MaintainOptions()).run_pass()
    assert any("backend API timed out" in e for e in report.errors)
    assert report.missing == [keys[1]] and report.acted  # the other instance was still healed
    unseen = store.get_instance(keys[0])
    assert unseen.status == "unknown" and "backend API timed out" in unseen.error  # not missing, and not ready
    assert report.unknown == [keys[0]] and toggle.created.count(keys[0]) == 1  # not recreated beside itself
    toggle.broken.clear()
    Maintainer(store, "app", MaintainOptions()).run_pass()
    assert store.get_instance(keys[0]).status == "ready"  # observed again


def test_dry_run_changes_nothing(infra, toggle):
    store, _ = infra
    key = [r.key for r in store.instances("app") if r.node == "web"][0]
    toggle.gone.add(key)
    before = len(store.events("app", 1000))
    report = Maintainer(store, "app", MaintainOptions(dry_run=True)).run_pass()
    assert report.missing == [key] and not report.acted
    assert [a["action"] for a in report.planned] == ["create"]
    assert store.get_instance(key).status == "ready" and len(store.events("app", 1000)) == before


def test_scale_requests_to_by_drop_and_bounds_without_a_loop(noop_infra, strato):
    store, _ = noop_infra
    assert strato("scale", "app", "web", "--to", "5").returncode == 0
    assert web_instances(store) == [(i, "ready") for i in range(5)]
    assert strato("scale", "app", "web", "--by", "-2").returncode == 0
    assert web_instances(store) == [(i, "ready") for i in range(3)]
    proc = strato("scale", "app", "web", "--drop", "web[0]", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["desired"] == 2
    assert web_instances(store) == [(1, "ready"), (2, "ready")]   # the dropped one, not the last one
    assert strato("scale", "app", "web", "4").returncode == 0       # the old positional form
    assert web_instances(store) == [(0, "ready"), (1, "ready"), (2, "ready"), (3, "ready")]
    proc = strato("scale", "app", "web", "--to", "9")
    assert proc.returncode == 1 and "INSTANCES_ABOVE_MAX" in proc.stderr and "app.yaml:14:" in proc.stderr
    proc = strato("scale", "app", "web", "--by", "-4")
    assert proc.returncode == 1 and "INSTANCES_BELOW_MIN" in proc.stderr
    proc = strato("scale", "app", "base", "--to", "0")
    assert proc.returncode == 1 and "web" in proc.stderr and "--force" in proc.stderr
    proc = strato("scale", "app", "web", "--drop", "web[7]")
    assert proc.returncode == 1 and "no instance" in proc.stderr
    proc = strato("scale", "app", "web", "--to", "2", "--by", "1")
    assert proc.returncode == 64 and "exactly one" in proc.stderr  # wrong usage
    assert len(web_instances(store)) == 4


class StepPolicy(ScalingPolicy):
    """A tiny policy for the loop's own tests: as many instances as `load` / 10, rounded up."""

    name = "step"

    def __init__(self, cooldown=0.0):
        self.cooldown_s = cooldown
        self.source = "step"
        self.seen = 0

    def metrics_needed(self):
        return []

    def needs_target(self):
        return False

    def decide(self, obs: Observation) -> ScalingDecision:
        load = obs.extra.get("load", 0)
        return ScalingDecision(max(1, -(-int(load) // 10)), f"load {load}", self.name)

    def state(self):
        return {"seen": self.seen}

    def restore(self, state):
        self.seen = state.get("seen", 0)

    def learn(self, obs):
        self.seen += 1


def test_policy_decisions_cooldown_events_and_state(infra, toggle, monkeypatch):
    store, _ = infra
    load = {"value": 45}
    policy = StepPolicy(cooldown=30.0)
    import policies.base as base
    original = base.Observation.__init__

    def with_load(self, *a, **kw):
        original(self, *a, **kw)
        self.extra["load"] = load["value"]
    monkeypatch.setattr(base.Observation, "__init__", with_load)
    m = Maintainer(store, "app", MaintainOptions(), policy_factory=lambda t, i, **o: {"web": [policy]})
    report = m.run_pass()
    assert report.decisions[0]["desired"] == 5 and report.decisions[0]["action"] == "up"
    assert len(web_instances(store)) == 5
    load["value"] = 9
    report = m.run_pass()            # wants 1, but the cooldown holds it
    assert len(web_instances(store)) == 5
    held = [e for e in store.events("app") if e["kind"] == "decision"]
    assert held and "cooldown" in held[-1]["detail"]["reason"]
    scaled = [e for e in store.events("app") if e["kind"] == "scaled"]
    assert scaled[-1]["detail"]["reason"] == "load 45" and scaled[-1]["detail"]["policy"] == "step"
    assert store.policy_states("app")[("step", "web")] == {"seen": 2}
    # a new loop (a restart) gets the policy's state back and still honours the cooldown kept in state
    fresh = StepPolicy(cooldown=30.0)
    Maintainer(store, "app", MaintainOptions(), policy_factory=lambda t, i, **o: {"web": [fresh]}).run_pass()
    assert fresh.seen == 3 and len(web_instances(store)) == 5
    samples = store.samples("app", "web")
    assert len(samples) == 3 and samples[0]["instances"] == 3


class BrokenPolicy(StepPolicy):
    name = "broken"

    def __init__(self):
        super().__init__()
        self.source = "broken"

    def decide(self, obs):
        raise PolicyError("rule tried to import os")


def test_broken_policy_is_reported_and_the_loop_heals_anyway(infra, toggle):
    store, _ = infra
    key = [r.key for r in store.instances("app") if r.node == "web"][0]
    toggle.gone.add(key)
    m = Maintainer(store, "app", MaintainOptions(), policy_factory=lambda t, i, **o: {"web": [BrokenPolicy()]})
    report = m.run_pass()
    assert report.decisions == [{"node": "web", "policy": "broken", "error": "rule tried to import os"}]
    assert report.acted and store.get_instance(key).status == "ready"
    broken = [e for e in store.events("app") if e["kind"] == "policy_broken"]
    assert len(broken) == 1 and "import os" in broken[0]["detail"]["error"]
    m.run_pass()   # reported once, not every pass
    assert len([e for e in store.events("app") if e["kind"] == "policy_broken"]) == 1

    def explode(template, inputs, **options):
        raise PolicyError("policy 'scale': target must be a number")
    report = Maintainer(store, "app", MaintainOptions(), policy_factory=explode).run_pass()
    assert report.errors == [] and any("target must be a number" in e["detail"].get("error", "")
                                       for e in store.events("app") if e["kind"] == "policy_broken")


def test_a_recorded_request_outside_the_bounds_is_refused_by_the_loop(infra):
    store, _ = infra
    store.add_scale_request("app", "web", "by", 10)
    store.add_scale_request("app", "web", "drop", None, "web[1]")
    report = Maintainer(store, "app", MaintainOptions()).run_pass()
    assert [r["ok"] for r in report.requests] == [False, True]
    assert "outside its min 1 / max 6" in report.requests[0]["error"]
    assert web_instances(store) == [(0, "ready"), (2, "ready")] and store.pending_scale_requests("app") == []
    assert store.get_infra("app").desired["web"] == 2


def test_resolve_instance_forms(infra):
    store, _ = infra
    records = store.instances("app")
    key = [r.key for r in records if r.node == "web" and r.index == 2][0]
    for ident in (key, "web[2]", "web/2", "2"):
        assert resolve_instance(ident, "web", records).key == key
    assert resolve_instance("web[9]", "web", records) is None


LEASE_HOLDER = textwrap.dedent("""
    import sys, time
    from orchestrator.state import StateStore
    StateStore(sys.argv[1]).acquire_lease("app", "strato maintain (test holder)")
    print("held", flush=True)
    time.sleep(60)
""")


def test_second_loop_is_refused_naming_the_first_and_a_dead_holder_is_taken_over(noop_infra, strato, strato_home):
    store, _ = noop_infra
    env = dict(os.environ, PYTHONPATH=REPO)
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(strato_home / "state.db")],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = strato("maintain", "app", "--once")
        assert proc.returncode == 1
        assert f"pid {holder.pid}" in proc.stderr and "maintained by strato maintain (test holder)" in proc.stderr
        assert "Traceback" not in proc.stderr
        with pytest.raises(LockHeld):
            Maintainer(store, "app").acquire()
        # without acting itself, scale records the request for the loop holding the lease
        proc = strato("scale", "app", "web", "--by", "1", "--wait", "0.5", "--json")
        out = json.loads(proc.stdout)
        assert out["applied"] is False and "test holder" in out["applied_by"]
    finally:
        holder.kill()
        holder.wait()
    proc = strato("maintain", "app", "--once", "--json")   # the dead holder's lease is taken over
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"][0]["ok"] and len(web_instances(store)) == 4
    assert store.lease_holder("app") is None


def test_running_loop_applies_a_scale_request_and_status_watch_shows_it(infra, strato, strato_home):
    store, _ = infra
    env = dict(os.environ, PYTHONPATH=REPO, STRATO_HOME=str(strato_home))
    # the toggle driver lives in this test process, so the loop subprocess works on noop nodes instead
    desc = os.path.join(os.path.dirname(store.path), "noop.yaml")
    with open(desc, "w") as fh:
        fh.write(DESCRIPTOR.replace("metadata: {strato.driver: test-toggle}", "metadata: {strato.driver: noop}"))
    assert strato("build", desc, "--name", "noopapp", "-q").returncode == 0
    loop = subprocess.Popen([sys.executable, "-m", "orchestrator", "maintain", "noopapp", "--interval", "0.3",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while store.lease_holder("noopapp") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.lease_holder("noopapp") is not None
        proc = strato("scale", "noopapp", "web", "--to", "5", "--json", "--wait", "20")
        out = json.loads(proc.stdout)
        assert proc.returncode == 0 and out["applied"] and out["applied_by"].startswith("strato maintain")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if len([r for r in store.instances("noopapp") if r.node == "web" and r.status == "ready"]) == 5:
                break
            time.sleep(0.1)
        assert len([r for r in store.instances("noopapp") if r.node == "web" and r.status == "ready"]) == 5
        watch = strato("status", "noopapp", "--watch", "--count", "2", "--every", "0.2", "--json")
        docs = [json.loads(line) for line in watch.stdout.splitlines()]
        assert len(docs) == 2 and docs[0]["infrastructures"][0]["maintained_by"]["pid"] == loop.pid
        assert any(e["kind"] == "scale_request_applied" for e in docs[1]["infrastructures"][0]["events"])
    finally:
        stop(loop, signal.SIGTERM)
    assert store.lease_holder("noopapp") is None   # released on SIGTERM


def test_bad_interval_is_one_line(noop_infra, strato):
    proc = strato("maintain", "app", "--interval", "soon")
    assert proc.returncode == 64 and "positive duration" in proc.stderr and "Traceback" not in proc.stderr
    proc = strato("maintain", "nope", "--once")
    assert proc.returncode == 1 and "no infrastructure named 'nope'" in proc.stderr


def test_serve_runs_the_loop_and_serves_its_metrics(noop_infra, strato_home):
    pytest.importorskip("uvicorn", reason="strato serve needs uvicorn")
    from drivers.local import free_port
    store, _ = noop_infra
    store.add_scale_request("app", "web", "to", 2)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, STRATO_HOME=str(strato_home))
    serve = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--maintain",
                              "--maintain-interval", "0.3s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        text, refused = "", None
        token_file = strato_home / "api-token.read"
        while time.monotonic() < deadline:
            try:
                if refused is None:  # the loop's metrics sit behind the API's token like everything else
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    refused = False
            except urllib.error.HTTPError as exc:
                refused = exc.code == 401
            except OSError:
                time.sleep(0.2)
                continue
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    text = resp.read().decode()
                if 'strato_maintain_pass_seconds_count{infrastructure="app"}' in text:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert refused is True, "/metrics answered without a token"
        assert 'strato_maintain_pass_seconds_count{infrastructure="app"}' in text
        assert store.lease_holder("app")["pid"] == serve.pid
        assert len(web_instances(store)) == 2 and store.pending_scale_requests("app") == []
    finally:
        stop(serve, signal.SIGINT)


RULE_POLICY = """
  policies:
    - rule:
        type: strato.policies.Scaling.Rule
        targets: [web]
        properties:
          constants: {{WANT: 4}}
          scaling_rule: |
{rule}
          min_instances: 1
          max_instances: 6
          period: 0.01 s
          timeout: 1 s
"""

ESCAPES = {
    "import": "import os\nm_node_count = 2",
    "open": "m_node_count = len(open('/etc/passwd').read())",
    "dunder": "m_node_count = ().__class__.__bases__[0].__subclasses__()",
    "loop": "while True:\n    pass",
    "memory": "x = [0] * (10 ** 10)\nm_node_count = 2",
}


# refused by the static check, which `strato validate` runs too: these reach the loop only through an input
STATIC_ESCAPES = {"import", "open", "dunder"}


def rule_infra(tmp_path, strato_home, rule: str, via_input: bool = False):
    path = tmp_path / "rule.yaml"
    body = "\n".join("            " + line for line in rule.splitlines())
    text, inputs = DESCRIPTOR + RULE_POLICY.format(rule=body), {}
    if via_input:
        text = text.replace("scaling_rule: |\n" + body, "scaling_rule: {get_input: rule}")
        text += "  inputs:\n    rule: {type: string}\n"
        inputs = {"rule": rule}
    path.write_text(text)
    store = StateStore(str(strato_home / "state.db"))
    assert service.build(str(path), "app", inputs, store, RunOptions())["ok"]
    return store


def test_a_rule_policy_scales_and_drops_the_instances_it_names(tmp_path, strato_home, toggle):
    store = rule_infra(tmp_path, strato_home, "m_node_count = WANT\nm_nodes_todrop = []")
    report = Maintainer(store, "app", MaintainOptions()).run_pass()
    assert report.decisions[0]["desired"] == 4 and len(web_instances(store)) == 4, report.decisions


@pytest.mark.parametrize("attempt", sorted(ESCAPES))
def test_sandbox_escapes_are_refused_and_the_loop_survives(tmp_path, strato_home, toggle, attempt):
    store = rule_infra(tmp_path, strato_home, ESCAPES[attempt], via_input=attempt in STATIC_ESCAPES)
    key = [r.key for r in store.instances("app") if r.node == "web"][0]
    toggle.gone.add(key)
    m = Maintainer(store, "app", MaintainOptions())
    report = m.run_pass()
    # refused when the rule is read (a static check) or when it runs (a child process with time/memory bounds)
    assert all(d.get("error") for d in report.decisions), report.decisions
    broken = [e["detail"]["error"] for e in store.events("app", 200) if e["kind"] == "policy_broken"]
    assert len(broken) == 1, broken
    assert report.acted and store.get_instance(key).status == "ready"      # the loop still heals
    assert len(web_instances(store)) == 3                                  # and the count is untouched
    assert m.run_pass().errors == []
