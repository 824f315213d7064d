"""TOSCA values: checking literals against types (primitives, scalar-units with unit conversion, data types) and constraints."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from descriptors.diagnostics import did_you_mean

_NUMBER_UNIT = re.compile(r"^\s*([-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")
_VERSION = re.compile(r"^(\d+)(?:\.(\d+)(?:\.(\d+)(?:\.([A-Za-z0-9_]+)(?:-(\d+))?)?)?)?$")

# Units of the scalar-unit types, in the type's base unit (bytes, seconds, hertz, bits/s).
UNITS: dict[str, dict[str, float]] = {
    "scalar-unit.size": {"B": 1, "kB": 1e3, "KiB": 2 ** 10, "MB": 1e6, "MiB": 2 ** 20, "GB": 1e9,
                         "GiB": 2 ** 30, "TB": 1e12, "TiB": 2 ** 40},
    "scalar-unit.time": {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9},
    "scalar-unit.frequency": {"Hz": 1, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9},
    "scalar-unit.bitrate": {"bps": 1, "Kbps": 1e3, "Kibps": 2 ** 10, "Mbps": 1e6, "Mibps": 2 ** 20,
                            "Gbps": 1e9, "Gibps": 2 ** 30, "Tbps": 1e12, "Tibps": 2 ** 40},
}
# TOSCA compares units case-insensitively ('mb' == 'MB'); kB/KB/kb all mean 1000 bytes.
_UNITS_LOWER = {kind: {u.lower(): f for u, f in table.items()} for kind, table in UNITS.items()}

PRIMITIVE_TYPES = frozenset({"string", "integer", "float", "boolean", "list", "map", "timestamp", "version",
                             "range", "any", "null", *UNITS})
UNBOUNDED = "UNBOUNDED"
# TOSCA maps its primitive types onto YAML's, so the YAML names are accepted for them too
YAML_TYPE_NAMES = {"int": "integer", "str": "string", "bool": "boolean", "seq": "list", "null": "null",
                   "float": "float", "map": "map", "timestamp": "timestamp"}
YAML_TYPE_NAMES.update({f"tag:yaml.org,2002:{k}": v for k, v in YAML_TYPE_NAMES.items()})
YAML_TYPE_NAMES.update({f"!!{k}": v for k, v in YAML_TYPE_NAMES.items() if ":" not in k})


def value_type_name(name):
    """The TOSCA name of a value type written in YAML's form (int, tag:yaml.org,2002:int, !!int); others as given."""
    return YAML_TYPE_NAMES.get(name, name) if isinstance(name, str) else name

CONSTRAINT_OPERATORS = ("equal", "greater_than", "greater_or_equal", "less_than", "less_or_equal", "in_range",
                        "valid_values", "length", "min_length", "max_length", "pattern", "schema")


def scalar_unit(value: Any, vtype: str) -> float | None:
    """The value in the type's base unit ('1 GB' -> 1e9 bytes), or None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _NUMBER_UNIT.match(value)
    if not match:
        return None
    factor = _UNITS_LOWER[vtype].get(match.group(2).lower())
    if factor is None:
        return None
    return float(match.group(1)) * factor


def parse_version(value: Any) -> tuple | None:
    """major.minor.fix[.qualifier[-build]] as a comparable tuple, or None."""
    match = _VERSION.match(str(value)) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    if not match:
        return None
    major, minor, fix, qualifier, build = match.groups()
    return (int(major), int(minor or 0), int(fix or 0), qualifier or "", int(build or 0))


def parse_timestamp(value: Any) -> datetime.datetime | datetime.date | None:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text and " " in text
                                               and ":" in text else text)
    except ValueError:
        return None


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(value: Any, vtype: str) -> str | None:
    """None when value fits the primitive type vtype, else the end of a sentence saying why."""
    if vtype in ("any", "") or value is None:
        return None
    if vtype == "string":
        return None if isinstance(value, str) else f"must be a string, got {describe(value)}"
    if vtype == "integer":
        return None if is_integer(value) else f"must be an integer, got {describe(value)}"
    if vtype == "float":
        return None if is_number(value) else f"must be a number, got {describe(value)}"
    if vtype == "boolean":
        return None if isinstance(value, bool) else f"must be true or false, got {describe(value)}"
    if vtype == "list":
        return None if isinstance(value, list) else f"must be a list, got {describe(value)}"
    if vtype == "map":
        return None if isinstance(value, dict) else f"must be a mapping, got {describe(value)}"
    if vtype in UNITS:
        if scalar_unit(value, vtype) is not None:
            return None
        units = ", ".join(UNITS[vtype])
        return f"must be a number with a unit ({units}), like '{_EXAMPLE[vtype]}', got {describe(value)}"
    if vtype == "version":
        return None if parse_version(value) is not None else f"must be a version like 1.2.3, got {describe(value)}"
    if vtype == "timestamp":
        return None if parse_timestamp(value) is not None else \
            f"must be an ISO 8601 timestamp like 2024-05-01T12:00:00Z, got {describe(value)}"
    if vtype == "range":
        if isinstance(value, list) and len(value) == 2 and is_integer(value[0]) \
                and (is_integer(value[1]) or value[1] == UNBOUNDED) \
                and (value[1] == UNBOUNDED or value[0] <= value[1]):
            return None
        return f"must be a range [lower, upper] of integers (upper may be UNBOUNDED), got {describe(value)}"
    if vtype == "null":
        return f"must be null, got {describe(value)}"
    return None


class Coerced(str):
    """A problem that is only a warning: the value converts to its type as tosca-parser converts it."""


def coerce(value: Any, vtype: str) -> Any:
    """A scalar converted to the primitive vtype as tosca-parser converts a property's value (a number or a
    boolean for a string, an integral number or a numeral for an integer, 'true'/'false' for a boolean), or
    None when it does not convert."""
    if vtype == "string" and isinstance(value, (int, float, bool)):
        return str(value)
    if vtype == "integer" and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
    if vtype == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


_EXAMPLE = {"scalar-unit.size": "1 GB", "scalar-unit.time": "30 s", "scalar-unit.frequency": "2 GHz",
            "scalar-unit.bitrate": "100 Mbps"}


def comparable(value: Any, vtype: str) -> Any:
    """A value that orders as the type says: scalar-units in base units, versions as tuples."""
    if vtype in UNITS:
        return scalar_unit(value, vtype)
    if vtype == "version":
        return parse_version(value)
    if vtype == "timestamp":
        parsed = parse_timestamp(value)
        if isinstance(parsed, datetime.datetime) and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed
    return value


@dataclass
class Constraint:
    """One parsed constraint clause; `arg` is already converted to the constrained type's order."""

    operator: str
    raw: Any
    arg: Any
    vtype: str

    def describe(self) -> str:
        return f"{self.operator}: {self.raw}"

    def check(self, value: Any) -> str | None:
        """None when value satisfies the clause, else why not."""
        op, arg = self.operator, self.arg
        if op in ("length", "min_length", "max_length"):
            if not isinstance(value, (str, list, dict)):
                return None
            n = len(value)
            ok = n == arg if op == "length" else n >= arg if op == "min_length" else n <= arg
            return None if ok else f"has length {n}, but the constraint is {self.describe()}"
        if op == "pattern":
            if not isinstance(value, str):
                return None
            return None if arg.fullmatch(value) else f"'{_short(value)}' does not match the pattern '{self.raw}'"
        if op == "schema":
            return None
        v = comparable(value, self.vtype)
        if v is None:
            return None  # the type check reports it
        try:
            if op == "equal":
                ok = v == arg
            elif op == "greater_than":
                ok = v > arg
            elif op == "greater_or_equal":
                ok = v >= arg
            elif op == "less_than":
                ok = v < arg
            elif op == "less_or_equal":
                ok = v <= arg
            elif op == "in_range":
                ok = arg[0] <= v and (arg[1] is None or v <= arg[1])
            elif op == "valid_values":
                ok = v in arg
            else:
                return None
        except TypeError:
            return f"{describe(value)} cannot be compared with {self.describe()}"
        return None if ok else f"{describe(value)} violates the constraint {self.describe()}"


