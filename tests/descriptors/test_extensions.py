"""Strato's extension blocks (health_check, placement, build, resources, strato.* metadata) are checked at validate,
with a code, file:line:col, the document path and a did-you-mean, like every other descriptor error."""

import sys
import uuid

import pytest

from descriptors import load_template_text
from descriptors.types import builtin_registry
from tests.descriptors.conftest import errors, load
from tests.drivers.test_local import SERVER


def _types_with(prop: str) -> list[str]:
    registry = builtin_registry()
    return sorted(name for name in registry.kinds["node"]
                  if name.startswith("strato.") and prop in registry.resolved(name).properties)


HEALTH_CHECKED = _types_with("health_check")


def test_every_strato_type_with_a_health_check_shares_one_schema():
    assert {"strato.nodes.Process", "strato.nodes.Container", "strato.nodes.kubernetes.Deployment",
            "strato.nodes.ssh.Host", "strato.nodes.VM"} <= set(HEALTH_CHECKED)
    registry = builtin_registry()
    assert {registry.resolved(t).properties["health_check"].type for t in HEALTH_CHECKED} == \
        {"strato.datatypes.HealthCheck"}


@pytest.mark.parametrize("ntype", HEALTH_CHECKED)
def test_a_misspelt_health_check_key_is_an_error_with_did_you_mean_and_position(ntype):
    errs = errors(f"""
topology_template:
  node_templates:
    web:
      type: {ntype}
      properties:
        health_check: {{htttp: /}}
""")
    found = [e for e in errs if e.code == "PROPERTY_TYPE"]
    assert len(found) == 1, [e.format() for e in errs]
    err = found[0]
    assert err.path == "topology_template.node_templates.web.properties.health_check.htttp"
    assert err.hint == "did you mean 'http'?"
    assert (err.position.file, err.position.line, err.position.col) == ("t.yaml", 8, 24)  # at `htttp`


def test_a_health_check_timeout_that_is_not_a_duration_is_an_error_at_validate():
    errs = errors("""
topology_template:
  node_templates:
    web:
      type: strato.nodes.Process
      properties:
        command: [x]
        health_check:
          http: /
          timeout: soon
""")
    assert [(e.code, e.position.line, e.path) for e in errs] == [
        ("PROPERTY_TYPE", 11, "topology_template.node_templates.web.properties.health_check.timeout")]
    assert "must be a number of seconds or a time like '30 s', got string 'soon'" in errs[0].message
    # what the drivers and the maintain loop read: a bare number of seconds or a TOSCA time
    load("""
topology_template:
  node_templates:
    a: {type: strato.nodes.Process, properties: {command: [x], health_check: {tcp: true, timeout: 30}}}
    b: {type: strato.nodes.Process, properties: {command: [x], health_check: {http: /, timeout: 2 m, grace_period: 0.6}}}
""")
    assert [e.code for e in errors("""
topology_template:
  node_templates:
    a: {type: strato.nodes.Process, properties: {command: [x], health_check: {timeout: -1}}}
    b: {type: strato.nodes.Process, properties: {command: [x], health_check: {grace_period: -2 s}}}
""")] == ["PROPERTY_TYPE", "PROPERTY_TYPE"]


def test_durations_are_read_the_same_way_everywhere():
    from descriptors.values import duration_seconds
    assert duration_seconds(None, 5.0) == 5.0
    assert duration_seconds(30, None) == 30.0
    assert duration_seconds("2 m", None) == 120.0
    with pytest.raises(ValueError, match="not a duration: give a number of seconds or a time like '30 s'"):
        duration_seconds("soon", 1.0)


def test_the_local_driver_waits_a_health_check_timeout_written_as_a_time(tmp_path):
    """'0.5 s' validates, so the build must read it too (it raised a bare ValueError from float())."""
    from drivers.base import DriverError, InstanceSpec
    from drivers.local import LocalDriver, processes_with_key
    spec = InstanceSpec(key=f"ext/{uuid.uuid4().hex[:8]}/0@x", infra="t", node="web", index=0,
                        type="strato.nodes.Process", metadata={}, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=30,
                        properties={"command": [sys.executable, "-c", "import time; time.sleep(30)"], "port": "auto",
                                    "health_check": {"tcp": True, "timeout": "0.5 s"}})
    with pytest.raises(DriverError, match="not healthy within 0.5 s"):
        LocalDriver().create(spec)
    assert processes_with_key(spec.key) == []


