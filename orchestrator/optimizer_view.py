"""The optimizer seen from the state store: a node's offered-load history (import, summary) and its decision timeline
(load, forecast band, predicted and observed target, count), for `strato optimizer history|report` and the API."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import NotFound, UserError
from orchestrator.state import InfraRecord, StateStore
from orchestrator import scaling
from orchestrator.stored import require_infra, stored_inputs, stored_template

DECISION_KINDS = ("decision", "scaled")


def require_node(store: StateStore, name: str, node: str) -> tuple[InfraRecord, Any]:
    """(the infrastructure's record, its stored template or None); NotFound for an unknown infrastructure or node."""
    infra = require_infra(store, name)
    template = stored_template(infra)
    known = set(infra.dependencies) | set(infra.desired) | set(template.node_templates if template else ())
    if node not in known:
        raise NotFound(scaling.no_node(name, node, known))
    return infra, template


def optimizer_settings(template, infra: InfraRecord, node: str) -> dict:
    """{load_metric, target_metric, target_value} of the node's optimizer policy in the stored descriptor (the load
    metric is its first input metric, what it forecasts); empty when the node has no such policy."""
    if template is None or template.types is None:
        return {}
    from policies.base import PolicyError
    from policies.factory import OPTIMIZER, PolicySettings
    inputs = stored_inputs(template, infra)
    for policy in template.policies.values():
        if not (template.types.has("policy", policy.type) and template.types.is_a(policy.type, OPTIMIZER, "policy")
                and node in policy.target_nodes(template)):
            continue
        try:
            settings = PolicySettings(template, policy, inputs)
        except PolicyError:
            continue
        metrics = settings.get("input_metrics")
        first = metrics[0] if isinstance(metrics, list) and metrics and isinstance(metrics[0], str) else ""
        value = settings.get("target_value")
        return {"load_metric": first if first.strip() else None, "target_metric": settings.get("target_metric"),
                "target_value": float(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None}
    return {}


def optimizer_load_metric(template, infra: InfraRecord, node: str) -> str | None:
    return optimizer_settings(template, infra, node).get("load_metric")


def history_metric(store: StateStore, name: str, node: str, metric: str | None) -> str:
    """The metric a history is kept under: the one given, else the node's optimizer input metric."""
    infra, template = require_node(store, name, node)
    if metric:
        return metric
    found = optimizer_load_metric(template, infra, node)
    if found is None:
        raise UserError(f"node '{node}' of '{name}' has no optimizer policy with input_metrics to name the load; "
                        "give --metric NAME")
    return found


def import_history(store: StateStore, name: str, node: str, metric: str | None,
                   rows: list[tuple[float, float]]) -> dict:
    """Store load rows for a known node (all or none); {metric, rows, added, count, first, last}."""
    from optimizer.samples import LoadHistoryStore
    metric = history_metric(store, name, node, metric)
    with LoadHistoryStore(store.database) as history:
        added = history.add(name, node, metric, rows)
        count, first, last = history.span(name, node, metric)
    return {"infrastructure": name, "node": node, "metric": metric, "rows": len(rows), "added": added,
            "count": count, "first": first, "last": last}


def history_summary(store: StateStore, name: str, node: str, metric: str | None, limit: int) -> dict:
    """{metric, count, first, last, rows (the last `limit`)} of a node's stored load history."""
    from optimizer.samples import LoadHistoryStore
    infra, template = require_node(store, name, node)
    with LoadHistoryStore(store.database) as history:
        if not metric:
            stored = history.metrics(name, node)
            metric = optimizer_load_metric(template, infra, node) or (stored[0] if len(stored) == 1 else None)
            if metric is None:
                raise UserError(f"node '{node}' of '{name}' keeps load history under {', '.join(stored)}; "
                                "name one with --metric" if stored else
                                f"no load history stored for '{name}/{node}'")
        count, first, last = history.span(name, node, metric)
        rows = history.recent(name, node, metric, limit) if limit else []
    return {"infrastructure": name, "node": node, "metric": metric, "count": count, "first": first, "last": last,
            "rows": [[t, v] for t, v in rows]}


def node_timeline(store: StateStore, name: str, node: str, limit: int = 720) -> dict:
    """A node's optimizer timeline over its last `limit` passes (optimizer.timeline.build_timeline), with the
    stored load history of the same stretch."""
    from optimizer.samples import LoadHistoryStore
    from optimizer.timeline import build_timeline
    infra, template = require_node(store, name, node)
    samples = store.samples(name, node, limit)
    events = store.node_events(name, node, DECISION_KINDS, limit=limit)   # at most one per pass and policy
    settings = optimizer_settings(template, infra, node)
    metric = settings.get("load_metric")
    load_rows: list = []
    if metric:
        with LoadHistoryStore(store.database) as history:
            if samples or events:
                times = sorted([s["ts"] for s in samples] + [e["ts"] for e in events])
                # the policy keeps a pass's load at the pass's start, less than a pass before the pass's sample
                margin = max(1.0, (times[-1] - times[0]) / (len(samples) - 1)) if len(samples) > 1 else 60.0
                load_rows = history.between(name, node, metric, times[0] - margin, times[-1], limit)
            else:
                load_rows = history.recent(name, node, metric, limit)
    out = build_timeline(samples, events, load_rows, metric)
    return {"infrastructure": name, "node": node, "target_metric": settings.get("target_metric"),
            "target_value": settings.get("target_value"), **out}
