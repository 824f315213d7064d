"""The REST API's boundary (issue 17, items 4-8): a descriptor is code, so nothing it says may run on the server's
machine unless the server allows it, name a server file, probe which server files exist, crash the server with
a malformed bundle or event cursor, or learn the server's paths from a response."""

import base64
import functools
import io
import json
import os
import struct
import tarfile
import textwrap
import time
import zipfile

import pytest

pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
from tests.conftest import API_READ_TOKEN as READ_TOKEN, API_WRITE_TOKEN as WRITE_TOKEN  # noqa: E402

W = {"Authorization": f"Bearer {WRITE_TOKEN}"}
R = {"Authorization": f"Bearer {READ_TOKEN}"}
HEAD = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
# Drivers that make this machine run what a descriptor says, whatever its properties.
ALWAYS_HOST_CODE = {"local", "docker", "terraform"}


@pytest.fixture
def make_client(make_client):
    """The shared factory, answering a server error as the client sees it (a 500) rather than raising it."""
    return functools.partial(make_client, raise_server_exceptions=False)


@pytest.fixture
def client(make_client):
    return make_client()


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == resp.status_code
    return body["error"]


def topology(nodes: str) -> str:
    return HEAD + "topology_template:\n  node_templates:\n" + textwrap.indent(textwrap.dedent(nodes), "    ")


