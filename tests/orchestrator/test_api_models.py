"""/v1/models through the real FastAPI app (TestClient): tokens and scopes, uploads that carry their bytes (never a
server path), the body limit, promote/rollback/mark with their history, and refusals with a code and a status."""

from __future__ import annotations

import base64
import os

import pytest

pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from orchestrator.mlops.registry import ModelRegistry  # noqa: E402

from tests.conftest import API_READ_TOKEN, API_WRITE_TOKEN  # noqa: E402

W = {"Authorization": f"Bearer {API_WRITE_TOKEN}"}
R = {"Authorization": f"Bearer {API_READ_TOKEN}"}
OCTET = {**W, "Content-Type": "application/octet-stream"}


@pytest.fixture
def client(make_client):
    return make_client()


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["status"] == resp.status_code, body
    return body["error"]


def upload(client, name: str, data: bytes, **params):
    return client.post(f"/v1/models/{name}/versions", content=data, headers=OCTET, params=params)


ROUTES = (("get", "/v1/models", None), ("get", "/v1/models/iris", None),
          ("post", "/v1/models/iris/versions", b"x"), ("post", "/v1/models/iris/aliases/champion", {"version": 1}),
          ("post", "/v1/models/iris/rollback", {}), ("post", "/v1/models/iris/versions/1/status", {"status": "bad"}))


def test_every_models_route_needs_a_token_and_writes_need_a_write_token(client):
    for method, url, body in ROUTES:
        kwargs = {"json": body} if isinstance(body, dict) else {"content": body} if body else {}
        assert client.request(method.upper(), url, **kwargs).status_code == 401, url
        bad = client.request(method.upper(), url, headers={"Authorization": "Bearer " + "z" * 32}, **kwargs)
        assert bad.status_code == 401 and error_of(bad)["code"] == "UNAUTHORIZED"
        if method == "post":
            refused = client.request("POST", url, headers=R, **kwargs)
            assert refused.status_code == 403 and error_of(refused)["code"] == "FORBIDDEN", url
    assert client.get("/v1/models", headers=R).json() == {"models": []}
    assert ModelRegistry(os.path.join(client.app.state.ctx.store.home, "models")).models() == []


def test_upload_promote_rollback_and_the_history(client, strato_home):
    first = upload(client, "iris", b"model one", metric=["accuracy=0.9"], note="first")
    assert first.status_code == 201, first.text
    assert first.json()["created"] and first.json()["version"]["ref"] == "iris:1"
    assert first.json()["version"]["metadata"]["metrics"] == {"accuracy": 0.9}
    assert first.json()["version"]["metadata"]["created_by"].startswith("api")
    same = upload(client, "iris", b"model one")
    assert same.status_code == 200 and not same.json()["created"] and same.json()["version"]["version"] == 1
    reference = "sepal,petal,prediction\n1,2,setosa\n"
    second = client.post("/v1/models/iris/versions", headers=W, json={
        "artifact_base64": base64.b64encode(b"model two").decode(), "reference_csv": reference, "parent": 1,
        "metrics": {"accuracy": 0.95}, "note": "retrained"})
    assert second.status_code == 201 and second.json()["version"]["has_reference"]
    assert client.post("/v1/models/iris/aliases/champion", headers=W, json={"version": 1}).status_code == 200
    moved = client.post("/v1/models/iris/aliases/champion", headers=W, json={"version": 2, "reason": "better"})
    assert moved.json()["version"]["version"] == 2
    back = client.post("/v1/models/iris/rollback", headers=W, json={"reason": "5xx after rollout"})
    assert back.status_code == 200 and back.json()["version"]["version"] == 1
    shown = client.get("/v1/models/iris", headers=R).json()
    assert shown["aliases"] == {"champion": 1, "latest": 2}
    assert [(e["event"], e["version"]) for e in shown["history"]][-2:] == [("mark", 2), ("rollback", 1)]
    assert shown["history"][-1]["reason"] == "5xx after rollout"
    assert all(e["by"].startswith("api (") for e in shown["history"])     # the API, not the server's user
    assert client.get("/v1/models", headers=R).json()["models"] == [
        {"name": "iris", "versions": 2, "aliases": {"champion": 1, "latest": 2}}]
    # the same registry the CLI and the engine use, under the server's STRATO_HOME
    reg = ModelRegistry(str(strato_home / "models"))
    stored = reg.resolve("iris:2")
    assert open(stored.path, "rb").read() == b"model two" and open(stored.reference_path).read() == reference