def test_placement_build_and_resources_blocks_are_checked():
    errs = errors("""
topology_template:
  node_templates:
    srv:
      type: strato.nodes.cloud.Server
      properties:
        implementations: [{driver: ec2, cost_per_huor: 1}]
        placement: {polcy: cost}
    svc:
      type: strato.nodes.cloud.InferenceService
      properties:
        implementations: [{driver: lambda}]
        placement: {policy: cheapest}
    c:
      type: strato.nodes.Container
      properties: {build: {contxt: app}}
    k:
      type: strato.nodes.kubernetes.Deployment
      properties: {image: x, resources: {limit: {cpu: 1}}}
""")
    found = {(e.path.split("node_templates.")[1], e.hint) for e in errs}
    assert found == {
        ("srv.properties.implementations[0].cost_per_huor", "did you mean 'cost_per_hour'?"),
        ("srv.properties.placement.polcy", "did you mean 'policy'?"),
        ("svc.properties.placement.policy", ""),
        ("c.properties.build.contxt", "did you mean 'context'?"),
        ("k.properties.resources.limit", "did you mean 'limits'?"),
    }, [e.format() for e in errs]
    assert all(e.code == "PROPERTY_TYPE" for e in errs)
    assert any("'cheapest' violates the constraint valid_values" in e.message for e in errs)


def test_strato_metadata_keys_and_drivers_are_checked():
    errs = errors("""
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      metadata: {strato.driver: ec22, strato.oneshot: true, strato.open_attributes: yes please, owner: me}
""")
    assert sorted((e.code, e.path.rsplit("metadata.", 1)[1], e.hint, e.position.line) for e in errs) == [
        ("METADATA_BAD_VALUE", "strato.open_attributes", "", 7),
        ("METADATA_UNKNOWN_DRIVER", "strato.driver", "did you mean 'ec2'?", 7),
        ("METADATA_UNKNOWN_KEY", "strato.oneshot", "did you mean 'strato.one_shot'?", 7),
    ]
    assert errs[0].position.col > 1  # at the key, not at the node
    t = load_template_text("""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute, metadata: {strato.driver: ec2, strato.one_shot: false, owner: me}}
""", "ok.yaml")
    assert t.driver_name("vm") == "ec2"


# -- get_attribute: what a node's type declares or its driver reports; nothing else ------------------------------

def test_get_attribute_of_an_undeclared_attribute_of_a_strato_node_is_an_error_at_validate():
    errs = errors("""
topology_template:
  node_templates:
    web: {type: strato.nodes.Process, properties: {command: [x], port: auto}}
    client:
      type: strato.nodes.Process
      properties:
        command: [echo, {get_attribute: [web, adress]}, {get_attribute: [web, url]}, {get_attribute: [web, pid]}]
""")
    assert [(e.code, e.severity, e.hint, e.position.line) for e in errs] == [
        ("FUNCTION_UNKNOWN_ATTRIBUTE", "error", "its attributes are: host, pid, port, shared_port, start_time, "
                                                "state, tosca_id, tosca_name, url", 9)]
    assert "node 'web' (strato.nodes.Process) has no attribute 'adress'" in errs[0].message
    assert errs[0].path == "topology_template.node_templates.client.properties.command[1]"
    errs = errors("""
topology_template:
  node_templates:
    web: {type: strato.nodes.Container, properties: {image: x}}
  outputs:
    u: {value: {get_attribute: [web, urll]}}
""")
    assert errs[0].hint == "did you mean 'url'?"


def test_dynamic_attributes_are_declared_or_the_node_is_open():
    load("""
topology_template:
  node_templates:
    job: {type: strato.nodes.Job, properties: {command: [x]}}
    tf: {type: strato.nodes.terraform.Configuration, properties: {module: m}}
    custom: {type: strato.nodes.Process, properties: {command: [x]}, metadata: {strato.open_attributes: true}}
    vm:
      type: strato.nodes.VM
      properties: {implementations: [{driver: ec2}, {driver: openstack}]}
    c: {type: strato.nodes.Container, properties: {image: x}}
  outputs:
    a: {value: {get_attribute: [job, anything_it_writes]}}
    b: {value: {get_attribute: [tf, any_terraform_output]}}
    c: {value: {get_attribute: [custom, set_by_a_playbook]}}
    d: {value: {get_attribute: [vm, instance_id]}}
    e: {value: {get_attribute: [vm, server_id]}}
    f: {value: {get_attribute: [vm, placement]}}
    g: {value: {get_attribute: [c, status]}}
""")


