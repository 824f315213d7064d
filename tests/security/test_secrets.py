"""Secret inputs: traced through functions and masked wherever a derived value is shown (CLI, API, status, events,
the dashboard's data), stored sealed at rest, and still given in plain to builds, scales and rebuilds."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import stat
import textwrap
import time
import uuid

import pytest

from descriptors.diagnostics import DescriptorError
from descriptors.functions import template_resolver
from descriptors.loader import load_template_text, resolve_inputs
from descriptors.secrets import MASK, Unreadable, is_secret_input, redactor_for

SECRET = "hunter2-" + uuid.uuid4().hex[:12]  # unique: never in a file by chance

NOOP_DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        db_password: {type: string}
        db_user: {type: string, default: app}
      node_templates:
        db:
          type: strato.nodes.Noop
      outputs:
        dsn:
          value: {concat: ["postgres://", {get_input: db_user}, ":", {get_input: db_password}, "@127.0.0.1/app"]}
        connection: {value: {get_input: db_password}}
        user: {value: {get_input: db_user}}
    """)


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


def write(tmp_path, text: str, name: str = "d.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def state_bytes(home) -> bytes:
    """The state database as it lies on disk, write-ahead log included (read by another process: an open() and
    close() here would drop this process's SQLite locks on the file, see orchestrator.state.open_in_this_process)."""
    data = b""
    for suffix in ("", "-wal"):
        path = os.path.join(str(home), "state.db" + suffix)
        if os.path.exists(path):
            data += subprocess.run(["cat", path], capture_output=True, check=True).stdout
    return data


# -- tracing through functions (the descriptors layer) -------------------------------------------------------

TRACE_DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        db_password: {type: string}
        api_key: {type: string, secret: false}
        max_tokens: {type: integer, default: 512}
        pin: {type: string, secret: true}
        region: {type: string, default: eu}
      node_templates:
        app:
          type: strato.nodes.Process
          properties:
            command: [sh, -c, "sleep 1"]
            env: {PW: {get_input: db_password}, REGION: {get_input: region}}
    """)


GIVEN = {"db_password": SECRET, "api_key": "k-123456", "pin": "0000"}


def trace(value, attributes=None):
    """(template, inputs, (value resolved, secret inputs it was computed from))."""
    template = load_template_text(TRACE_DOC)
    inputs = resolve_inputs(template, GIVEN)

    def attribute(node, name):
        return (attributes or {})[name]
    return template, inputs, template_resolver(template, inputs, attribute).resolve_traced(value, "app")


def test_secret_inputs_are_those_marked_or_named_like_credentials():
    template = load_template_text(TRACE_DOC)
    secret = {name for name, idef in template.inputs.items() if is_secret_input(idef)}
    # named like a credential (string) or marked; `secret: false` and a number named *token* are not
    assert secret == {"db_password", "pin"}


def test_secret_flag_must_be_a_boolean():
    with pytest.raises(DescriptorError) as err:
        load_template_text(TRACE_DOC.replace("secret: true", "secret: maybe"))
    assert err.value.diagnostics[0].code == "SECRET_NOT_BOOLEAN"


@pytest.mark.parametrize("value", [
    {"get_input": "db_password"},
    {"concat": ["postgres://u:", {"get_input": "db_password"}, "@db"]},
    {"join": [["u", {"get_input": "db_password"}], ":"]},
    {"token": [{"concat": ["u:", {"get_input": "db_password"}]}, ":", 0]},   # even the part before the secret
    {"get_property": ["app", "env", "PW"]},                                   # a property set from a secret input
    {"get_property": ["SELF", "env"]},
    {"concat": [{"get_input": "pin"}]},
])
def test_functions_carry_the_secret_taint(value):
    _, _, (resolved, used) = trace(value)
    assert used, resolved


@pytest.mark.parametrize("value", [
    {"get_input": "region"}, {"get_property": ["app", "env", "REGION"]}, {"get_input": "api_key"},
    {"concat": ["x", {"get_input": "max_tokens"}]},
])
def test_plain_inputs_carry_no_taint(value):
    _, _, (_, used) = trace(value)
    assert not used


def test_an_attribute_that_copied_a_secret_is_found_by_its_text():
    template, inputs, (value, used) = trace({"get_attribute": ["app", "dsn"]}, {"dsn": f"postgres://u:{SECRET}@db"})
    assert not used and redactor_for(template, inputs).found_in(value)


def test_a_bad_secret_input_is_refused_without_echoing_it():
    template = load_template_text(TRACE_DOC.replace("db_password: {type: string}",
                                                    "db_password: {type: string, constraints: [min_length: 99]}"))
    with pytest.raises(DescriptorError) as err:
        resolve_inputs(template, GIVEN)
    assert SECRET not in str(err.value) and "db_password" in str(err.value)


# -- the CLI: outputs, status -------------------------------------------------------------------------------

@pytest.fixture
def built(strato, tmp_path):
    name = unique("sec")
    path = write(tmp_path, NOOP_DOC)
    strato("build", path, "--name", name, "-i", f"db_password={SECRET}", check=True)
    yield name, path
    strato("destroy", name, "--yes")


def test_cli_outputs_mask_what_derives_from_a_secret(strato, built):
    name, _ = built
    result = strato("outputs", name, "--json", check=True)
    values = json.loads(result.stdout)
    assert values["dsn"] == MASK and values["connection"] == MASK and values["user"] == "app"
    assert SECRET not in result.stdout
    assert SECRET not in strato("outputs", name, check=True).stdout


def test_cli_outputs_get_of_a_secret_needs_show_secrets(strato, built):
    name, _ = built
    refused = strato("outputs", name, "--get", "dsn", "--json")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "SECRET_OUTPUT" and "--show-secrets" in error["message"] and SECRET not in refused.stdout
    shown = strato("outputs", name, "--get", "dsn", "--show-secrets", check=True)
    assert shown.stdout.strip() == f"postgres://app:{SECRET}@127.0.0.1/app"


def test_output_marked_secret_false_is_shown(strato, tmp_path):
    name = unique("shown")
    doc = NOOP_DOC.replace("connection: {value: {get_input: db_password}}",
                           "connection: {value: {get_input: db_password}, secret: false}")
    strato("build", write(tmp_path, doc), "--name", name, "-i", f"db_password={SECRET}", check=True)
    try:
        values = json.loads(strato("outputs", name, "--json", check=True).stdout)
        assert values["connection"] == SECRET and values["dsn"] == MASK
    finally:
        strato("destroy", name, "--yes")


def test_status_shows_no_secret(strato, built):
    name, _ = built
    result = strato("status", name, "--json", check=True)
    assert SECRET not in result.stdout
    assert json.loads(result.stdout)["infrastructures"][0]["outputs"]["dsn"] == MASK


# -- the REST API (and so the dashboard, which reads it) ---------------------------------------------------

@pytest.fixture
def client(strato_home, monkeypatch):
    pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
    from fastapi.testclient import TestClient

    from orchestrator.api import ApiSettings, create_app
    monkeypatch.setenv("STRATO_API_TOKEN", "w-" + "x" * 30)
    client = TestClient(create_app(str(strato_home / "state.db"), ApiSettings()))
    client.headers["Authorization"] = "Bearer w-" + "x" * 30
    yield client
    client.app.state.ctx.ops.wait_idle(30)


def wait_op(client, op_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}").json()
        if op["state"] != "running":
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} still running")


def test_api_masks_outputs_infrastructure_operation_and_events(client):
    resp = client.post("/v1/infrastructures", json={"name": "api-sec", "descriptor": NOOP_DOC,
                                                    "inputs": {"db_password": SECRET}})
    assert resp.status_code == 202, resp.text
    op_id = resp.json()["operation"]
    assert wait_op(client, op_id)["state"] == "succeeded"
    outputs = client.get("/v1/infrastructures/api-sec/outputs").json()
    assert outputs == {"dsn": MASK, "connection": MASK, "user": "app"}
    for url in ("/v1/infrastructures/api-sec", "/v1/infrastructures/api-sec/outputs", f"/v1/operations/{op_id}",
                "/v1/operations", "/v1/infrastructures/api-sec/events?follow=false"):
        assert SECRET not in client.get(url).text, url
    assert "secret (hidden)" in client.get("/static/app.js").text   # the dashboard says what the mask means
    assert wait_op(client, client.delete("/v1/infrastructures/api-sec").json()["operation"])["state"] == "succeeded"


# -- events and errors: a backend's message quoting a secret ---------------------------------------------

FAILING_JOB = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        db_password: {type: string}
      node_templates:
        migrate:
          type: strato.nodes.Job
          properties:
            command: [sh, -c, 'echo "cannot log in with $PW"; exit 3']
            env: {PW: {get_input: db_password}}
    """)


