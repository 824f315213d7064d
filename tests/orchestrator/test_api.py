"""The REST API v1 through FastAPI's TestClient: auth and scopes, confinement, limits, honest statuses, operations."""

import base64
import io
import json
import os
import stat
import tarfile
import textwrap
import time
import zipfile

import pytest

fastapi = pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from orchestrator.api.security import load_tokens  # noqa: E402

from tests.conftest import API_READ_TOKEN as READ_TOKEN, API_WRITE_TOKEN as WRITE_TOKEN  # noqa: E402
W = {"Authorization": f"Bearer {WRITE_TOKEN}"}
R = {"Authorization": f"Bearer {READ_TOKEN}"}

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
        n: {value: {get_attribute: [a, tosca_id]}}  # declared, never reported: stays unresolved
    """)

LOCAL_DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        job:
          type: strato.nodes.Job
          properties:
            command: ["sh", "-c", "id > pwned"]
    """)


@pytest.fixture
def client(make_client):
    return make_client()


def wait_op(client, op_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}", headers=R).json()
        if op["state"] != "running":
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} still running")


def error_of(resp):
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == resp.status_code
    return body["error"]


# -- authentication and scopes -----------------------------------------------------------------------

def test_every_route_needs_a_valid_token(client):
    for method, url in (("get", "/v1/infrastructures"), ("get", "/v1/operations"), ("get", "/metrics"),
                        ("post", "/v1/validate"), ("delete", "/v1/infrastructures/x")):
        resp = getattr(client, method)(url)
        assert resp.status_code == 401, (url, resp.status_code)
        assert error_of(resp)["code"] == "UNAUTHORIZED"
        assert resp.headers["www-authenticate"] == "Bearer"
        bad = getattr(client, method)(url, headers={"Authorization": "Bearer " + "z" * 32})
        assert bad.status_code == 401
    assert client.get("/v1/infrastructures", headers=R).status_code == 200
    assert client.get("/healthz").status_code == 200          # liveness needs no token


def test_read_token_cannot_build(client):
    resp = client.post("/v1/infrastructures", json={"name": "ro", "descriptor": DOC}, headers=R)
    assert resp.status_code == 403 and error_of(resp)["code"] == "FORBIDDEN"
    assert client.get("/v1/infrastructures", headers=R).json()["infrastructures"] == []


def test_token_generated_on_first_start_is_private(strato_home, monkeypatch):
    monkeypatch.delenv("STRATO_API_TOKEN", raising=False)
    monkeypatch.delenv("STRATO_API_READ_TOKEN", raising=False)
    tokens = load_tokens(str(strato_home))
    path = strato_home / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32 and tokens.scope_of(token) == "write"
    assert tokens.scope_of((strato_home / "api-token.read").read_text().strip()) == "read"
    assert load_tokens(str(strato_home)).scope_of(token) == "write"      # kept across restarts
    assert tokens.scope_of(token[:-1]) is None


def test_tokens_compared_in_constant_time():
    import inspect
    from orchestrator.api import security
    assert "compare_digest" in inspect.getsource(security.Tokens.scope_of)


# -- confinement -------------------------------------------------------------------------------------

