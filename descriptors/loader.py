"""Load a descriptor file into a validated Template, collecting every diagnostic of the file at once."""

from __future__ import annotations

import os
from typing import Any

from descriptors.diagnostics import (DescriptorError, Diagnostic, DiagnosticSink, Position,
                                     did_you_mean, join_path)
from descriptors.functions import SELF_NAMES, function_call, iter_calls
from descriptors.template import InputDef, NodeTemplate, OutputDef, Requirement, Template
from descriptors.types import SCALAR_TYPES, builtin_registry
from descriptors.values import check_value
from descriptors.yamlpos import YMap, load_yaml_file, parse_yaml, position_of

VERSIONS = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_1", "tosca_simple_yaml_1_2",
            "tosca_simple_yaml_1_3", "tosca_2_0")
TOP_KEYS = ("tosca_definitions_version", "description", "metadata", "imports", "repositories",
            "dsl_definitions", "topology_template", "node_types", "relationship_types", "capability_types",
            "data_types", "policy_types", "group_types", "interface_types", "artifact_types", "namespace")
TOPOLOGY_KEYS = ("description", "inputs", "node_templates", "outputs", "groups", "policies",
                 "relationship_templates", "substitution_mappings", "workflows")
NODE_KEYS = ("type", "description", "metadata", "properties", "attributes", "requirements", "capabilities",
             "interfaces", "artifacts", "node_filter", "directives", "copy")
INPUT_KEYS = ("type", "description", "required", "default", "constraints", "entry_schema", "status",
              "metadata", "key_schema", "value")


def load_template(path: str) -> Template:
    """Parse and validate a descriptor file; raise DescriptorError listing all problems."""
    return _build(load_yaml_file(path), path)


def load_template_text(text: str, file: str = "<string>") -> Template:
    return _build(parse_yaml(text, file), file)