def test_an_error_quoting_the_secret_is_masked_in_events_status_and_state(strato, strato_home, tmp_path):
    name = unique("job")
    result = strato("build", write(tmp_path, FAILING_JOB), "--name", name, "-i", f"db_password={SECRET}",
                    "--json")
    assert result.returncode == 1 and "exited with code 3" in result.stdout and SECRET not in result.stdout
    assert "cannot log in with ***" in result.stdout
    from orchestrator.state import StateStore
    store = StateStore(str(strato_home / "state.db"))
    try:
        events = json.dumps(store.events(name, 1000))
        assert "cannot log in with ***" in events and SECRET not in events
    finally:
        store.close()
    status = strato("status", name, "--json")
    assert SECRET not in status.stdout and "cannot log in" in status.stdout
    assert SECRET.encode() not in state_bytes(strato_home)
    strato("destroy", name, "--yes")


# -- at rest ---------------------------------------------------------------------------------------------

def test_state_file_holds_no_plaintext_secret(strato, strato_home, client, tmp_path):
    name = unique("rest")
    strato("build", write(tmp_path, NOOP_DOC), "--name", name, "-i", f"db_password={SECRET}", check=True)
    resp = client.post("/v1/infrastructures", json={"name": "rest-api", "descriptor": NOOP_DOC,
                                                    "inputs": {"db_password": SECRET}})
    assert wait_op(client, resp.json()["operation"])["state"] == "succeeded"
    on_disk = state_bytes(strato_home)
    assert on_disk and SECRET.encode() not in on_disk
    store = client.app.state.ctx.store
    assert store.get_infra(name).inputs["db_password"] == SECRET      # sealed, not lost
    assert store.get_infra(name).secret_inputs == {"db_password"}
    strato("destroy", name, "--yes")


