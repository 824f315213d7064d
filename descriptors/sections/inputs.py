"""topology_template.inputs: input definitions, and the input values given to a build."""

from __future__ import annotations

import json
import re
from typing import Any

from descriptors.checks import validate_value
from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean, join_path
from descriptors.schema import Schema
from descriptors.secrets import MASK, Unreadable, is_secret_input
from descriptors.sections.common import secret_flag, section, unknown_keys
from descriptors.template import InputDef, Template
from descriptors.types import SCALAR_TYPES, parse_constraints, parse_schema
from descriptors.values import check_value, value_type_name

INPUT_KEYS = ("type", "description", "required", "default", "constraints", "entry_schema", "status",
              "metadata", "key_schema", "value", "secret")

def parse_inputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.inputs"
    inputs = section(topo, "inputs", sink, base)
    types = template.types
    for name, body in inputs.items():
        path = join_path(base, name)
        pos = inputs.key_position(name)
        if not isinstance(body, dict):
            sink.error("INPUT_BAD_DEFINITION", f"input '{name}' must be a mapping with at least 'type'", pos, path)
            continue
        unknown_keys(body, INPUT_KEYS, sink, path, f"input '{name}'")
        itype = value_type_name(body.get("type", "string"))
        if not isinstance(itype, str) or not types.is_value_type(itype):
            sink.error("INPUT_UNKNOWN_TYPE", f"input '{name}' has unknown type '{itype}'",
                       body.position_of("type"), join_path(path, "type"),
                       did_you_mean(itype, list(SCALAR_TYPES) + list(types.kinds["data"])))
            itype = "any"
        required = body.get("required", True)
        idef = InputDef(name=name, type=itype, required=required if isinstance(required, bool) else True,
                        default=body.get("default"), has_default="default" in body,
                        description=str(body.get("description") or ""), position=pos, path=path,
                        constraints=parse_constraints(body.get("constraints"), itype, sink,
                                                      join_path(path, "constraints"), pos),
                        entry_schema=parse_schema(body.get("entry_schema"), sink, join_path(path, "entry_schema"),
                                                  pos),
                        secret=secret_flag(body, sink, path, f"input '{name}'"))
        if idef.has_default and idef.default is not None:
            for subpath, problem in validate_value(idef.default, input_schema(idef), types):
                sink.error("INPUT_BAD_DEFAULT", f"default of input '{name}{subpath}' {problem}",
                           body.position_of("default"), join_path(path, "default") + subpath)
        template.inputs[name] = idef


def input_schema(idef: InputDef) -> Schema:
    return Schema(idef.type, idef.constraints, idef.entry_schema)

def parse_input_value(raw: str, itype: str) -> Any:
    """Convert a command-line `--input K=V` string to the input's declared type."""
    if itype == "integer":
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
    if itype in ("list", "map", "range"):
        return json.loads(raw)
    return raw


def resolve_inputs(template: Template, given: dict[str, Any], source: str = "<command line>") -> dict[str, Any]:
    """Input values for a build: given ones converted and checked against types and constraints, defaults
    for the rest."""
    sink = DiagnosticSink()
    values: dict[str, Any] = {}
    cli_pos = Position(source)
    types = template.types
    for name, raw in given.items():
        idef = template.inputs.get(name)
        if idef is None:
            sink.error("INPUT_UNKNOWN", f"the descriptor declares no input '{name}'", cli_pos,
                       f"topology_template.inputs.{name}", did_you_mean(name, template.inputs))
            continue
        if isinstance(raw, Unreadable):
            sink.error("INPUT_SECRET_UNREADABLE", f"secret input '{name}' was stored encrypted and {raw.reason}; "
                       f"give it again with --input {name}=VALUE", cli_pos, idef.path)
            continue
        secret = is_secret_input(idef)
        value = raw
        itype = idef.type
        if types is not None and types.has("data", itype):
            dtype = types.resolved(types.canonical(itype, "data"), "data")
            itype = dtype.primitive or "map"
        if isinstance(raw, str) and itype not in ("string", "any", "version", "timestamp") \
                and not itype.startswith("scalar-unit."):
            try:
                value = parse_input_value(raw, itype)
            except (ValueError, TypeError):
                got = MASK if secret else raw
                sink.error("INPUT_TYPE", f"input '{name}' must be of type {idef.type}, got '{got}'",
                           idef.position or cli_pos, idef.path)
                continue
        problems = validate_value(value, input_schema(idef), types) if types is not None else \
            [("", p) for p in [check_value(value, idef.type)] if p]
        if problems:
            for subpath, problem in problems:
                told = _hidden(problem) if secret else problem
                sink.error("INPUT_TYPE", f"input '{name}'{subpath} {told}", idef.position or cli_pos, idef.path)
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


def _hidden(problem: str) -> str:
    """A problem with a secret value, told without the value (which the checks quote)."""
    return re.sub(r"'[^']*'", f"'{MASK}'", problem)
