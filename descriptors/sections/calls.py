"""Function calls (get_input, get_property, get_attribute, ...): references and types checked before deployment."""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean
from descriptors.driver_attributes import declared_attributes, known_attributes
from descriptors.functions import SELF_NAMES, contains_call, function_call, iter_calls
from descriptors.sections.common import written_nodes
from descriptors.sections.inputs import input_schema
from descriptors.template import Template
from descriptors.types import PropertyDef, TypeRegistry
from descriptors.yamlpos import YList, YMap, position_of

def _function_places(template: Template, with_calls: list | None = None):
    """(self node, value, document path, target) of every place functions may appear.

    Node and capability properties without any call are left out (before their paths are
    built): there would be nothing to check in them. with_calls collects (node, capability
    name, properties) of the capabilities whose properties hold calls.
    """
    for n in template.node_templates.values():
        if n.properties and contains_call(n.properties):
            yield n.name, n.properties, n.path + ".properties", None
        if isinstance(n.capabilities, dict):
            for cname, cbody in n.capabilities.items():
                if isinstance(cbody, dict) and isinstance(cbody.get("properties"), dict) \
                        and contains_call(cbody["properties"]):
                    if with_calls is not None:
                        with_calls.append((n, cname, cbody["properties"]))
                    yield n.name, cbody["properties"], f"{n.path}.capabilities.{cname}.properties", None
        for (iname, oname), op in n.operations.items():
            if op.inputs:
                yield n.name, op.inputs, f"{op.path}.inputs", None
        for req in n.requirements:
            if req.relationship_properties:
                yield n.name, req.relationship_properties, f"{req.path}.relationship.properties", req.target
        if n.attributes:
            yield n.name, n.attributes, n.path + ".attributes", None
    for g in template.groups.values():
        yield None, g.properties, g.path + ".properties", None
    for p in template.policies.values():
        yield None, p.properties, p.path + ".properties", None
    for o in template.outputs.values():
        yield None, o.value, o.path + ".value", None


def check_functions(template: Template, sink: DiagnosticSink) -> None:
    """Check every function's references and types that can be checked before deployment."""
    nodes = template.node_templates
    types = template.types
    capabilities_with_calls: list = []
    for self_node, value, base, target in _function_places(template, capabilities_with_calls):
        if not isinstance(value, (dict, list)):
            continue
        for fname, args, container, key, path in iter_calls(value, base):
            pos = position_of(container, key) if container is not None else Position(template.file)
            if container is None and isinstance(value, (YMap, YList)):
                pos = value.pos
            _check_call(template, fname, args, self_node, target, pos, path, sink)
    # a property set straight from an input or another property must be of a compatible type
    for node in nodes.values():
        if node.properties:
            _check_call_types(template, node.name, node.properties, types.resolved(node.type).properties,
                              f"{node.path}.properties", sink)
    for node, cname, values in capabilities_with_calls:
        cdef = types.resolved(node.type).capabilities.get(cname)
        if cdef is None or not types.has("capability", cdef.type):
            continue
        defs = dict(types.resolved(types.canonical(cdef.type, "capability"), "capability").properties)
        defs.update(cdef.properties)
        _check_call_types(template, node.name, values, defs, f"{node.path}.capabilities.{cname}.properties", sink)


def _check_call_types(template: Template, self_node: str, values: dict, defs: dict, path: str,
                      sink: DiagnosticSink) -> None:
    for pname, value in values.items():
        call = function_call(value)
        pdef = defs.get(pname)
        if call is None or pdef is None:
            continue
        source_type = _call_type(template, call, self_node)
        if source_type and not _compatible(source_type, pdef.type, template.types):
            sink.error("FUNCTION_TYPE", f"property '{pname}' is of type {pdef.type}, but {call[0]} gives a "
                       f"value of type {source_type}", values.position_of(pname) if isinstance(values, YMap)
                       else Position(template.file), f"{path}.{pname}")


def _call_type(template: Template, call: tuple, self_node: str) -> str | None:
    name, args = call
    if name == "get_input":
        key = args[0] if isinstance(args, list) and args else args
        idef = template.inputs.get(key) if isinstance(key, str) else None
        if idef is None or (isinstance(args, list) and len(args) > 1):
            return None
        return idef.type
    if name in ("concat", "join", "token"):
        return "string"
    if name == "get_property" and isinstance(args, list) and len(args) == 2:
        ref = self_node if args[0] in ("SELF", "SOURCE") else args[0]
        node = template.node_templates.get(ref)
        if node is None:
            return None
        pdef = template.types.resolved(node.type).properties.get(args[1])
        return pdef.type if pdef else None
    return None


