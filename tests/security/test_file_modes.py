"""Issue 17, file modes: after an end-to-end run everything under $STRATO_HOME is private (dirs 0700, files 0600)."""

from __future__ import annotations

import os
import shutil
import stat
import uuid

import pytest

from tests.conftest import run_strato
from tests.orchestrator.api_server import Server, wait_operation

pytest.importorskip("ansible_runner", reason="the playbook step needs ansible-runner (pip install 'strato[hosts]')")

PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.set_stats: {data: {configured: 'yes'}}
"""

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    trainer:
      type: strato.nodes.Job
      properties:
        command: ["{python}", "-c", "import json, os; m = os.path.join(os.environ['STRATO_WORK_DIR'], 'model.bin');
                  open(m, 'w').write('m'); json.dump({'model_path': m}, open(os.environ['STRATO_ATTRIBUTES_FILE'], 'w'))"]
    app:
      type: strato.nodes.Process
      properties: {command: ["{python}", "-c", "import time; time.sleep(600)"]}
      interfaces:
        Standard:
          configure: {implementation: configure.yaml}
%s
"""

TERRAFORM = """    cfg:
      type: strato.nodes.terraform.Configuration
      properties:
        configuration: |
          resource "terraform_data" "marker" { input = "x" }
          output "said" { value = terraform_data.marker.output }
"""

API_DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    w:
      type: strato.nodes.Process
      properties: {command: ['sleep', '600']}
"""


def loose_modes(home) -> list[str]:
    """Every path under home that group or others may read, write or enter."""
    loose = []
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or stat.S_ISSOCK(mode) or name.startswith("serve-"):
                continue  # serve-PORT.log is the test harness's own capture of the server's output
            if mode & 0o077:
                loose.append(f"{os.path.relpath(path, home)} {stat.filemode(mode)}")
    return loose


def test_an_end_to_end_run_leaves_a_private_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (tmp_path / "configure.yaml").write_text(PLAYBOOK)
    terraform = TERRAFORM if shutil.which("terraform") else ""
    (tmp_path / "svc.yaml").write_text(DESCRIPTOR % terraform)
    name = f"modes-{uuid.uuid4().hex[:6]}"
    old = os.umask(0o022)   # a user's usual umask: Strato must not depend on it
    try:
        built = run_strato("build", str(tmp_path / "svc.yaml"), "--name", name, home=home, timeout=300)
        assert built.returncode == 0, built.stdout + built.stderr
        server = Server(home, "--allow-local-processes").start()
        try:
            with server.client() as client:
                body = {"name": name + "-api", "descriptor": API_DESCRIPTOR}
                made = client.post("/v1/infrastructures", json=body)
                assert made.status_code == 202, made.text
                assert wait_operation(client, made.json()["operation"])["state"] == "succeeded"
                gone = client.delete(f"/v1/infrastructures/{name}-api")
                assert wait_operation(client, gone.json()["operation"])["state"] == "succeeded"
        finally:
            server.stop()
        assert loose_modes(home) == []
    finally:
        run_strato("destroy", name, "--yes", home=home, timeout=300)
        os.umask(old)
    assert loose_modes(home) == []
