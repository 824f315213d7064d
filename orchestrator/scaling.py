"""Scaling: the kinds of scale request, a node's desired count, whether a new count is allowed, and what a request asks.

Every entry path (`strato scale`, the API's scale route, the maintain loop's requests and policies) asks
here, so a count is computed one way and each refusal is written once. Recording a request and applying
it (`maintain.request_scale`: by the running loop, or by one pass when none runs) is the only way a
manual scale changes an infrastructure.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from descriptors.diagnostics import DescriptorError
from descriptors.template import Template
from orchestrator import bounds
from orchestrator.errors import NotFound, UserError
from orchestrator.state import InfraRecord, InstanceRecord, StateStore
from orchestrator.stored import require_infra, stored_inputs, stored_template


class ScaleKind(str, Enum):
    """What a scale request asks (stored and sent as its plain string)."""

    TO = "to"       # exactly N instances
    BY = "by"       # N more (or fewer, when negative)
    DROP = "drop"   # remove this instance and lower the count by one


LOAD: Any = object()  # `template` not given: read the stored descriptor (None means it is gone)
NEGATIVE = "an instance count cannot be negative"


def no_node(name: str, node: str, nodes) -> str:
    return f"infrastructure '{name}' has no node '{node}' (nodes: {', '.join(sorted(nodes)) or 'none'})"


def no_instance(node: str, instance: str) -> str:
    return f"node '{node}' has no instance '{instance}'"


def outside_bounds(node: str, wanted: int, low: int, high: int) -> str:
    return f"{node} would have {wanted} instance(s), outside its min {low} / max {high}"


def cannot_go_below_zero(node: str, current: int, target: int) -> str:
    return f"node '{node}' has {current} instance(s); it cannot go to {target}"


def desired_count(infra: InfraRecord | None, node: str, template: Template | None = LOAD,
                  inputs: dict | None = None) -> int | None:
    """A node's desired count now: set by a scale or a policy, else the descriptor's (with the stored inputs,
    unless `inputs` are given); None when neither knows (the descriptor is gone or has no such node)."""
    if infra is not None and infra.desired.get(node) is not None:
        return int(infra.desired[node])
    if template is LOAD:
        template = stored_template(infra) if infra is not None else None
    if template is None or node not in template.node_templates:
        return None
    if inputs is None:
        inputs = stored_inputs(template, infra) if infra is not None else {}
    return template.node_templates[node].instance_count(inputs)


def desired_counts(template: Template, infra: InfraRecord | None, inputs: dict) -> dict[str, int]:
    """Every node's desired count (desired_count of each node of the descriptor)."""
    return {node: desired_count(infra, node, template, inputs) for node in template.node_templates}


def node_limits(tmpl, inputs: dict) -> tuple[int, int]:
    """A node's (min, max) instances, inputs applied, max capped by Strato's per-node ceiling."""
    low, high = bounds.node_bounds(tmpl, inputs)
    ceiling = bounds.ceiling()
    return int(low or 0), min(high, ceiling) if high is not None else ceiling


def check_node(infra: InfraRecord, node: str) -> None:
    """NotFound when the infrastructure has no such node (as far as its stored dependency map knows)."""
    if infra.dependencies and node not in infra.dependencies:
        raise NotFound(no_node(infra.name, node, infra.dependencies))


def check_scale(store: StateStore, name: str, node: str, count: int, force: bool = False,
                source: str | None = None, template: Template | None = LOAD) -> InfraRecord:
    """Refuse a count outside the node's bounds, or 0 for a node others depend on (unless `force`).

    `template`: the stored descriptor when the caller has read it already (None: it is gone)."""
    infra = require_infra(store, name)
    source = source or f"strato scale {name} {node} {count}"
    if count < 0:
        raise UserError(NEGATIVE)
    check_node(infra, node)
    if template is LOAD:
        template = stored_template(infra)
    if template is not None and node in template.node_templates:
        problem = bounds.count_problem(template, node, count, stored_inputs(template, infra), source)
        if problem:
            raise DescriptorError([problem])
    elif count > bounds.ceiling():
        raise UserError(f"{source}: above Strato's per-node ceiling of {bounds.ceiling()} (${bounds.CEILING_ENV})")
    if count == 0 and not force:
        needing = [d for d in bounds.dependents(infra.dependencies, node)
                   if desired_count(infra, d, template) != 0]   # unknown (None): assume it has some
        if needing:
            raise UserError(f"refusing to scale '{node}' to 0: {', '.join(needing)} depend(s) on it and would "
                            f"fail; scale them first, or pass --force to do it anyway")
    return infra


