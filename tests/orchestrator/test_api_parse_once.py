"""A descriptor sent to the REST API is parsed once per request: the check's load is the one the build and the plan
use (counted by wrapping the loader, with the check run in this process so the count sees it)."""

import os
import sys
import textwrap
import time

import pytest

pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

import descriptors.loader  # noqa: E402
from orchestrator.api import ApiSettings, create_app, intake  # noqa: E402

TOKEN = "w-" + "p" * 30
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        a:
          type: strato.nodes.Noop
          capabilities: {scalable: {properties: {default_instances: 2}}}
        b:
          type: strato.nodes.Noop
          requirements: [{dependency: a}]
    """)


class InlineChecks:
    """The API's check, run in this process rather than in a worker (same function, same handover)."""

    def run(self, directory, entry, inputs, stored_inputs, timeout, keep_loaded=False):
        extra = (keep_loaded,) if keep_loaded else ()
        return intake.check(directory, entry, inputs, stored_inputs, *extra)


@pytest.fixture
def loads(monkeypatch):
    """Every path the descriptor loader was asked to load, wherever a module imported it from."""
    seen: list[str] = []
    original = descriptors.loader.load_template

    def counting(path, *args, **kwargs):
        seen.append(os.path.realpath(path))
        return original(path, *args, **kwargs)
    for module in list(sys.modules.values()):
        if getattr(module, "load_template", None) is original:
            monkeypatch.setattr(module, "load_template", counting)
    return seen


@pytest.fixture
def client(strato_home, monkeypatch):
    monkeypatch.setenv("STRATO_API_TOKEN", TOKEN)
    monkeypatch.delenv("STRATO_API_READ_TOKEN", raising=False)
    app = create_app(str(strato_home / "state.db"), ApiSettings())
    app.state.ctx.checks = InlineChecks()
    with TestClient(app) as c:
        yield c
    app.state.ctx.ops.wait_idle(30)


def finished(client, op_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}", headers=AUTH).json()
        if op["state"] != "running":
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} still running")


def of_bundle(loads, client, digest):
    return [p for p in loads if os.sep + digest + os.sep in p]


def test_create_parses_once_through_the_whole_build(client, loads):
    resp = client.post("/v1/infrastructures", json={"name": "once", "descriptor": DOC}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    op = finished(client, resp.json()["operation"])
    assert op["state"] == "succeeded", op
    assert len(of_bundle(loads, client, resp.json()["descriptor"]["digest"])) == 1, loads
    assert client.get("/v1/infrastructures/once", headers=AUTH).json()["status"] == "ready"


def test_apply_parses_the_new_version_once(client, loads):
    first = client.post("/v1/infrastructures", json={"name": "again", "descriptor": DOC}, headers=AUTH)
    finished(client, first.json()["operation"])
    newer = DOC.replace("default_instances: 2", "default_instances: 3")
    resp = client.put("/v1/infrastructures/again", json={"descriptor": newer}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert finished(client, resp.json()["operation"])["state"] == "succeeded"
    assert len(of_bundle(loads, client, resp.json()["descriptor"]["digest"])) == 1, loads
    infra = client.get("/v1/infrastructures/again", headers=AUTH).json()
    assert sum(1 for i in infra["instances"] if i["node"] == "a") == 3


def test_plan_parses_once(client, loads):
    resp = client.post("/v1/infrastructures/fresh/plan", json={"descriptor": DOC}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["summary"]["create"] == 3
    assert len(loads) == 1, loads


def test_plan_of_a_stored_version_parses_once(client, loads):
    created = client.post("/v1/infrastructures", json={"name": "kept", "descriptor": DOC}, headers=AUTH)
    finished(client, created.json()["operation"])
    loads.clear()
    resp = client.post("/v1/infrastructures/kept/plan", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["changes"] is False
    assert len(loads) == 1, loads


def test_validate_parses_once(client, loads):
    resp = client.post("/v1/validate", content=DOC, headers={**AUTH, "Content-Type": "application/yaml"})
    assert resp.status_code == 200 and resp.json()["ok"], resp.text
    assert len(loads) == 1, loads
