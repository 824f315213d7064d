"""What every section shares: unknown-key reports, section lookup and checking values assigned to definitions."""

from __future__ import annotations

import os
import re
from typing import Any

from descriptors.checks import validate_value
from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean, join_path
from descriptors.template import Template
from descriptors.types import PropertyDef, TypeRegistry
from descriptors.values import Coerced, coerce, describe, value_type_name
from descriptors.yamlpos import YList, YMap

def key_pos(mapping: Any, key: Any, default: Position) -> Position:
    return mapping.key_position(key) if isinstance(mapping, YMap) else default


def unknown_keys(mapping: dict, allowed, sink: DiagnosticSink, path: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            pos = mapping.key_position(key) if isinstance(mapping, YMap) else Position("<unknown>")
            sink.error("UNKNOWN_KEY", f"unknown key '{key}' in {what}", pos, join_path(path, key),
                       did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}")

def path_inside(value: str, base: str, roots: list[str]) -> str | None:
    """The absolute path `value` names (relative to `base`) when it lies under one of `roots`, else None.

    Worked out from the text alone, never by looking at the file system, so the answer is the same whether
    or not such a file exists (a confined descriptor must not learn which of the server's files do). `base`
    and `roots` are directories Strato chose (already real paths); `~` and URLs name nothing inside them."""
    if not value or "://" in value or value.startswith("~") or "\0" in value:
        return None
    full = os.path.normpath(os.path.join(base, value))
    return full if any(full == r or full.startswith(r.rstrip(os.sep) + os.sep) for r in roots) else None


def secret_flag(body: dict, sink: DiagnosticSink, path: str, what: str) -> bool | None:
    """The `secret:` of an input or output definition: true, false, or None when not given."""
    value = body.get("secret")
    if value is None or isinstance(value, bool):
        return value
    sink.error("SECRET_NOT_BOOLEAN", f"'secret' of {what} must be true or false", body.position_of("secret"),
               join_path(path, "secret"))
    return None


def section(parent: dict, key: str, sink: DiagnosticSink, path: str, code: str = "SECTION_NOT_MAPPING",
            message: str | None = None) -> dict:
    """parent[key] when it is a mapping; {} when absent, and {} with a diagnostic when it is something else."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        sink.error(code, message or f"'{key}' must be a mapping", parent.position_of(key), path)
        return {}
    return value


SCALARS = (str, int, float, bool)


def check_assigned(value: Any, pdef: PropertyDef, types: TypeRegistry, sink: DiagnosticSink, code: str,
                    what: str, pos: Position, path: str) -> None:
    report_assigned(assigned_problems(value, pdef, types), sink, code, what, pos, path, value)


def assigned_problems(value: Any, pdef: PropertyDef, types: TypeRegistry) -> list:
    """validate_value's problems of a value assigned to pdef; [] when it fits. A scalar that converts to the
    property's primitive type (as tosca-parser converts it) is a Coerced problem, reported as a warning."""
    problems = _assigned_problems(value, pdef, types)
    if problems and value.__class__ in SCALARS:
        converted = coerce(value, pdef.type)
        if converted is not None:
            return [("", Coerced(f"is {describe(value)}, not of type {value_type_name(pdef.type)}; it is accepted "
                                 f"(other TOSCA tools convert it to {converted!r})"))] \
                + validate_value(converted, pdef.schema, types)
    return problems


def _assigned_problems(value: Any, pdef: PropertyDef, types: TypeRegistry) -> list:
    if value.__class__ in SCALARS:
        # the same scalar is often assigned to the same property thousands of times
        memo = types.value_memo
        key = (id(pdef), value.__class__, value)
        problems = memo.get(key)
        if problems is None:
            problems = memo[key] = validate_value(value, pdef.schema, types)
            memo.setdefault("_pin", []).append(pdef)  # keeps id(pdef) unique while memoised
        return problems
    return validate_value(value, pdef.schema, types)


def report_assigned(problems: list, sink: DiagnosticSink, code: str, what: str, pos: Position, path: str,
                    value: Any = None) -> None:
    """One error per problem, placed at the part of `value` it is about when value keeps positions."""
    for subpath, problem in problems:
        # "property 'endpoint'" + ".host" -> "property 'endpoint.host'"
        label = f"{what[:-1]}{subpath}'" if subpath and what.endswith("'") else what + subpath
        where = nested_position(value, subpath, pos)
        if isinstance(problem, Coerced):
            sink.warning("VALUE_COERCED", f"{label} {problem}", where, path + subpath, "quote it or write it as "
                         "its type")
            continue
        problem, _, hint = problem.partition("; did you mean ")  # the checker words a hint into its sentence
        sink.error(code, f"{label} {problem}", where, path + subpath, f"did you mean {hint}" if hint else "")


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def nested_position(value: Any, subpath: str, default: Position) -> Position:
    """Where the part of value at subpath ('.a[0].b') stands: the deepest position known on the way."""
    pos = default
    steps = _STEP.findall(subpath or "")
    for n, (key, index) in enumerate(steps, 1):
        step: Any = int(index) if index else key
        if isinstance(value, YMap) and step in value:  # the last key itself: it is what the path names
            pos = value.key_position(step) if n == len(steps) else value.position_of(step)
        elif isinstance(value, YList) and isinstance(step, int) and step < len(value):
            pos = value.position_of(step)
        else:
            return pos
        value = value[step]
    return pos

def written_nodes(template: Template) -> dict:
    """The node templates as the document writes them, those with errors (not loaded) included."""
    topo = template.document.get("topology_template") if isinstance(template.document, dict) else None
    nodes = topo.get("node_templates") if isinstance(topo, dict) else None
    return nodes if isinstance(nodes, dict) else {}

def check_property_map(template: Template, props: Any, defs: dict, sink: DiagnosticSink, path: str,
                        pos: Position, owner: str, check_missing: bool = True) -> None:
    if not isinstance(props, dict):
        sink.error("PROPERTIES_NOT_MAPPING", "'properties' must be a mapping", pos, path)
        return
    for pname, value in props.items():
        pdef = defs.get(pname)
        ppos = props.position_of(pname) if isinstance(props, YMap) else pos
        if pdef is None:
            sink.error("PROPERTY_UNKNOWN", f"{owner} has no property '{pname}'", key_pos(props, pname, pos),
                       join_path(path, pname), did_you_mean(pname, defs))
            continue
        check_assigned(value, pdef, template.types, sink, "PROPERTY_TYPE", f"property '{pname}'", ppos,
                        join_path(path, pname))
    if check_missing:
        for pname, pdef in defs.items():
            if pdef.required and not pdef.has_default and pname not in props:
                sink.error("PROPERTY_MISSING", f"{owner} needs property '{pname}'", pos, path)

def typed_entry(template: Template, kind: str, name: str, body: Any, allowed, pos: Position, path: str,
                 sink: DiagnosticSink):
    """The resolved type of a group/policy entry, or None after reporting why it cannot be used."""
    code = kind.upper()
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        sink.error(f"{code}_BAD", f"{kind} '{name}' must be a mapping with a 'type'", pos, path)
        return None
    unknown_keys(body, allowed, sink, path, f"{kind} '{name}'")
    tname, types = body["type"], template.types
    if not types.has(kind, tname):
        sink.error(f"{code}_UNKNOWN_TYPE", f"{kind} '{name}' has unknown type '{tname}'", body.position_of("type"),
                   join_path(path, "type"), did_you_mean(tname, types.kinds[kind]))
        return None
    return types.resolved(types.canonical(tname, kind), kind)
