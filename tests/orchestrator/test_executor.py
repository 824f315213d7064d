"""The executor: event-driven start, failure isolation, retries, timeouts, resume, plan actions."""

from __future__ import annotations

import textwrap
import threading
import time

import pytest

from drivers import providers
from drivers.base import DriverError, Observed
from drivers.noop import NoopDriver
from orchestrator import scaling, service
from orchestrator.executor import RunOptions
from orchestrator.state import StateStore

TYPES = """
node_types:
  test.Flaky:
    derived_from: strato.nodes.Noop
    metadata: {strato.driver: test-flaky}
    properties:
      fail: {type: string, default: never}
      seconds: {type: float, default: 0}
    attributes:
      id: {type: string, description: what FlakyDriver reports}
"""


class FlakyDriver(NoopDriver):
    """fail: never | always | twice (retryable) | hang; remembers calls for assertions."""

    name = "test-flaky"

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def create(self, spec):
        with self.lock:
            self.calls[spec.node] = self.calls.get(spec.node, 0) + 1
            self.started.setdefault(spec.node, time.monotonic())
        mode = spec.properties.get("fail", "never")
        time.sleep(float(spec.properties.get("seconds", 0)))
        if mode == "always":
            raise DriverError(f"backend refused {spec.node}: quota exceeded")
        if mode == "twice" and self.calls[spec.node] <= 2:
            raise DriverError("throttled, try again", retryable=True)
        if mode == "hang":
            time.sleep(2.0)
        self.finished[spec.node] = time.monotonic()
        return {"key": spec.key, "node": spec.node}

    def observe(self, handle):
        return Observed("running", {"id": handle["key"]})

    def delete(self, handle):
        self.deleted.append(handle["key"])


@pytest.fixture
def flaky():
    driver = FlakyDriver()
    providers._instances["test-flaky"] = driver
    yield driver
    providers._instances.pop("test-flaky", None)


def descriptor(tmp_path, nodes: str) -> str:
    path = tmp_path / "d.yaml"
    path.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n" + TYPES
                    + "topology_template:\n  node_templates:\n" + textwrap.indent(textwrap.dedent(nodes), "    "))
    return str(path)


def build(path, store, **opts):
    return service.build(path, "t", {}, store, RunOptions(**opts))


def test_node_starts_when_its_own_dependencies_are_ready(tmp_path, strato_home, flaky):
    # fast -> after_fast must not wait for the slow branch (no level-by-level barrier)
    path = descriptor(tmp_path, """
        slow: {type: test.Flaky, properties: {seconds: 1.0}}
        fast: {type: test.Flaky, properties: {seconds: 0.05}}
        after_fast:
          type: test.Flaky
          requirements: [{dependency: fast}]
        after_slow:
          type: test.Flaky
          requirements: [{dependency: slow}]
        """)
    report = build(path, StateStore())
    assert report["ok"]
    assert flaky.started["after_fast"] < flaky.finished["slow"]
    assert flaky.started["after_slow"] >= flaky.finished["slow"]
    assert flaky.started["after_fast"] >= flaky.finished["fast"]


def test_failure_stops_only_dependents_and_is_recorded(tmp_path, strato_home, flaky):
    path = descriptor(tmp_path, """
        bad: {type: test.Flaky, properties: {fail: always}}
        child:
          type: test.Flaky
          requirements: [{dependency: bad}]
        grandchild:
          type: test.Flaky
          requirements: [{dependency: child}]
        independent: {type: test.Flaky, properties: {seconds: 0.2}}
        """)
    store = StateStore()
    report = build(path, store)
    assert not report["ok"]
    nodes = report["nodes"]
    assert nodes["bad"]["status"] == "failed" and "quota exceeded" in nodes["bad"]["error"]
    assert nodes["child"]["status"] == "skipped" and nodes["grandchild"]["status"] == "skipped"
    assert nodes["independent"]["status"] == "done"
    assert "child" not in flaky.calls
    recs = {r.node: r for r in store.instances("t")}
    assert recs["bad"].status == "failed" and "quota exceeded" in recs["bad"].error
    assert recs["independent"].status == "ready"
    kinds = [e["kind"] for e in store.events("t")]
    assert "failed" in kinds and "build_finished" in kinds


def test_retryable_errors_are_retried_with_backoff(tmp_path, strato_home, flaky):
    path = descriptor(tmp_path, "x: {type: test.Flaky, properties: {fail: twice}}\n")
    report = build(path, StateStore(), retries=2, backoff=0.01)
    assert report["ok"] and flaky.calls["x"] == 3
    flaky.calls.clear()
    report = build(path.replace("d.yaml", "d.yaml"), StateStore(str(strato_home / "other.db")), retries=1, backoff=0.01)
    assert not report["ok"] and flaky.calls["x"] == 2


