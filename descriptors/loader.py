"""Load a descriptor file (and its imports) into a validated Template, collecting every diagnostic of the file at once.

Each section of the language has its own module under descriptors/sections (imports,
inputs, node templates, capabilities, interfaces, requirements, groups, policies, outputs,
function calls); this module runs them in order over one document.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from descriptors.diagnostics import DescriptorError, Diagnostic, Position
from descriptors.implementations import check_implementations
from descriptors.rollout_check import check_rollouts
from descriptors.training_check import check_continuous_training
from descriptors.sections.calls import check_functions
from descriptors.sections.capabilities import CAPABILITY_KEYS, SCALING_KEYS
from descriptors.sections.common import unknown_keys
from descriptors.sections.groups import GROUP_KEYS, parse_groups
from descriptors.sections.imports import ALLOW_IMPORTS_ENV, MAX_IMPORTS, TOP_KEYS, VERSIONS, DocumentLoader
from descriptors.sections.inputs import INPUT_KEYS, parse_input_value, parse_inputs, resolve_inputs
from descriptors.sections.nodes import ARTIFACT_KEYS, NODE_KEYS, parse_nodes
from descriptors.sections.outputs import OUTPUT_KEYS, parse_outputs
from descriptors.sections.policies import POLICY_KEYS, parse_policies
from descriptors.sections.requirements import REQUIREMENT_KEYS, parse_relationship_templates, resolve_requirements
from descriptors.sections.substitution import check_substitution
from descriptors.sections.workflows import check_workflows
from descriptors.template import Template
from descriptors.types import STANDARD_OPERATIONS
from descriptors.yamlpos import load_yaml_file, no_gc, parse_yaml

TOPOLOGY_KEYS = ("description", "inputs", "node_templates", "outputs", "groups", "policies",
                 "relationship_templates", "substitution_mappings", "workflows")


def load_template(path: str, import_roots: list[str] | None = None, confined: bool = True) -> Template:
    """Parse and validate a descriptor file; raise DescriptorError listing all problems.

    Confined (the default, and what the REST API uses for descriptors that arrive over the
    network), imports may only read files inside the descriptor's directory tree, the
    directories in `import_roots` and those in $STRATO_IMPORT_PATH. The CLI passes
    confined=False: a local user may import any file they can read, as in other TOSCA tools.
    A document without topology_template loads as a type library (Template.is_library).
    """
    with no_gc():
        return _guarded(lambda: _build(load_yaml_file(path), path, import_roots, confined), path)


def load_template_text(text: str, file: str = "<string>", import_roots: list[str] | None = None,
                       confined: bool = True) -> Template:
    with no_gc():
        return _guarded(lambda: _build(parse_yaml(text, file), file, import_roots, confined), file)


def _guarded(load, file: str) -> Template:
    """A checker bug must still reach the user as a diagnostic, not a traceback (the fuzz tests hunt these)."""
    try:
        return load()
    except (DescriptorError, KeyboardInterrupt):
        raise
    except RecursionError:
        raise DescriptorError([Diagnostic("YAML_TOO_DEEP", "values are nested too deeply", Position(file))]) from None
    except Exception as exc:  # noqa: BLE001 - reported, with what to send us
        raise DescriptorError([Diagnostic("INTERNAL_ERROR", f"the checker failed on this file: "
                                          f"{type(exc).__name__}: {exc}", Position(file), "",
                                          "please report this with the file")]) from exc


def _build(doc: Any, file: str, import_roots: list[str] | None = None, confined: bool = True) -> Template:
    file_pos = Position(file, 1, 1)
    if not isinstance(doc, dict):
        raise DescriptorError([Diagnostic("DOC_NOT_MAPPING", "a descriptor must be a YAML mapping with "
                                          "'tosca_definitions_version' and 'topology_template'", file_pos)])
    ld = DocumentLoader(file, import_roots, confined)
    sink = ld.sink
    ld.document(doc, file, (os.path.realpath(file),), is_main=True)
    types = ld.types
    types.check_hierarchy(sink)

    metadata = doc.get("metadata")
    template = Template(file=file, version=str(doc.get("tosca_definitions_version")),
                        description=str(doc.get("description") or ""), types=types, document=doc,
                        imports=list(ld.imported), metadata=dict(metadata) if isinstance(metadata, dict) else {},
                        confined=confined)
    topo = doc.get("topology_template")
    if topo is None:  # a type library: valid TOSCA; building it is refused (require_topology)
        template.is_library = True
        template.warnings = sink.warnings
        sink.raise_if_errors()
        return template
    if not isinstance(topo, dict):
        sink.error("TOPOLOGY_NOT_MAPPING", "'topology_template' must be a mapping",
                   doc.position_of("topology_template"), "topology_template")
        raise DescriptorError(sink.items)
    unknown_keys(topo, TOPOLOGY_KEYS, sink, "topology_template", "topology_template")

    parse_inputs(template, topo, sink)
    raw_nodes = parse_nodes(template, topo, sink)
    parse_relationship_templates(template, topo, sink)
    resolve_requirements(template, raw_nodes, sink)
    parse_groups(template, topo, sink)
    parse_policies(template, topo, sink)
    parse_outputs(template, topo, sink)
    check_substitution(template, topo, sink)
    check_workflows(template, topo, sink)
    check_functions(template, sink)
    check_implementations(template, sink)
    check_rollouts(template, sink)
    check_continuous_training(template, sink)
    template.warnings = sink.warnings
    sink.raise_if_errors()
    return template


def require_topology(template: Template) -> None:
    """Refuse a type library where a topology is needed (build, plan, graph)."""
    if template.is_library:
        raise DescriptorError([Diagnostic("TOPOLOGY_MISSING", "'topology_template' is missing: this file is a type "
                                          "library, which validates but has nothing to build",
                                          Position(template.file, 1, 1), "topology_template",
                                          "add a topology_template with node_templates, or import this file "
                                          "from a descriptor that has one")])


# Warnings at validate (other TOSCA tools accept such templates) that stop a build: what they lack is needed then.
BUILD_BLOCKERS = ("ARTIFACT_NOT_FOUND", "REQUIREMENT_NOT_SELECTED")


def require_buildable(template: Template) -> None:
    """Refuse to build a template whose implementation files are missing or whose node_filter selects nothing."""
    blockers = [replace(w, severity="error") for w in template.warnings if w.code in BUILD_BLOCKERS]
    if blockers:
        raise DescriptorError(blockers)


def descriptor_dir(template: Template) -> str:
    return os.path.dirname(os.path.abspath(template.file))


__all__ = ["load_template", "load_template_text", "resolve_inputs", "parse_input_value", "STANDARD_OPERATIONS",
           "VERSIONS", "TOP_KEYS", "TOPOLOGY_KEYS", "NODE_KEYS", "INPUT_KEYS", "REQUIREMENT_KEYS", "CAPABILITY_KEYS",
           "GROUP_KEYS", "POLICY_KEYS", "OUTPUT_KEYS", "ARTIFACT_KEYS", "SCALING_KEYS", "MAX_IMPORTS",
           "ALLOW_IMPORTS_ENV", "require_topology", "require_buildable"]