def test_key_file_is_private_even_under_a_lax_umask(strato_home):
    from orchestrator import sealing
    old = os.umask(0o022)
    try:
        sealed = sealing.seal_inputs({"db_password": SECRET, "user": "app"}, {"db_password"}, str(strato_home))
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(sealing.key_path(str(strato_home))).st_mode)
    assert mode == 0o600, oct(mode)
    assert sealed["user"] == "app" and SECRET not in json.dumps(sealed)
    assert sealing.open_inputs(sealed, str(strato_home)) == ({"db_password": SECRET, "user": "app"},
                                                            frozenset({"db_password"}))
    assert not [f for f in os.listdir(strato_home) if f.endswith(".tmp")]


def test_another_key_opens_nothing(tmp_path):
    from orchestrator import sealing
    sealed = sealing.seal_inputs({"db_password": SECRET}, {"db_password"}, str(tmp_path))
    os.unlink(sealing.key_path(str(tmp_path)))
    sealing.seal_inputs({"x": "other"}, {"x"}, str(tmp_path))     # a new key in its place
    opened, names = sealing.open_inputs(sealed, str(tmp_path))
    assert isinstance(opened["db_password"], Unreadable) and names == {"db_password"}
    assert "not the one" in opened["db_password"].reason and str(tmp_path) not in opened["db_password"].reason


