"""Checks of a model server's `rollout` block beyond its types: rising weights, one bound per metric, a URL webhook.

The type system checks each field (policies/rollout.py reads the same block at run time); what it cannot say
(a weight below the previous step's, a metric with both or neither bound) is reported here, with positions.
"""

from __future__ import annotations

import re
from typing import Any

from descriptors.diagnostics import DiagnosticSink, Position, join_path
from descriptors.functions import function_call
from descriptors.template import Template
from descriptors.yamlpos import position_of
from policies.rollout import RolloutSpec, RolloutSpecError

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def check_rollouts(template: Template, sink: DiagnosticSink) -> None:
    """ROLLOUT_INVALID for each problem of each model server's rollout block (all at once)."""
    if template.types is None:
        return
    reported = {d.path for d in sink.errors}
    for name, node in template.node_templates.items():
        block = (node.properties or {}).get("rollout") if isinstance(node.properties, dict) else None
        if block is None or _has_call(block) or not _is_model_server(template, node.type):
            continue
        try:
            RolloutSpec.parse(block)
        except RolloutSpecError as exc:
            base = join_path(join_path(node.path, "properties"), "rollout")
            for subpath, message in exc.problems:
                path = f"{base}.{subpath}" if subpath else base
                if path in reported:   # the type system said it already
                    continue
                sink.error("ROLLOUT_INVALID", f"rollout of '{name}': {subpath or 'the block'} {message}",
                           _position(block, subpath, node.position), path)


def _is_model_server(template: Template, type_name: str) -> bool:
    """A type that declares `rollout` (strato.nodes.ai.ModelServer and its Kubernetes sibling)."""
    try:
        return "rollout" in template.types.resolved(type_name).properties
    except (LookupError, AttributeError):
        return False


def _has_call(value: Any) -> bool:
    if function_call(value) is not None:
        return True
    if isinstance(value, dict):
        return any(_has_call(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_call(v) for v in value)
    return False


def _position(block: Any, subpath: str, default: Position | None) -> Position:
    """Where `subpath` (e.g. analysis.metrics[1].name) stands in the block, or the nearest enclosing value."""
    container, pos = block, position_of(block, None, default) if block is not None else default
    for key, index in _PART.findall(subpath):
        step = int(index) if index else key
        try:
            pos = position_of(container, step, pos)
            container = container[step]
        except (KeyError, IndexError, TypeError):
            break
    return pos or Position("<unknown>")
