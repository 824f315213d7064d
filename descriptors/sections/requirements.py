"""Requirements and relationship templates: each requirement resolved to a target node template."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.functions import function_call
from descriptors.sections.capabilities import capability_hint, matching_capability
from descriptors.sections.common import check_property_map, key_pos, section, unknown_keys
from descriptors.template import NodeTemplate, Requirement, Template
from descriptors.types import RequirementDef, TypeRegistry
from descriptors.values import parse_constraint
from descriptors.yamlpos import YMap, position_of

REQUIREMENT_KEYS = ("node", "capability", "relationship", "node_filter", "occurrences", "description")

def parse_relationship_templates(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.relationship_templates"
    rels = section(topo, "relationship_templates", sink, base)
    types = template.types
    for name, body in rels.items():
        path = join_path(base, name)
        pos = rels.key_position(name)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            sink.error("RELATIONSHIP_BAD", f"relationship template '{name}' must be a mapping with a 'type'", pos, path)
            continue
        unknown_keys(body, ("type", "description", "metadata", "properties", "attributes", "interfaces", "copy"),
                      sink, path, f"relationship template '{name}'")
        rtype = body["type"]
        if not types.has("relationship", rtype):
            sink.error("RELATIONSHIP_UNKNOWN_TYPE", f"relationship template '{name}' has unknown type '{rtype}'",
                       body.position_of("type"), join_path(path, "type"),
                       did_you_mean(rtype, types.kinds["relationship"]))
            continue
        rdef = types.resolved(types.canonical(rtype, "relationship"), "relationship")
        props = body.get("properties") or {}
        check_property_map(template, props, rdef.properties, sink, join_path(path, "properties"), pos,
                            f"relationship type '{rdef.name}'")
        template.relationship_templates[name] = {"type": rdef.name, "properties": props,
                                                 "interfaces": body.get("interfaces") or {}}

def resolve_requirements(template: Template, raw_nodes: dict, sink: DiagnosticSink) -> None:
    types = template.types
    nodes = template.node_templates
    for node in nodes.values():
        body = raw_nodes[node.name]
        reqs = body.get("requirements")
        if reqs is None:
            continue
        base = node.path + ".requirements"
        if not isinstance(reqs, list):
            sink.error("REQUIREMENTS_NOT_LIST", "'requirements' must be a list of one-key mappings like "
                       "'- host: server'", body.position_of("requirements"), base)
            continue
        ntype = types.resolved(node.type)
        counts: dict[str, int] = {}
        for i, item in enumerate(reqs):
            req = _requirement(template, node, ntype, item, i, reqs, raw_nodes, sink, f"{base}[{i}]")
            if req is not None:
                node.requirements.append(req)
                counts[req.name] = counts.get(req.name, 0) + 1
        for rname, count in counts.items():
            rdef = ntype.requirements.get(rname)
            high = rdef.occurrences[1] if rdef else None
            if high is not None and count > high:
                sink.error("REQUIREMENT_TOO_MANY", f"node '{node.name}' has {count} '{rname}' requirements, but its "
                           f"type allows at most {high}", body.position_of("requirements"), base)
    expected: dict = {}  # node type -> its requirements that must occur at least once
    for node in nodes.values():
        needed = expected.get(node.type)
        if needed is None:
            needed = expected[node.type] = [(rname, rdef) for rname, rdef in
                                            types.resolved(node.type).requirements.items() if rdef.occurrences[0] >= 1]
        if not needed or node.directives:
            continue
        have = {r.name for r in node.requirements} | _written_requirements(raw_nodes[node.name])  # wrong ones too
        for rname, rdef in needed:
            if rname in have:
                continue
            if rdef.declared_occurrences:  # the type says outright that it needs at least one
                sink.error("REQUIREMENT_MISSING", f"node '{node.name}' ({node.type}) has no '{rname}' requirement, "
                           f"but its type needs at least {rdef.occurrences[0]}", node.position,
                           node.path + ".requirements", f"add '- {rname}: <node template>'; "
                           + candidates_hint(template, node, rdef.node, rdef.capability))
            else:  # TOSCA's default [1, 1]: an orchestrator may still fulfil it, so only a warning
                sink.warning("REQUIREMENT_MISSING", f"node '{node.name}' ({node.type}) has no '{rname}' "
                             "requirement, which its type expects", node.position, node.path + ".requirements",
                             f"add '- {rname}: <node template>'; "
                             + candidates_hint(template, node, rdef.node, rdef.capability))


@dataclass
class _Assignment:
    """What a requirement assignment asks for, its type's definition refined by the template's own keys."""

    name: str
    path: str
    capability: Any
    relationship: Any
    node_filter: Any
    target_ref: Any = None
    rel_props: Any = field(default_factory=dict)
    rel_ifaces: Any = field(default_factory=dict)
    pos: Any = None
    target_path: str = ""
    filter_given: bool = False
    refined: bool = False  # the assignment names its own capability or relationship


def _requirement(template: Template, node: NodeTemplate, ntype, item: Any, index: int, reqs: list,
                 raw_nodes: dict, sink: DiagnosticSink, path: str) -> Requirement | None:
    known = _known_requirement(template, node, item, path)
    if known is not None:
        return known
    pos = position_of(reqs, index)
    if not isinstance(item, dict) or len(item) != 1:
        sink.error("REQUIREMENT_BAD", "each requirement must be a one-key mapping like '- dependency: db'", pos, path)
        return None
    rname, body = next(iter(item.items()))
    rpath = f"{path}.{rname}"
    rdef = ntype.requirements.get(rname)
    if rdef is None:
        rdef = _undeclared(node, ntype, rname, key_pos(item, rname, pos), rpath, sink)
        if rdef is None:
            return None
    reported = len(sink.items)
    req = _assignment(template, node, rdef, rname, body, key_pos(item, rname, pos), rpath, sink)
    if req is None:
        return None
    types = template.types
    req_node_type = rdef.node
    target = None
    target_ref = req.target_ref
    if target_ref is not None and target_ref in raw_nodes:
        if target_ref not in template.node_templates:
            return None  # the target had its own errors, already reported
        target = target_ref
    elif target_ref is not None and types.has("node", target_ref):
        req_node_type = types.canonical(target_ref)  # a node type: pick a template of it
    elif target_ref is not None:
        sink.error("REQUIREMENT_UNKNOWN_NODE",
                   f"requirement '{rname}' of node '{node.name}' names unknown node '{target_ref}'",
                   req.pos, req.target_path, did_you_mean(target_ref, raw_nodes)
                   or candidates_hint(template, node, req_node_type, req.capability))
        return None
    if target == node.name:
        sink.error("REQUIREMENT_SELF", f"node '{node.name}' requires itself", req.pos, req.target_path)
        return None
    if target is not None:
        cap_name = _check_named_target(template, node, req, req_node_type, target, sink)
    else:
        target, cap_name = _choose_target(template, node, req, req_node_type, sink)
    if cap_name is None or not _check_relationship(template, req, target, cap_name, sink):
        return None
    if body.__class__ is str and target == body and item.__class__ is YMap and len(sink.items) == reported \
            and rname in ntype.requirements:  # named straight, no diagnostics
        types.value_memo[("requirement-ok", node.type, rname, template.node_templates[target].type)] = (
            req.node_filter, cap_name, req.relationship)
    return Requirement(name=rname, target=target, relationship=req.relationship, position=req.pos,
                       path=req.target_path, capability=cap_name,
                       relationship_properties=req.rel_props if isinstance(req.rel_props, dict) else {},
                       relationship_interfaces=req.rel_ifaces if isinstance(req.rel_ifaces, dict) else {},
                       node_filter=req.node_filter)


def _undeclared(node: NodeTemplate, ntype, rname: str, pos, rpath: str, sink: DiagnosticSink):
    """A requirement the node type does not declare: a likely typo of a declared one is an error; any other
    name is accepted as a plain dependency (as other TOSCA tools do), with a warning."""
    hint = did_you_mean(rname, ntype.requirements)
    if hint:
        sink.error("REQUIREMENT_UNKNOWN", f"node type '{node.type}' has no requirement '{rname}'", pos, rpath, hint)
        return None
    sink.warning("REQUIREMENT_UNDECLARED", f"node type '{node.type}' declares no requirement '{rname}'; it is "
                 "taken as a dependency on its target", pos, rpath,
                 f"its requirements are: {', '.join(ntype.requirements)}")
    return RequirementDef(rname, relationship="tosca.relationships.DependsOn", occurrences=(0, None))


def _known_requirement(template: Template, node: NodeTemplate, item: Any, path: str) -> Requirement | None:
    """The common '- dependency: other_node' form: once it checked out for a (node type, requirement,
    target type), it checks out again the same way with no diagnostics."""
    if item.__class__ is not YMap or len(item) != 1:
        return None
    rname, body = next(iter(item.items()))
    tnode = template.node_templates.get(body) if body.__class__ is str else None
    if tnode is None or body == node.name:
        return None
    found = template.types.value_memo.get(("requirement-ok", node.type, rname, tnode.type))
    if found is None:
        return None
    node_filter, cap_name, relationship = found
    return Requirement(name=rname, target=body, relationship=relationship, position=item.key_position(rname),
                       path=f"{path}.{rname}", capability=cap_name, relationship_properties={},
                       relationship_interfaces={}, node_filter=node_filter)


def _assignment(template: Template, node: NodeTemplate, rdef, rname: str, body: Any, pos, rpath: str,
                sink: DiagnosticSink) -> _Assignment | None:
    """The assignment's own keys (node, capability, relationship, node_filter) over the definition's."""
    types = template.types
    req = _Assignment(rname, rpath, rdef.capability, rdef.relationship, rdef.node_filter, pos=pos, target_path=rpath)
    if isinstance(body, str):
        req.target_ref = body
        return req
    if body is None:
        return req
    if not isinstance(body, dict):
        sink.error("REQUIREMENT_BAD_TARGET", f"requirement '{rname}' of node '{node.name}' must name a node template",
                   pos, rpath)
        return None
    unknown_keys(body, REQUIREMENT_KEYS, sink, rpath, f"requirement '{rname}'")
    req.target_ref = body.get("node")
    if "node" in body:
        req.pos, req.target_path = body.position_of("node"), join_path(rpath, "node")
    req.capability = body.get("capability", req.capability)
    if req.capability is not None and not isinstance(req.capability, str):
        sink.error("REQUIREMENT_BAD", f"'capability' of requirement '{rname}' must name a capability",
                   body.position_of("capability"), join_path(rpath, "capability"))
        return None
    req.node_filter = body.get("node_filter", req.node_filter)
    req.filter_given = "node_filter" in body
    req.refined = "capability" in body or "relationship" in body
    rel = body.get("relationship")
    if isinstance(rel, dict):
        req.rel_props = rel.get("properties") or {}
        req.rel_ifaces = rel.get("interfaces") or {}
        rel = rel.get("type")
    if isinstance(rel, str):
        if rel in template.relationship_templates:
            rt = template.relationship_templates[rel]
            req.relationship, req.rel_props, req.rel_ifaces = rt["type"], rt["properties"], rt["interfaces"]
        elif types.has("relationship", rel):
            req.relationship = types.canonical(rel, "relationship")
        else:
            sink.error("RELATIONSHIP_UNKNOWN", f"requirement '{rname}' names unknown relationship '{rel}'",
                       body.position_of("relationship"), join_path(rpath, "relationship"),
                       did_you_mean(rel, list(types.kinds["relationship"]) + list(template.relationship_templates)))
            return None
    if req.target_ref is not None and not isinstance(req.target_ref, str):
        sink.error("REQUIREMENT_BAD_TARGET", f"requirement '{rname}' of node '{node.name}' must name a node template",
                   req.pos, req.target_path)
        return None
    return req


def _check_named_target(template: Template, node: NodeTemplate, req: _Assignment, req_node_type, target: str,
                        sink: DiagnosticSink) -> str | None:
    """The capability of the named target that fulfils the requirement, or None after reporting why none does."""
    types = template.types
    tnode = template.node_templates[target]
    rname = req.name
    cap_name = matching_capability(types, tnode, req.capability)
    if req_node_type and types.has("node", req_node_type) and not types.is_a(tnode.type, req_node_type):
        # an assignment that refines the capability or relationship may name any template that offers
        # that capability (and accepts this node as a source): a different node type is then a warning
        if cap_name is None or not req.refined \
                or not _source_allowed(types, node.type, types.resolved(tnode.type).capabilities[cap_name]):
            sink.error("REQUIREMENT_WRONG_NODE_TYPE", f"requirement '{rname}' of node '{node.name}' needs a "
                       f"{types.canonical(req_node_type)}, but '{target}' is a {tnode.type}", req.pos,
                       req.target_path)
            return None
        sink.warning("REQUIREMENT_NODE_TYPE_DIFFERS", f"requirement '{rname}' of node '{node.name}' is defined for a "
                     f"{types.canonical(req_node_type)}; '{target}' is a {tnode.type} with the capability it needs",
                     req.pos, req.target_path)
    if cap_name is None:
        sink.error("REQUIREMENT_NO_CAPABILITY", f"node '{target}' ({tnode.type}) has no capability "
                   f"'{req.capability}' that requirement '{rname}' of node '{node.name}' needs", req.pos,
                   req.target_path, capability_hint(types, tnode))
        return None
    if req.node_filter is not None and req.filter_given:
        why = _filter_mismatch(template, tnode, req.node_filter)
        if why:
            sink.error("REQUIREMENT_FILTER", f"node '{target}' does not satisfy the node_filter of requirement "
                       f"'{rname}': {why}", req.pos, req.target_path)
            return None
    return cap_name


def _source_allowed(types: TypeRegistry, source_type: str, cdef) -> bool:
    """Whether a node of source_type may target the capability (its valid_source_types and its type's)."""
    allowed = list(cdef.valid_source_types or [])
    if types.has("capability", cdef.type):
        allowed += types.resolved(types.canonical(cdef.type, "capability"), "capability").valid_source_types or []
    return not allowed or any(types.has("node", a) and types.is_a(source_type, a) for a in allowed)


def _choose_target(template: Template, node: NodeTemplate, req: _Assignment, req_node_type,
                   sink: DiagnosticSink) -> tuple:
    """(target, capability name) of the node template chosen for a requirement naming no template."""
    types = template.types
    node_filter, capability, rname = req.node_filter, req.capability, req.name
    if node_filter is not None and not isinstance(node_filter, dict):
        sink.error("NODE_FILTER_BAD", "'node_filter' must be a mapping with 'properties' and/or 'capabilities'",
                   req.pos, join_path(req.path, "node_filter"))
        return None, None
    candidates = []
    for cand in template.node_templates.values():
        if cand.name == node.name:
            continue
        if req_node_type and types.has("node", req_node_type) and not types.is_a(cand.type, req_node_type):
            continue
        cap_name = matching_capability(types, cand, capability)
        if cap_name is None:
            continue
        if node_filter is not None and _filter_mismatch(template, cand, node_filter):
            continue
        candidates.append((cand.name, cap_name))
    if not candidates and node_filter is not None:
        # a node_filter asks the orchestrator to select a node, possibly one outside the template (TOSCA 3.8.2)
        sink.warning("REQUIREMENT_NOT_SELECTED", f"no node template matches the node_filter of requirement "
                     f"'{rname}' of node '{node.name}'; Strato selects only among the template's nodes, so a build "
                     "refuses it", req.pos, req.path, "add a node that matches, or name one with 'node: <template>'")
        return None, None
    if not candidates:
        what = " and ".join(x for x in (f"of type {req_node_type}" if req_node_type else "",
                                        f"with capability {capability}" if capability else "",
                                        "matching its node_filter" if node_filter else "") if x)
        sink.error("REQUIREMENT_UNSATISFIED", f"no node template {what} can fulfil requirement '{rname}' of "
                   f"node '{node.name}'", req.pos, req.path, "add such a node or name one with 'node: <template>'")
        return None, None
    target, cap_name = candidates[0]
    if len(candidates) > 1:
        sink.warning("REQUIREMENT_AMBIGUOUS", f"requirement '{rname}' of node '{node.name}' matches "
                     f"{len(candidates)} node templates; '{target}' was chosen",
                     req.pos, req.path, "name the one you mean with 'node: <template>'")
    return target, cap_name


def _check_relationship(template: Template, req: _Assignment, target: str, cap_name: str,
                        sink: DiagnosticSink) -> bool:
    """Whether the relationship may target the chosen capability (its properties checked too)."""
    types = template.types
    relationship = req.relationship
    if relationship is None or not types.has("relationship", relationship):
        return True
    rtype = types.resolved(types.canonical(relationship, "relationship"), "relationship")
    tcap = types.resolved(template.node_templates[target].type).capabilities.get(cap_name)
    if rtype.valid_target_types and tcap is not None and not _valid_target(types, rtype, tcap):
        sink.error("RELATIONSHIP_INVALID_TARGET", f"relationship {rtype.name} of requirement '{req.name}' cannot "
                   f"target capability '{cap_name}' ({tcap.type})", req.pos, req.path,
                   f"it targets {', '.join(rtype.valid_target_types)}")
        return False
    if req.rel_props:
        check_property_map(template, req.rel_props, rtype.properties, sink,
                           join_path(req.path, "relationship.properties"), req.pos, f"relationship {rtype.name}",
                           check_missing=False)
    return True


def _valid_target(types: TypeRegistry, rtype, tcap) -> bool:
    key = ("valid-target", rtype.name, tcap.type)
    memo = types.value_memo
    if key not in memo:
        memo[key] = any(types.is_a(types.canonical(tcap.type, "capability"), v, "capability")
                        for v in rtype.valid_target_types)
    return memo[key]

def _filter_mismatch(template: Template, node: NodeTemplate, node_filter: Any) -> str | None:
    """Why node fails node_filter (properties and capabilities' properties with constraint clauses), or None."""
    if not isinstance(node_filter, dict):
        return "the node_filter is not a mapping"
    types = template.types
    ntype = types.resolved(node.type)
    checks = [("", node_filter.get("properties"), node.properties, ntype.properties)]
    caps = node_filter.get("capabilities")
    if isinstance(caps, list):
        for item in caps:
            if isinstance(item, dict) and len(item) == 1:
                cname, cfilter = next(iter(item.items()))
                actual = matching_capability(types, node, cname)
                if actual is None:
                    return f"it has no capability '{cname}'"
                assigned = node.capabilities.get(actual) if isinstance(node.capabilities, dict) else None
                values = assigned.get("properties") if isinstance(assigned, dict) else None
                cdef = ntype.capabilities[actual]
                ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability") \
                    if types.has("capability", cdef.type) else None
                defs = dict(ctype.properties) if ctype else {}
                defs.update(cdef.properties)
                checks.append((f"capability {actual}: ", cfilter.get("properties") if isinstance(cfilter, dict)
                               else None, values if isinstance(values, dict) else {}, defs))
    for prefix, clauses, values, defs in checks:
        if clauses is None:
            continue
        items = clauses if isinstance(clauses, list) else [{k: v} for k, v in clauses.items()] \
            if isinstance(clauses, dict) else []
        for clause in items:
            if not isinstance(clause, dict) or len(clause) != 1:
                return "each node_filter property must be a one-key mapping"
            pname, cond = next(iter(clause.items()))
            pdef = defs.get(pname)
            value = values.get(pname) if pname in values else (pdef.default if pdef and pdef.has_default else None)
            vtype = pdef.type if pdef else "any"
            conds = cond if isinstance(cond, list) else [cond]
            for c in conds:
                if not (isinstance(c, dict) and len(c) == 1):
                    c = {"equal": c}
                constraint, problem = parse_constraint(c, vtype)
                if problem:
                    return f"{prefix}{pname}: {problem}"
                if value is None or function_call(value) is not None:
                    return f"{prefix}{pname} has no value to compare"
                why = constraint.check(value)
                if why:
                    return f"{prefix}{pname} {why}"
    return None


def _written_requirements(body: Any) -> set:
    """Names of the requirements a node template writes, those that did not resolve included."""
    reqs = body.get("requirements") if isinstance(body, dict) else None
    return {next(iter(item)) for item in reqs if isinstance(item, dict) and len(item) == 1} \
        if isinstance(reqs, list) else set()


def candidates_hint(template: Template, node: NodeTemplate, node_type: Any, capability: Any, most: int = 8) -> str:
    """Which node templates could fulfil a requirement (of the node type, with the capability), to name in a hint;
    all the others when none fits."""
    types = template.types
    fitting = [c.name for c in template.node_templates.values() if c.name != node.name
               and not (node_type and types.has("node", node_type) and not types.is_a(c.type, node_type))
               and matching_capability(types, c, capability) is not None]
    if fitting:
        names, label = fitting, "node templates that fit"
    else:
        what = f"no node template is a {types.canonical(node_type)}" if node_type else "no node template fits"
        names = [n for n in template.node_templates if n != node.name]
        if not names:
            return what
        label = f"{what}; the node templates are"
    shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
    return f"{label}: {shown}"