def test_operation_timeout_fails_the_node_and_keeps_the_late_handle(tmp_path, strato_home, flaky):
    path = descriptor(tmp_path, "x: {type: test.Flaky, properties: {fail: hang}}\ny: {type: test.Flaky}\n")
    store = StateStore()
    report = build(path, store, timeout=0.3)
    assert not report["ok"]
    assert "timed out" in report["nodes"]["x"]["error"]
    assert report["nodes"]["y"]["status"] == "done"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and store.get_instance(
            [r.key for r in store.instances("t") if r.node == "x"][0]).handle is None:
        time.sleep(0.05)
    rec = [r for r in store.instances("t") if r.node == "x"][0]
    assert rec.handle is not None, "a create that finished after its timeout must still be recorded"


def test_failed_build_resumes_and_destroy_cleans_up(tmp_path, strato_home, flaky):
    path = descriptor(tmp_path, """
        base: {type: test.Flaky}
        top:
          type: test.Flaky
          properties: {fail: always}
          requirements: [{dependency: base}]
        """)
    store = StateStore()
    assert not build(path, store)["ok"]
    # the user fixes the descriptor; the next build only does what is missing
    fixed = open(path).read().replace("fail: always", "fail: never")
    open(path, "w").write(fixed)
    calls_before = flaky.calls.get("base", 0)
    report = build(path, store)
    assert report["ok"], report
    assert flaky.calls["base"] == calls_before, "a finished node must not be rebuilt"
    assert {r.status for r in store.instances("t")} == {"ready"}
    res = service.destroy(store, "t", RunOptions())
    assert res["ok"] and store.get_infra("t") is None
    assert len(flaky.deleted) == 2


def test_plan_actions_and_exit_semantics(tmp_path, strato_home, flaky):
    path = descriptor(tmp_path, """
        a:
          type: test.Flaky
          capabilities: {scalable: {properties: {default_instances: 2}}}
        b:
          type: test.Flaky
          requirements: [{dependency: a}]
        """)
    store = StateStore()
    first = service.plan(path, "t", {}, store)
    assert [a.kind for a in first.actions].count("create") == 3 and first.has_changes
    assert build(path, store)["ok"]
    again = service.plan(path, "t", {}, store)
    assert not again.has_changes
    # a changed property replaces that node's instances
    text = open(path).read().replace("type: test.Flaky\n      requirements",
                                     "type: test.Flaky\n      properties: {seconds: 0.01}\n      requirements")
    open(path, "w").write(text)
    changed = service.plan(path, "t", {}, store)
    assert [(a.node, a.kind) for a in changed.changes] == [("b", "replace")]
    # scaling down deletes the highest indexes
    scaling.set_desired(store, "t", "a", 1)
    scaled = service.plan(path, "t", {}, store)
    assert ("a", 1, "delete") in [(x.node, x.index, x.kind) for x in scaled.changes]
    assert build(path, store)["ok"]
    assert sorted((r.node, r.index) for r in store.instances("t")) == [("a", 0), ("b", 0)]


def test_outputs_resolve_attributes_after_build(tmp_path, strato_home, flaky):
    path = tmp_path / "o.yaml"
    path.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n" + TYPES + textwrap.dedent("""
        topology_template:
          inputs:
            greeting: {type: string, default: hi}
          node_templates:
            a:
              type: test.Flaky
              capabilities: {scalable: {properties: {default_instances: 2}}}
          outputs:
            ids: {value: {get_attribute: [a, id]}}
            msg: {value: {concat: [{get_input: greeting}, "-", {get_property: [a, fail]}]}}
        """))
    store = StateStore()
    report = service.build(str(path), "t", {}, store, RunOptions())
    assert report["ok"]
    out = service.outputs(store, "t")
    assert out["msg"] == "hi-never"
    assert isinstance(out["ids"], list) and len(out["ids"]) == 2 and out["ids"][0].startswith("t/a/0@")


def test_batched_intents_are_committed_before_each_driver_call(flaky, tmp_path):
    """Intents are written many to a commit (and outcomes too): each driver call still finds its instance's
    intent committed, seen from another connection, and every instance ends ready with its handle."""
    path = descriptor(tmp_path, """
        w:
          type: test.Flaky
          capabilities: {scalable: {properties: {default_instances: 150}}}
        """)
    state = str(tmp_path / "state.db")
    seen: dict[str, str | None] = {}
    create = flaky.create

    def checking(spec):
        other = StateStore(state)
        try:
            rec = other.get_instance(spec.key)
            seen[spec.key] = rec.status if rec else None
        finally:
            other.close()
        return create(spec)
    flaky.create = checking
    store = StateStore(state)
    result = service.build(path, "batched", {}, store, RunOptions(parallelism=8))
    assert result["ok"]
    assert len(seen) == 150 and set(seen.values()) == {"creating"}
    records = store.instances("batched")
    assert len(records) == 150 and {r.status for r in records} == {"ready"} and all(r.handle for r in records)
    assert sum(1 for e in store.events("batched", 1000) if e["kind"] == "ready") == 150
