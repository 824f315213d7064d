"""Capabilities: a node template's capability assignments and finding the capability a requirement needs."""

from __future__ import annotations

from descriptors.diagnostics import DiagnosticSink, did_you_mean
from descriptors.sections.common import SCALARS, assigned_problems, check_assigned, section, unknown_keys
from descriptors.template import NodeTemplate, Template
from descriptors.types import TypeRegistry
from descriptors.yamlpos import YMap

CAPABILITY_KEYS = ("properties", "attributes", "occurrences", "description")

CAPABILITY_KEY_SET = frozenset(CAPABILITY_KEYS)
# Scaling properties that name instance counts, which may come from inputs (see NodeTemplate.count_inputs).
SCALING_KEYS = ("min_instances", "max_instances", "default_instances")

def check_capabilities(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    cpath = node.path + ".capabilities"
    caps = section(body, "capabilities", sink, cpath)
    types = template.types
    cap_memo = types.value_memo.get("capability-definitions")
    if cap_memo is None:
        cap_memo = types.value_memo["capability-definitions"] = {}
    for cname, cbody in caps.items():
        cdef = ntype.capabilities.get(cname)
        if cdef is not None and cbody.__class__ is YMap:
            # the common case, fast: known keys and property values that check out
            found = cap_memo.get(id(cdef))
            if found is None:
                found = cap_memo[id(cdef)] = _capability_definitions(types, cdef)
            ctype, merged = found
            if ctype is not None and _capability_fits(types, cname, cbody, merged):
                continue
        path = f"{cpath}.{cname}"
        if cdef is None:
            sink.error("CAPABILITY_UNKNOWN", f"node type '{node.type}' has no capability '{cname}'",
                       caps.key_position(cname), path,
                       did_you_mean(cname, ntype.capabilities) or
                       (f"its capabilities are: {', '.join(ntype.capabilities)}" if ntype.capabilities else ""))
            continue
        if cbody is None:
            continue
        if not isinstance(cbody, dict):
            sink.error("CAPABILITY_BAD", f"capability '{cname}' must be a mapping with 'properties'",
                       caps.position_of(cname), path)
            continue
        for key in cbody:
            if key not in CAPABILITY_KEY_SET:
                unknown_keys(cbody, CAPABILITY_KEYS, sink, path, f"capability '{cname}'")
                break
        if not types.has("capability", cdef.type):
            continue
        ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability")
        for key in ("properties", "attributes"):
            values = section(cbody, key, sink, f"{path}.{key}")
            if not values:
                continue
            own = getattr(cdef, key)
            inherited = getattr(ctype, key)
            spath = f"{path}.{key}"
            for pname, value in values.items():
                pdef = own.get(pname) or inherited.get(pname)
                if pdef is None:
                    if key == "properties" and cname == "scalable" and pname in SCALING_KEYS:
                        continue
                    known = list(own) + list(inherited)
                    sink.error("PROPERTY_UNKNOWN", f"capability '{cname}' ({ctype.name}) has no "
                               f"{key[:-1] if key == 'attributes' else 'property'} '{pname}'",
                               values.key_position(pname), f"{spath}.{pname}", did_you_mean(pname, known))
                    continue
                if cname == "scalable" and pname in SCALING_KEYS:
                    continue  # checked with the instance counts (parse_scaling)
                check_assigned(value, pdef, types, sink, "PROPERTY_TYPE", f"property '{pname}' of capability "
                                f"'{cname}'", values.position_of(pname), f"{spath}.{pname}")


def _capability_definitions(types: TypeRegistry, cdef) -> tuple:
    """(resolved capability type or None, {section: {name: definition}}) of a capability definition.

    The node type's own definitions win over the capability type's, as in check_capabilities.
    """
    if not types.has("capability", cdef.type):
        return None, {}
    ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability")
    merged = {}
    for key in ("properties", "attributes"):
        defs = dict(getattr(ctype, key))
        defs.update(getattr(cdef, key))
        merged[key] = defs
    return ctype, merged


def _capability_fits(types: TypeRegistry, cname: str, cbody: YMap, merged: dict) -> bool:
    """Whether a capability assignment surely has nothing to report: only known keys and sections,
    and scalar values that check out (anything else goes through the full check)."""
    if cname == "scalable":
        return False
    for key, values in cbody.items():
        if key not in CAPABILITY_KEY_SET:
            return False
        defs = merged.get(key)
        if defs is None or values is None:
            continue
        if values.__class__ is not YMap:
            return False
        for pname, value in values.items():
            pdef = defs.get(pname)
            if pdef is None or value.__class__ not in SCALARS or assigned_problems(value, pdef, types):
                return False
    return True

def matching_capability(types: TypeRegistry, node: NodeTemplate, capability: str | None) -> str | None:
    """Name of node's capability that fulfils `capability` (a capability name or type), or None."""
    key = ("capability-match", node.type, capability)
    memo = types.value_memo
    if key in memo:
        return memo[key]
    memo[key] = found = _find_capability(types, node, capability)
    return found


def _find_capability(types: TypeRegistry, node: NodeTemplate, capability: str | None) -> str | None:
    caps = types.resolved(node.type).capabilities
    if capability is None:
        return "feature" if "feature" in caps else next(iter(caps), "feature")
    if capability in caps:
        return capability
    if not types.has("capability", capability):
        return None
    for cname, cdef in caps.items():
        if types.is_a(types.canonical(cdef.type, "capability"), capability, "capability"):
            return cname
    return None

def capability_hint(types: TypeRegistry, node: NodeTemplate) -> str:
    caps = types.resolved(node.type).capabilities
    return "its capabilities are: " + ", ".join(f"{n} ({c.type})" for n, c in caps.items()) if caps else ""
