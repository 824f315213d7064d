"""topology_template.node_templates: types, properties, attributes, artifacts and instance counts of each node."""

from __future__ import annotations

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.functions import function_call
from descriptors.sections.capabilities import SCALING_KEYS, check_capabilities
from descriptors.sections.common import assigned_problems, check_assigned, report_assigned, section, unknown_keys
from descriptors.sections.interfaces import parse_interfaces
from descriptors.template import NodeTemplate, Template
from descriptors.types import TypeRegistry, builtin_registry
from descriptors.yamlpos import YMap, position_of

NODE_KEYS = ("type", "description", "metadata", "properties", "attributes", "requirements", "capabilities",
             "interfaces", "artifacts", "node_filter", "directives", "copy")

ARTIFACT_KEYS = ("type", "file", "repository", "description", "deploy_path", "artifact_version", "checksum",
                 "checksum_algorithm", "properties")
_NODE_KEY_SET = frozenset(NODE_KEYS)

def parse_nodes(template: Template, topo: dict, sink: DiagnosticSink) -> dict:
    base = "topology_template.node_templates"
    nodes = section(topo, "node_templates", sink, base)
    if not nodes and "node_templates" not in topo:
        sink.error("NODES_MISSING", "'topology_template' has no 'node_templates'", topo.pos, base)
    types = template.types
    node_type_names = types.kinds["node"]
    copies = {name for name, body in nodes.items() if isinstance(body, dict) and "copy" in body}
    for name, body in nodes.items():
        path = f"{base}.{name}"
        pos = nodes.key_position(name)
        if not isinstance(body, dict):
            sink.error("NODE_BAD_DEFINITION", f"node template '{name}' must be a mapping with a 'type'", pos, path)
            continue
        for key in body:
            if key not in _NODE_KEY_SET:
                unknown_keys(body, NODE_KEYS, sink, path, f"node template '{name}'")
                break
        if "copy" in body:
            body = _copied(nodes, copies, name, body, sink, path)
            if body is None:
                continue
            nodes[name] = body  # requirements are read from the raw body later
        ntype = body.get("type")
        if ntype is None:
            sink.error("NODE_TYPE_MISSING", f"node template '{name}' has no 'type'", pos, join_path(path, "type"))
            continue
        if not isinstance(ntype, str):
            sink.error("NODE_TYPE_BAD", f"the type of node template '{name}' must be a type name",
                       body.position_of("type"), join_path(path, "type"))
            continue
        if ntype not in node_type_names:
            if not types.has("node", ntype):
                other = [k for k in ("capability", "relationship", "policy", "group", "data") if types.has(k, ntype)]
                sink.error("NODE_TYPE_UNKNOWN", f"node template '{name}' has unknown type '{ntype}'",
                           body.position_of("type"), join_path(path, "type"),
                           f"'{ntype}' is a {other[0]} type, not a node type" if other
                           else did_you_mean(ntype, node_type_names))
                continue
            ntype = types.canonical(ntype)
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            sink.error("SECTION_NOT_MAPPING", "'metadata' must be a mapping", body.position_of("metadata"),
                       join_path(path, "metadata"))
            metadata = None
        caps = body.get("capabilities")
        node = NodeTemplate(name=name, type=ntype, position=pos, path=path,
                            properties=body.get("properties") or YMap(pos),
                            capabilities=caps if isinstance(caps, dict) else {},
                            interfaces=body.get("interfaces") or {},
                            metadata=dict(metadata or {}),
                            description=str(body.get("description") or ""))
        resolved = types.resolved(ntype)
        _check_properties(template, node, resolved, body, sink)
        _check_attributes(template, node, resolved, body, sink)
        check_capabilities(template, node, resolved, body, sink)
        parse_interfaces(template, node, resolved, body, sink)
        parse_artifacts(template, node, body, sink)
        directives = body.get("directives")
        if isinstance(directives, list):
            node.directives = [d for d in directives if isinstance(d, str)]
        parse_scaling(node, sink)
        template.node_templates[name] = node
    return nodes


def _copied(nodes: dict, copies: set, name: str, body: YMap, sink: DiagnosticSink, path: str) -> YMap | None:
    """A template with 'copy: other': the other template's definition, overridden key by key by its own (TOSCA 1.3).
    The copied template may not itself be a copy."""
    source = body["copy"]
    pos = body.position_of("copy")
    if not isinstance(source, str) or source not in nodes or source == name:
        sink.error("NODE_COPY_UNKNOWN", f"node template '{name}' copies unknown node template '{source}'", pos,
                   join_path(path, "copy"), did_you_mean(source, nodes) if isinstance(source, str) else "")
        return None
    original = nodes[source]
    if not isinstance(original, dict):
        return None  # reported with the original
    if source in copies:
        sink.error("NODE_COPY_CHAIN", f"node template '{name}' copies '{source}', which is itself a copy", pos,
                   join_path(path, "copy"), "copy the original template instead")
        return None
    merged = YMap(body.pos)
    for src in (original, body):
        for key, value in src.items():
            if key != "copy":
                merged[key] = value
                if isinstance(src, YMap):
                    if key in src.key_marks:
                        merged.key_marks[key] = src.key_marks[key]
                    if key in src.val_marks:
                        merged.val_marks[key] = src.val_marks[key]
    merged.file = body.file
    return merged


