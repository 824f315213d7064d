"""topology_template.substitution_mappings: the topology exposed as one node of a node type; every name checked."""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.sections.common import section, unknown_keys, written_nodes
from descriptors.template import Template

SUBSTITUTION_KEYS = ("node_type", "substitution_filter", "properties", "attributes", "capabilities", "requirements",
                     "interfaces", "description", "metadata")


def check_substitution(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    body = topo.get("substitution_mappings")
    if body is None:
        return
    base = "topology_template.substitution_mappings"
    pos = topo.position_of("substitution_mappings")
    if not isinstance(body, dict):
        sink.error("SUBSTITUTION_BAD", "'substitution_mappings' must be a mapping with 'node_type'", pos, base)
        return
    unknown_keys(body, SUBSTITUTION_KEYS, sink, base, "substitution_mappings")
    types = template.types
    ntype = body.get("node_type")
    if not isinstance(ntype, str) or not types.has("node", ntype):
        sink.error("SUBSTITUTION_UNKNOWN_TYPE", f"substitution_mappings names unknown node type '{ntype}'",
                   body.position_of("node_type") if "node_type" in body else pos, join_path(base, "node_type"),
                   did_you_mean(ntype, types.kinds["node"]) if isinstance(ntype, str) else "add 'node_type'")
        return
    resolved = types.resolved(types.canonical(ntype))
    nodes = template.node_templates
    for key, defined, what in (("capabilities", resolved.capabilities, "capability"),
                               ("requirements", resolved.requirements, "requirement")):
        entries = _section(body, key, sink, base)
        for name, target in entries.items():
            path = join_path(join_path(base, key), name)
            epos = entries.key_position(name) if hasattr(entries, "key_position") else pos
            if name not in defined:
                sink.error(f"SUBSTITUTION_UNKNOWN_{what.upper()}", f"node type '{resolved.name}' has no {what} "
                           f"'{name}' to map", epos, path, did_you_mean(name, defined))
                continue
            target = _mapping(target)
            if not (isinstance(target, list) and len(target) == 2 and all(isinstance(t, str) for t in target)):
                sink.error("SUBSTITUTION_BAD", f"{what} '{name}' must map to [node template, {what} name]", epos, path)
                continue
            node, inner = target
            if node not in nodes:
                if node in written_nodes(template):
                    continue  # its own definition is broken: reported there, once
                sink.error("SUBSTITUTION_UNKNOWN_NODE", f"{what} '{name}' maps to unknown node template '{node}'",
                           epos, path, did_you_mean(node, nodes))
                continue
            have = types.resolved(nodes[node].type).capabilities if what == "capability" else \
                types.resolved(nodes[node].type).requirements
            if inner not in have:
                sink.error(f"SUBSTITUTION_UNKNOWN_{what.upper()}", f"node template '{node}' has no {what} '{inner}'",
                           epos, path, did_you_mean(inner, have))
    for key, defined, source, what in (("properties", resolved.properties, template.inputs, "input"),
                                       ("attributes", resolved.attributes, template.outputs, "output")):
        entries = _section(body, key, sink, base)
        for name, target in entries.items():
            path = join_path(join_path(base, key), name)
            epos = entries.key_position(name) if hasattr(entries, "key_position") else pos
            if name not in defined:
                sink.error("SUBSTITUTION_UNKNOWN_PROPERTY" if key == "properties" else
                           "SUBSTITUTION_UNKNOWN_ATTRIBUTE", f"node type '{resolved.name}' has no "
                           f"{key[:-1] if key == 'attributes' else 'property'} '{name}' to map", epos, path,
                           did_you_mean(name, defined))
                continue
            target = _mapping(target)
            if isinstance(target, list) and len(target) == 1 and isinstance(target[0], str) \
                    and target[0] not in source:
                sink.error(f"SUBSTITUTION_UNKNOWN_{what.upper()}", f"'{name}' maps to unknown {what} '{target[0]}'",
                           epos, path, did_you_mean(target[0], source))
            elif isinstance(target, list) and len(target) == 2 and isinstance(target[0], str) \
                    and target[0] not in nodes and target[0] not in written_nodes(template):
                sink.error("SUBSTITUTION_UNKNOWN_NODE", f"'{name}' maps to unknown node template '{target[0]}'",
                           epos, path, did_you_mean(target[0], nodes))
    entries = _section(body, "interfaces", sink, base)
    workflows = topo.get("workflows") if isinstance(topo.get("workflows"), dict) else {}
    for name, ops in entries.items():
        path = join_path(join_path(base, "interfaces"), name)
        if name not in resolved.interfaces:
            sink.error("SUBSTITUTION_UNKNOWN_INTERFACE", f"node type '{resolved.name}' has no interface '{name}'",
                       pos, path, did_you_mean(name, resolved.interfaces))
            continue
        for op, workflow in (ops.items() if isinstance(ops, dict) else []):
            if not isinstance(workflow, str) or workflow not in workflows:
                sink.error("SUBSTITUTION_UNKNOWN_WORKFLOW", f"operation '{op}' maps to unknown workflow '{workflow}'",
                           pos, join_path(path, op), did_you_mean(workflow, workflows) if isinstance(workflow, str)
                           else "")


def _section(body: dict, key: str, sink: DiagnosticSink, base: str) -> Any:
    return section(body, key, sink, join_path(base, key), "SUBSTITUTION_BAD",
                   f"'{key}' of substitution_mappings must be a mapping")


def _mapping(target: Any) -> Any:
    """TOSCA 1.3 also writes a mapping as {mapping: [...]} (and a property as {value: ...})."""
    if isinstance(target, dict) and len(target) == 1 and "mapping" in target:
        return target["mapping"]
    return target