def _compatible(source: str, dest: str, types: TypeRegistry) -> bool:
    if source == dest or "any" in (source, dest):
        return True
    if dest == "float" and source == "integer":
        return True
    if dest == "string" and source in ("version", "timestamp") or (source == "string" and dest in (
            "version", "timestamp", "scalar-unit.size", "scalar-unit.time", "scalar-unit.frequency",
            "scalar-unit.bitrate")):
        return True
    for a, b in ((source, dest), (dest, source)):
        if types.has("data", a):
            dtype = types.resolved(types.canonical(a, "data"), "data")
            if dtype.primitive == b or types.is_a(types.canonical(a, "data"), b, "data"):
                return True
            if dtype.primitive is None and b == "map":
                return True
    return False


def _entity(template: Template, ref: Any, self_node: str | None, target: str | None, fname: str, pos: Position,
            path: str, sink: DiagnosticSink) -> str | None:
    nodes = template.node_templates
    if ref in SELF_NAMES:
        if self_node is None:
            sink.error("FUNCTION_NO_SELF", f"{ref} means nothing here; name a node template", pos, path)
            return None
        if ref in ("SELF", "SOURCE"):
            return self_node
        if ref == "TARGET":
            if target is None:
                sink.error("FUNCTION_NO_TARGET", "TARGET means something only in a requirement's relationship",
                           pos, path, "name the node template instead")
            return target
        host = nodes[self_node].host if self_node in nodes else None
        if host is None:
            sink.error("FUNCTION_NO_HOST", f"node '{self_node}' has no 'host' requirement, so HOST means nothing "
                       "here", pos, path)
        return host
    if not isinstance(ref, str) or ref not in nodes:
        if isinstance(ref, str) and ref in written_nodes(template):
            return None  # written, but its definition is broken: reported there, once
        sink.error("FUNCTION_UNKNOWN_NODE", f"{fname} names unknown node '{ref}'", pos, path,
                   did_you_mean(ref, nodes))
        return None
    return ref


