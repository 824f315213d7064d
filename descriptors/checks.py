"""Checking a value against a schema: primitive types, constraints, entry/key schemas and data types."""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import did_you_mean
from descriptors.functions import function_call
from descriptors.schema import Schema
from descriptors.values import PRIMITIVE_TYPES, check_value, describe, is_number

MAX_VALUE_DEPTH = 60
# Metadata of a data type derived from a scalar-unit that also takes a bare number in this unit
# (Strato's durations: timeout: 30 means 30 s, as the drivers and the maintain loop read it).
BARE_NUMBER_UNIT = "strato.bare_number_unit"
_BARE_WORDS = {"scalar-unit.time": ("seconds", "a time like '30 s'"),
               "scalar-unit.size": ("bytes", "a size like '1 GB'")}


def validate_value(value: Any, schema, registry, subpath: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Problems of value against schema as (subpath, 'must be ...') pairs; [] when it fits.

    Values holding function calls are checked once the functions are resolved, so their
    parts that are calls are skipped here.
    """
    if value is None or depth > MAX_VALUE_DEPTH or function_call(value) is not None:
        return []
    vtype = schema.type
    problems: list[tuple[str, str]] = []
    if vtype in PRIMITIVE_TYPES:
        problem = check_value(value, vtype)
        if problem:
            return [(subpath, problem)]
    elif registry is not None and registry.has("data", vtype):
        dtype = registry.resolved(registry.canonical(vtype, "data"), "data")
        if dtype.primitive:
            unit = dtype.metadata.get(BARE_NUMBER_UNIT)
            # a Strato duration: '30 s', or a bare number of seconds read as such
            checked = f"{value} {unit}" if unit and is_number(value) else value
            problem = check_value(checked, dtype.primitive)
            if problem and unit:
                number, unit_form = _BARE_WORDS.get(dtype.primitive, (unit, dtype.primitive))
                problem = f"must be a number of {number} or {unit_form}, got {describe(value)}"
            if problem:
                return [(subpath, problem)]
            for c in dtype.constraints:
                why = c.check(checked)
                if why:
                    problems.append((subpath, f"of type {vtype}: {why}"))
        elif dtype.properties or not (dtype.entry_schema or dtype.key_schema):
            if not isinstance(value, dict):
                return [(subpath, f"must be a mapping of type {vtype}, got {describe(value)}")]
            for key, item in value.items():
                pdef = dtype.properties.get(key)
                if pdef is None:
                    if dtype.properties:
                        hint = did_you_mean(key, dtype.properties)
                        problems.append((f"{subpath}.{key}", f"is not a field of data type {vtype}"
                                         + (f"; {hint}" if hint else "")))
                    continue
                problems += validate_value(item, pdef.schema, registry, f"{subpath}.{key}", depth + 1)
            for pname, pdef in dtype.properties.items():
                if pdef.required and not pdef.has_default and pname not in value:
                    problems.append((subpath, f"lacks the required field '{pname}' of data type {vtype}"))
        if dtype.entry_schema is not None and schema.entry_schema is None:
            schema = Schema(vtype, schema.constraints, dtype.entry_schema, dtype.key_schema)
            vtype = "map" if isinstance(value, dict) else "list"
    else:
        return []  # unknown types are reported where they are declared
    for c in schema.constraints:
        why = c.check(value)
        if why:
            problems.append((subpath, why))
    entry = schema.entry_schema
    if entry is not None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                problems += validate_value(item, entry, registry, f"{subpath}[{i}]", depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                problems += validate_value(item, entry, registry, f"{subpath}.{key}", depth + 1)
    if schema.key_schema is not None and isinstance(value, dict):
        for key in value:
            problems += validate_value(key, schema.key_schema, registry, f"{subpath}.{key}", depth + 1)
    return problems
