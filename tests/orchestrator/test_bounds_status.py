"""Instance-count bounds (descriptor, inputs, scale, API, per-node ceiling), scale-to-0 refusal, and `degraded`."""

import json
import os
import signal
import sys
import textwrap
import time

import pytest

from descriptors.diagnostics import DescriptorError
from orchestrator import scaling, service
from orchestrator.executor import RunOptions
from orchestrator.service import UserError

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        replicas: {type: integer, default: 2}
      node_templates:
        trainer:
          type: strato.nodes.Noop
        server:
          type: strato.nodes.Noop
          capabilities:
            scalable:
              properties:
                min_instances: 1
                max_instances: 20
                default_instances: {get_input: replicas}
          requirements: [{dependency: trainer}]
    """)


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(DOC)
    return str(path)


@pytest.fixture
def built(strato_home, doc):
    store = service.open_store(str(strato_home / "state.db"))
    assert service.build(doc, "b1", {}, store, RunOptions())["ok"]
    return store


def test_input_above_max_is_refused_naming_the_bound(strato_home, doc):
    store = service.open_store(str(strato_home / "state.db"))
    with pytest.raises(DescriptorError) as err:
        service.plan(doc, "b1", {"replicas": "50"}, store)
    d = err.value.diagnostics[0]
    assert d.code == "INSTANCES_ABOVE_MAX" and "max_instances 20" in d.message and "replicas=50" in d.message
    assert (d.position.file, d.position.line) == (doc, 14)
    with pytest.raises(DescriptorError):
        service.build(doc, "b1", {"replicas": "0"}, store, RunOptions())  # below min_instances 1
    assert store.get_infra("b1") is None  # refused before anything was recorded


def test_scale_enforces_min_max_and_ceiling(built, monkeypatch):
    with pytest.raises(DescriptorError) as err:
        scaling.set_desired(built, "b1", "server", 25)
    assert err.value.diagnostics[0].code == "INSTANCES_ABOVE_MAX"
    assert ":14:" in err.value.diagnostics[0].message  # where max_instances is written
    with pytest.raises(DescriptorError) as err:
        scaling.set_desired(built, "b1", "server", 0)
    assert err.value.diagnostics[0].code == "INSTANCES_BELOW_MIN"
    monkeypatch.setenv("STRATO_MAX_INSTANCES_PER_NODE", "3")
    with pytest.raises(DescriptorError) as err:
        scaling.set_desired(built, "b1", "trainer", 4)
    assert err.value.diagnostics[0].code == "INSTANCES_OVER_CEILING"
    assert scaling.set_desired(built, "b1", "server", 3)["desired"] == 3


def test_scale_to_zero_with_dependents_needs_force(built):
    with pytest.raises(UserError, match="server depend"):
        scaling.set_desired(built, "b1", "trainer", 0)
    assert built.get_infra("b1").desired.get("trainer") is None
    assert scaling.set_desired(built, "b1", "trainer", 0, force=True)["desired"] == 0


def test_huge_default_instances_fails_validate_and_plan_without_allocating(strato, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(DOC.replace("default_instances: {get_input: replicas}", "default_instances: 100000000000")
                    .replace("max_instances: 20", "max_instances: UNBOUNDED"))
    for args in (("validate", str(path)), ("plan", str(path), "--name", "huge")):
        # an address-space cap: allocating per instance would blow it long before finishing
        proc = strato(*args, timeout=60)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"{path}:15:" in proc.stderr and "INSTANCES_OVER_CEILING" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_cli_scale_names_bound_and_dependents(strato, doc):
    assert strato("build", doc, "--name", "c1", "-q").returncode == 0
    proc = strato("scale", "c1", "server", "25")
    assert proc.returncode == 1 and "INSTANCES_ABOVE_MAX" in proc.stderr and f"{doc}:14:" in proc.stderr
    proc = strato("scale", "c1", "trainer", "0")
    assert proc.returncode == 1 and "server" in proc.stderr and "--force" in proc.stderr
    assert "--force" in strato("scale", "--help").stdout


def test_api_scale_out_of_bounds_is_4xx(strato_home, doc, monkeypatch):
    pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
    from fastapi.testclient import TestClient
    from orchestrator.api import create_app
    token = "bounds-" + "t" * 30
    monkeypatch.setenv("STRATO_API_TOKEN", token)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", "bounds-read-" + "r" * 30)
    auth = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(str(strato_home / "api.db")))
    with open(doc) as fh:
        resp = client.post("/v1/infrastructures", json={"name": "a1", "descriptor": fh.read()}, headers=auth)
    assert resp.status_code == 202
    deadline = time.monotonic() + 30
    while client.get(resp.json()["href"], headers=auth).json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(resp.json()["href"], headers=auth).json()["state"] == "succeeded"
    resp = client.post("/v1/infrastructures/a1/nodes/server/scale", json={"to": 25}, headers=auth)
    assert resp.status_code == 422 and resp.json()["error"]["diagnostics"][0]["code"] == "INSTANCES_ABOVE_MAX"
    assert str(strato_home) not in resp.text
    resp = client.post("/v1/infrastructures/a1/nodes/trainer/scale", json={"to": 0}, headers=auth)
    assert resp.status_code == 400 and "server" in resp.json()["error"]["message"]


PROC_DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
            port: auto
            health_check: {tcp: true, timeout: 30}
            stop_grace_period: 1
          capabilities: {scalable: {properties: {default_instances: 2}}}
      outputs:
        urls: {value: {get_attribute: [web, url]}}
    """)


