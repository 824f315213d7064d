"""The REST API over the same service functions as the CLI."""

import textwrap

import pytest

fastapi = pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

from orchestrator.api import create_app  # noqa: E402

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
      outputs:
        n: {value: {get_attribute: [a, missing_attr]}}
    """)


@pytest.fixture
def client(strato_home):
    return TestClient(create_app(str(strato_home / "api.db")))


def test_validate_returns_positions(client):
    bad = DOC.replace("dependency: a", "dependency: zz")
    resp = client.post("/validate", json={"text": bad})
    assert resp.status_code == 200 and not resp.json()["ok"]
    diag = resp.json()["diagnostics"][0]
    assert diag["code"] == "REQUIREMENT_UNKNOWN_NODE" and diag["line"] == 9


def test_plan_build_scale_destroy_over_http(client, tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(DOC)
    plan = client.post("/infrastructures/web/plan", json={"path": str(path)}).json()
    assert plan["summary"]["create"] == 3
    built = client.post("/infrastructures/web/build", json={"path": str(path)}).json()
    assert built["ok"] and built["plan"]["create"] == 3
    info = client.get("/infrastructures/web").json()
    assert len(info["instances"]) == 3
    scaled = client.put("/infrastructures/web/nodes/a/count", json={"count": 1}).json()
    assert scaled["build"]["plan"]["delete"] == 1
    assert client.get("/infrastructures/web/events").status_code == 200
    assert client.delete("/infrastructures/web").json()["ok"]
    assert client.get("/infrastructures/web").status_code == 404


def test_errors_are_json_not_tracebacks(client, tmp_path):
    resp = client.post("/infrastructures/x/plan", json={"text": "tosca_definitions_version: [oops"})
    assert resp.status_code == 422 and resp.json()["diagnostics"][0]["code"] == "YAML_SYNTAX"
    assert client.get("/infrastructures/ghost/outputs").status_code == 404
    assert client.post("/infrastructures/x/plan", json={}).status_code == 422
