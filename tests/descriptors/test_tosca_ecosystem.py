"""TOSCA as the ecosystem writes it (issue 22): one test per group of templates other TOSCA tools accept or refuse."""

import os
import textwrap

import pytest

from descriptors import DescriptorError, load_template
from descriptors.loader import require_buildable
from orchestrator import service
from orchestrator.executor import RunOptions
from tests.descriptors.conftest import codes, load


def write(tmp_path, rel: str, text: str) -> str:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def warning_codes(template) -> list[str]:
    return [w.code for w in template.warnings]


def test_normative_shorthand_names_of_data_types():
    t = load("""
node_types:
  my.Proxy:
    derived_from: SoftwareComponent
    properties:
      listen: {type: PortDef, default: 8080}
      net: {type: NetworkInfo, required: false}
topology_template:
  node_templates:
    vm: {type: Compute}
    proxy: {type: my.Proxy, properties: {listen: 8443}, requirements: [{host: vm}]}
""")
    assert t.node_templates["proxy"].host == "vm"
    # the shorthand keeps the type's constraints
    assert codes("""
topology_template:
  inputs:
    listen: {type: PortDef, default: 70000}
  node_templates:
    vm: {type: Compute}
""") == ["INPUT_BAD_DEFAULT"]


def test_import_without_version_and_written_from_a_parent(tmp_path):
    write(tmp_path, "bundle/Definitions/types.yaml", """
        node_types:
          my.nodes.Thing: {derived_from: tosca.nodes.SoftwareComponent}
        """)
    write(tmp_path, "bundle/custom_types/more.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_0
        node_types:
          my.nodes.Other: {derived_from: tosca.nodes.SoftwareComponent}
        """)
    main = write(tmp_path, "bundle/Definitions/main.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_0
        imports:
          - Definitions/types.yaml
          - custom_types/more.yaml
        topology_template:
          node_templates:
            vm: {type: tosca.nodes.Compute}
            a: {type: my.nodes.Thing, requirements: [{host: vm}]}
            b: {type: my.nodes.Other, requirements: [{host: vm}]}
        """)
    t = load_template(main, confined=False)
    assert {"IMPORT_VERSION_MISSING", "IMPORT_FROM_PARENT"} <= set(warning_codes(t))
    # confined (the REST API) never looks above the descriptor's directory
    with pytest.raises(DescriptorError) as info:
        load_template(main)
    found = [d.code for d in info.value.diagnostics]
    assert "IMPORT_NOT_FOUND" in found and "IMPORT_FROM_PARENT" not in found


def test_tosca_1_0_forms_values_for_definitions_and_tacker_policy_keys():
    t = load("""
relationship_types:
  my.DbLogin:
    derived_from: tosca.relationships.ConnectsTo
    properties:
      credential: {user: shop, token: secret}
policy_types:
  my.Failure:
    derived_from: tosca.policies.Root
    action: {type: string}
  my.Probe:
    derived_from: tosca.policies.Root
    properties:
      name: {type: string}
  my.Probe.Ping:
    derived_from: my.Probe
    properties:
      name: ping
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - probe: {type: my.Probe.Ping, targets: [vm]}
""")
    assert warning_codes(t).count("TYPE_KEY_EXTENSION") == 1
    assert warning_codes(t).count("TYPE_PROPERTY_VALUE") == 2
    ping = t.types.resolved("my.Probe.Ping", "policy").properties["name"]
    assert (ping.type, ping.default) == ("string", "ping")  # the inherited definition, with the value as default
    # a misspelt definition key is still an error, not a value
    assert codes("""
node_types:
  my.T:
    derived_from: tosca.nodes.Root
    properties:
      size: {typ: integer}
""") == ["UNKNOWN_KEY"]


HOSTED = """
topology_template:
  node_templates:
    blog:
      type: tosca.nodes.WebApplication
      requirements: [{host: httpd}]
      interfaces:
        Standard:
          configure:
            implementation: configure.sh
            inputs: {x: %s}
    httpd: {type: tosca.nodes.WebServer, requirements: [{host: vm}]}
    vm:
      type: tosca.nodes.Compute
      capabilities: {host: {properties: {num_cpus: 2}}}
"""


def test_host_walks_the_hosting_chain_and_node_filter_selection():
    load(HOSTED % "{get_attribute: [HOST, private_address]}")
    load(HOSTED % "{get_property: [HOST, host, num_cpus]}")
    assert codes(HOSTED % "{get_attribute: [HOST, availability_zone]}") == ["FUNCTION_UNKNOWN_ATTRIBUTE"]
    t = load("""
topology_template:
  node_templates:
    dbms:
      type: tosca.nodes.DBMS
      requirements:
        - host:
            node_filter:
              capabilities:
                - host: {properties: [{num_cpus: {in_range: [1, 4]}}]}
""")
    assert "REQUIREMENT_NOT_SELECTED" in warning_codes(t)
    with pytest.raises(DescriptorError) as info:
        require_buildable(t)
    assert [d.code for d in info.value.diagnostics] == ["REQUIREMENT_NOT_SELECTED"]


