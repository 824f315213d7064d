"""topology_template.policies: typed policies and the node templates or groups they target."""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean, join_path
from descriptors.sections.common import check_property_map, key_pos, typed_entry
from descriptors.template import Policy, Template
from descriptors.yamlpos import position_of

POLICY_KEYS = ("type", "description", "metadata", "properties", "targets", "triggers")

def parse_policies(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.policies"
    raw = topo.get("policies")
    if raw is None:
        return
    entries: list[tuple[str, Any, Position, str]] = []
    if isinstance(raw, list):  # TOSCA 1.3: a list of one-key mappings
        for i, item in enumerate(raw):
            ipos = position_of(raw, i)
            if not isinstance(item, dict) or len(item) != 1:
                sink.error("POLICY_BAD", "each policy must be a one-key mapping like '- scale_web: {type: ...}'",
                           ipos, f"{base}[{i}]")
                continue
            pname, pbody = next(iter(item.items()))
            entries.append((pname, pbody, key_pos(item, pname, ipos), f"{base}[{i}].{pname}"))
    elif isinstance(raw, dict):
        entries = [(k, v, raw.key_position(k), join_path(base, k)) for k, v in raw.items()]
    else:
        sink.error("POLICY_BAD", "'policies' must be a list of one-key mappings", topo.position_of("policies"), base)
        return
    types = template.types
    for name, body, pos, path in entries:
        if name in template.policies:
            sink.error("POLICY_DUPLICATE", f"policy '{name}' is defined twice", pos, path)
            continue
        pdef = typed_entry(template, "policy", name, body, POLICY_KEYS, pos, path, sink)
        if pdef is None:
            continue
        targets = body.get("targets") or []
        if not isinstance(targets, list):
            sink.error("POLICY_BAD", "'targets' must be a list of node template or group names",
                       body.position_of("targets"), join_path(path, "targets"))
            targets = []
        good = []
        for i, target in enumerate(targets):
            tpos = position_of(targets, i, pos)
            tpath = f"{join_path(path, 'targets')}[{i}]"
            if not isinstance(target, str):
                sink.error("POLICY_BAD", "each policy target must be a node template or group name", tpos, tpath)
                continue
            if target in template.groups:
                ttype, tkind = template.groups[target].type, "group"
            elif target in template.node_templates:
                ttype, tkind = template.node_templates[target].type, "node"
            else:
                sink.error("POLICY_UNKNOWN_TARGET", f"policy '{name}' targets unknown node template or group "
                           f"'{target}'", tpos, tpath,
                           did_you_mean(target, list(template.node_templates) + list(template.groups)))
                continue
            allowed = pdef.targets or []  # a policy type without 'targets' may target anything
            if tkind == "group":  # a group fits when its type does, or when all its members do
                fits = any(types.has("group", a) and types.is_a(ttype, a, "group") for a in allowed) or all(
                    any(types.has("node", a) and types.is_a(template.node_templates[m].type, a) for a in allowed)
                    for m in template.groups[target].members)
            else:
                fits = any(types.has("node", a) and types.is_a(ttype, a) for a in allowed)
            if allowed and not fits:
                sink.error("POLICY_BAD_TARGET", f"policy type {pdef.name} cannot target '{target}' ({ttype})", tpos,
                           tpath, f"its targets must be {', '.join(allowed)}")
                continue
            good.append(target)
        props = body.get("properties") or {}
        check_property_map(template, props, pdef.properties, sink, join_path(path, "properties"), pos,
                            f"policy type {pdef.name}")
        triggers = body.get("triggers")
        template.policies[name] = Policy(name, pdef.name, good, props if isinstance(props, dict) else {},
                                         dict(body.get("metadata") or {}),
                                         triggers if isinstance(triggers, dict) else {}, pos, path)
