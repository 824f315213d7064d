"""Occopus import: infrastructure + node definitions -> a valid Strato descriptor with warnings for what is dropped."""

import json
import os
import shutil

import pytest
import yaml
from click.testing import CliRunner

from descriptors import DescriptorError, load_template
from descriptors.occopus import import_occopus
from orchestrator.cli import main

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "occopus", "hello-cloud")


@pytest.fixture()
def infra(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "hello")
    return tmp_path / "hello"


def test_import_keeps_implementations_scaling_dependencies(infra):
    doc, warnings = import_occopus(str(infra / "infra-hello.yaml"))
    nodes = doc["topology_template"]["node_templates"]
    app = nodes["app"]
    assert app["type"] == "strato.nodes.VM"
    assert [i["driver"] for i in app["properties"]["implementations"]] == ["ec2", "openstack"]
    assert app["properties"]["implementations"][0]["region"] == "eu-west-1"
    assert app["properties"]["cloud_init"].startswith("#cloud-config")
    assert app["properties"]["cloud_init_variables"] == {"greeting": "Hello from Strato", "port": 8080}
    assert app["properties"]["health_check"] == {"ping": False, "ports": [8080], "urls": ["http://{{ip}}:8080/health"],
                                                 "timeout": 600}
    assert app["capabilities"]["scalable"]["properties"] == {"min_instances": 2, "max_instances": 5,
                                                             "default_instances": 2}
    assert app["requirements"] == [{"dependency": "db"}]
    assert nodes["db"]["type"] == "strato.nodes.Container" and nodes["db"]["properties"]["image"] == "redis:7"
    codes = [w.code for w in warnings]
    assert sorted(set(codes)) == ["OCCOPUS_CREDENTIALS", "OCCOPUS_UNSUPPORTED"]
    assert "chef" in [w for w in warnings if w.code == "OCCOPUS_UNSUPPORTED"][0].message
    # Occopus resource keys become the drivers' property names; credentials/endpoints come from the environment
    ec2, nova = app["properties"]["implementations"]
    assert ec2["properties"]["image"].startswith("ami-") and ec2["properties"]["region"] == "eu-west-1"
    assert "endpoint" not in ec2["properties"] and "image_id" not in ec2["properties"]
    assert "flavor" in nova["properties"] and "image" in nova["properties"] and "endpoint" not in nova["properties"]


def test_cli_writes_a_valid_descriptor(infra, tmp_path):
    out = tmp_path / "out.yaml"
    result = CliRunner().invoke(main, ["import", str(infra / "infra-hello.yaml"), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["nodes"] == 2 and len(report["warnings"]) == 3
    t = load_template(str(out))
    assert t.node_templates["app"].dependencies == ["db"]
    assert t.node_templates["app"].max_instances == 5


def test_explicit_node_definitions_and_errors(infra, tmp_path):
    defs = tmp_path / "defs.yaml"
    defs.write_text(yaml.safe_dump({"node_def:app_node": [{"resource": "cloudsigma"}]}))
    with pytest.raises(DescriptorError) as info:
        import_occopus(str(infra / "infra-hello.yaml"), str(defs))
    found = [d.code for d in info.value.diagnostics]
    assert "OCCOPUS_NO_NODEDEF" in found and "OCCOPUS_BAD_NODEDEF" in found and "OCCOPUS_NO_IMPLEMENTATION" in found
    result = CliRunner().invoke(main, ["import", str(infra / "infra-hello.yaml"), "--node-definitions", str(defs)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "OCCOPUS_NO_NODEDEF" in result.stderr


def test_bad_dependency_and_scaling(infra):
    text = (infra / "infra-hello.yaml").read_text()
    (infra / "infra-hello.yaml").write_text(text.replace("max: 5", "max: 1").replace("*APP, *DB", "*APP, nobody"))
    with pytest.raises(DescriptorError) as info:
        import_occopus(str(infra / "infra-hello.yaml"))
    assert {d.code for d in info.value.diagnostics if d.severity == "error"} == {"OCCOPUS_BAD_SCALING",
                                                                              "OCCOPUS_UNKNOWN_NODE"}
