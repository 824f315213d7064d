"""Statuses and plan actions as Enums: the stored and JSON strings are unchanged, every status the engine writes
follows the transition table, a driver's status is checked, and whether observe is cheap is the driver's say."""

from __future__ import annotations

import json
import textwrap
import threading

import pytest

from drivers import providers
from drivers.base import Driver, Observed, ObservedStatus
from drivers.noop import NoopDriver
from orchestrator import observation, scaling, service
from orchestrator.executor import RunOptions
from orchestrator.plan import CREATE, NOOP, Action
from orchestrator.state import InstanceRecord, StateStore
from orchestrator.states import (INFRA_TRANSITIONS, INSTANCE_TRANSITIONS, InfraStatus, InstanceStatus, PlanAction,
                                 may_follow)


def test_members_are_the_strings_state_and_json_always_held():
    assert [s.value for s in PlanAction] == ["create", "replace", "delete", "noop"]
    assert InstanceStatus.DELETE_FAILED == "delete_failed" and f"{InfraStatus.DESTROYING:<11}|" == "destroying |"
    assert json.dumps({"status": InstanceStatus.READY, InfraStatus.DEGRADED: 1}) == '{"status": "ready", "degraded": 1}'
    assert Action(CREATE, "n", 0, "k").to_dict()["action"] == "create" and CREATE is PlanAction.CREATE
    assert observation.READY is InstanceStatus.READY and NOOP == "noop"


def test_transition_tables_cover_every_status():
    assert set(INSTANCE_TRANSITIONS) == set(InstanceStatus) | {None}
    assert set(INFRA_TRANSITIONS) == set(InfraStatus)
    assert may_follow("ready", "deleting") and not may_follow("deleting", "ready")


def test_observed_status_is_an_enum_and_a_status_no_observer_knows_fails():
    obs = Observed("completed")
    assert obs.status is ObservedStatus.COMPLETED and obs.alive and obs.status == "completed"
    with pytest.raises(ValueError):
        Observed("runing")


def test_cheap_observe_is_the_drivers_property_not_a_list_of_names():
    assert NoopDriver.cheap_observe and providers.driver_class("sleep").cheap_observe
    assert providers.driver_class("local").cheap_observe and not Driver.cheap_observe
    assert not providers.driver_class("ec2").cheap_observe

    class InlineDriver(NoopDriver):
        name = "test-inline"
        threads: list[str] = []

        def observe(self, handle):
            self.threads.append(threading.current_thread().name)
            return Observed("running")

    class PooledDriver(InlineDriver):
        name = "test-pooled"
        cheap_observe = False
        threads: list[str] = []

    providers._instances.update({"test-inline": InlineDriver(), "test-pooled": PooledDriver()})
    try:
        recs = [InstanceRecord(f"k{i}", "t", "n", i, name, {"key": f"k{i}"}, {}, "ready", None, None, 1, 0.0)
                for i, name in enumerate(("test-inline", "test-pooled", "no-such-driver"))]
        seen = observation.observe_all(recs)
        assert seen["k0"].status == "running" and seen["k2"].status == ObservedStatus.UNKNOWN
        assert InlineDriver.threads == [threading.current_thread().name]
        assert PooledDriver.threads[0].startswith("strato-observe")
    finally:
        providers._instances.pop("test-inline", None)
        providers._instances.pop("test-pooled", None)


SIZED = """
node_types:
  test.Sized:
    derived_from: strato.nodes.Noop
    properties:
      size: {type: integer, default: 1}
"""


