"""Issue 17, items 1 and 2 with real processes: `strato serve --maintain` beside CLI commands loses no write, and
its API operations and its loop never act on one infrastructure at once (no process started twice)."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from tests.conftest import run_strato
from tests.orchestrator.api_server import Server, wait_operation
from tests.processes import processes_of

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts processes and files in /proc")

NOOP = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    n:
      type: strato.nodes.Noop
"""

PROCESSES = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    replicas: {type: integer, default: 1}
  node_templates:
    web:
      type: strato.nodes.Process
      properties: {command: ["sleep", "600"]}
      capabilities:
        scalable: {properties: {default_instances: {get_input: replicas}, max_instances: 20}}
"""


def deleted_state_files(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "state.db" in target and target.endswith("(deleted)"):
            out.append(target)
    return out


def processes_by_key(infra: str) -> dict[str, int]:
    """How many live processes carry each instance key of this infrastructure."""
    return {key: len(pids) for key, pids in processes_of(infra).items()}


def cli_names(home) -> set[str]:
    proc = run_strato("status", "--json", home=home, check=True)
    data = json.loads(proc.stdout)
    return {i["name"] for i in data["infrastructures"]}


def test_serve_maintain_plus_cli_commands_lose_no_write(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    tag = uuid.uuid4().hex[:6]
    server = Server(home, "--maintain", "--maintain-interval", "1s").start()
    created, deleted = [], []
    try:
        with server.client() as client:
            for i in range(6):
                name = f"w{tag}-{i}"
                made = client.post("/v1/infrastructures", json={"name": name, "descriptor": NOOP})
                assert made.status_code == 202, made.text
                assert wait_operation(client, made.json()["operation"])["state"] == "succeeded"
                created.append(name)
                assert set(created) - set(deleted) <= cli_names(home)   # a CLI command between API writes
                if i % 2 == 1:
                    gone = client.delete(f"/v1/infrastructures/{created[i - 1]}")
                    assert wait_operation(client, gone.json()["operation"])["state"] == "succeeded"
                    deleted.append(created[i - 1])
                scaled = run_strato("scale", name, "n", "--to", "2", "--wait", "20", home=home)
                assert scaled.returncode == 0, scaled.stdout + scaled.stderr
                assert deleted_state_files(server.proc.pid) == []
            api_names = {i["name"] for i in client.get("/v1/infrastructures").json()["infrastructures"]}
    finally:
        server.stop()
    assert api_names == set(created) - set(deleted)
    assert cli_names(home) == set(created) - set(deleted)   # nothing written by the server was lost
    for name in set(created) - set(deleted):
        status = json.loads(run_strato("status", name, "--json", home=home, check=True).stdout)
        assert len(status["infrastructures"][0]["instances"]) == 2, status


def test_api_puts_and_the_loop_never_start_an_instance_twice(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    name = f"dup{uuid.uuid4().hex[:6]}"
    server = Server(home, "--allow-local-processes", "--maintain", "--maintain-interval", "1s").start()
    try:
        with server.client() as client:
            for replicas in (1, 12, 1, 12, 3):
                body = {"descriptor": PROCESSES, "inputs": {"replicas": replicas}, "parallelism": 1}
                put = client.put(f"/v1/infrastructures/{name}", json=body)
                assert put.status_code == 202, put.text
                op = wait_operation(client, put.json()["operation"], timeout=120)
                assert op["state"] == "succeeded", op
                counts = processes_by_key(name)
                assert all(n == 1 for n in counts.values()), counts
            time.sleep(2.5)   # loop passes after the last change
            keys = {r["key"] for r in client.get(f"/v1/infrastructures/{name}").json()["instances"]}
            counts = processes_by_key(name)
            assert all(n == 1 for n in counts.values()), counts
            assert set(counts) == keys and len(keys) == 3, (counts, keys)
            gone = client.delete(f"/v1/infrastructures/{name}")
            assert wait_operation(client, gone.json()["operation"], timeout=120)["state"] == "succeeded"
    finally:
        server.stop()
        run_strato("destroy", name, "--yes", home=home)
    assert processes_by_key(name) == {}