def _check_call(template: Template, fname: str, args: Any, self_node: str | None, target: str | None,
                pos: Position, path: str, sink: DiagnosticSink) -> None:
    nodes = template.node_templates
    types = template.types
    if fname == "get_input":
        name = args[0] if isinstance(args, list) and args else args
        if not isinstance(name, str) or name not in template.inputs:
            sink.error("FUNCTION_UNKNOWN_INPUT", f"get_input names unknown input '{name}'", pos, path,
                       did_you_mean(name, template.inputs) or
                       (f"declared inputs: {', '.join(template.inputs)}" if template.inputs else
                        "declare it under topology_template.inputs"))
        elif isinstance(args, list) and len(args) > 1:
            idef = template.inputs[name]
            _check_nested(template, input_schema(idef), args[1:], f"input '{name}'", pos, path, sink)
        return
    if fname in ("get_property", "get_attribute"):
        if not isinstance(args, list) or len(args) < 2 or not all(isinstance(a, str) for a in args[:2]) \
                or not all(isinstance(a, (str, int)) for a in args[2:]):
            sink.error("FUNCTION_BAD_ARGS", f"{fname} needs a list: [node, name, nested names or indexes...]",
                       pos, path)
            return
        entity = _entity(template, args[0], self_node, target, fname, pos, path, sink)
        if entity is None:
            return
        if args[0] == "HOST":
            entity = _host_having(template, fname, args, entity, target)
        node = nodes[entity]
        ntype = types.resolved(node.type)
        name = args[1]
        rest = args[2:]
        if len(args) >= 3 and isinstance(name, str):
            via = next((r.target for r in node.requirements if r.name == name), None)
            if via is not None:  # [node, requirement, ...]: the same names on the requirement's target
                entity, node = via, nodes[via]
                ntype = types.resolved(node.type)
                name, rest = args[2], args[3:]
                if name not in ntype.properties and name not in ntype.attributes \
                        and _capability_having(types, ntype, name, fname):
                    return
            if rest and name in ntype.capabilities and name not in ntype.properties and name not in ntype.attributes:
                cdef = ntype.capabilities[name]
                ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability") \
                    if types.has("capability", cdef.type) else None
                known = dict(ctype.properties if ctype else {})
                known.update(cdef.properties)
                if fname == "get_attribute" and ctype:
                    known.update(ctype.attributes)
                if rest[0] not in known:
                    sink.error("FUNCTION_UNKNOWN_PROPERTY", f"{fname}: capability '{name}' of node '{entity}' has no "
                               f"{'property' if fname == 'get_property' else 'attribute'} '{rest[0]}'", pos, path,
                               did_you_mean(rest[0], known))
                return
        if fname == "get_property":
            pdef = ntype.properties.get(name)
            if pdef is None:
                sink.error("FUNCTION_UNKNOWN_PROPERTY", f"get_property: node '{entity}' has no property '{name}'",
                           pos, path, did_you_mean(name, ntype.properties))
                return
            _check_nested(template, pdef.schema, rest, f"property '{name}' of node '{entity}'", pos, path, sink,
                          node.properties.get(name) if isinstance(node.properties, dict) else None)
        else:
            if name in ntype.attributes and rest:
                _check_nested(template, ntype.attributes[name].schema, rest, f"attribute '{name}' of node "
                              f"'{entity}'", pos, path, sink)
            _check_attribute_name(template, entity, name, pos, path, sink)
        return
    if fname == "get_artifact":
        if not isinstance(args, list) or not 2 <= len(args) <= 4 or not all(isinstance(a, str) for a in args[:2]):
            sink.error("FUNCTION_BAD_ARGS", "get_artifact needs [node, artifact name, location?, remove?]", pos, path)
            return
        entity = _entity(template, args[0], self_node, target, fname, pos, path, sink)
        if entity is None:
            return
        known = dict(types.resolved(nodes[entity].type).artifacts)
        known.update(nodes[entity].artifacts)
        if args[1] not in known:
            sink.error("FUNCTION_UNKNOWN_ARTIFACT", f"get_artifact: node '{entity}' has no artifact '{args[1]}'", pos,
                       path, did_you_mean(args[1], known))
        return
    if fname == "get_nodes_of_type":
        if not isinstance(args, str) or not types.has("node", args):
            sink.error("FUNCTION_BAD_ARGS", f"get_nodes_of_type needs the name of a node type, not '{args}'", pos,
                       path, did_you_mean(args, types.kinds["node"]) if isinstance(args, str) else "")
        return
    if fname == "get_operation_output":
        if not isinstance(args, list) or len(args) != 4 or not all(isinstance(a, str) for a in args):
            sink.error("FUNCTION_BAD_ARGS", "get_operation_output needs [node, interface, operation, output]",
                       pos, path)
            return
        entity = _entity(template, args[0], self_node, target, fname, pos, path, sink)
        if entity is None:
            return
        ntype = types.resolved(nodes[entity].type)
        iface = ntype.interfaces.get(args[1])
        if iface is None:
            sink.error("FUNCTION_UNKNOWN_INTERFACE", f"get_operation_output: node '{entity}' has no interface "
                       f"'{args[1]}'", pos, path, did_you_mean(args[1], ntype.interfaces))
            return
        ops = dict(types.interface_operations(iface.type))
        ops.update(iface.operations)
        if args[2] not in ops:
            sink.error("FUNCTION_UNKNOWN_OPERATION", f"get_operation_output: interface '{args[1]}' of node "
                       f"'{entity}' has no operation '{args[2]}'", pos, path, did_you_mean(args[2], ops))
            return
        if (args[1], args[2]) not in nodes[entity].operations and not ops[args[2]].implementation:
            sink.warning("FUNCTION_NO_OPERATION", f"get_operation_output: node '{entity}' does not implement "
                         f"{args[1]}.{args[2]}, so it produces no outputs", pos, path)
        return
    if fname == "concat":
        if not isinstance(args, list) or not args:
            sink.error("FUNCTION_BAD_ARGS", "concat needs a list of values", pos, path)
        return
    if fname == "join":
        if not isinstance(args, list) or not 1 <= len(args) <= 2 or not isinstance(args[0], (list, dict)) \
                or (len(args) == 2 and not isinstance(args[1], str)):
            sink.error("FUNCTION_BAD_ARGS", "join needs [list_of_strings] or [list_of_strings, delimiter]", pos, path)
        return
    if fname == "token":
        if not isinstance(args, list) or len(args) != 3 or not isinstance(args[1], str) \
                or not (isinstance(args[2], int) and not isinstance(args[2], bool)):
            sink.error("FUNCTION_BAD_ARGS", "token needs [string, separators, index]", pos, path)