@pytest.fixture
def transitions(monkeypatch):
    """Every (old, new) instance status the engine writes, read from the store just before the write."""
    seen: list[tuple[str | None, str, str]] = []
    record_intent, update_instance = StateStore.record_intent, StateStore.update_instance
    record_intents, mark_ready = StateStore.record_intents, StateStore.mark_ready

    def old_status(store, key):
        rec = store.get_instance(key)
        return None if rec is None else rec.status

    def intent(self, infra, node, index, key, driver, status, *args, **kwargs):
        seen.append((old_status(self, key), status, key))
        return record_intent(self, infra, node, index, key, driver, status, *args, **kwargs)

    def update(self, key, *args, **fields):
        if "status" in fields:
            seen.append((old_status(self, key), fields["status"], key))
        return update_instance(self, key, *args, **fields)

    def intents(self, infra, driver, batch, *args, **kwargs):   # the executor's batched intents
        seen.extend((old_status(self, key), status, key) for _, _, key, status, *_ in batch)
        return record_intents(self, infra, driver, batch, *args, **kwargs)

    def ready(self, infra, batch, *args, **kwargs):               # the executor's batched outcomes
        seen.extend((old_status(self, key), "ready", key) for key, *_ in batch)
        return mark_ready(self, infra, batch, *args, **kwargs)

    monkeypatch.setattr(StateStore, "record_intent", intent)
    monkeypatch.setattr(StateStore, "record_intents", intents)
    monkeypatch.setattr(StateStore, "mark_ready", ready)
    monkeypatch.setattr(StateStore, "update_instance", update)
    return seen


def test_build_scale_replace_destroy_follow_the_transition_table(tmp_path, strato_home, transitions):
    path = tmp_path / "d.yaml"

    def write(size: int) -> None:
        path.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n" + SIZED
                        + "topology_template:\n  node_templates:\n" + textwrap.indent(textwrap.dedent(f"""\
                            web: {{type: test.Sized, properties: {{size: {size}}}}}
                            app:
                              type: test.Sized
                              requirements: [{{dependency: web}}]
                            """), "    "))
    store = StateStore()
    write(1)
    assert service.build(str(path), "t", {}, store, RunOptions())["ok"]
    scaling.set_desired(store, "t", "web", 3)
    write(2)  # web's definition changed: its instances are replaced, app's maybe
    assert service.build(str(path), "t", {}, store, RunOptions())["ok"]
    scaling.set_desired(store, "t", "web", 1)
    assert service.build(str(path), "t", {}, store, RunOptions())["ok"]
    infra_states = [store.get_infra("t").status]
    assert service.destroy(store, "t", RunOptions())["ok"]
    written = {new for _, new, _ in transitions}
    assert {"creating", "replacing", "ready", "deleting"} <= written
    wrong = [(old, new, key) for old, new, key in transitions if not may_follow(old, new)]
    assert not wrong, f"status writes outside orchestrator/states.py's table: {wrong}"
    assert infra_states == [InfraStatus.READY]


def test_infrastructure_cost_prices_each_instance_by_its_drivers_pricing(strato_home):
    """The per-infrastructure report (service.py) over cost.py's pure pricing: each driver's declared Pricing."""
    store = StateStore()
    store.ensure_infra("c", None, {})
    rows = [("web", 0, "ec2", {"instance_type": "t3.small", "region": "us-east-1"}, "ready"),
            ("web", 1, "ec2", {"instance_type": "t3.small", "region": "us-east-1"}, "unknown"),
            ("fn", 0, "lambda", {}, "ready"), ("job", 0, "local", {}, "creating"),
            ("gone", 0, "ec2", {"instance_type": "t3.small"}, "failed"), ("odd", 0, "no-such-driver", {}, "ready")]
    for node, index, driver, attrs, status in rows:
        key = f"c/{node}/{index}@x"
        store.record_intent("c", node, index, key, driver, InstanceStatus.CREATING)
        store.update_instance(key, status=status, attributes=attrs)
    report = service.infrastructure_cost(store, "c")
    by_node = {r["node"]: r for r in report["nodes"]}
    assert set(by_node) == {"web", "fn", "job", "odd"}  # a failed instance is not billed
    assert by_node["web"]["usd_per_hour"] == pytest.approx(2 * 0.0208) and by_node["web"]["instances"] == 2
    assert by_node["fn"]["pay_per_use"] and by_node["fn"]["usd_per_hour"] == 0.0
    assert by_node["job"]["usd_per_hour"] == 0.0 and by_node["odd"]["unpriced"] == 1
    assert report["usd_per_hour"] == pytest.approx(0.0416) and report["notes"]
    with pytest.raises(service.NotFound):
        service.infrastructure_cost(store, "nope")
