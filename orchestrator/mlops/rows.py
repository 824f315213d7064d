"""Rows of model data: a training reference CSV read back, served records' features named, labels compared."""

from __future__ import annotations

import csv
import math
from typing import Any


def read_reference(path: str, limit: int = 200000) -> list[dict]:
    """The rows of a reference CSV (a header line, then rows); numbers read as numbers."""
    with open(path, newline="") as handle:
        return [{k: _number(v) for k, v in row.items() if k is not None}
                for _, row in zip(range(limit), csv.DictReader(handle))]


def _number(text: Any) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return value if math.isfinite(value) else text


def feature_rows(records: list[dict], columns: list[str]) -> list[dict]:
    """Each record's features as a named row: an object as it is, a list named by the reference's columns in
    order, anything else empty."""
    rows = []
    for r in records:
        features = r["features"]
        if isinstance(features, list) and len(features) == 1 and isinstance(features[0], list):
            features = features[0]   # {"instances": [[...]]} recorded whole
        if isinstance(features, list):
            features = dict(zip(columns, features))
        rows.append(features if isinstance(features, dict) else {})
    return rows


def plain_label(value: Any) -> Any:
    """A prediction or label as one comparable value ([["setosa"]] and "setosa" compare equal; 1 and 1.0 too)."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        for key in ("label", "prediction", "class"):
            if key in value:
                return plain_label(value[key])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
