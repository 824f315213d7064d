"""Type system rules: value types, scalar units, constraints, data types, inheritance and overriding."""

import pytest

from descriptors.values import check_value, parse_constraint, scalar_unit
from tests.descriptors.conftest import codes, errors, load


@pytest.mark.parametrize("value,vtype,ok", [
    ("x", "string", True), (1, "string", False), (3, "integer", True), (True, "integer", False),
    (2.5, "float", True), (2, "float", True), ("2", "float", False), (False, "boolean", True), (0, "boolean", False),
    ([1], "list", True), ({}, "list", False), ({"a": 1}, "map", True), ("1 GB", "scalar-unit.size", True),
    ("1 parsec", "scalar-unit.size", False), ("30 s", "scalar-unit.time", True), ("2 GHz", "scalar-unit.frequency", True),
    ("1.2.3", "version", True), ("1.x", "version", False), ("2024-05-01T12:00:00Z", "timestamp", True),
    ("yesterday", "timestamp", False), ([1, "UNBOUNDED"], "range", True), ([3, 1], "range", False),
])
def test_primitive_types(value, vtype, ok):
    assert (check_value(value, vtype) is None) is ok


def test_scalar_unit_conversion():
    assert scalar_unit("1 GB", "scalar-unit.size") == 1e9
    assert scalar_unit("1 GiB", "scalar-unit.size") == 2 ** 30
    assert scalar_unit("512 mb", "scalar-unit.size") == 512e6  # units compare case-insensitively
    assert scalar_unit("2 h", "scalar-unit.time") == 7200
    assert scalar_unit("1.5 kHz", "scalar-unit.frequency") == 1500
    assert scalar_unit("10", "scalar-unit.size") is None


@pytest.mark.parametrize("clause,vtype,good,bad", [
    ({"equal": 3}, "integer", 3, 4),
    ({"greater_than": 0}, "integer", 1, 0),
    ({"greater_or_equal": "1 GB"}, "scalar-unit.size", "1024 MB", "999 MB"),
    ({"less_than": "1 h"}, "scalar-unit.time", "59 m", "2 h"),
    ({"less_or_equal": 5}, "float", 5, 5.1),
    ({"in_range": [1, 10]}, "integer", 10, 11),
    ({"in_range": [1, "UNBOUNDED"]}, "integer", 10 ** 9, 0),
    ({"valid_values": ["a", "b"]}, "string", "a", "c"),
    ({"length": 2}, "string", "ab", "abc"),
    ({"min_length": 2}, "list", [1, 2], [1]),
    ({"max_length": 1}, "map", {"a": 1}, {"a": 1, "b": 2}),
    ({"pattern": "[a-z]+"}, "string", "abc", "abc1"),
    ({"greater_than": "1.2.0"}, "version", "1.10.0", "1.2.0"),
])
def test_each_constraint(clause, vtype, good, bad):
    constraint, problem = parse_constraint(clause, vtype)
    assert problem is None
    assert constraint.check(good) is None
    assert constraint.check(bad)


def test_malformed_constraints_are_diagnosed():
    assert parse_constraint({"greter_than": 1}, "integer")[1].startswith("unknown constraint operator")
    assert parse_constraint({"pattern": "("}, "string")[1]
    assert parse_constraint({"in_range": [1]}, "integer")[1]
    assert parse_constraint({"greater_than": "x"}, "integer")[1]


TYPES = """
data_types:
  my.Port:
    derived_from: integer
    constraints: [in_range: [1, 65535]]
  my.Endpoint:
    derived_from: tosca.datatypes.Root
    properties:
      host: {type: string}
      port: {type: my.Port, default: 80}
      tags: {type: list, required: false, entry_schema: {type: string, constraints: [min_length: 1]}}
node_types:
  my.Base:
    derived_from: tosca.nodes.Root
    metadata: {strato.driver: noop}
    properties:
      size: {type: scalar-unit.size, default: 1 GB, constraints: [greater_or_equal: 512 MB]}
      mode: {type: string, required: false, constraints: [valid_values: [fast, safe]]}
  my.Derived:
    derived_from: my.Base
    properties:
      mode: {type: string, default: safe, constraints: [valid_values: [safe]]}
      endpoint: {type: my.Endpoint, required: false}
      limits: {type: map, required: false, entry_schema: {type: integer}}
"""


def test_inheritance_and_overriding():
    t = load(TYPES + """
topology_template:
  node_templates:
    a: {type: my.Derived}
""")
    r = t.types.resolved("my.Derived")
    assert set(r.properties) >= {"size", "mode", "endpoint"}
    assert r.properties["mode"].default == "safe"  # the derived definition wins
    assert t.types.lineage("my.Derived") == ["my.Derived", "my.Base", "tosca.nodes.Root"]
    assert t.types.is_a("my.Derived", "tosca.nodes.Root")
    assert t.driver_name("a") == "noop"  # metadata inherited