def test_every_attribute_a_driver_reports_is_declared_by_its_type(tmp_path):
    """The real local driver's observed attributes are all declared by strato.nodes.Process (so get_attribute of
    any of them validates, and `strato types` lists them)."""
    from drivers.base import InstanceSpec
    from drivers.local import LocalDriver
    spec = InstanceSpec(key=f"ext/{uuid.uuid4().hex[:8]}/0@x", infra="t", node="web", index=0,
                        type="strato.nodes.Process", metadata={}, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=30,
                        properties={"command": [sys.executable, "-c", SERVER], "port": "auto",
                                    "health_check": {"http": "/", "timeout": 20}})
    driver = LocalDriver()
    spec = replace_node_attributes(spec, driver.prepare_node(spec))
    handle = driver.create(spec)
    try:
        reported = set(driver.observe(handle).attributes)
    finally:
        driver.delete(handle)
    assert reported - set(builtin_registry().resolved("strato.nodes.Process").attributes) == set()


def replace_node_attributes(spec, attrs):
    from dataclasses import replace
    return replace(spec, node_attributes=dict(attrs or {}))


# -- one mistake, one error --------------------------------------------------------------------------------------

def test_a_type_typo_gives_one_error_not_also_unknown_node_wherever_the_node_is_named():
    errs = errors("""
topology_template:
  node_templates:
    web:
      type: strato.nodes.Proces
      properties: {command: [x], port: auto}
    client:
      type: strato.nodes.Process
      properties:
        command: [echo, {get_attribute: [web, url]}, {get_property: [web, port]}]
      requirements:
        - dependency: web
  groups:
    g: {type: tosca.groups.Root, members: [web, client]}
  policies:
    - scale: {type: strato.policies.Scaling, targets: [web], properties: {max_instances: 3, metric: m, target: 1}}
  outputs:
    u: {value: {get_attribute: [web, url]}}
    o: {value: {get_operation_output: [web, Standard, create, x]}}
  workflows:
    w:
      steps:
        s: {target: web, activities: [{call_operation: Standard.create}]}
  substitution_mappings:
    node_type: tosca.nodes.Root
    attributes: {tosca_name: [web, url]}
""")
    assert [(e.code, e.hint) for e in errs] == [("NODE_TYPE_UNKNOWN", "did you mean 'strato.nodes.Process'?")]
    # a node that does not exist at all is still reported wherever it is named
    errs = errors("""
topology_template:
  node_templates:
    client: {type: strato.nodes.Process, properties: {command: [echo, {get_attribute: [wbe, url]}]}}
""")
    assert [e.code for e in errs] == ["FUNCTION_UNKNOWN_NODE"]


# -- a requirement's target: name the candidates ----------------------------------------------------------------

def test_an_unknown_requirement_target_lists_the_node_templates_that_fit():
    errs = errors("""
topology_template:
  node_templates:
    master: {type: strato.nodes.spark.Master, properties: {command: [x]}}
    web: {type: strato.nodes.Process, properties: {command: [x]}}
    w1:
      type: strato.nodes.spark.Worker
      properties: {command: [x]}
      requirements: [{master: primary}]
    w2:
      type: strato.nodes.Process
      properties: {command: [x]}
      requirements: [{dependency: wbe}]
    app:
      type: tosca.nodes.WebApplication
      requirements: [{host: srv}]
""")
    assert [(e.code, e.path.split("node_templates.")[1], e.hint) for e in errs] == [
        ("REQUIREMENT_UNKNOWN_NODE", "w1.requirements[0].master", "node templates that fit: master"),
        ("REQUIREMENT_UNKNOWN_NODE", "w2.requirements[0].dependency", "node templates that fit: master, web, w1, app"),
        ("REQUIREMENT_UNKNOWN_NODE", "app.requirements[0].host",
         "no node template is a tosca.nodes.WebServer; the node templates are: master, web, w1, w2"),
    ]


def test_a_missing_requirement_names_the_node_templates_that_could_fulfil_it():
    t = load("""
topology_template:
  node_templates:
    master: {type: strato.nodes.spark.Master, properties: {command: [x]}}
    w1: {type: strato.nodes.spark.Worker, properties: {command: [x]}}
""")
    missing = [w for w in t.warnings if w.code == "REQUIREMENT_MISSING"]
    assert [w.hint for w in missing] == ["add '- master: <node template>'; node templates that fit: master"]