def test_refusals_have_a_code_and_an_honest_status(client):
    upload(client, "iris", b"one")
    cases = [(client.get("/v1/models/ghost", headers=R), 404, "MODEL_NOT_FOUND"),
             (client.post("/v1/models/iris/aliases/champion", headers=W, json={"version": 7}), 404,
              "VERSION_NOT_FOUND"),
             (client.post("/v1/models/iris/rollback", headers=W, json={}), 404, "ALIAS_NOT_FOUND"),
             (client.post("/v1/models/iris/aliases/latest", headers=W, json={"version": 1}), 422, "ALIAS_RESERVED"),
             (upload(client, "iris", b"x", metric=["accuracy"]), 422, "METRIC_INVALID"),
             (upload(client, "iris", b""), 422, "ARTIFACT_EMPTY"),
             (upload(client, "iris", b"x", parent=9), 404, "VERSION_NOT_FOUND"),
             (client.post("/v1/models/iris/versions", headers={**W, "Content-Type": "text/plain"}, content=b"x"), 415,
              "UNSUPPORTED_MEDIA_TYPE"),
             (client.post("/v1/models/iris/versions", headers=W, json={"artifact_base64": "%%%"}), 422,
              "ARTIFACT_NOT_BASE64"),
             (client.post("/v1/models/iris/versions", headers=W, json={
                 "artifact_base64": "eA==", "reference_csv": "only-a-header"}), 422, "REFERENCE_INVALID")]
    client.post("/v1/models/iris/versions/1/status", headers=W, json={"status": "bad", "reason": "leaks"})
    cases.append((client.post("/v1/models/iris/aliases/champion", headers=W, json={"version": 1}), 409,
                  "VERSION_BAD"))
    for resp, status, code in cases:
        assert resp.status_code == status, (code, resp.text)
        assert error_of(resp)["code"] == code
    assert client.get("/v1/models/..%2Fetc", headers=R).status_code in (404, 422)
    assert client.get("/v1/models/bad name", headers=R).status_code == 422


@pytest.mark.parametrize("smuggled", [{"artifact_path": "/etc/passwd"}, {"path": "/etc/passwd"},
                                      {"artifact_base64": "eA==", "reference_path": "/etc/passwd"},
                                      {"artifact_base64": "eA==", "artifact_path": "/etc/passwd"}])
def test_the_server_never_reads_a_path_the_client_names(client, strato_home, smuggled):
    resp = client.post("/v1/models/iris/versions", headers=W, json=smuggled)
    assert resp.status_code == 422 and error_of(resp)["code"] == "REQUEST_INVALID"
    assert "iris" not in ModelRegistry(str(strato_home / "models")).models()
    # a path in the query of a raw upload is only an unknown parameter: the body is what is stored
    raw = upload(client, "iris", b"the body", artifact_path="/etc/passwd", path="/etc/passwd")
    assert raw.status_code == 201
    stored = ModelRegistry(str(strato_home / "models")).resolve("iris:1")
    assert open(stored.path, "rb").read() == b"the body"


def test_answers_name_no_server_path(client, strato_home):
    resp = upload(client, "iris", b"one")
    client.post("/v1/models/iris/versions", headers=W, json={"artifact_base64": "eA==", "reference_csv": "a\n1\n"})
    for text in (resp.text, client.get("/v1/models/iris", headers=R).text):
        assert str(strato_home) not in text and os.path.realpath(str(strato_home)) not in text
        assert "blobs" not in text


def test_uploads_over_the_body_limit_are_refused_and_store_nothing(make_client, strato_home):
    client = make_client(max_body_bytes=4096)
    resp = upload(client, "iris", b"x" * 5000)
    assert resp.status_code == 413 and error_of(resp)["code"] == "TOO_LARGE"

    def chunks():   # no Content-Length: the limit holds for a streamed body too
        for _ in range(10):
            yield b"y" * 1000
    streamed = client.post("/v1/models/iris/versions", content=chunks(), headers=OCTET)
    assert streamed.status_code == 413
    assert ModelRegistry(str(strato_home / "models")).models() == []
    assert upload(client, "iris", b"x" * 4000).status_code == 201


def test_the_routes_are_in_the_published_spec(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/models/{name}", "/v1/models/{name}/versions", "/v1/models/{name}/aliases/{alias}",
            "/v1/models/{name}/rollback", "/v1/models/{name}/versions/{version}/status"} <= set(paths)
    body = paths["/v1/models/{name}/versions"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in body and "artifact_path" not in str(body)