def test_overridden_constraint_applies():
    assert codes(TYPES + """
topology_template:
  node_templates:
    a: {type: my.Derived, properties: {mode: fast}}
""") == ["PROPERTY_TYPE"]


def test_data_type_values_checked_field_by_field():
    errs = errors(TYPES + """
topology_template:
  node_templates:
    a:
      type: my.Derived
      properties:
        size: 256 MB
        endpoint: {host: 1, port: 70000, tags: [""], colour: red}
        limits: {cpu: two}
""")
    messages = " | ".join(e.message for e in errs)
    assert all(e.code == "PROPERTY_TYPE" for e in errs)
    assert "property 'size'" in messages and "512 MB" in messages
    assert "'endpoint.host' must be a string" in messages
    assert "'endpoint.port' of type my.Port" in messages
    assert "'endpoint.tags[0]'" in messages
    assert "'endpoint.colour' is not a field" in messages
    assert "'limits.cpu' must be an integer" in messages


def test_missing_required_data_field():
    errs = errors(TYPES + """
topology_template:
  node_templates:
    a: {type: my.Derived, properties: {endpoint: {port: 8080}}}
""")
    assert "lacks the required field 'host'" in errs[0].message


def test_type_definition_errors():
    found = codes("""
node_types:
  a.A: {derived_from: a.Missing}
  b.B: {derived_from: b.C}
  b.C: {derived_from: b.B}
  c.C:
    derived_from: tosca.nodes.Root
    properties:
      p: {type: strnig}
      q: {type: integer, default: "x"}
      r: {type: integer, constraints: [{bigger: 1}]}
    requirements:
      - x: {capability: no.Such.Capability}
    interfaces:
      Standard: {type: no.Such.Interface}
  d.D: {derived_from: tosca.capabilities.Root}
topology_template:
  node_templates: {}
""")
    for code in ("TYPE_UNKNOWN_PARENT", "TYPE_CYCLE", "TYPE_UNKNOWN_VALUE_TYPE", "TYPE_BAD_DEFAULT", "CONSTRAINT_BAD",
                 "TYPE_UNKNOWN_REFERENCE", "TYPE_UNKNOWN_INTERFACE_TYPE"):
        assert code in found, code


def test_wrong_kind_parent_has_hint():
    errs = errors("""
node_types:
  d.D: {derived_from: tosca.capabilities.Root}
topology_template:
  node_templates: {}
""")
    assert "is a capability type" in errs[0].hint


def test_all_type_kinds_with_derived_from():
    t = load("""
capability_types:
  my.cap: {derived_from: tosca.capabilities.Endpoint}
relationship_types:
  my.rel: {derived_from: tosca.relationships.ConnectsTo, valid_target_types: [my.cap]}
interface_types:
  my.iface: {derived_from: tosca.interfaces.Root, operations: {ping: {}}}
group_types:
  my.group: {derived_from: tosca.groups.Root, members: [tosca.nodes.Compute]}
policy_types:
  my.policy: {derived_from: tosca.policies.Root, targets: [tosca.nodes.Compute]}
artifact_types:
  my.art: {derived_from: tosca.artifacts.Implementation}
data_types:
  my.data: {derived_from: tosca.datatypes.Root}
topology_template:
  node_templates: {}
""")
    ty = t.types
    assert ty.is_a("my.cap", "tosca.capabilities.Root", "capability")
    assert ty.is_a("my.rel", "tosca.relationships.Root", "relationship")
    assert "ping" in ty.resolved("my.iface", "interface").operations
    assert ty.resolved("my.group", "group").members == ["tosca.nodes.Compute"]
    assert ty.resolved("my.policy", "policy").targets == ["tosca.nodes.Compute"]
    assert ty.is_a("my.art", "tosca.artifacts.Root", "artifact")
    assert ty.is_a("my.data", "tosca.datatypes.Root", "data")
    assert ty.resolved("my.rel", "relationship").valid_target_types == ["my.cap"]


def test_short_type_names():
    t = load("""
topology_template:
  node_templates:
    a: {type: Compute}
    b: {type: "tosca:Compute"}
    c: {type: tosca.nodes.BlockStorage, properties: {name: x, size: 1 GB}}
""")
    assert {n.type for n in t.node_templates.values()} == {"tosca.nodes.Compute", "tosca.nodes.Storage.BlockStorage"}