def parse_constraint(item: Any, vtype: str) -> tuple[Constraint | None, str | None]:
    """(Constraint, None) or (None, why the clause is malformed) for a `{operator: argument}` item."""
    if not isinstance(item, dict) or len(item) != 1:
        return None, "a constraint must be a one-key mapping like '- greater_than: 0'"
    op, raw = next(iter(item.items()))
    if op not in CONSTRAINT_OPERATORS:
        hint = did_you_mean(op, CONSTRAINT_OPERATORS)
        return None, f"unknown constraint operator '{op}'" + (f"; {hint}" if hint else "")
    if op in ("length", "min_length", "max_length"):
        if not is_integer(raw) or raw < 0:
            return None, f"'{op}' needs a whole number of 0 or more"
        return Constraint(op, raw, raw, vtype), None
    if op == "pattern":
        if not isinstance(raw, str):
            return None, "'pattern' needs a regular expression string"
        try:
            return Constraint(op, raw, re.compile(raw), vtype), None
        except re.error as exc:
            return None, f"'pattern' is not a valid regular expression: {exc}"
    if op == "schema":
        return Constraint(op, raw, raw, vtype), None
    if op == "in_range":
        if not isinstance(raw, list) or len(raw) != 2:
            return None, "'in_range' needs a list of two values [lower, upper]"
        low = _arg(raw[0], vtype)
        high = None if raw[1] == UNBOUNDED else _arg(raw[1], vtype)
        if low is None or (high is None and raw[1] != UNBOUNDED):
            return None, f"the bounds of 'in_range' must be values of type {vtype}"
        return Constraint(op, raw, (low, high), vtype), None
    if op == "valid_values":
        if not isinstance(raw, list) or not raw:
            return None, "'valid_values' needs a non-empty list"
        args = [_arg(v, vtype) for v in raw]
        if any(a is None for a in args):
            return None, f"every value of 'valid_values' must be of type {vtype}"
        return Constraint(op, raw, args, vtype), None
    arg = _arg(raw, vtype)
    if arg is None:
        return None, f"the argument of '{op}' must be a value of type {vtype}"
    return Constraint(op, raw, arg, vtype), None


def _arg(raw: Any, vtype: str) -> Any:
    if vtype in PRIMITIVE_TYPES and vtype not in ("any", "list", "map") and check_value(raw, vtype) is not None:
        return None
    return comparable(raw, vtype)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        text = str(value)
        return f"number {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, str):
        return f"string '{_short(value)}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def duration_seconds(value: Any, default: float | None) -> float | None:
    """A duration as Strato's descriptors write it (strato.datatypes.Seconds): a bare number of seconds or a
    TOSCA time ('30 s'); default when not given. Raises ValueError, saying what is wrong, for anything else."""
    if value is None:
        return default
    if is_number(value):
        return float(value)
    parsed = scalar_unit(value, "scalar-unit.time")
    if parsed is None:
        raise ValueError(f"{describe(value)} is not a duration: give a number of seconds or a time like '30 s'")
    return parsed
