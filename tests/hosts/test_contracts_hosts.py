"""The shared driver contract (tests/drivers/contract.py) run by the `ssh` driver on loopback sshd servers and by
the `terraform` driver with the real terraform binary."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from dataclasses import replace

import pytest

from drivers.base import InstanceSpec
from drivers.ssh import SshDriver
from drivers.terraform import TerraformDriver
from tests.drivers.contract import DriverContract
from tests.hosts.conftest import write_playbook


def make_spec(tmp_path, node: str, type_: str, **props) -> InstanceSpec:
    infra = f"c{uuid.uuid4().hex[:8]}"
    infra_dir = tmp_path / "home" / "infrastructures" / infra
    infra_dir.mkdir(parents=True, exist_ok=True)
    return InstanceSpec(key=f"{infra}/{node}/0@{uuid.uuid4().hex[:6]}", infra=infra, node=node, index=0,
                        type=type_, properties=props, descriptor_dir=str(tmp_path), infra_dir=str(infra_dir),
                        timeout=60)


class TestSshContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return SshDriver()

    @pytest.fixture
    def spec(self, tmp_path, ssh_servers):
        server, = ssh_servers(1)
        self.db = str(tmp_path / "home" / "state.db")
        return make_spec(tmp_path, "box", "strato.nodes.ssh.Host", hosts=[server.host_entry(gpu=1)],
                         require={"gpu": 1})

    def exists(self, handle) -> bool:
        # The "resource" of a pool instance is its claim on the host, in the state database.
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT 1 FROM host_claims WHERE key=? AND host=?",
                              (handle["key"], handle["host_id"])).fetchone() is not None

    def failing_spec(self, spec):
        write_playbook(spec.descriptor_dir, "fails.yaml", "    - ansible.builtin.command: /bin/false\n")
        return replace(spec, metadata={"strato.operations": {"create": {"implementation": "fails.yaml"}}})


pytestmark_tf = pytest.mark.skipif(shutil.which("terraform") is None,
                                   reason="terraform is not installed (https://developer.hashicorp.com/terraform/install)")
TF = {"variable": {"v": {"type": "string"}}, "resource": {"terraform_data": {"x": {"input": "${var.v}"}}},
      "output": {"v": {"value": "${terraform_data.x.output}"}}}


@pytestmark_tf
class TestTerraformContract(DriverContract):
    @pytest.fixture
    def driver(self):
        pytest.importorskip("python_terraform")
        return TerraformDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        return make_spec(tmp_path, "cfg", "strato.nodes.terraform.Configuration", configuration=TF,
                         variables={"v": "one"})

    def exists(self, handle) -> bool:
        try:
            with open(os.path.join(handle["work_dir"], "terraform.tfstate")) as fh:
                return bool(json.load(fh).get("resources"))
        except OSError:
            return False

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "variables": {"v": "two"}})

    def check_updated(self, handle, spec):
        with open(os.path.join(handle["work_dir"], "terraform.tfstate")) as fh:
            assert json.load(fh)["outputs"]["v"]["value"] == "two"

    def failing_spec(self, spec):
        config = {"resource": {"terraform_data": {"x": {
            "provisioner": {"local-exec": {"command": "echo failing on purpose >&2; exit 3"}}}}}}
        return replace(spec, properties={**spec.properties, "configuration": config, "variables": {}})
