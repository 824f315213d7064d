"""The REST API served by a real uvicorn on loopback: submit -> follow SSE -> done -> scale -> destroy (local driver),
and operations that survive a server restart as interrupted."""

import json
import os
import textwrap
import time
import uuid

import pytest

pytest.importorskip("uvicorn", reason="the REST API needs uvicorn (pip install '.[test]')")
from tests.conftest import run_strato  # noqa: E402
from tests.orchestrator.api_server import READ_TOKEN, Server, wait_operation  # noqa: E402

LOCAL = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        worker:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "-c", "import time; time.sleep(600)"]
          capabilities: {scalable: {properties: {default_instances: 1}}}
      outputs:
        pid: {value: {get_attribute: [worker, pid]}}
    """)


def sse_until(client, name, kind, timeout=60, last_id=None):
    """Read the event stream until an event of `kind`; returns the (id, event) pairs seen."""
    seen = []
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"/v1/infrastructures/{name}/events", headers=headers, timeout=timeout) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in resp.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                seen.append((event_id, data))
                if data["kind"] == kind:
                    return seen
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"no '{kind}' event in {timeout} s: {[d['kind'] for _, d in seen]}")


@pytest.mark.e2e
def test_submit_follow_scale_destroy_over_http(strato_home):
    server = Server(strato_home, "--allow-local-processes").start()
    name = f"api-{uuid.uuid4().hex[:6]}"
    try:
        with server.client() as client:
            resp = client.post("/v1/infrastructures", json={"name": name, "descriptor": LOCAL})
            assert resp.status_code == 202, resp.text
            events = sse_until(client, name, "build_finished")
            assert [d["kind"] for _, d in events].count("ready") == 1 and events[-1][1]["detail"]["ok"]
            assert wait_operation(client, resp.json()["operation"])["state"] == "succeeded"
            pids = client.get(f"/v1/infrastructures/{name}/outputs").json()["pid"]
            assert isinstance(pids, list) and len(pids) == 1  # a node that may scale: a list, with 1 replica too
            pid = pids[0]
            os.kill(pid, 0)                                   # a real process runs
            resp = client.post(f"/v1/infrastructures/{name}/nodes/worker/scale", json={"to": 2})
            assert resp.status_code == 202
            more = sse_until(client, name, "maintain_acted", last_id=events[-1][0])  # one pass applies it
            assert more[0][0] > events[-1][0]                 # resumed after the last seen id, nothing repeated
            assert [d["kind"] for _, d in more][:2] == ["scale_requested", "scaled"]
            info = client.get(f"/v1/infrastructures/{name}").json()
            assert [i["status"] for i in info["instances"]] == ["ready", "ready"]
            with server.client(READ_TOKEN) as reader:
                assert reader.delete(f"/v1/infrastructures/{name}").status_code == 403
            resp = client.delete(f"/v1/infrastructures/{name}")
            assert resp.status_code == 202
            assert wait_operation(client, resp.json()["operation"])["state"] == "succeeded"
            assert client.get(f"/v1/infrastructures/{name}").status_code == 404
            with pytest.raises(ProcessLookupError):
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
    finally:
        server.stop()


@pytest.mark.e2e
def test_running_operation_interrupted_by_restart_then_resumed(strato_home):
    slow = textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            s:
              type: strato.nodes.Sleep
              properties: {seconds: 2}
              capabilities: {scalable: {properties: {default_instances: 2}}}
        """)
    server = Server(strato_home).start()
    try:
        with server.client() as client:
            op_id = client.post("/v1/infrastructures", json={"name": "slow", "descriptor": slow}).json()["operation"]
            time.sleep(0.5)
        server.kill()
        server = Server(strato_home).start()
        with server.client() as client:
            op = client.get(f"/v1/operations/{op_id}").json()
            assert op["state"] == "interrupted" and "apply again" in op["error"]
            resp = client.put("/v1/infrastructures/slow", json={"descriptor": slow})
            assert resp.status_code == 202
            assert wait_operation(client, resp.json()["operation"])["state"] == "succeeded"
            assert len(client.get("/v1/infrastructures/slow").json()["instances"]) == 2
    finally:
        server.stop()


def test_insecure_no_auth_only_on_loopback(strato_home):
    proc = run_strato("serve", "--host", "0.0.0.0", "--insecure-no-auth", home=strato_home, timeout=30)
    assert proc.returncode == 1 and "--insecure-no-auth is refused" in proc.stderr


def test_insecure_no_auth_warns_loudly(strato_home):
    server = Server(strato_home, "--insecure-no-auth").start()
    try:
        import httpx
        assert httpx.get(server.url + "/v1/infrastructures").status_code == 200
    finally:
        server.stop()
    assert "authentication is OFF" in server.output()