def test_dead_replica_shows_degraded_and_leaves_outputs(strato, tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text(PROC_DOC)
    name = f"deg-{os.getpid()}"
    assert strato("build", str(path), "--name", name, "-q", timeout=120).returncode == 0
    try:
        data = json.loads(strato("status", name, "--json").stdout)["infrastructures"][0]
        assert data["status"] == "ready" and data["healthy"]
        assert strato("status", name, "--check").returncode == 0
        urls = json.loads(strato("outputs", name, "--json").stdout)["urls"]
        assert len(urls) == 2
        victim = next(i for i in data["instances"] if i["index"] == 1)
        os.kill(victim["attributes"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{victim['attributes']['pid']}"):
            time.sleep(0.1)  # reaped by its own parent? it is detached, so init reaps it
        proc = strato("status", name)
        assert f"{name}: degraded" in proc.stdout and "web[1]" in proc.stdout.split("not healthy:")[1]
        assert strato("status", name, "--check").returncode == 2
        left = json.loads(strato("outputs", name, "--json").stdout)["urls"]
        assert victim["attributes"]["url"] not in json.dumps(left) and urls[0] in json.dumps(left)
    finally:
        strato("destroy", name, "--yes", timeout=60)


def test_bounds_hold_for_a_cli_build_whose_descriptor_imports_a_parent_file(tmp_path, strato):
    """A CLI build may import `../` files; scale must still read the stored descriptor and its bounds."""
    (tmp_path / "types.yaml").write_text(textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        node_types:
          my.Worker:
            derived_from: strato.nodes.Noop
        """))
    sub = tmp_path / "app"
    sub.mkdir()
    (sub / "svc.yaml").write_text(textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        imports: [../types.yaml]
        topology_template:
          node_templates:
            worker:
              type: my.Worker
              capabilities:
                scalable: {properties: {min_instances: 1, max_instances: 3, default_instances: 1}}
        """))
    assert strato("build", str(sub / "svc.yaml"), "--name", "parentimp", "-q").returncode == 0
    proc = strato("scale", "parentimp", "worker", "5")
    assert proc.returncode == 1 and "max_instances 3" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert strato("destroy", "parentimp", "--yes", "-q").returncode == 0