def _check_properties(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    props = node.properties
    ppath = node.path + ".properties"
    if not isinstance(props, dict):
        sink.error("PROPERTIES_NOT_MAPPING", "'properties' must be a mapping", body.position_of("properties"), ppath)
        node.properties = YMap(node.position)
        return
    defs = ntype.properties
    types = template.types
    for pname, value in props.items():
        pdef = defs.get(pname)
        if pdef is None:
            sink.error("PROPERTY_UNKNOWN", f"node type '{node.type}' has no property '{pname}'",
                       props.key_position(pname), f"{ppath}.{pname}",
                       did_you_mean(pname, defs) or (f"its properties are: {', '.join(defs)}" if defs else
                                                     "this type has no properties"))
            continue
        problems = assigned_problems(value, pdef, types)
        if problems:
            report_assigned(problems, sink, "PROPERTY_TYPE", f"property '{pname}'", props.position_of(pname),
                             f"{ppath}.{pname}", value)
    for pname, pdef, normative in _required_properties(types, ntype):
        if pname in props:
            continue
        if normative:  # see descriptors/TOSCA-COMPATIBILITY.md: a warning now; a driver that needs it refuses
            sink.warning("PROPERTY_MISSING", f"node '{node.name}' of type '{node.type}' has no property '{pname}', "
                         "which TOSCA marks required; a driver that needs it refuses the build", node.position,
                         ppath, f"add '{pname}' ({pdef.type}) under properties")
        else:
            sink.error("PROPERTY_MISSING", f"node '{node.name}' of type '{node.type}' needs property '{pname}'",
                       node.position, ppath, f"add '{pname}' ({pdef.type}) under properties")


def _required_properties(types: TypeRegistry, ntype) -> list:
    """(name, definition, normative) of the properties of a resolved type that must be assigned (required, no
    default); normative: defined by a shipped tosca.* type."""
    key = ("required-properties", id(ntype))
    found = types.value_memo.get(key)
    if found is None:
        found = types.value_memo[key] = [(pname, pdef, _normative(types, ntype.name, pname))
                                         for pname, pdef in ntype.properties.items()
                                         if pdef.required and not pdef.has_default]
        types.value_memo.setdefault("_pin", []).append(ntype)  # keeps id(ntype) unique while memoised
    return found


def _normative(types: TypeRegistry, type_name: str, pname: str) -> bool:
    """Whether a property's definition comes from one of the TOSCA profiles' types (tosca.*), rather than from a
    Strato type or the descriptor's own types, which Strato's drivers rely on."""
    for tname in types.lineage(type_name):
        tdef = types.kinds["node"][tname]
        if pname in tdef.properties:
            return tname.startswith("tosca.") and builtin_registry().kinds["node"].get(tname) is tdef
    return False


def _check_attributes(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    apath = node.path + ".attributes"
    attrs = section(body, "attributes", sink, apath)
    if not attrs:
        return
    node.attributes = attrs
    for aname, value in attrs.items():
        adef = ntype.attributes.get(aname)
        if adef is None:
            if not ntype.metadata.get("strato.open_attributes"):
                sink.error("ATTRIBUTE_UNKNOWN", f"node type '{node.type}' has no attribute '{aname}'",
                           attrs.key_position(aname), join_path(apath, aname), did_you_mean(aname, ntype.attributes))
            continue
        check_assigned(value, adef, template.types, sink, "ATTRIBUTE_TYPE", f"attribute '{aname}'",
                        attrs.position_of(aname), join_path(apath, aname))

def parse_artifacts(template: Template, node: NodeTemplate, body: dict, sink: DiagnosticSink) -> None:
    apath = node.path + ".artifacts"
    arts = section(body, "artifacts", sink, apath)
    types = template.types
    for aname, abody in arts.items():
        path = join_path(apath, aname)
        if isinstance(abody, str):
            node.artifacts[aname] = {"file": abody}
            continue
        if not isinstance(abody, dict) or "file" not in abody:
            sink.error("ARTIFACT_BAD", f"artifact '{aname}' must be a file name or a mapping with 'file'",
                       arts.key_position(aname), path)
            continue
        unknown_keys(abody, ARTIFACT_KEYS, sink, path, f"artifact '{aname}'")
        atype = abody.get("type")
        if atype is not None and not types.has("artifact", atype):
            sink.error("ARTIFACT_UNKNOWN_TYPE", f"artifact '{aname}' has unknown type '{atype}'",
                       abody.position_of("type"), join_path(path, "type"), did_you_mean(atype, types.kinds["artifact"]))
        node.artifacts[aname] = dict(abody)


def parse_scaling(node: NodeTemplate, sink: DiagnosticSink) -> None:
    caps = node.capabilities
    if not isinstance(caps, dict):
        return
    scalable = caps.get("scalable")
    if not isinstance(scalable, dict):
        return
    props = scalable.get("properties") or {}
    if not isinstance(props, dict):
        return
    path = node.path + ".capabilities.scalable.properties"
    values = {}
    for key in SCALING_KEYS:
        if key in props:
            v = props[key]
            call = function_call(v)
            if call and call[0] == "get_input":
                # resolved with the build's inputs (see orchestrator.plan.desired_counts)
                node.count_inputs[key] = call[1][0] if isinstance(call[1], list) and call[1] else call[1]
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
    if node.default_instances < node.min_instances or (
            node.max_instances is not None and not node.min_instances <= node.default_instances <= node.max_instances):
        sink.error("SCALING_BAD_RANGE", "default_instances must lie between min_instances and max_instances",
                   position_of(props, "default_instances", node.position), path)
