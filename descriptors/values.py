"""Checking literal values against TOSCA value types (string, integer, scalar-unit, ...)."""

from __future__ import annotations

import re
from typing import Any

_SCALAR_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}([.-][\w]+(-\d+)?)?$")


def check_value(value: Any, vtype: str) -> str | None:
    """None when value fits vtype, else the end of a sentence saying why ('must be an integer, got ...')."""
    got = f"got {_describe(value)}"
    if vtype in ("any", "") or value is None:
        return None
    if vtype == "string":
        return None if isinstance(value, str) else f"must be a string, {got}"
    if vtype == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else f"must be an integer, {got}"
    if vtype == "float":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"must be a number, {got}"
    if vtype == "boolean":
        return None if isinstance(value, bool) else f"must be true or false, {got}"
    if vtype == "list":
        return None if isinstance(value, list) else f"must be a list, {got}"
    if vtype == "map":
        return None if isinstance(value, dict) else f"must be a mapping, {got}"
    if vtype.startswith("scalar-unit."):
        if isinstance(value, str) and _SCALAR_UNIT.match(value):
            return None
        return f"must be a number with a unit like '1 GB' or '30 s', {got}"
    if vtype == "version":
        return None if _VERSION.match(str(value)) else f"must be a version like 1.2.3, {got}"
    return None


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"string '{short}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
