"""TOSCA as other tools write it: libraries, unconfined CLI imports, prefixes, normative property leniency."""

import json

import pytest

from descriptors import DescriptorError, load_template
from orchestrator.service import validate
from tests.descriptors.conftest import load

LIB = """tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  shared.App:
    derived_from: tosca.nodes.Root
    metadata: {strato.driver: noop}
"""


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "types.yaml").write_text(LIB)
    (tmp_path / "app").mkdir()
    main = tmp_path / "app" / "main.yaml"
    main.write_text("""tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - file: ../common/types.yaml
    namespace_prefix: c
topology_template:
  node_templates:
    a: {type: c.shared.App}
    b: {type: "c:shared.App"}
""")
    return tmp_path


def test_parent_imports_are_confined_by_default_and_free_from_the_cli(tree, strato):
    main = str(tree / "app" / "main.yaml")
    with pytest.raises(DescriptorError) as info:
        load_template(main)  # the REST API's (and any direct caller's) safe default
    assert [d.code for d in info.value.diagnostics][0] == "IMPORT_OUTSIDE"
    assert not validate([main])[0]["ok"]
    assert validate([main], confined=False)[0]["ok"]
    t = load_template(main, confined=False)
    assert {n.type for n in t.node_templates.values()} == {"shared.App"}
    proc = strato("validate", main)
    assert proc.returncode == 0, proc.stderr


def test_type_library_validates_but_does_not_build(tree, strato):
    lib = str(tree / "common" / "types.yaml")
    proc = strato("validate", lib, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["files"][0]["library"] is True
    proc = strato("build", lib, "--name", "libtest")
    assert proc.returncode == 1 and "TOPOLOGY_MISSING" in proc.stderr and "Traceback" not in proc.stderr


def test_import_resolved_from_the_root_directory(tmp_path):
    (tmp_path / "types").mkdir()
    (tmp_path / "types" / "base.yaml").write_text(LIB)
    # lib/more.yaml names types/base.yaml relative to the root template's directory, as other tools allow
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "more.yaml").write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n"
                                                 "imports: [types/base.yaml]\n")
    main = tmp_path / "main.yaml"
    main.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\nimports: [lib/more.yaml]\n"
                    "topology_template:\n  node_templates:\n    a: {type: shared.App}\n")
    assert load_template(str(main)).node_templates["a"].type == "shared.App"


def test_normative_required_property_is_a_warning_custom_one_an_error():
    t = load("""
topology_template:
  node_templates:
    db: {type: tosca.nodes.Database}
""")
    assert "PROPERTY_MISSING" in [w.code for w in t.warnings]
    with pytest.raises(DescriptorError) as info:
        load("""
node_types:
  my.Db:
    derived_from: tosca.nodes.Database
    properties:
      name: {type: string, description: "redefined by the descriptor, so Strato's own rule"}
topology_template:
  node_templates:
    db: {type: my.Db}
""")
    assert [d.code for d in info.value.diagnostics if d.severity == "error"] == ["PROPERTY_MISSING"]


def test_undeclared_requirement_and_other_node_type_are_warnings():
    t = load("""
node_types:
  my.Server:
    derived_from: tosca.nodes.SoftwareComponent
    capabilities:
      host: tosca.capabilities.Container
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    srv: {type: my.Server, requirements: [host: vm]}
    app:
      type: tosca.nodes.WebApplication
      requirements:
        - host: {node: srv, capability: tosca.capabilities.Container}
        - monitoring: vm
""")
    assert {"REQUIREMENT_NODE_TYPE_DIFFERS", "REQUIREMENT_UNDECLARED"} <= {w.code for w in t.warnings}
    assert t.node_templates["app"].dependencies == ["srv", "vm"]


@pytest.mark.parametrize("text", [
    "imports: [{file: x.yaml, repository: [r]}]\ntopology_template: {node_templates: {a: {type: strato.nodes.Noop}}}",
    "node_types:\n  my.N: {derived_from: tosca.nodes.Root, requirements: [{q: {capability: {a: 1}}}]}",
    "topology_template:\n  node_templates: {a: {type: tosca.nodes.Compute}}\n  workflows:\n    w:\n      steps:\n"
    "        s: {target: a, activities: [{inline: {workflow: [x]}}], on_success: {a: 1}}",
    "topology_template:\n  node_templates: {a: {type: tosca.nodes.Compute}}\n"
    "  substitution_mappings: {node_type: tosca.nodes.Compute, capabilities: {host: {mapping: [a]}}}",
    "topology_template:\n  node_templates: {a: {type: tosca.nodes.Compute}, b: {copy: [a]}}",
    "topology_template:\n  node_templates: {a: {type: tosca.nodes.Compute}}\n"
    "  groups: {g: {type: tosca.groups.Root, members: [a]}}\n  policies: [{p: {type: tosca.policies.Root, "
    "targets: [g], properties: }}]",
])
def test_odd_shapes_give_diagnostics_not_crashes(text):
    try:
        load(text)
    except DescriptorError as exc:
        assert "INTERNAL_ERROR" not in [d.code for d in exc.diagnostics]


def test_url_import_uses_a_copy_beside_the_descriptor(tmp_path):
    main = tmp_path / "main.yaml"
    main.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n"
                    "imports: [https://example.org/tosca/shared-types.yaml]\n"
                    "topology_template:\n  node_templates:\n    a: {type: shared.App}\n")
    with pytest.raises(DescriptorError) as info:
        load_template(str(main))
    assert [d.code for d in info.value.diagnostics][0] == "IMPORT_REMOTE"
    (tmp_path / "shared-types.yaml").write_text(LIB)
    t = load_template(str(main))
    assert t.node_templates["a"].type == "shared.App"
    assert [w.code for w in t.warnings] == ["IMPORT_REMOTE_LOCAL_COPY"]
