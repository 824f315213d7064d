"""The shared cloud-init renderer: templates over variables and dependencies' addresses (Occopus getip/getprivip),
YAML validation and each provider's user-data size limit."""

from __future__ import annotations

import pytest
import yaml

from drivers.base import DriverError
from drivers.common import DEPENDENCIES_META, USER_DATA_LIMITS, render_user_data

DEPS = {"db": [{"private_address": "10.0.0.5", "public_address": "203.0.113.7"}]}


def test_occopus_template_with_getip_getprivip_and_variables():
    text = ("#cloud-config\nwrite_files:\n  - path: /etc/app.conf\n"
            "    content: \"db={{ getprivip('db') }} public={{getip('db')}} greeting={{variables.greeting}}\"\n"
            "runcmd:\n  - echo {{ port }}\n")
    out = render_user_data({"cloud_init": text, "cloud_init_variables": {"greeting": "hi", "port": 8080}},
                           dependencies=DEPS, provider="ec2", node="app")
    doc = yaml.safe_load(out)
    assert doc["write_files"][0]["content"] == "db=10.0.0.5 public=203.0.113.7 greeting=hi"
    assert doc["runcmd"] == ["echo 8080"]


def test_mapping_file_and_verbatim_forms(tmp_path):
    assert render_user_data({"cloud_init": {"packages": ["nginx"]}}).startswith("#cloud-config\npackages:")
    (tmp_path / "init.yaml").write_text("#cloud-config\nruncmd: ['echo {{ variables.x }}']\n")
    out = render_user_data({"cloud_init": "init.yaml", "cloud_init_variables": {"x": 3}}, descriptor_dir=str(tmp_path))
    assert yaml.safe_load(out)["runcmd"] == ["echo 3"]
    assert render_user_data({"user_data": "#!/bin/sh\necho {{ not a template }}\n"}).startswith("#!/bin/sh")
    assert render_user_data({}) is None


@pytest.mark.parametrize("props, message", [
    ({"cloud_init": "#cloud-config\nruncmd: [echo {{ getip('web') }}]\n"}, "'web' is not a dependency"),
    ({"cloud_init": "#cloud-config\nruncmd: [echo {{ variables.missing }}]\n"}, "cloud_init_variables"),
    ({"cloud_init": "#cloud-config\nruncmd: [echo {{ unclosed }\n"}, "template line"),
    ({"cloud_init": "#cloud-config\nruncmd: [a, b\nwrite_files: x\n"}, "not valid YAML"),
    ({"cloud_init": "#cloud-config\n- just a list\n"}, "must be a YAML mapping"),
])
def test_mistakes_are_one_clear_error(props, message):
    with pytest.raises(DriverError, match=message):
        render_user_data(props, dependencies=DEPS, node="app")


def test_provider_size_limits():
    big = "#cloud-config\nwrite_files:\n  - path: /x\n    content: " + "a" * 20000 + "\n"
    with pytest.raises(DriverError, match="over ec2's limit of 16384 bytes"):
        render_user_data({"cloud_init": big}, provider="ec2", node="app")
    assert render_user_data({"cloud_init": big}, provider="openstack")  # 20 KB fits Nova's 64 KB (base64)
    bigger = big.replace("a" * 20000, "a" * 50000)
    with pytest.raises(DriverError, match="in base64, over openstack's limit"):
        render_user_data({"cloud_init": bigger}, provider="openstack")
    assert set(USER_DATA_LIMITS) >= {"ec2", "openstack", "azure_arm", "gce"}
    assert DEPENDENCIES_META == "strato.dependencies"