def set_desired(store: StateStore, name: str, node: str, count: int, force: bool = False,
                template: Template | None = LOAD) -> dict:
    """Record a new desired instance count at once (`strato scale --to N --no-apply`); the next build or
    maintain pass carries it out. Checked as check_scale checks."""
    check_scale(store, name, node, count, force, template=template)
    store.set_desired_count(name, node, count)
    store.journal(name, "scaled", None, node=node, count=count, force=force)
    return {"infrastructure": name, "node": node, "desired": count}


def record_request(store: StateStore, name: str, node: str, kind: ScaleKind | str, value: int | None = None,
                   instance: str | None = None) -> int:
    """Record a scale request (checked first with check_scale); the loop, or one pass, applies it."""
    return store.add_scale_request(name, node, ScaleKind(kind).value, value, instance)


def wait_applied(store: StateStore, request_id: int, wait: float) -> None:
    """Wait up to `wait` seconds for a running maintain loop to apply a request."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        done = store.scale_request(request_id)
        if done and done["applied"] is not None:
            return
        time.sleep(0.1)


def request_outcome(store: StateStore, request_id: int, out: dict) -> dict:
    """`out` with whether the request was applied, its result and the count it set (`desired`)."""
    done = store.scale_request(request_id)
    out["applied"] = bool(done and done["applied"])
    out["result"] = done["result"] if done else None
    if out["result"] and out["result"].get("desired") is not None:
        out["desired"] = out["result"]["desired"]
    return out


def resolve_instance(ident: str, node: str, records: list[InstanceRecord]) -> InstanceRecord | None:
    """An instance named by its key, `node[i]`, `node/i` or its index alone."""
    ident = str(ident).strip()
    for rec in records:
        if rec.node != node:
            continue
        if ident in (rec.key, f"{node}[{rec.index}]", f"{node}/{rec.index}", str(rec.index)):
            return rec
    return None


def requested_count(request: dict, tmpl, current: int, inputs: dict, records: list[InstanceRecord],
                    dropping: set[str]) -> tuple[dict, str | None]:
    """What a pending request asks of a node now counted `current`: ({ok, desired} or {ok: False, error},
    the key of the instance it drops). `dropping`: instances already leaving this pass."""
    node, kind = request["node"], ScaleKind(request["kind"])
    if tmpl is None:
        return {"ok": False, "error": f"no node '{node}' in the descriptor"}, None
    target = None
    if kind is ScaleKind.TO:
        wanted = int(request["value"])
    elif kind is ScaleKind.BY:
        wanted = current + int(request["value"])
    else:
        target = resolve_instance(request["instance"], node, records)
        if target is None or target.key in dropping:
            return {"ok": False, "error": no_instance(node, request["instance"])}, None
        wanted = current - 1
    low, high = node_limits(tmpl, inputs)
    if wanted < low or wanted > high:
        return {"ok": False, "error": outside_bounds(node, wanted, low, high)}, None
    return {"ok": True, "desired": wanted}, target.key if target is not None else None


def resolve_requests(pending: list[dict], template, inputs: dict, counts: dict, records: list[InstanceRecord],
                     drop: set[str]) -> list[tuple[dict, dict]]:
    """The pending requests in order, each resolved (requested_count) against the counts so far: (request,
    result) pairs; `counts` and `drop` become what the accepted ones ask."""
    resolved = []
    for request in pending:
        node = request["node"]
        result, dropped = requested_count(request, template.node_templates.get(node), counts.get(node, 0),
                                          inputs, records, drop)
        if result["ok"]:
            counts[node] = result["desired"]
            if dropped is not None:
                drop.add(dropped)
        resolved.append((request, result))
    return resolved