def _seal_in_child(home: str, queue) -> None:
    from orchestrator import sealing
    queue.put(sealing.seal_inputs({"p": SECRET}, {"p"}, home)["p"])


def test_processes_creating_the_key_at_once_agree_on_one(tmp_path):
    """The key is linked into place atomically: racing processes never overwrite each other's key."""
    from orchestrator import sealing
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_seal_in_child, args=(str(tmp_path), queue)) for _ in range(6)]
    for child in children:
        child.start()
    tokens = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
    for token in tokens:
        assert sealing.open_inputs({"p": token}, str(tmp_path))[0] == {"p": SECRET}


def test_a_lost_key_is_a_clear_error_until_the_input_is_given_again(strato, strato_home, tmp_path):
    name = unique("lost")
    path = write(tmp_path, NOOP_DOC)
    strato("build", path, "--name", name, "-i", f"db_password={SECRET}", check=True)
    os.unlink(strato_home / "secret.key")
    refused = strato("build", path, "--name", name, "--json")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "INPUT_SECRET_UNREADABLE" and "--input db_password=" in error["message"]
    assert strato("status", name, "--json").returncode == 0
    strato("build", path, "--name", name, "-i", f"db_password={SECRET}", check=True)
    assert strato("outputs", name, "--get", "dsn", "--show-secrets", check=True).stdout.strip().endswith(
        f":{SECRET}@127.0.0.1/app")
    strato("destroy", name, "--yes")


def test_unreadable_value_never_passes_as_the_input():
    template = load_template_text(NOOP_DOC)
    with pytest.raises(DescriptorError) as err:
        resolve_inputs(template, {"db_password": Unreadable("its key file is missing")})
    assert err.value.diagnostics[0].code == "INPUT_SECRET_UNREADABLE"


# -- builds, scales and rebuilds after a restart get the real value -------------------------------------

PROCESS_DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        db_password: {type: string}
      node_templates:
        app:
          type: strato.nodes.Process
          properties:
            command: [sh, -c, 'printf %s "$PW" > "$STRATO_WORK_DIR/seen"; exec sleep 120']
            env: {PW: {get_input: db_password}}
            stop_grace_period: 1
      outputs:
        dsn: {value: {concat: ["postgres://u:", {get_input: db_password}, "@", {get_attribute: [app, host]}]}}
    """)


def seen(home, name: str, index: int) -> str:
    path = os.path.join(str(home), "infrastructures", name, "instances", f"app.{index}", "seen")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path):
            with open(path) as fh:
                return fh.read()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_scale_and_rebuild_after_restart_use_the_real_secret(strato, strato_home, tmp_path):
    name = unique("proc")
    path = write(tmp_path, PROCESS_DOC)
    strato("build", path, "--name", name, "-i", f"db_password={SECRET}", check=True)
    try:
        first = json.loads(strato("status", name, "--json", check=True).stdout)["infrastructures"][0]
        pid = first["instances"][0]["handle"]["pid"]
        assert seen(strato_home, name, 0) == SECRET and first["outputs"]["dsn"] == MASK
        # each command is a new process: the stored (sealed) input is all they have
        strato("scale", name, "app", "--to", "2", check=True)
        strato("maintain", name, "--once", check=True)
        assert seen(strato_home, name, 1) == SECRET
        rebuilt = json.loads(strato("build", path, "--name", name, "--json", check=True).stdout)
        assert rebuilt["plan"]["replace"] == 0 and rebuilt["plan"]["create"] == 0   # same value, same spec
        after = json.loads(strato("status", name, "--json", check=True).stdout)["infrastructures"][0]
        assert [i["handle"]["pid"] for i in after["instances"] if i["index"] == 0] == [pid]
        assert SECRET.encode() not in state_bytes(strato_home)
    finally:
        strato("destroy", name, "--yes")
