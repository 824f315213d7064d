"""`plan` names the backend each instance goes to: the node's driver, or the one the placement policy puts first
(decided without asking any cloud), in `strato plan`'s text and --json and in the REST API's plan."""

import json
import textwrap
import time

import pytest

from orchestrator import service
from orchestrator.plan import planned_backend

HYBRID = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Noop
          capabilities: {scalable: {properties: {default_instances: 2}}}
        hy:
          type: strato.nodes.cloud.Server
          properties:
            implementations:
              - {driver: local, cost_per_hour: 2, properties: {command: ["true"]}}
              - {driver: noop, cost_per_hour: 1}
            placement: {policy: POLICY}
    """)


@pytest.fixture
def descriptor(tmp_path):
    def write(policy: str):
        path = tmp_path / f"{policy}.yaml"
        path.write_text(HYBRID.replace("POLICY", policy))
        return str(path)
    return write


def test_cli_plan_text_names_each_backend(strato, descriptor):
    out = strato("plan", descriptor("cost"), "--name", "pb").stdout
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("+ ")}
    assert "(noop)" in lines["web[0]"] and "(noop)" in lines["web[1]"], out
    assert "(placement: noop)" in lines["hy[0]"], out          # the cheaper implementation is tried first
    out = strato("plan", descriptor("order"), "--name", "pb").stdout
    assert "+ hy[0] (placement: local)" in out, out             # the declared order: local first


def test_cli_plan_json_has_driver_and_backend(strato, descriptor):
    proc = strato("plan", descriptor("cost"), "--name", "pb", "--json")
    assert proc.returncode == 2, proc.stderr                    # 2: the plan has changes
    actions = {(a["node"], a["index"]): a for a in json.loads(proc.stdout)["actions"]}
    assert (actions[("web", 0)]["driver"], actions[("web", 0)]["backend"]) == ("noop", "noop")
    assert (actions[("hy", 0)]["driver"], actions[("hy", 0)]["backend"]) == ("placement", "noop")


def test_a_candidate_whose_backend_failed_to_prepare_is_passed_over(descriptor):
    template = service.load_checked(descriptor("order"), confined=False).template
    props = {"implementations": [{"driver": "local", "properties": {"command": ["true"]}}, {"driver": "noop"}]}
    assert planned_backend(template, "hy", props, {}) == ("placement", "local")
    failed = {"placement": {"0:local": {"error": "quota exceeded"}}}
    assert planned_backend(template, "hy", props, failed) == ("placement", "noop")
    assert planned_backend(template, "web", {}, {}) == ("noop", "noop")


def test_api_plan_names_backends_before_and_after_a_build(strato_home, monkeypatch, descriptor):
    pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
    from fastapi.testclient import TestClient

    from orchestrator.api import ApiSettings, create_app
    token = "w-" + "b" * 30
    auth = {"Authorization": f"Bearer {token}"}
    monkeypatch.setenv("STRATO_API_TOKEN", token)
    # both implementations on the noop backend: this server runs no local process
    text = open(descriptor("cost")).read().replace('driver: local, cost_per_hour: 2, properties: {command: ["true"]}',
                                                     "driver: noop, cost_per_hour: 2")
    app = create_app(str(strato_home / "state.db"), ApiSettings())
    with TestClient(app) as client:
        planned = client.post("/v1/infrastructures/pb/plan", json={"descriptor": text}, headers=auth)
        assert planned.status_code == 200, planned.text
        where = {(a["node"], a["index"]): (a["driver"], a["backend"]) for a in planned.json()["actions"]}
        assert where == {("web", 0): ("noop", "noop"), ("web", 1): ("noop", "noop"), ("hy", 0): ("placement", "noop")}
        built = client.post("/v1/infrastructures", json={"name": "pb", "descriptor": text}, headers=auth)
        assert built.status_code == 202, built.text
        deadline = time.monotonic() + 30
        while app.state.ctx.ops.running and time.monotonic() < deadline:
            time.sleep(0.05)
        op = client.get(built.json()["href"], headers=auth).json()
        assert op["state"] == "succeeded", op
        again = client.post("/v1/infrastructures/pb/plan", headers=auth).json()
        assert not again["changes"]
        # what exists is shown where it runs: the placement handle names the backend it was built on
        where = {(a["node"], a["index"]): (a["driver"], a["backend"]) for a in again["actions"]}
        assert where[("hy", 0)] == ("placement", "noop") and where[("web", 1)] == ("noop", "noop")
