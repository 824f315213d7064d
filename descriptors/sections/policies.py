"""topology_template.policies: typed policies and the node templates or groups they target, and their scaling rules."""

from __future__ import annotations

import linecache
from typing import Any

from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean, join_path
from descriptors.sections.common import check_property_map, key_pos, typed_entry, written_nodes
from descriptors.template import Policy, Template
from descriptors.yamlpos import position_of

POLICY_KEYS = ("type", "description", "metadata", "properties", "targets", "triggers")
# Policy types whose properties hold a Python scaling rule (property names), checked as the sandbox checks them.
RULE_PROPERTIES = {"strato.policies.Scaling.Rule": ("scaling_rule",), "strato.policies.Scaling": ("rule",)}
RULE_HINT = "rules run in Strato's sandbox: no imports (math functions such as ceil and sqrt are built in), " \
            "no dunder names, no open(), eval() or getattr()"

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
            elif target in written_nodes(template):
                continue  # a node whose own definition is broken: reported there, once
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
        check_rules(template, pdef.name, props, join_path(path, "properties"), sink)
        triggers = body.get("triggers")
        template.policies[name] = Policy(name, pdef.name, good, props if isinstance(props, dict) else {},
                                         dict(body.get("metadata") or {}),
                                         triggers if isinstance(triggers, dict) else {}, pos, path)


def check_rules(template: Template, ptype: str, props: Any, path: str, sink: DiagnosticSink) -> None:
    """A scaling rule the loop's sandbox would refuse is a descriptor error here, where it was written.

    The same static check the sandbox runs (policies.rulecheck); a rule given through a function
    (get_input) is checked when the loop reads it."""
    if not isinstance(props, dict):
        return   # reported as PROPERTIES_NOT_MAPPING
    types = template.types
    names = [n for base, props_ in RULE_PROPERTIES.items() if types.has("policy", base) and
             types.is_a(ptype, base, "policy") for n in props_]
    for name in dict.fromkeys(names):
        rule = props.get(name)
        if not isinstance(rule, str):
            continue
        from policies.rulecheck import rule_problems  # only descriptors with a rule pay for it
        for problem in rule_problems(rule):
            pos, exact = rule_position(props, name, rule, problem.line, problem.col)
            sink.error(f"POLICY_{problem.code}", problem.reason if exact else problem.sentence(), pos,
                       join_path(path, name), RULE_HINT if problem.code == "RULE_REFUSED" else "")


def rule_position(props: dict, name: str, rule: str, line: int, col: int) -> tuple[Position, bool]:
    """Where line:col of a rule stands in its file, and whether that is exact (a `|` block, or a rule of one
    line); otherwise the rule's own position (a folded or multi-line flow scalar moves its lines)."""
    start = position_of(props, name)
    linecache.checkcache(start.file)  # a server validates many bundles: never a stale copy of a file
    text = linecache.getline(start.file, start.line) if start.line and line else ""
    marker = text[start.col - 1:start.col] if text else ""
    if marker == "|":
        block = [linecache.getline(start.file, start.line + i) for i in range(1, rule.count("\n") + 2)]
        first = next((b for b in block if b.strip()), "")
        indent = len(first) - len(first.lstrip(" "))
        return Position(start.file, start.line + line, indent + col), True
    if marker and marker not in ">" and "\n" not in rule.rstrip("\n") and line == 1:
        quoted = marker in "'\""
        return Position(start.file, start.line, start.col + col - (0 if quoted else 1)), True
    return start, False