def _check_attribute_name(template: Template, entity: str, name: str, pos: Position, path: str,
                          sink: DiagnosticSink) -> None:
    """An attribute get_attribute names must be declared by the node's type or reported by its driver: a build
    would otherwise wait for a value that never comes."""
    known = known_attributes(template, entity)
    if known is None or name in known:
        return
    node = template.node_templates[entity]
    declared = declared_attributes(template.types, node.type)  # properties (also attributes) aside in the hint
    own = sorted(n for n in known if n in declared or n not in template.types.resolved(node.type).properties)
    sink.error("FUNCTION_UNKNOWN_ATTRIBUTE", f"get_attribute: node '{entity}' ({node.type}) has no attribute "
               f"'{name}'", pos, path, did_you_mean(name, known) or
               (_listed("its attributes are", own) if own else "its type declares no attributes"))


def _listed(label: str, names: list, most: int = 12) -> str:
    return f"{label}: {', '.join(names[:most])}" + (f" and {len(names) - most} more" if len(names) > most else "")


def _host_having(template: Template, fname: str, args: list, host: str, target: str | None) -> str:
    """HOST in get_property/get_attribute: the first node down the hosted-on chain from `host` for which the
    rest of the call checks out (TOSCA 1.3, 4.4.1.1); the immediate host when none does."""
    nodes, node, seen = template.node_templates, host, set()
    while node is not None and node in nodes and node not in seen:
        seen.add(node)
        scratch = DiagnosticSink()
        _check_call(template, fname, [node] + list(args[1:]), None, target, Position(template.file), "", scratch)
        if not scratch.errors:
            return node
        node = nodes[node].host
    return host


def _capability_having(types: TypeRegistry, ntype, name: str, fname: str) -> bool:
    """Whether one of a node type's capabilities declares the property (or attribute) `name`."""
    for cdef in ntype.capabilities.values():
        if not types.has("capability", cdef.type):
            continue
        ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability")
        if name in cdef.properties or name in ctype.properties or (fname == "get_attribute" and
                                                                   name in ctype.attributes):
            return True
    return False


def _check_nested(template: Template, schema: Any, steps: list, what: str, pos: Position, path: str,
                  sink: DiagnosticSink, value: Any = None) -> None:
    """A nested path into a value whose type is known: each field must exist, each index must be an index
    (and within the list, where the template writes the list itself)."""
    types = template.types
    for step in steps:
        if schema is None:
            return
        vtype = schema.type
        if vtype == "list":
            if not (isinstance(step, int) and not isinstance(step, bool)):
                sink.error("FUNCTION_BAD_PATH", f"{what} is a list; '{step}' is not an index", pos, path)
                return
            if step < 0 or (isinstance(value, list) and step >= len(value)):
                size = f"{len(value)} elements" if isinstance(value, list) else "a list"
                sink.error("FUNCTION_INDEX_RANGE", f"index {step} is outside {what} ({size})", pos, path)
                return
            value = value[step] if isinstance(value, list) else None
            schema = schema.entry_schema
        elif vtype == "map":
            value = value.get(step) if isinstance(value, dict) else None
            schema = schema.entry_schema
        elif types.has("data", vtype):
            dtype = types.resolved(types.canonical(vtype, "data"), "data")
            if dtype.primitive or not dtype.properties:
                return
            field = dtype.properties.get(step)
            if field is None:
                sink.error("FUNCTION_BAD_PATH", f"{what} ({vtype}) has no field '{step}'", pos, path,
                           did_you_mean(step, dtype.properties))
                return
            schema = field.schema
            value = value.get(step) if isinstance(value, dict) else None
            what = f"field '{step}' of {what}"
        else:
            if vtype not in ("any",):
                sink.error("FUNCTION_BAD_PATH", f"{what} is of type {vtype}; it has no element '{step}'", pos, path)
            return