def zipped(files: dict[str, str | bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def wait_op(client, op_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}", headers=R).json()
        if op["state"] != "running":
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} still running")


# -- 4. nothing runs on the server's machine without --allow-local-processes --------------------------------

LEAKING_PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - set_stats: {data: {leak: "{{ lookup('env', 'HOME') }} {{ lookup('file', '/etc/hostname') }}"}}
"""


def test_playbook_operation_in_the_bundle_is_refused(client):
    doc = topology("""\
        a:
          type: strato.nodes.Noop
          interfaces: {Standard: {create: plays/site.yml}}
        """)
    resp = client.post("/v1/infrastructures", json={"name": "pb", "bundle": zipped(
        {"app.yaml": doc, "plays/site.yml": LEAKING_PLAY})}, headers=W)
    assert resp.status_code == 403, resp.text
    err = error_of(resp)
    assert err["code"] == "LOCAL_PROCESS_REFUSED" and "node 'a'" in err["message"] and "Ansible" in err["message"]
    assert err["nodes"] == [{"node": "a", "reason": err["nodes"][0]["reason"]}]
    assert client.get("/v1/operations", headers=R).json()["operations"] == []


def test_operations_smuggled_in_node_metadata_never_run(client, tmp_path):
    marker = tmp_path / "ran"
    doc = topology("""\
        a:
          type: strato.nodes.Noop
          metadata: {strato.operations: {create: {implementation: plays/mark.yml}}}
        """)
    play = f"- hosts: all\n  gather_facts: false\n  tasks:\n    - copy: {{content: x, dest: '{marker}'}}\n"
    resp = client.post("/v1/infrastructures", json={"name": "meta", "bundle": zipped(
        {"app.yaml": doc, "plays/mark.yml": play})}, headers=W)
    # Refused before anything runs: metadata keys are checked (an unknown strato.* key is an error).
    assert resp.status_code == 422, resp.text
    assert error_of(resp)["code"] == "METADATA_UNKNOWN_KEY"
    assert not marker.exists()


def test_playbook_at_a_server_path_is_refused_even_with_the_flag(make_client):
    doc = topology("""\
        a:
          type: strato.nodes.Noop
          interfaces: {Standard: {configure: /etc/ansible/site.yml}}
        """)
    resp = make_client().post("/v1/infrastructures", json={"name": "pb", "descriptor": doc}, headers=W)
    assert resp.status_code in (403, 422) and resp.status_code != 202
    resp = make_client(allow_local_processes=True).post("/v1/infrastructures", json={"name": "pb",
                                                                                      "descriptor": doc}, headers=W)
    assert resp.status_code == 422 and error_of(resp)["code"] == "IMPLEMENTATION_OUTSIDE"


@pytest.mark.parametrize("props", [
    {"configuration": 'resource "terraform_data" "x" {\n  provisioner "local-exec" { command = "id > /tmp/pwned" }\n}'},
    {"configuration": 'output "k" { value = file("/etc/hostname") }'},
    {"configuration": {"module": {"m": {"source": "/srv/modules/net"}}}},
])
def test_terraform_is_refused(client, props):
    doc = topology(f"""\
        tf:
          type: strato.nodes.terraform.Configuration
          properties: {json.dumps(props)}
        """)
    resp = client.post("/v1/infrastructures", json={"name": "tf", "descriptor": doc}, headers=W)
    assert resp.status_code == 403, resp.text
    assert error_of(resp)["code"] == "LOCAL_PROCESS_REFUSED" and "Terraform" in error_of(resp)["message"]


def test_health_check_commands_are_refused(client):
    for node in ("""\
        vm:
          type: strato.nodes.VM
          properties:
            implementations: [{driver: noop}]
            health_check: {command: "cat /etc/hostname"}
        """, """\
        web:
          type: strato.nodes.kubernetes.Deployment
          properties: {image: nginx, health_check: {command: [sh, -c, "id"]}}
        """, """\
        vm:
          type: strato.nodes.VM
          properties:
            implementations: [{driver: noop, properties: {health_check: {command: "id"}}}]
        """):
        resp = client.post("/v1/infrastructures", json={"name": "hc", "descriptor": topology(node)}, headers=W)
        assert resp.status_code == 403 and "health_check command" in error_of(resp)["message"], resp.text


def test_driver_chosen_by_an_input_is_judged_by_its_value(client):
    doc = HEAD + textwrap.dedent("""\
        topology_template:
          inputs:
            backend: {type: string, default: noop}
          node_templates:
            vm:
              type: strato.nodes.VM
              properties:
                implementations: [{driver: {get_input: backend}, properties: {command: [id]}}]
        """)
    resp = client.post("/v1/infrastructures", json={"name": "di", "descriptor": doc,
                                                    "inputs": {"backend": "local"}}, headers=W)
    assert resp.status_code == 403, resp.text


def _minimal_properties(types, type_name: str) -> dict:
    """Values for a type's required properties without defaults, enough for it to validate."""
    fill = {"list": ["x"], "map": {}, "string": "x", "integer": 1, "float": 1.0, "boolean": True, "any": "x"}
    props = {}
    for name, pdef in types.resolved(type_name).properties.items():
        if pdef.required and not pdef.has_default:
            props[name] = fill.get(pdef.type, "x")
    if "implementations" in props:
        props["implementations"] = [{"driver": "noop"}]
    for name, pdef in types.resolved(type_name).properties.items():   # a typed block (e.g. placement): empty
        if name in props and types.has("data", pdef.type) and pdef.type not in fill:
            props[name] = {}
    return props


def _verdict(client, name: str, node_yaml: str) -> int:
    """403 (refused as code on this machine) or 422 LIMIT_INSTANCES (accepted by that rule) from a server that
    accepts no instance at all, so nothing is ever built."""
    resp = client.post("/v1/infrastructures", json={"name": name, "descriptor": topology(node_yaml)}, headers=W)
    err = error_of(resp)
    assert (resp.status_code, err["code"]) in ((403, "LOCAL_PROCESS_REFUSED"), (422, "LIMIT_INSTANCES")), \
        (name, resp.status_code, err)
    return resp.status_code


def test_every_registered_driver_is_refused_exactly_when_it_declares_code_here(make_client):
    from drivers.providers import driver_class, known_drivers
    client = make_client(max_instances=0)
    props_for = {"local": {"command": ["id"]}, "kubernetes": {"kubeconfig": "kube.yaml"}}
    seen = []
    for name in known_drivers():
        cls = driver_class(name)
        props = props_for.get(name, {})
        declared = cls.host_code(props)
        assert isinstance(declared, str), name
        if name in ALWAYS_HOST_CODE:
            assert declared, f"driver '{name}' runs code on this machine but does not declare it"
        node = f"n:\n  type: strato.nodes.VM\n  properties:\n    implementations: [{{driver: {name}, " \
               f"properties: {json.dumps(props)}}}]\n"
        assert _verdict(client, f"d-{name}", node) == (403 if declared else 422), (name, declared)
        seen.append(name)
    assert ALWAYS_HOST_CODE <= set(seen)
    plain_k8s = "n:\n  type: strato.nodes.kubernetes.Deployment\n  properties: {image: x}\n"
    assert _verdict(client, "d-k8s", plain_k8s) == 422
    assert client.get("/v1/operations", headers=R).json()["operations"] == []


def test_every_strato_node_type_is_refused_exactly_when_its_driver_declares_code_here(make_client):
    from descriptors.types import builtin_registry
    from drivers.providers import driver_class
    types = builtin_registry()
    client = make_client(max_instances=0)
    names = sorted(n for n in types.types if n.startswith("strato.nodes."))
    assert len(names) >= 20
    for i, type_name in enumerate(names):
        props = _minimal_properties(types, type_name)
        driver = types.resolved(type_name).metadata.get("strato.driver")
        declared = driver_class(driver).host_code(props) if driver else ""
        node = f"n:\n  type: {type_name}\n  properties: {json.dumps(props)}\n"
        assert _verdict(client, f"t{i}", node) == (403 if declared else 422), (type_name, declared)
        # any node at all: a playbook operation runs Ansible here
        with_play = node + "  interfaces: {Standard: {configure: site.yml}}\n"
        assert _verdict(client, f"p{i}", with_play) == 403, type_name
        if "health_check" in types.resolved(type_name).properties:
            checked_props = {**props, "health_check": {"command": "id"}}
            checked = f"n:\n  type: {type_name}\n  properties: {json.dumps(checked_props)}\n"
            assert _verdict(client, f"h{i}", checked) == 403, type_name
    assert client.get("/v1/operations", headers=R).json()["operations"] == []


PROCESS_DOC = topology("""\
    web:
      type: strato.nodes.Process
      properties: {command: [sleep, "60"]}
      capabilities: {scalable: {properties: {default_instances: 2}}}
    """)


def _processes_of(store, name: str) -> list[int]:
    from drivers.common import process_start_time
    pids = [r.handle["pid"] for r in store.instances(name) if r.handle and r.handle.get("pid")]
    return [p for p in pids if process_start_time(p) is not None]


def test_scale_and_drop_of_a_cli_built_local_infrastructure_are_refused(make_client, strato_home, tmp_path):
    from orchestrator import service
    from orchestrator.executor import RunOptions
    path = tmp_path / "procs.yaml"
    path.write_text(PROCESS_DOC)
    store = service.open_store(str(strato_home / "state.db"))
    report = service.build(str(path), "cli", {}, store, RunOptions(), confined=False)
    try:
        assert report["ok"] and len(_processes_of(store, "cli")) == 2
        client = make_client()
        for body in ({"to": 3}, {"by": 1}, {"drop": "web[0]"}):
            resp = client.post("/v1/infrastructures/cli/nodes/web/scale", json=body, headers=W)
            assert resp.status_code == 403, (body, resp.text)
            assert error_of(resp)["code"] == "LOCAL_PROCESS_REFUSED" and "node 'web'" in error_of(resp)["message"]
        resp = client.put("/v1/infrastructures/cli", json={"descriptor": PROCESS_DOC}, headers=W)
        assert resp.status_code == 403
        assert client.get("/v1/operations", headers=R).json()["operations"] == []
        assert len(_processes_of(store, "cli")) == 2 and store.get_infra("cli").desired.get("web") in (None, 2)
        allowed = make_client(allow_local_processes=True)
        resp = allowed.post("/v1/infrastructures/cli/nodes/web/scale", json={"to": 1}, headers=W)
        assert resp.status_code == 202 and wait_op(allowed, resp.json()["operation"])["state"] == "succeeded"
        assert len(_processes_of(store, "cli")) == 1
    finally:
        service.destroy(store, "cli", RunOptions())


def test_destroy_that_would_run_a_delete_playbook_is_refused(make_client, strato_home, tmp_path):
    from orchestrator import service
    from orchestrator.executor import RunOptions
    (tmp_path / "bye.yml").write_text(LEAKING_PLAY)
    path = tmp_path / "d.yaml"
    path.write_text(topology("""\
        a:
          type: strato.nodes.Noop
          interfaces: {Standard: {delete: bye.yml}}
        """))
    store = service.open_store(str(strato_home / "state.db"))
    assert service.build(str(path), "del", {}, store, RunOptions(), confined=False)["ok"]
    resp = make_client().delete("/v1/infrastructures/del", headers=W)
    assert resp.status_code == 403 and "bye.yml" in error_of(resp)["message"], resp.text
    assert store.get_infra("del") is not None


@pytest.mark.parametrize("node", [
    "t:\n  type: strato.nodes.terraform.Configuration\n  properties: {module: /etc}\n",
    "t:\n  type: strato.nodes.terraform.Configuration\n  properties: {module: ../../..}\n",
    "p:\n  type: strato.nodes.Process\n  properties: {command: [id], cwd: ../../../../etc}\n",
    "c:\n  type: strato.nodes.Container\n  properties: {image: x, volumes: ['/:/host']}\n",
    "c:\n  type: strato.nodes.Container\n  properties: {build: {context: /srv}}\n",
    "h:\n  type: strato.nodes.ssh.Host\n  properties: {hosts: [{address: 127.0.0.1, key_file: ~/.ssh/id_ed25519}]}\n",
    "h:\n  type: strato.nodes.ssh.Host\n  properties: {inventory: /etc/ansible/hosts}\n",
    "f:\n  type: strato.nodes.aws.LambdaFunction\n  properties: {code: /etc}\n",
    "v:\n  type: strato.nodes.VM\n  properties: {implementations: [{driver: ec2}], cloud_init: /etc/shadow}\n",
    "l:\n  type: strato.nodes.libcloud.Node\n  properties: {provider: x, size: s, image: i, "
    "credentials_file: /etc/creds}\n",
    "k:\n  type: strato.nodes.kubernetes.Deployment\n  properties: {image: x, kubeconfig: file:///root/.kube/config}\n",
])
def test_with_the_flag_paths_still_stay_inside_the_bundle(make_client, node):
    client = make_client(allow_local_processes=True)
    resp = client.post("/v1/infrastructures", json={"name": "px", "descriptor": topology(node)}, headers=W)
    assert resp.status_code == 422, resp.text
    assert error_of(resp)["code"] == "PATH_OUTSIDE_BUNDLE"
    assert client.get("/v1/operations", headers=R).json()["operations"] == []


def test_a_path_computed_from_an_input_is_checked_with_its_value(make_client):
    doc = HEAD + textwrap.dedent("""\
        topology_template:
          inputs:
            dir: {type: string, default: mod}
          node_templates:
            t:
              type: strato.nodes.terraform.Configuration
              properties: {module: {get_input: dir}}
        """)
    client = make_client(allow_local_processes=True)
    resp = client.post("/v1/infrastructures", json={"name": "pi", "descriptor": doc, "inputs": {"dir": "/etc"}},
                       headers=W)
    assert resp.status_code == 422 and error_of(resp)["code"] == "PATH_OUTSIDE_BUNDLE", resp.text


# -- 5. no file-existence oracle ------------------------------------------------------------------------------

UP = "../" * 40  # from the bundle's directory up to / however deep $STRATO_HOME lies


NOOP_TOPOLOGY = "topology_template: {node_templates: {a: {type: strato.nodes.Noop}}}\n"
ORACLE_CASES = {
    "file-url-repository": HEAD + "repositories: {r: file:///etc}\nimports: [{file: %s, repository: r}]\n"
    + NOOP_TOPOLOGY,
    "relative-repository": HEAD + "repositories: {r: {url: '" + UP + "etc'}}\nimports: [{file: %s, repository: r}]\n"
    + NOOP_TOPOLOGY,
    "relative-import": HEAD + "imports: ['" + UP + "etc/%s']\n" + NOOP_TOPOLOGY,
    "relative-implementation": topology("a:\n  type: strato.nodes.Noop\n  interfaces: {Standard: {create: '"
                                        + UP + "etc/%s'}}\n"),
    "absolute-implementation": topology("a:\n  type: strato.nodes.Noop\n  interfaces: {Standard: {create: "
                                        "/etc/%s}}\n"),
    "terraform-module": topology("t:\n  type: strato.nodes.terraform.Configuration\n  properties: {module: /etc/%s}\n"),
}


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_existing_and_missing_server_files_answer_alike(client, case):
    answers = []
    for target in ("passwd", "no-such-file-here"):
        resp = client.post("/v1/validate", json={"descriptor": ORACLE_CASES[case] % target}, headers=R)
        assert resp.status_code == 422, resp.text
        assert error_of(resp)["code"] in ("IMPORT_OUTSIDE", "IMPLEMENTATION_OUTSIDE", "PATH_OUTSIDE_BUNDLE"), resp.text
        answers.append(resp.text.replace(target, "TARGET"))
    assert answers[0] == answers[1]


# -- 6. malformed bundles are a 400, never a 500 ---------------------------------------------------------------

DESCRIPTOR = topology("a: {type: strato.nodes.Noop}\n")


def _zip_patched(patch) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.yaml", DESCRIPTOR)
    data = bytearray(buf.getvalue())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    patch(data, local, central)
    return bytes(data)


def _set(data: bytearray, offset: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, data, offset, value)


def _falsified_size(data, local, central):
    _set(data, local + 22, "<I", 5)       # uncompressed size in the local header...
    _set(data, central + 24, "<I", 5)     # ...and in the central directory


def _bad_crc(data, local, central):
    _set(data, local + 14, "<I", 0xDEADBEEF)
    _set(data, central + 16, "<I", 0xDEADBEEF)


def _method_99(data, local, central):
    _set(data, local + 8, "<H", 99)
    _set(data, central + 10, "<H", 99)


def _tar(members: list[tuple[str, bytes | None]], **options) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", **options) as t:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def malformed_bundles() -> dict[str, bytes]:
    yaml = DESCRIPTOR.encode()
    return {
        "zip-falsified-size": _zip_patched(_falsified_size),
        "zip-bad-crc": _zip_patched(_bad_crc),
        "zip-method-99": _zip_patched(_method_99),
        "tar-non-utf8-name": _tar([("app.yaml", yaml), (b"\xff\xfe-x.txt".decode("utf-8", "surrogateescape"), b"x")],
                                  format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"),
        "tar-file-and-directory": _tar([("app.yaml", yaml), ("x", b"file"), ("x/y.txt", b"below")]),
        "tar-directory-then-file": _tar([("app.yaml", yaml), ("x/y.txt", b"below"), ("x", b"file")]),
        "tar-300-character-name": _tar([("app.yaml", yaml), ("n" * 300, b"x")], format=tarfile.PAX_FORMAT),
    }


@pytest.mark.parametrize("kind", sorted(malformed_bundles()))
def test_malformed_bundle_is_a_400(client, kind):
    bundle = base64.b64encode(malformed_bundles()[kind]).decode()
    for resp in (client.post("/v1/validate", json={"bundle": bundle}, headers=R),
                 client.post("/v1/infrastructures", json={"name": "mb", "bundle": bundle}, headers=W)):
        assert resp.status_code == 400, (kind, resp.status_code, resp.text)
        assert error_of(resp)["code"] in ("BUNDLE_UNREADABLE", "BUNDLE_MEMBER_REFUSED")
    incoming = os.path.join(client.app.state.ctx.bundles.root, ".incoming")
    assert os.listdir(incoming) == []   # nothing half-unpacked is left behind


def test_unhandled_errors_are_json_without_internals(client):
    @client.app.get("/v1/boom")
    def boom():
        raise RuntimeError("secret detail at /root/.ssh/id_rsa")
    resp = client.get("/v1/boom", headers=R)
    assert resp.status_code == 500 and error_of(resp)["code"] == "INTERNAL"
    assert "secret" not in resp.text and "Traceback" not in resp.text and "/root" not in resp.text


def test_over_http_malformed_bundles_and_cursors_get_answers(tmp_path):
    """A real server: each malformed request gets its 400 on a connection that stays usable."""
    import httpx
    from tests.orchestrator.api_server import Server
    server = Server(tmp_path).start()
    try:
        with server.client() as http:
            assert http.post("/v1/infrastructures", json={"name": "ev", "descriptor": DESCRIPTOR}).status_code == 202
            for kind, data in malformed_bundles().items():
                resp = http.post("/v1/validate", json={"bundle": base64.b64encode(data).decode()})
                assert resp.status_code == 400 and resp.json()["error"]["status"] == 400, (kind, resp.text)
            for cursor in ("99999999999999999999", "9223372036854775808", "-1", "1e3", "x"):
                resp = http.get("/v1/infrastructures/ev/events?follow=false", headers={"Last-Event-ID": cursor})
                assert resp.status_code == 400 and resp.json()["error"]["code"] == "BAD_LAST_EVENT_ID", cursor
            assert http.get("/healthz").status_code == 200
    except httpx.HTTPError as exc:
        raise AssertionError(f"the server dropped a connection: {exc}\n{server.output()}") from None
    finally:
        server.stop()
    assert "Traceback" not in server.output()


# -- 7. event cursors ------------------------------------------------------------------------------------------

def test_last_event_id_out_of_range_is_a_400(client):
    resp = client.post("/v1/infrastructures", json={"name": "ev", "descriptor": DESCRIPTOR}, headers=W)
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    for cursor in ("99999999999999999999", str(2 ** 63), "-1", "1.5", "abc", "١٢".encode(), "0x10", ""):
        resp = client.get("/v1/infrastructures/ev/events?follow=false", headers={**R, "Last-Event-ID": cursor})
        assert resp.status_code == 400, (cursor, resp.status_code, resp.text)
        assert error_of(resp)["code"] == "BAD_LAST_EVENT_ID"
    for cursor in ("0", str(2 ** 63 - 1)):
        resp = client.get("/v1/infrastructures/ev/events?follow=false", headers={**R, "Last-Event-ID": cursor})
        assert resp.status_code == 200, cursor


# -- 8. no server paths in responses -----------------------------------------------------------------------------

def _server_paths(strato_home) -> set[str]:
    return {str(strato_home), os.path.realpath(str(strato_home))}


def test_instances_operations_and_events_show_paths_relative_to_strato_home(make_client, strato_home):
    client = make_client(allow_local_processes=True)
    doc = topology("job:\n  type: strato.nodes.Job\n  properties: {command: [\"true\"]}\n")
    resp = client.post("/v1/infrastructures", json={"name": "paths", "descriptor": doc}, headers=W)
    op = resp.json()["operation"]
    assert wait_op(client, op)["state"] == "succeeded"
    info = client.get("/v1/infrastructures/paths", headers=R)
    handle = info.json()["instances"][0]["handle"]
    assert handle["log"] == "$STRATO_HOME/infrastructures/paths/logs/job.0.log"
    assert handle["attributes_file"].startswith("$STRATO_HOME/infrastructures/paths/instances/")
    for resp in (info, client.get(f"/v1/operations/{op}", headers=R), client.get("/v1/operations", headers=R),
                 client.get("/v1/infrastructures/paths/events?follow=false", headers=R),
                 client.get("/v1/infrastructures/paths/graph", headers=R)):
        for path in _server_paths(strato_home):
            assert path not in resp.text, (resp.request.url, path)
    client.delete("/v1/infrastructures/paths", headers=W)


def test_damaged_state_error_names_no_server_path(client, strato_home):
    resp = client.post("/v1/infrastructures", json={"name": "dmg", "descriptor": DESCRIPTOR}, headers=W)
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    store = client.app.state.ctx.store
    store._exec("UPDATE instances SET handle='{not json' WHERE infra='dmg'")
    resp = client.get("/v1/infrastructures/dmg", headers=R)
    assert 400 <= resp.status_code < 500, resp.text
    message = error_of(resp)["message"]
    assert "$STRATO_HOME/state.db" in message
    for path in _server_paths(strato_home):
        assert path not in resp.text