def test_no_server_paths_accepted(client, tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("root: s3cr3t-hash\n")
    resp = client.post("/v1/validate", json={"path": str(secret)}, headers=R)
    assert resp.status_code == 422 and "s3cr3t" not in resp.text
    resp = client.post("/v1/infrastructures", json={"name": "p", "path": str(secret)}, headers=W)
    assert resp.status_code == 422 and "s3cr3t" not in resp.text


def test_imports_confined_to_the_bundle_and_files_never_echoed(client, tmp_path):
    secret = tmp_path / "outside.yaml"
    secret.write_text("s3cr3t_key: 1\n")
    for target in (str(secret), "../" * 12 + str(secret).lstrip("/"), "file://" + str(secret)):
        doc = DOC.replace("topology_template:", f"imports: ['{target}']\ntopology_template:")
        resp = client.post("/v1/validate", json={"descriptor": doc}, headers=R)
        assert resp.status_code == 422, target
        codes = {d["code"] for d in error_of(resp)["diagnostics"]}
        assert codes & {"IMPORT_OUTSIDE", "IMPORT_REMOTE"}, codes
        assert "s3cr3t" not in resp.text


def test_diagnostics_name_bundle_files_not_server_paths(client, strato_home):
    bad = DOC.replace("dependency: a", "dependency: zz")
    resp = client.post("/v1/validate", content=bad, headers={**R, "Content-Type": "application/yaml"})
    assert resp.status_code == 422
    diag = error_of(resp)["diagnostics"][0]
    assert diag["code"] == "REQUIREMENT_UNKNOWN_NODE" and diag["line"] == 9 and diag["file"] == "descriptor.yaml"
    assert str(strato_home) not in resp.text and "/tmp" not in resp.text


def test_bundle_with_imports_and_its_own_paths(client):
    types = "tosca_definitions_version: tosca_simple_yaml_1_3\nnode_types:\n  my.Node:\n    derived_from: strato.nodes.Noop\n"
    main = DOC.replace("topology_template:", "imports: [types/mine.yaml]\ntopology_template:").replace(
        "type: strato.nodes.Noop\n      requirements", "type: my.Node\n      requirements")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.yaml", main)
        z.writestr("types/mine.yaml", types + "  bad: [\n")
    resp = client.post("/v1/validate", json={"bundle": base64.b64encode(buf.getvalue()).decode()}, headers=R)
    assert resp.status_code == 422
    files = {d["file"] for d in error_of(resp)["diagnostics"]}
    assert "types/mine.yaml" in files and files <= {"types/mine.yaml", "app.yaml"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, text in (("app.yaml", main), ("types/mine.yaml", types)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            t.addfile(info, io.BytesIO(text.encode()))
    resp = client.post("/v1/validate", json={"bundle": base64.b64encode(buf.getvalue()).decode()}, headers=R)
    assert resp.status_code == 200 and resp.json()["nodes"] == 2


def test_bundle_links_and_escapes_refused(client):
    for name, kind in (("../evil.yaml", tarfile.REGTYPE), ("/etc/evil.yaml", tarfile.REGTYPE),
                       ("link.yaml", tarfile.SYMTYPE)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            data = DOC.encode() if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        resp = client.post("/v1/validate", json={"bundle": base64.b64encode(buf.getvalue()).decode()}, headers=R)
        assert resp.status_code == 400 and error_of(resp)["code"] == "BUNDLE_MEMBER_REFUSED", name


def test_local_process_nodes_refused_unless_allowed(make_client, strato_home):
    client = make_client()
    resp = client.post("/v1/infrastructures", json={"name": "lp", "descriptor": LOCAL_DOC}, headers=W)
    assert resp.status_code == 403 and error_of(resp)["code"] == "LOCAL_PROCESS_REFUSED"
    assert "job" in error_of(resp)["message"]
    vm = textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            vm:
              type: strato.nodes.VM
              properties:
                implementations: [{driver: noop}, {driver: local, properties: {command: [sh, -c, id]}}]
        """)
    resp = client.post("/v1/validate", json={"descriptor": vm}, headers=R)
    if resp.status_code == 200:   # the profile accepts it: the fallback to local must be refused too
        resp = client.post("/v1/infrastructures", json={"name": "lp2", "descriptor": vm}, headers=W)
        assert resp.status_code == 403
    allowed = make_client(allow_local_processes=True)
    resp = allowed.post("/v1/infrastructures", json={"name": "lp3", "descriptor": LOCAL_DOC.replace(
        "id > pwned", "true")}, headers=W)
    assert resp.status_code == 202
    assert wait_op(allowed, resp.json()["operation"])["state"] == "succeeded"
    allowed.delete("/v1/infrastructures/lp3", headers=W)


# -- limits and honest statuses ------------------------------------------------------------------------

def test_request_size_limit(make_client):
    client = make_client(max_body_bytes=4096)
    resp = client.post("/v1/validate", json={"descriptor": "x" * 10000}, headers=R)
    assert resp.status_code == 413 and error_of(resp)["code"] == "TOO_LARGE"

    def chunks():
        for _ in range(10):
            yield b"a" * 1000
    resp = client.post("/v1/validate", content=chunks(), headers={**R, "Content-Type": "application/yaml"})
    assert resp.status_code == 413


def test_node_and_instance_limits(make_client):
    client = make_client(max_nodes=1, max_instances=2)
    resp = client.post("/v1/infrastructures", json={"name": "big", "descriptor": DOC}, headers=W)
    assert resp.status_code == 422 and error_of(resp)["code"] == "LIMIT_NODES"
    client = make_client(max_instances=2)
    resp = client.post("/v1/infrastructures", json={"name": "big", "descriptor": DOC}, headers=W)
    assert resp.status_code == 422 and error_of(resp)["code"] == "LIMIT_INSTANCES"


def test_validation_time_limit(make_client):
    client = make_client(validation_timeout=0.2)
    nodes = "\n".join(f"    n{i}: {{type: strato.nodes.Noop, requirements: [{{dependency: n{i - 1}}}]}}"
                      for i in range(1, 6000))
    doc = ("tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n  node_templates:\n"
           "    n0: {type: strato.nodes.Noop}\n" + nodes + "\n")
    resp = client.post("/v1/validate", json={"descriptor": doc}, headers=R)
    assert resp.status_code == 422 and error_of(resp)["code"] == "VALIDATION_TIMEOUT"
    assert client.post("/v1/validate", json={"descriptor": DOC}, headers=R).status_code == 200


def test_bad_input_is_4xx_never_5xx(client):
    cases = [
        client.post("/v1/validate", content=b'{"descriptor": "\\ud800"}',
                    headers={**R, "Content-Type": "application/json"}),
        client.post("/v1/infrastructures", content=b'{"name": "s", "descriptor": "\\udcff"}',
                    headers={**W, "Content-Type": "application/json"}),
        client.post("/v1/infrastructures", json={}, headers=W),
        client.put("/v1/infrastructures/x", json={}, headers=W),
        client.post("/v1/validate", json={}, headers=R),
        client.post("/v1/validate", content=b"\xff\xfe", headers={**R, "Content-Type": "application/yaml"}),
        client.post("/v1/validate", content=b"not json", headers={**R, "Content-Type": "application/json"}),
        client.post("/v1/infrastructures/x/nodes/a/scale", json={"to": 10 ** 30}, headers=W),
        client.get("/v1/operations?limit=99999999999999999999", headers=R),
        client.get("/v1/infrastructures/x/events?last=99999999999999999999", headers=R),
        client.post("/v1/validate", json={"bundle": "!!!"}, headers=R),
        client.post("/v1/validate", json={"bundle": base64.b64encode(b"junk").decode()}, headers=R),
        client.post("/v1/validate", content=b"x", headers={**R, "Content-Type": "image/png"}),
    ]
    for resp in cases:
        assert 400 <= resp.status_code < 500, (resp.request.url, resp.status_code, resp.text)
        error_of(resp)


def test_unknown_things_are_404_from_a_typed_error(client):
    for url in ("/v1/infrastructures/ghost", "/v1/infrastructures/ghost/outputs", "/v1/operations/nope",
                "/v1/infrastructures/ghost/graph", "/v1/infrastructures/ghost/events", "/v1/nothing"):
        resp = client.get(url, headers=R)
        assert resp.status_code == 404 and error_of(resp)["code"] == "NOT_FOUND", url
    assert "state.db" not in client.get("/v1/infrastructures/ghost", headers=R).text
    assert client.delete("/v1/infrastructures/ghost", headers=W).status_code == 404
    assert client.post("/v1/infrastructures/ghost/nodes/a/scale", json={"to": 1}, headers=W).status_code == 404


def test_service_raises_typed_not_found(strato_home):
    from orchestrator import service
    with pytest.raises(service.NotFound):
        service.outputs(service.open_store(str(strato_home / "s.db")), "ghost")


# -- the asynchronous surface --------------------------------------------------------------------------

def test_create_scale_plan_destroy(client):
    resp = client.post("/v1/infrastructures", json={"name": "web", "descriptor": DOC}, headers=W)
    assert resp.status_code == 202 and resp.headers["location"] == resp.json()["href"]
    op = wait_op(client, resp.json()["operation"])
    assert op["state"] == "succeeded" and op["kind"] == "create"
    assert op["progress"]["nodes"]["a"]["ready"] == 2 and op["progress"]["done"] == 3
    info = client.get("/v1/infrastructures/web", headers=R).json()
    assert len(info["instances"]) == 3 and info["status"] == "ready"
    assert set(info["descriptor"]) == {"digest", "entry"}
    assert client.post("/v1/infrastructures", json={"name": "web", "descriptor": DOC}, headers=W).status_code == 409
    graph = client.get("/v1/infrastructures/web/graph", headers=R).json()
    assert {"from": "b", "to": "a"} in graph["edges"]
    plan = client.post("/v1/infrastructures/web/plan", json={"descriptor": DOC.replace("default_instances: 2",
                                                                                       "default_instances: 4")},
                       headers=R).json()
    assert plan["summary"]["create"] == 2
    resp = client.post("/v1/infrastructures/web/nodes/a/scale", json={"by": -1}, headers=W)
    assert resp.status_code == 202 and resp.json()["desired"] == 1
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    assert len(client.get("/v1/infrastructures/web", headers=R).json()["instances"]) == 2
    assert client.post("/v1/infrastructures/web/nodes/zz/scale", json={"to": 1}, headers=W).status_code == 404
    assert client.post("/v1/infrastructures/web/nodes/a/scale", json={"by": -5}, headers=W).status_code == 422
    assert client.post("/v1/infrastructures/web/nodes/a/scale", json={"to": 1, "by": 1},
                       headers=W).status_code == 422
    events = client.get("/v1/infrastructures/web/events?follow=false", headers=R)
    assert events.headers["content-type"].startswith("text/event-stream")
    ids = [int(line[4:]) for line in events.text.splitlines() if line.startswith("id: ")]
    assert ids == sorted(ids) and "event: scaled" in events.text
    resumed = client.get("/v1/infrastructures/web/events?follow=false",
                         headers={**R, "Last-Event-ID": str(ids[-2])})
    assert [line for line in resumed.text.splitlines() if line.startswith("id: ")] == [f"id: {ids[-1]}"]
    resp = client.delete("/v1/infrastructures/web", headers=W)
    assert resp.status_code == 202 and wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    assert client.get("/v1/infrastructures/web", headers=R).status_code == 404


def test_second_mutation_is_409_naming_the_running_one(client):
    slow = DOC.replace("strato.nodes.Noop\n      capabilities", "strato.nodes.Sleep\n      properties: "
                       "{seconds: 1.5}\n      capabilities")
    resp = client.post("/v1/infrastructures", json={"name": "busy", "descriptor": slow}, headers=W)
    assert resp.status_code == 202, resp.text
    first = resp.json()["operation"]
    second = client.put("/v1/infrastructures/busy", json={"descriptor": slow}, headers=W)
    assert second.status_code == 409 and first in error_of(second)["message"]
    assert error_of(second)["operation"] == first
    assert client.delete("/v1/infrastructures/busy", headers=W).status_code == 409
    running = client.get(f"/v1/operations/{first}", headers=R).json()
    assert running["state"] == "running"
    assert wait_op(client, first)["state"] == "succeeded"
    client.delete("/v1/infrastructures/busy", headers=W)


def test_failed_build_is_a_failed_operation(client):
    doc = DOC.replace("type: strato.nodes.Noop\n      requirements",
                      "type: strato.nodes.Noop\n      metadata: {strato.driver: nosuchdriver}\n      requirements")
    resp = client.post("/v1/infrastructures", json={"name": "bad", "descriptor": doc}, headers=W)
    if resp.status_code == 422:    # the checker already refuses the unknown driver
        return
    op = wait_op(client, resp.json()["operation"])
    assert op["state"] == "failed" and op["error"]


def test_operations_survive_a_restart_as_interrupted(strato_home, make_client):
    from orchestrator.state import StateStore
    store = StateStore(str(strato_home / "state.db"))
    op_id = store.create_operation("gone", "create")
    store._exec("UPDATE operations SET pid=?, start_time=? WHERE id=?", (2 ** 22 + 7, 1, op_id))
    client = make_client()
    op = client.get(f"/v1/operations/{op_id}", headers=R).json()
    assert op["state"] == "interrupted"


def test_credentials_not_echoed(client):
    from orchestrator.api.security import scrub
    assert scrub({"handle": {"password": "p", "SecretAccessKey": "k", "id": 1}}) == \
        {"handle": {"password": "***", "SecretAccessKey": "***", "id": 1}}
    doc = DOC + "  inputs:\n    db_password: {type: string}\n"
    resp = client.post("/v1/infrastructures", json={"name": "cred", "descriptor": doc,
                                                    "inputs": {"db_password": "hunter2-secret"}}, headers=W)
    assert resp.status_code == 202, resp.text
    wait_op(client, resp.json()["operation"])
    for url in ("/v1/infrastructures/cred", "/v1/infrastructures/cred/events?follow=false",
                f"/v1/operations/{resp.json()['operation']}", "/v1/operations"):
        assert "hunter2" not in client.get(url, headers=R).text, url
    client.delete("/v1/infrastructures/cred", headers=W)


def test_status_cached_until_state_changes(client):
    resp = client.post("/v1/infrastructures", json={"name": "c", "descriptor": DOC}, headers=W)
    wait_op(client, resp.json()["operation"])
    first = client.get("/v1/infrastructures/c", headers=R).json()
    ctx = client.app.state.ctx
    ctx.store.update_instance(first["instances"][0]["key"], status="failed", error="boom")
    assert client.get("/v1/infrastructures/c", headers=R).json()["instances"][0]["status"] == "failed"


def test_metrics_openapi_and_dashboard(client):
    client.get("/v1/infrastructures", headers=R)
    text = client.get("/metrics", headers=R).text
    assert "strato_api_requests_total" in text and 'route="/v1/infrastructures"' in text
    spec = client.get("/openapi.json").json()
    assert "/v1/infrastructures/{name}/nodes/{node}/scale" in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert "Authorization" in client.get("/static/app.js").text      # the page sends the token itself


def test_scale_drop_removes_the_chosen_instance(client):
    resp = client.post("/v1/infrastructures", json={"name": "dropper", "descriptor": DOC}, headers=W)
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    resp = client.post("/v1/infrastructures/dropper/nodes/a/scale", json={"drop": "a[0]"}, headers=W)
    assert resp.status_code == 202 and resp.json()["desired"] == 1, resp.text
    op = wait_op(client, resp.json()["operation"])
    assert op["state"] == "succeeded", op
    left = [i for i in client.get("/v1/infrastructures/dropper", headers=R).json()["instances"] if i["node"] == "a"]
    assert [i["index"] for i in left] == [1]  # the chosen one went, the other kept its slot
    # dropping the last one of a node that b depends on is refused (bounds/dependents), as in the CLI
    resp = client.post("/v1/infrastructures/dropper/nodes/a/scale", json={"drop": "a[1]"}, headers=W)
    assert resp.status_code in (400, 422) and "b" in error_of(resp)["message"], resp.text
    resp = client.delete("/v1/infrastructures/dropper", headers=W)
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
