"""Intrinsic functions: resolution (each function, entities, nested paths, instances) and pre-deployment checks."""

import pytest

from descriptors.functions import FunctionError, Unresolved, template_resolver
from tests.descriptors.conftest import codes, errors, load

TOPO = """
topology_template:
  inputs:
    port: {type: integer, default: 8080}
    names: {type: list, default: [a, b]}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities: {host: {properties: {num_cpus: 2, mem_size: 4 GB}}}
    app:
      type: tosca.nodes.SoftwareComponent
      properties: {component_version: "1.2"}
      requirements: [host: vm]
      interfaces:
        Standard:
          create: {implementation: install.sh, inputs: {cpus: {get_property: [HOST, host, num_cpus]}}}
    web:
      type: strato.nodes.Process
      properties:
        command: [serve, {get_input: port}]
        env:
          VERSION: {get_property: [app, component_version]}
          URL: {concat: ["http://", {get_attribute: [vm, public_address]}, ":", {get_input: port}]}
          FIRST: {token: ["a,b;c", ",;", 1]}
          ALL: {join: [{get_input: names}, "-"]}
          SECOND: {get_input: [names, 1]}
          OUT: {get_operation_output: [app, Standard, create, checksum]}
      requirements: [dependency: app]
"""


def attrs(values):
    def lookup(node, name):
        if (node, name) not in values:
            raise Unresolved(node, name)
        return values[(node, name)]
    return lookup


def test_each_function_resolves():
    t = load(TOPO)
    r = template_resolver(t, {"port": 8080, "names": ["a", "b"]},
                          attrs({("vm", "public_address"): "1.2.3.4", ("app", "checksum"): "abc"}))
    env = r.resolve(t.node_templates["web"].properties["env"], "web")
    assert env == {"VERSION": "1.2", "URL": "http://1.2.3.4:8080", "FIRST": "b", "ALL": "a-b", "SECOND": "b",
                   "OUT": "abc"}
    assert r.resolve(t.node_templates["web"].properties["command"], "web") == ["serve", 8080]
    op = t.node_templates["app"].operation("Standard", "create")
    assert r.resolve(op.inputs, "app") == {"cpus": 2}  # HOST, then the capability's property


def test_unresolved_attribute_and_entities():
    t = load(TOPO)
    r = template_resolver(t, {"port": 1, "names": []}, attrs({}))
    with pytest.raises(Unresolved):
        r.resolve({"get_attribute": ["vm", "public_address"]}, "web")
    assert r.resolve({"get_property": ["SELF", "component_version"]}, "app") == "1.2"
    with pytest.raises(FunctionError):
        r.resolve({"get_attribute": ["TARGET", "x"]}, "app")
    with pytest.raises(FunctionError):
        r.resolve({"get_property": ["HOST", "nope"]}, "web")  # web has no host
    assert r.resolve({"get_property": ["SELF", "host", "num_cpus"]}, "app") == 2  # the capability fulfilling "host"
    with pytest.raises(FunctionError):
        r.resolve({"token": ["abc", ",", 5]}, "app")


def test_requirement_form_and_nested_paths_and_instances():
    t = load(TOPO)
    values = {("vm", "networks"): {"private": {"addresses": ["127.0.0.5"]}}, ("vm", "tosca_id"): "i-1"}
    r = template_resolver(t, {}, attrs(values))
    assert r.resolve({"get_attribute": ["SELF", "host", "tosca_id"]}, "app") == "i-1"  # [SELF, requirement, attr]
    assert r.resolve({"get_attribute": ["vm", "networks", "private", "addresses", 0]}, "app") == "127.0.0.5"
    multi = template_resolver(t, {}, attrs({("web", "url"): ["u0", "u1"]}))
    assert multi.resolve({"get_attribute": ["web", "url"]}, "app") == ["u0", "u1"]  # instance order kept


def test_pre_deployment_checks():
    found = codes("""
topology_template:
  inputs:
    word: {type: string, default: x}
  node_templates:
    vm: {type: tosca.nodes.Compute}
    p:
      type: strato.nodes.Process
      properties:
        command: [{get_input: wrod}, {get_property: [vm, nothing]}, {get_property: [nobody, x]}]
        start_timeout: {get_input: word}
        env:
          A: {get_property: [HOST, x]}
          B: {get_attribute: [TARGET, x]}
          C: {token: [abc]}
          D: {get_operation_output: [vm, Standard, crate, x]}
          E: {get_property: [vm, host, gpus]}
  outputs:
    o: {value: {get_attribute: [SELF, x]}}
""")
    assert set(found) == {"FUNCTION_UNKNOWN_INPUT", "FUNCTION_UNKNOWN_PROPERTY", "FUNCTION_UNKNOWN_NODE",
                          "FUNCTION_TYPE", "FUNCTION_NO_HOST", "FUNCTION_NO_TARGET", "FUNCTION_BAD_ARGS",
                          "FUNCTION_UNKNOWN_OPERATION", "FUNCTION_NO_SELF"}


def test_unknown_attribute_is_an_error_also_when_a_driver_builds_the_node_and_nested_path_checked():
    errs = errors("""
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute, metadata: {strato.driver: ec2}}
  outputs:
    a: {value: {get_attribute: [vm, public_adress]}}
    b: {value: {get_attribute: [vm, instance_id]}}
""")  # instance_id: the ec2 driver reports it whatever the node's type
    assert [(e.code, e.hint, e.path) for e in errs] == [
        ("FUNCTION_UNKNOWN_ATTRIBUTE", "did you mean 'public_address'?", "topology_template.outputs.a.value")]
    # a portable TOSCA node: no Strato backend reports attributes its type lacks
    errs = errors("""
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    a: {value: {get_attribute: [vm, public_adress]}}
""")
    assert [e.code for e in errs] == ["FUNCTION_UNKNOWN_ATTRIBUTE"]
    errs = errors("""
data_types:
  my.D: {derived_from: tosca.datatypes.Root, properties: {a: {type: string}}}
node_types:
  my.N: {derived_from: strato.nodes.Noop, properties: {d: {type: my.D, required: false}}}
topology_template:
  node_templates:
    n: {type: my.N}
  outputs:
    o: {value: {get_property: [n, d, b]}}
""")
    assert errs[0].code == "FUNCTION_BAD_PATH" and errs[0].hint == ""