def test_custom_interface_on_a_node_hosted_on_software():
    t = load("""
interface_types:
  my.Maintenance:
    derived_from: tosca.interfaces.Root
    operations:
      backup: {description: dump}
node_types:
  my.Db:
    derived_from: tosca.nodes.Database
    interfaces:
      Maintenance: {type: my.Maintenance}
topology_template:
  node_templates:
    db:
      type: my.Db
      properties: {name: d}
      requirements: [{host: dbms}]
      interfaces:
        Maintenance:
          backup: {implementation: backup.sh, inputs: {dir: /var/backups}}
    dbms: {type: tosca.nodes.DBMS, requirements: [{host: vm}]}
    vm: {type: tosca.nodes.Compute}
""")
    assert ("Maintenance", "backup") in t.node_templates["db"].operations


def test_scalar_coercion_warns_and_keeps_constraints():
    text = """
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: "%s"}}
        os: {properties: {version: 22.04, distribution: 7}}
    dbms:
      type: tosca.nodes.DBMS
      properties: {root_password: 123456}
      requirements: [{host: vm}]
"""
    t = load(text % "2")
    assert warning_codes(t).count("VALUE_COERCED") == 3  # num_cpus, distribution, root_password
    assert codes(text % "0") == ["PROPERTY_TYPE"]  # "0" reads as 0, below num_cpus' minimum 1
    assert codes(text % "two") == ["PROPERTY_TYPE"]
    assert codes("""
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute, capabilities: {host: {properties: {mem_size: 2048}}}}
""") == ["PROPERTY_TYPE"]


def test_missing_implementation_warns_at_validate_and_stops_the_build(tmp_path, strato_home):
    path = write(tmp_path, "app.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            vm: {type: tosca.nodes.Compute}
            agent:
              type: tosca.nodes.SoftwareComponent
              requirements: [{host: vm}]
              interfaces:
                Standard: {create: scripts/install_agent.sh}
        """)
    assert warning_codes(load_template(path)) == ["ARTIFACT_NOT_FOUND"]
    store = service.open_store(str(strato_home / "state.db"))
    with pytest.raises(DescriptorError) as info:
        service.build(path, "h22eco", {}, store, RunOptions())
    assert [(d.code, d.severity) for d in info.value.diagnostics] == [("ARTIFACT_NOT_FOUND", "error")]
    assert store.get_infra("h22eco") is None


OUTPUT = """
topology_template:
  inputs:
    cpus: {type: integer, default: 2}
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities: {host: {properties: {num_cpus: {get_input: %s}}}}
  outputs:
    out: {value: %s}
"""


@pytest.mark.parametrize("cpus, output, code", [
    ("[cpus, cpus]", "1", "FUNCTION_BAD_PATH"),  # an integer input has no elements
    ("cpus", "{get_attribute: [server]}", "FUNCTION_BAD_ARGS"),
    ("cpus", "{concat: []}", "FUNCTION_BAD_ARGS"),
    ("cpus", "{token: [abc, '.', first]}", "FUNCTION_BAD_ARGS"),
    ("cpus", "{get_attribute: [server, private_address, 0]}", "FUNCTION_BAD_PATH"),  # a string, not a list
])
def test_wrong_function_signatures_and_indexes_are_refused(cpus, output, code):
    assert codes(OUTPUT % (cpus, output)) == [code]


def test_list_index_out_of_range_of_a_written_list():
    text = """
node_types:
  my.Resolver:
    derived_from: tosca.nodes.Root
    properties:
      servers: {type: list, entry_schema: {type: string}}
topology_template:
  node_templates:
    r:
      type: my.Resolver
      properties: {servers: [10.0.0.2, 10.0.0.3]}
  outputs:
    out: {value: {get_property: [r, servers, %d]}}
"""
    load(text % 1)
    assert codes(text % 2) == ["FUNCTION_INDEX_RANGE"]
    assert codes(text % -1) == ["FUNCTION_INDEX_RANGE"]


def test_policy_type_with_unknown_targets_type():
    assert "TYPE_UNKNOWN_REFERENCE" in codes("""
policy_types:
  my.Placement:
    derived_from: tosca.policies.Placement
    targets: [my.nodes.NotDefined]
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""")


def test_corpus_has_held_out_style_templates_of_each_group():
    corpus = os.path.join(os.path.dirname(__file__), "corpus")
    names = {f.split("__")[0] for sub in ("valid", "invalid") for f in os.listdir(os.path.join(corpus, sub))
             if f.startswith("eco_")}
    for group in ("shortname", "import", "credential", "tacker", "nfv_sol001", "relationship_type", "host",
                  "node_filter", "custom_interface", "scalar", "missing_implementation", "get_input",
                  "get_attribute", "concat", "token", "index", "policy_type", "input_default"):
        assert any(group in n for n in names), group
