"""orchestrator/scaling.py: one desired count, refusals written once, and every scale applied through a request."""

from __future__ import annotations

import pathlib
import re
import textwrap
import threading
import time

import pytest

from orchestrator import scaling, service
from orchestrator.errors import NotFound, UserError
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.state import StateStore
from tests.conftest import REPO

ROOT = pathlib.Path(REPO)

fastapi = pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

from orchestrator.api import create_app  # noqa: E402

TOKEN = "scaling-" + "w" * 30
W = {"Authorization": f"Bearer {TOKEN}"}

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        replicas: {type: integer, default: 2}
      node_templates:
        a:
          type: strato.nodes.Noop
          capabilities:
            scalable: {properties: {default_instances: {get_input: replicas}, max_instances: 5}}
        b:
          type: strato.nodes.Noop
          requirements: [{dependency: a}]
    """)


@pytest.fixture
def built(strato_home, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(DOC)
    store = StateStore(str(strato_home / "state.db"))
    assert service.build(str(path), "s", {"replicas": 3}, store, RunOptions())["ok"]
    yield store, path
    store.close()


def test_desired_count_is_the_stored_count_else_the_descriptors_with_the_stored_inputs(built):
    store, path = built
    infra = store.get_infra("s")
    assert scaling.desired_count(infra, "a") == 3            # default_instances from the stored input
    assert scaling.desired_count(infra, "b") == 1
    assert scaling.desired_count(infra, "nope") is None
    template = service.load_checked(str(path)).template
    assert scaling.desired_counts(template, infra, {"replicas": 3}) == {"a": 3, "b": 1}
    store.set_desired_count("s", "a", 4)
    assert scaling.desired_count(store.get_infra("s"), "a") == 4   # a scale or a policy wins
    path.unlink()                                                  # descriptor gone: only what is stored is known
    assert scaling.desired_count(store.get_infra("s"), "a") == 4
    assert scaling.desired_count(store.get_infra("s"), "b") is None


def test_check_scale_refusals(built):
    store, _ = built
    with pytest.raises(NotFound, match=re.escape(scaling.no_node("s", "zz", ["a", "b"]))):
        scaling.check_scale(store, "s", "zz", 1)
    with pytest.raises(UserError, match=scaling.NEGATIVE):
        scaling.check_scale(store, "s", "a", -1)
    with pytest.raises(UserError, match="b depend"):
        scaling.check_scale(store, "s", "a", 0)
    assert scaling.check_scale(store, "s", "a", 0, force=True).name == "s"


def test_each_refusal_text_is_written_once():
    sources = "\n".join(p.read_text() for p in (ROOT / "orchestrator").rglob("*.py"))
    for text in ("has no node '", "an instance count cannot be negative", "would have {wanted} instance(s)",
                 "has no instance '"):
        assert sources.count(text) == 1, text
    # every other module asks scaling for the current count
    for module in ("plan.py", "service.py", "maintain.py", "api/v1.py", "cli/scale.py"):
        text = (ROOT / "orchestrator" / module).read_text()
        assert ".instance_count(" not in text and "def current_count" not in text, module


def wait_op(client, op_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}", headers=W).json()
        if op["state"] != "running":
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} still running")


@pytest.fixture
def client(strato_home, monkeypatch):
    monkeypatch.setenv("STRATO_API_TOKEN", TOKEN)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", "scaling-read-" + "r" * 30)
    client = TestClient(create_app(str(strato_home / "state.db")))
    resp = client.post("/v1/infrastructures", json={"name": "api", "descriptor": DOC}, headers=W)
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    yield client
    client.app.state.ctx.ops.wait_idle(30)


def a_count(client) -> int:
    return sum(1 for i in client.get("/v1/infrastructures/api", headers=W).json()["instances"] if i["node"] == "a")


def test_api_scale_without_a_loop_runs_one_pass(client, strato_home):
    resp = client.post("/v1/infrastructures/api/nodes/a/scale", json={"by": 2}, headers=W)
    assert resp.status_code == 202 and resp.json()["desired"] == 4 and resp.json()["previous"] == 2
    op = wait_op(client, resp.json()["operation"])
    assert op["state"] == "succeeded", op
    assert op["result"]["applied_by"] == "this command" and op["result"]["pass"]["acted"]
    assert op["result"]["result"] == {"ok": True, "desired": 4}
    assert a_count(client) == 4
    store = StateStore(str(strato_home / "state.db"))
    kinds = [e["kind"] for e in store.events("api", 1000)]
    assert "build_started" not in kinds[kinds.index("scale_requested"):]   # a pass, not a full build
    store.close()


def test_api_scale_with_a_running_loop_is_applied_by_the_loop(client, strato_home):
    store = StateStore(str(strato_home / "state.db"))
    loop = Maintainer(store, "api", MaintainOptions(interval=0.2, policies=False))
    loop.acquire()   # held before the request: the operation must leave it to the loop
    stop = threading.Event()

    def passes():
        while not stop.is_set():
            loop.run_pass()
            stop.wait(0.2)

    thread = threading.Thread(target=passes, daemon=True)
    try:
        thread.start()
        resp = client.post("/v1/infrastructures/api/nodes/a/scale", json={"to": 1}, headers=W)
        assert resp.status_code == 202
        op = wait_op(client, resp.json()["operation"])
        assert op["state"] == "succeeded", op
        assert "pass" not in op["result"] and op["result"]["applied_by"].startswith("strato maintain")
        assert op["result"]["result"] == {"ok": True, "desired": 1}
        deadline = time.monotonic() + 10
        while a_count(client) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a_count(client) == 1
    finally:
        stop.set()
        thread.join(10)
        loop.release()
        store.close()


def test_api_scale_refusals_keep_their_statuses(client):
    resp = client.post("/v1/infrastructures/api/nodes/zz/scale", json={"to": 1}, headers=W)
    assert resp.status_code == 404 and "nodes: a, b" in resp.json()["error"]["message"]
    resp = client.post("/v1/infrastructures/api/nodes/a/scale", json={"to": 9}, headers=W)
    assert resp.status_code == 422 and resp.json()["error"]["diagnostics"][0]["code"] == "INSTANCES_ABOVE_MAX"
    resp = client.post("/v1/infrastructures/api/nodes/a/scale", json={"by": -3}, headers=W)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "SCALE_NEGATIVE"
    resp = client.post("/v1/infrastructures/api/nodes/a/scale", json={"to": 0}, headers=W)
    assert resp.status_code == 400 and "b" in resp.json()["error"]["message"]


def test_cli_scale_reads_the_descriptor_once(built, monkeypatch):
    """`strato scale` reads the stored descriptor once and hands it to the count, the checks and the pass."""
    from click.testing import CliRunner

    import descriptors.loader
    import orchestrator.stored
    from orchestrator.cli.scale import command
    store, path = built
    reads = []
    real = descriptors.loader.load_template

    def counting(p, *a, **kw):
        reads.append(p)
        return real(p, *a, **kw)

    monkeypatch.setattr(orchestrator.stored, "load_template", counting)
    monkeypatch.setattr(service, "load_template", counting)
    result = CliRunner().invoke(command, ["s", "a", "--to", "4", "--state", store.path])
    assert result.exit_code == 0, result.output
    assert reads == [str(pathlib.Path(path))]
    assert len([r for r in store.instances("s") if r.node == "a"]) == 4
