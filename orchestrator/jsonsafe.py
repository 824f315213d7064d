"""Strict JSON for every --json document and API answer: NaN and infinity (which JSON parsers reject) read null."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_tree(value: Any) -> Any:
    """`value` with every non-finite float (and numpy scalar) made JSON-ready: NaN and infinity become None."""
    if isinstance(value, dict):
        return {str(k): finite_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_tree(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return finite_tree(value.item())
        except (ValueError, TypeError):
            return str(value)
    return value


def strict_dumps(data: Any, **options: Any) -> str:
    """json.dumps that never writes NaN or Infinity (`default=str` for values JSON has no type for)."""
    return json.dumps(finite_tree(data), allow_nan=False, default=str, **options)