def _unknown_keys(mapping: dict, allowed, sink: DiagnosticSink, path: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            sink.error("UNKNOWN_KEY", f"unknown key '{key}' in {what}", mapping.key_position(key)
                       if isinstance(mapping, YMap) else Position("<unknown>"), join_path(path, key),
                       did_you_mean(key, allowed))


def _build(doc: Any, file: str) -> Template:
    sink = DiagnosticSink()
    file_pos = Position(file, 1, 1)
    if not isinstance(doc, dict):
        raise DescriptorError([Diagnostic("DOC_NOT_MAPPING", "a descriptor must be a YAML mapping with "
                                          "'tosca_definitions_version' and 'topology_template'", file_pos)])
    _unknown_keys(doc, TOP_KEYS, sink, "", "the descriptor")
    version = doc.get("tosca_definitions_version")
    if version is None:
        sink.error("VERSION_MISSING", "'tosca_definitions_version' is missing", file_pos,
                   "tosca_definitions_version", "add 'tosca_definitions_version: tosca_simple_yaml_1_3'")
    elif version not in VERSIONS:
        sink.error("VERSION_UNKNOWN", f"unsupported tosca_definitions_version '{version}'",
                   doc.position_of("tosca_definitions_version"), "tosca_definitions_version",
                   did_you_mean(version, VERSIONS) or f"use one of {', '.join(VERSIONS)}")

    types = builtin_registry().copy()
    types.add_from_document(doc.get("node_types"), sink, "node_types", file_pos)
    types.check_hierarchy(sink)

    template = Template(file=file, version=str(version), description=str(doc.get("description") or ""),
                        types=types, document=doc)
    topo = doc.get("topology_template")
    if topo is None:
        sink.error("TOPOLOGY_MISSING", "'topology_template' is missing", file_pos, "topology_template")
        sink.raise_if_errors()
        return template
    if not isinstance(topo, dict):
        sink.error("TOPOLOGY_NOT_MAPPING", "'topology_template' must be a mapping",
                   doc.position_of("topology_template"), "topology_template")
        sink.raise_if_errors()
    _unknown_keys(topo, TOPOLOGY_KEYS, sink, "topology_template", "topology_template")

    _parse_inputs(template, topo, sink)
    _parse_nodes(template, topo, sink)
    _parse_outputs(template, topo, sink)
    _check_functions(template, sink)
    template.warnings = sink.warnings
    sink.raise_if_errors()
    return template


def _section(parent: dict, key: str, sink: DiagnosticSink, path: str) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        sink.error("SECTION_NOT_MAPPING", f"'{key}' must be a mapping", parent.position_of(key), path)
        return {}
    return value


def _parse_inputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.inputs"
    inputs = _section(topo, "inputs", sink, base)
    for name, body in inputs.items():
        path = join_path(base, name)
        pos = inputs.key_position(name)
        if not isinstance(body, dict):
            sink.error("INPUT_BAD_DEFINITION", f"input '{name}' must be a mapping with at least 'type'", pos, path)
            continue
        _unknown_keys(body, INPUT_KEYS, sink, path, f"input '{name}'")
        itype = str(body.get("type", "string"))
        if itype not in SCALAR_TYPES:
            sink.error("INPUT_UNKNOWN_TYPE", f"input '{name}' has unknown type '{itype}'",
                       body.position_of("type"), join_path(path, "type"), did_you_mean(itype, SCALAR_TYPES))
        idef = InputDef(name=name, type=itype, required=bool(body.get("required", True)),
                        default=body.get("default"), has_default="default" in body,
                        description=str(body.get("description") or ""), position=pos, path=path)
        if idef.has_default and idef.default is not None:
            problem = check_value(idef.default, itype)
            if problem:
                sink.error("INPUT_BAD_DEFAULT", f"default of input '{name}' {problem}",
                           body.position_of("default"), join_path(path, "default"))
        template.inputs[name] = idef


def _parse_requirement(node: str, item: Any, index: int, reqs: Any, sink: DiagnosticSink,
                       base: str) -> Requirement | None:
    path = f"{base}[{index}]"
    pos = position_of(reqs, index)
    if not isinstance(item, dict) or len(item) != 1:
        sink.error("REQUIREMENT_BAD", "each requirement must be a one-key mapping like '- dependency: db'",
                   pos, path)
        return None
    rname, body = next(iter(item.items()))
    rpath = join_path(path, rname)
    relationship = None
    if isinstance(body, dict):
        target = body.get("node")
        relationship = body.get("relationship")
        if isinstance(relationship, dict):
            relationship = relationship.get("type")
        tpos = body.position_of("node") if isinstance(body, YMap) else pos
        if target is None:
            # A requirement with only capability/node_filter is matched by the full language;
            # the core engine needs an explicit node.
            sink.error("REQUIREMENT_NO_NODE", f"requirement '{rname}' of node '{node}' names no target node",
                       pos, rpath, "add 'node: <template name>'")
            return None
        rpath = join_path(rpath, "node")
    else:
        target = body
        tpos = item.position_of(rname) if isinstance(item, YMap) else pos
    if not isinstance(target, str):
        sink.error("REQUIREMENT_BAD_TARGET", f"requirement '{rname}' of node '{node}' must name a node template",
                   tpos, rpath)
        return None
    return Requirement(name=rname, target=target, relationship=relationship, position=tpos, path=rpath)


def _parse_nodes(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.node_templates"
    nodes = _section(topo, "node_templates", sink, base)
    if not nodes and "node_templates" not in topo:
        sink.error("NODES_MISSING", "'topology_template' has no 'node_templates'", topo.pos, base)
    types = template.types
    for name, body in nodes.items():
        path = join_path(base, name)
        pos = nodes.key_position(name)
        if not isinstance(body, dict):
            sink.error("NODE_BAD_DEFINITION", f"node template '{name}' must be a mapping with a 'type'", pos, path)
            continue
        _unknown_keys(body, NODE_KEYS, sink, path, f"node template '{name}'")
        ntype = body.get("type")
        if ntype is None:
            sink.error("NODE_TYPE_MISSING", f"node template '{name}' has no 'type'", pos, join_path(path, "type"))
            continue
        if ntype not in types:
            sink.error("NODE_TYPE_UNKNOWN", f"node template '{name}' has unknown type '{ntype}'",
                       body.position_of("type"), join_path(path, "type"), did_you_mean(ntype, types.types))
            continue
        node = NodeTemplate(name=name, type=ntype, position=pos, path=path,
                            properties=body.get("properties") or YMap(pos),
                            capabilities=body.get("capabilities") or {},
                            interfaces=body.get("interfaces") or {},
                            metadata=dict(body.get("metadata") or {}))
        _check_properties(template, node, body, sink)
        reqs = body.get("requirements") or []
        if not isinstance(reqs, list):
            sink.error("REQUIREMENTS_NOT_LIST", "'requirements' must be a list", body.position_of("requirements"),
                       join_path(path, "requirements"))
            reqs = []
        for i, item in enumerate(reqs):
            req = _parse_requirement(name, item, i, reqs, sink, join_path(path, "requirements"))
            if req:
                node.requirements.append(req)
        _parse_scaling(node, sink)
        template.node_templates[name] = node
    for node in template.node_templates.values():
        for req in node.requirements:
            if req.target == node.name:
                sink.error("REQUIREMENT_SELF", f"node '{node.name}' requires itself", req.position, req.path)
            elif req.target not in template.node_templates and req.target in nodes:
                pass  # the target exists but had its own errors, already reported
            elif req.target not in template.node_templates:
                sink.error("REQUIREMENT_UNKNOWN_NODE",
                           f"requirement '{req.name}' of node '{node.name}' names unknown node '{req.target}'",
                           req.position, req.path, did_you_mean(req.target, nodes))


def _check_properties(template: Template, node: NodeTemplate, body: dict, sink: DiagnosticSink) -> None:
    ntype = template.types.resolved(node.type)
    props = node.properties
    ppath = join_path(node.path, "properties")
    if not isinstance(props, dict):
        sink.error("PROPERTIES_NOT_MAPPING", "'properties' must be a mapping", body.position_of("properties"), ppath)
        node.properties = YMap(node.position)
        return
    for pname, value in props.items():
        pdef = ntype.properties.get(pname)
        if pdef is None:
            sink.error("PROPERTY_UNKNOWN", f"node type '{node.type}' has no property '{pname}'",
                       props.key_position(pname), join_path(ppath, pname), did_you_mean(pname, ntype.properties))
            continue
        if any(True for _ in iter_calls(value)):
            continue  # checked once its functions are resolved
        problem = check_value(value, pdef.type)
        if problem:
            sink.error("PROPERTY_TYPE", f"property '{pname}' {problem}", props.position_of(pname),
                       join_path(ppath, pname))
    for pname, pdef in ntype.properties.items():
        if pdef.required and not pdef.has_default and pname not in props:
            sink.error("PROPERTY_MISSING", f"node '{node.name}' of type '{node.type}' needs property '{pname}'",
                       node.position, ppath)


def _parse_scaling(node: NodeTemplate, sink: DiagnosticSink) -> None:
    caps = node.capabilities
    if not isinstance(caps, dict):
        return
    scalable = caps.get("scalable")
    if not isinstance(scalable, dict):
        return
    props = scalable.get("properties") or {}
    path = join_path(node.path, "capabilities.scalable.properties")
    values = {}
    for key in ("min_instances", "max_instances", "default_instances"):
        if key in props:
            v = props[key]
            call = function_call(v)
            if call and call[0] == "get_input":
                # resolved with the build's inputs (see orchestrator.plan.desired_counts)
                node.count_inputs[key] = call[1][0] if isinstance(call[1], list) else call[1]
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                if key == "max_instances" and v == "UNBOUNDED":
                    continue
                sink.error("SCALING_BAD_VALUE", f"{key} must be a whole number of 0 or more",
                           position_of(props, key, node.position), join_path(path, key))
                continue
            values[key] = v
    node.min_instances = values.get("min_instances", 0)
    node.max_instances = values.get("max_instances")
    node.default_instances = values.get("default_instances", max(1, node.min_instances))
    if node.max_instances is not None and not (node.min_instances <= node.default_instances <= node.max_instances):
        sink.error("SCALING_BAD_RANGE", "default_instances must lie between min_instances and max_instances",
                   position_of(props, "default_instances", node.position), path)


def _parse_outputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.outputs"
    outputs = _section(topo, "outputs", sink, base)
    for name, body in outputs.items():
        path = join_path(base, name)
        pos = outputs.key_position(name)
        if not isinstance(body, dict) or "value" not in body:
            sink.error("OUTPUT_NO_VALUE", f"output '{name}' needs a 'value'", pos, path)
            continue
        template.outputs[name] = OutputDef(name=name, value=body["value"],
                                           description=str(body.get("description") or ""), position=pos, path=path)


def _check_functions(template: Template, sink: DiagnosticSink) -> None:
    """Check every function's references that can be checked before deployment."""
    places = [(n.name, n.properties, n.path + ".properties") for n in template.node_templates.values()]
    places += [(None, o.value, o.path + ".value") for o in template.outputs.values()]
    nodes = template.node_templates
    for self_node, value, base in places:
        for fname, args, container, key, path in iter_calls(value, base):
            pos = position_of(container, key) if container is not None else Position(template.file)
            if fname == "get_input":
                name = args[0] if isinstance(args, list) and args else args
                if not isinstance(name, str) or name not in template.inputs:
                    sink.error("FUNCTION_UNKNOWN_INPUT", f"get_input names unknown input '{name}'", pos, path,
                               did_you_mean(name, template.inputs))
            elif fname in ("get_property", "get_attribute"):
                if not isinstance(args, list) or len(args) < 2:
                    sink.error("FUNCTION_BAD_ARGS", f"{fname} needs a list: [node, name, ...]", pos, path)
                    continue
                ref = args[0]
                if ref in SELF_NAMES:
                    if self_node is None:
                        sink.error("FUNCTION_NO_SELF", f"{ref} means nothing in an output; name a node",
                                   pos, path)
                        continue
                    target = self_node if ref in ("SELF", "SOURCE") else nodes[self_node].host \
                        if self_node in nodes else None
                    if target is None:
                        continue
                elif ref not in nodes:
                    sink.error("FUNCTION_UNKNOWN_NODE", f"{fname} names unknown node '{ref}'", pos, path,
                               did_you_mean(ref, nodes))
                    continue
                else:
                    target = ref
                ttype = template.types.resolved(nodes[target].type)
                if fname == "get_property" and args[1] not in ttype.properties:
                    sink.error("FUNCTION_UNKNOWN_PROPERTY",
                               f"get_property: node '{target}' has no property '{args[1]}'", pos, path,
                               did_you_mean(args[1], ttype.properties))


def parse_input_value(raw: str, itype: str) -> Any:
    """Convert a command-line `--input K=V` string to the input's declared type."""
    import json
    if itype in ("integer",):
        return int(raw)
    if itype == "float":
        return float(raw)
    if itype == "boolean":
        low = raw.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(raw)
    if itype in ("list", "map"):
        return json.loads(raw)
    return raw


def resolve_inputs(template: Template, given: dict[str, Any], source: str = "<command line>") -> dict[str, Any]:
    """Input values for a build: given ones checked against their types, defaults for the rest."""
    sink = DiagnosticSink()
    values: dict[str, Any] = {}
    cli_pos = Position(source)
    for name, raw in given.items():
        idef = template.inputs.get(name)
        if idef is None:
            sink.error("INPUT_UNKNOWN", f"the descriptor declares no input '{name}'", cli_pos,
                       f"topology_template.inputs.{name}", did_you_mean(name, template.inputs))
            continue
        value = raw
        if isinstance(raw, str) and idef.type not in ("string", "any", "version", "timestamp"):
            try:
                value = parse_input_value(raw, idef.type)
            except (ValueError, TypeError):
                sink.error("INPUT_TYPE", f"input '{name}' must be of type {idef.type}, got '{raw}'",
                           idef.position or cli_pos, idef.path)
                continue
        problem = check_value(value, idef.type)
        if problem:
            sink.error("INPUT_TYPE", f"input '{name}' {problem}", idef.position or cli_pos, idef.path)
            continue
        values[name] = value
    for name, idef in template.inputs.items():
        if name in values or name in given:
            continue
        if idef.has_default:
            values[name] = idef.default
        elif idef.required:
            sink.error("INPUT_MISSING", f"input '{name}' is required and has no default; pass --input {name}=VALUE",
                       idef.position or cli_pos, idef.path)
        else:
            values[name] = None
    sink.raise_if_errors()
    return values


def descriptor_dir(template: Template) -> str:
    return os.path.dirname(os.path.abspath(template.file))
