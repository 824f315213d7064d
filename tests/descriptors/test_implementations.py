"""validate checks driver names in `implementations` and port numbers; the checked-in import example is current."""

import os
import textwrap

import pytest
from click.testing import CliRunner

from descriptors import DescriptorError, load_template
from orchestrator.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(REPO, "examples", "occopus", "hello-cloud")


def write(tmp_path, body: str) -> str:
    path = tmp_path / "d.yaml"
    path.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n" + textwrap.dedent(body).lstrip("\n"))
    return str(path)


def diagnostics(path):
    with pytest.raises(DescriptorError) as err:
        load_template(path)
    return err.value.diagnostics


def test_unknown_driver_in_implementations_has_position_and_hint(tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            vm:
              type: strato.nodes.VM
              properties:
                implementations:
                  - driver: ec2
                  - driver: nova
                  - driver: ec22
        """)
    found = [d for d in diagnostics(path) if d.code == "IMPLEMENTATION_UNKNOWN_DRIVER"]
    assert [(d.position.line, d.hint) for d in found] == [(9, "did you mean 'openstack'?"), (10, "did you mean 'ec2'?")]
    assert found[0].path == "topology_template.node_templates.vm.properties.implementations[1].driver"


def test_ports_outside_1_65535_are_reported_where_they_are(tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Process
              properties:
                command: [x]
                port: 70000
                health_check: {ports: [8080, 0]}
            vm:
              type: strato.nodes.VM
              properties:
                implementations:
                  - driver: ec2
                    properties: {ssh_port: -1}
        """)
    # health_check.ports is typed (a list of PortDef): its range is the data type's constraint
    found = sorted((d.position.line, d.path) for d in diagnostics(path) if d.code in ("PORT_OUT_OF_RANGE",
                                                                                      "PROPERTY_TYPE"))
    assert found == [(8, "topology_template.node_templates.web.properties.port"),
                     (9, "topology_template.node_templates.web.properties.health_check.ports[1]"),
                     (15, "topology_template.node_templates.vm.properties.implementations[0].properties.ssh_port")]
    ok = write(tmp_path, """
        topology_template:
          node_templates:
            web: {type: strato.nodes.Process, properties: {command: [x], port: auto, health_check: {ports: [65535]}}}
        """)
    assert load_template(ok).node_templates["web"]


def test_checked_in_import_example_is_what_import_writes_today(tmp_path):
    out = tmp_path / "strato.yaml"
    result = CliRunner().invoke(main, ["import", os.path.join(HELLO, "infra-hello.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(os.path.join(HELLO, "strato.yaml"), encoding="utf-8") as fh:
        assert fh.read() == out.read_text(), "regenerate: strato import examples/occopus/hello-cloud/infra-hello.yaml " \
                                             "-o examples/occopus/hello-cloud/strato.yaml"
    assert CliRunner().invoke(main, ["validate", os.path.join(HELLO, "strato.yaml")]).exit_code == 0
