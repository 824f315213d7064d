"""The `terraform` passthrough driver with the real terraform binary: terraform_data + local-exec, no providers."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.terraform import TerraformDriver

pytest.importorskip("python_terraform", reason="the terraform driver needs python-terraform (pip install 'strato[terraform]')")
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None,
                                     reason="terraform is not installed (https://developer.hashicorp.com/terraform/install)")

HCL = """
variable "greeting" { type = string }
variable "out" { type = string }
resource "terraform_data" "marker" {
  input = var.greeting
  provisioner "local-exec" { command = "echo ${var.greeting} > ${var.out}" }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.output}.destroyed-marker"
  }
}
output "said" { value = terraform_data.marker.output }
output "id" { value = terraform_data.marker.id }
"""


def make_spec(tmp_path, **props) -> InstanceSpec:
    infra = f"tf-{uuid.uuid4().hex[:6]}"
    infra_dir = tmp_path / "home" / "infrastructures" / infra
    infra_dir.mkdir(parents=True)
    return InstanceSpec(key=f"{infra}/cfg/0@{uuid.uuid4().hex[:8]}", infra=infra, node="cfg", index=0,
                        type="strato.nodes.terraform.Configuration", properties=props, descriptor_dir=str(tmp_path),
                        infra_dir=str(infra_dir), timeout=120)


@needs_terraform
def test_inline_hcl_outputs_find_and_destroy(tmp_path):
    out = tmp_path / "said.txt"
    spec = make_spec(tmp_path, configuration=HCL, variables={"greeting": "hello", "out": str(out)})
    driver = TerraformDriver()
    assert driver.find(spec.key, spec) is None
    handle = driver.create(spec)
    assert out.read_text().strip() == "hello"  # the local-exec ran
    observed = driver.observe(handle)
    assert observed.status == "running" and observed.attributes["said"] == "hello" and observed.attributes["id"]
    found = driver.find(spec.key, spec)  # as after a crash: that directory's state
    assert found is not None and driver.observe(found).attributes["said"] == "hello"
    # a changed variable converges in place, in the same directory
    spec.properties["variables"]["greeting"] = "bonjour"
    updated = driver.update(handle, spec)
    assert updated is not None and driver.observe(updated).attributes["said"] == "bonjour"
    driver.delete(found)
    assert not os.path.exists(handle["work_dir"]) and not driver.observe(handle).alive
    driver.delete(handle)  # twice is harmless


@needs_terraform
def test_json_configuration_and_module(tmp_path):
    config = {"resource": {"terraform_data": {"x": {"input": "${var.n}"}}},
              "variable": {"n": {"type": "number"}}, "output": {"double": {"value": "${terraform_data.x.output * 2}"}}}
    driver = TerraformDriver()
    handle = driver.create(make_spec(tmp_path, configuration=config, variables={"n": 21}))
    try:
        assert driver.observe(handle).attributes["double"] == 42
    finally:
        driver.delete(handle)
    module = tmp_path / "mod"
    module.mkdir()
    (module / "main.tf.json").write_text(json.dumps(config))
    handle = driver.create(make_spec(tmp_path, module="mod", variables={"n": 5}))
    try:
        assert driver.observe(handle).attributes["double"] == 10
    finally:
        driver.delete(handle)


@needs_terraform
def test_a_terraform_error_is_one_clear_line_and_leaves_nothing(tmp_path):
    spec = make_spec(tmp_path, configuration='resource "terraform_data" "x" { input = var.missing }')
    with pytest.raises(DriverError, match=r"terraform .*failed.*Error: Reference to undeclared input variable"):
        TerraformDriver().create(spec)
    assert not os.path.exists(os.path.join(spec.infra_dir, "terraform", "cfg.0"))


def test_missing_binary_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATO_TERRAFORM", "terraform-not-installed-here")
    with pytest.raises(DriverError, match="terraform binary was not found.*install"):
        TerraformDriver().create(make_spec(tmp_path, configuration=HCL))
