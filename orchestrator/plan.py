"""Plan: desired state (templates + instance counts) vs stored state -> one action per instance."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from descriptors.functions import FunctionError, Resolver, Unresolved, template_resolver
from descriptors.template import Template
from descriptors.yamlpos import to_plain
from drivers.base import DriverError
from drivers.common import InstanceKey
from orchestrator import bounds, placement
from orchestrator.mlops import pinning
from orchestrator.scaling import desired_counts
from orchestrator.state import InfraRecord, InstanceRecord
from orchestrator.states import OBSERVED, InstanceStatus, PlanAction

if TYPE_CHECKING:
    import networkx as nx

CREATE, REPLACE, DELETE, NOOP = PlanAction.CREATE, PlanAction.REPLACE, PlanAction.DELETE, PlanAction.NOOP
SYMBOL = {CREATE: "+", REPLACE: "~", DELETE: "-", NOOP: " "}


def instance_key(infra: InfraRecord | str, node: str, index: int, uid: str | None = None) -> str:
    """Strato's instance key, unique across state stores thanks to the infrastructure's uid."""
    if isinstance(infra, InfraRecord):
        name, uid = infra.name, infra.uid
    else:
        name = infra
    return str(InstanceKey(name, node, index, uid))


@dataclass
class Action:
    kind: PlanAction
    node: str
    index: int
    key: str
    reason: str = ""
    maybe: bool = False  # a replace that happens only if an upstream attribute really changes
    unknown: bool = False  # a noop because the instance could not be observed (its backend did not answer)
    driver: str | None = None   # the driver the instance is (or will be) built with, e.g. `local` or `placement`
    backend: str | None = None  # the backend it runs on: the driver, or the one `placement` chooses (None: unknown)

    def to_dict(self) -> dict:
        return {"action": self.kind, "node": self.node, "index": self.index, "key": self.key,
                "reason": self.reason, "conditional": self.maybe, "unknown": self.unknown,
                "driver": self.driver, "backend": self.backend}

    def where(self) -> str:
        """The backend as shown in a plan: `local`, `placement: aws` (or `placement: ?` when not known yet)."""
        if self.driver is None:
            return "?"
        if self.driver == self.backend:
            return self.driver
        return f"{self.driver}: {self.backend or '?'}"


@dataclass
class Plan:
    infra: str
    actions: list[Action] = field(default_factory=list)

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind != NOOP]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def summary(self) -> dict[str, int]:
        counts = {CREATE: 0, REPLACE: 0, DELETE: 0, NOOP: 0}
        for a in self.actions:
            counts[a.kind] += 1
        return counts

    def to_dict(self) -> dict:
        return {"infrastructure": self.infra, "changes": self.has_changes, "summary": self.summary(),
                "actions": [a.to_dict() for a in self.actions]}


class AttributeView:
    """Attribute lookup for get_attribute: node-level attributes, then instance attributes in index order."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.node_attrs: dict[str, dict] = {}
        self.instance_attrs: dict[tuple[str, int], dict] = {}
        # nodes the descriptor lets have several instances: their attributes read as a list whatever the count,
        # so an output or property keeps its type when a node runs one replica
        self.listed: set[str] = set()

    def lookup(self, node: str, name: str) -> Any:
        if name in self.node_attrs.get(node, {}):
            return self.node_attrs[node][name]
        count = self.counts.get(node, 0)
        # the node's first `count` instances in index order; indices may have holes after a drop, and only
        # then is every instance scanned
        indices = range(count)
        if not all((node, i) in self.instance_attrs for i in indices):
            indices = sorted(i for (n, i) in self.instance_attrs if n == node)[:count]
        if len(indices) < count or not indices:
            raise Unresolved(node, name)
        values = []
        for i in indices:
            attrs = self.instance_attrs[(node, i)]
            if name not in attrs:
                raise Unresolved(node, name)
            values.append(attrs[name])
        return values[0] if count == 1 and node not in self.listed else values


def make_resolver(template: Template, inputs: dict, view: AttributeView) -> Resolver:
    """A resolver over the template (defaults, HOST chains, capability forms) and the attributes known so far."""
    view.listed = {name for name, node in template.node_templates.items() if bounds.may_have_several(node, inputs)}
    return template_resolver(template, inputs, view.lookup)


def node_properties(template: Template, node: str, resolver: Resolver) -> dict:
    """The node's properties with type defaults filled in and functions resolved."""
    tmpl = template.node_templates[node]
    values = {}
    for name, pdef in template.types.resolved(tmpl.type).properties.items():
        if pdef.has_default and name not in tmpl.properties:
            values[name] = to_plain(pdef.default)
    for name, raw in tmpl.properties.items():
        values[name] = to_plain(resolver.resolve(raw, node))
    if isinstance(values.get("model"), dict):   # a model version pinned by the rollout (orchestrator/mlops)
        values = pinning.with_model(values, values["model"])
    return values


def spec_hash(template: Template, node: str, properties: dict, driver: str) -> str:
    blob = json.dumps({"type": template.node_templates[node].type, "driver": driver, "properties": properties},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def attribute_view(counts: dict[str, int], infra: InfraRecord | None, instances: list[InstanceRecord]) -> AttributeView:
    view = AttributeView(counts)
    if infra:
        view.node_attrs.update({k: dict(v) for k, v in infra.node_attributes.items()})
    for rec in instances:
        if rec.status in OBSERVED:  # an unknown instance keeps its last known attributes
            view.instance_attrs[(rec.node, rec.index)] = rec.attributes
    return view


def node_slots(count: int, indices: list[int], dropped: set[int] = frozenset()) -> list[int]:
    """Indices a node's `count` instances occupy, given its instances' indices and those being dropped:
    existing ones first (lowest index first), then free indices.

    Without holes this is range(count); an instance dropped on request leaves a hole that is not refilled,
    so dropping server[0] of three keeps server[1] and server[2] rather than renumbering them."""
    existing = sorted(i for i in indices if i not in dropped)
    slots = existing[:count]
    taken = set(indices)
    index = 0
    while len(slots) < count:
        if index not in taken:
            slots.append(index)
        index += 1
    return sorted(slots)


def plan_changes(template: Template, infra: InfraRecord, instances: list[InstanceRecord], inputs: dict,
                 graph: "nx.DiGraph", counts: dict[str, int] | None = None,
                 drop: frozenset[str] = frozenset()) -> Plan:
    """Compare desired and stored state; one action per instance, dependencies first, deletions last.

    `drop` names instances to delete first when a node scales in (a manual `--drop` or a rule's choice)."""
    import networkx as nx  # here, not at the top: `strato status` uses this module's helpers without a graph
    counts = counts or desired_counts(template, infra, inputs)
    by_slot = {(r.node, r.index): r for r in instances}
    view = attribute_view(counts, infra, [r for r in instances if r.key not in drop])
    indices: dict[str, list[int]] = {node: [] for node in template.node_templates}
    dropped: dict[str, set[int]] = {}
    for r in instances:
        if r.node in indices:
            indices[r.node].append(r.index)
            if r.key in drop:
                dropped.setdefault(r.node, set()).add(r.index)
    slots = {node: node_slots(counts[node], indices[node], dropped.get(node, set())) for node in indices}
    resolver = make_resolver(template, inputs, view)
    plan = Plan(infra.name)
    changing: set[str] = set()
    for node in reversed(list(nx.topological_sort(graph))):
        driver = template.driver_name(node) or "?"
        upstream_changing = sorted(d for d in graph.successors(node) if d in changing)
        try:
            props = node_properties(template, node, resolver)
            want_hash = spec_hash(template, node, props, driver)
        except (Unresolved, FunctionError):
            props, want_hash = None, None
        target = planned_backend(template, node, props, infra.node_attributes.get(node) or {})
        for index in slots[node]:
            rec = by_slot.get((node, index))
            action = _instance_action(node, index, instance_key(infra, node, index), rec, want_hash,
                                      upstream_changing)
            action.driver, action.backend = target if action.kind in (CREATE, REPLACE) else backend_of(rec)
            if action.kind != NOOP:
                changing.add(node)
            plan.actions.append(action)
    wanted = {node: set(indices) for node, indices in slots.items()}
    for rec in instances:
        if rec.node not in template.node_templates:
            plan.actions.append(Action(DELETE, rec.node, rec.index, rec.key, "node removed from the descriptor",
                                       driver=rec.driver, backend=backend_of(rec)[1]))
        elif rec.index not in wanted[rec.node]:
            why = "dropped on request" if rec.key in drop else f"scaled to {counts[rec.node]} instance(s)"
            plan.actions.append(Action(DELETE, rec.node, rec.index, rec.key, why, driver=rec.driver,
                                       backend=backend_of(rec)[1]))
    return plan


def _instance_action(node: str, index: int, key: str, rec: InstanceRecord | None, want_hash: str | None,
                     upstream_changing: list[str]) -> Action:
    """What one instance slot needs: its stored record against the node's wanted definition."""
    if rec is None:
        return Action(CREATE, node, index, key, "new instance")
    if rec.status == InstanceStatus.UNKNOWN:  # what cannot be seen is left alone: recreating it could duplicate it
        return Action(NOOP, node, index, key, rec.error or "its backend did not answer", unknown=True)
    if rec.status != InstanceStatus.READY:
        why = {InstanceStatus.CREATING: "resume an interrupted create",
               InstanceStatus.MISSING: "its process/resource is gone",
               InstanceStatus.FAILED: f"previous attempt failed: {rec.error or 'unknown error'}"}
        return Action(CREATE, node, index, key, why.get(rec.status, f"status was {rec.status}"))
    if want_hash is not None and rec.spec_hash != want_hash:
        return Action(REPLACE, node, index, key, "its definition changed")
    if upstream_changing:
        return Action(REPLACE, node, index, key, "if attributes of " + ", ".join(upstream_changing) + " change",
                      maybe=True)
    return Action(NOOP, node, index, key)


def backend_of(rec: InstanceRecord | None) -> tuple[str | None, str | None]:
    """(driver, backend) an existing instance was built with: the placement composite's handle names its backend."""
    if rec is None:
        return None, None
    backend = (rec.handle or {}).get("backend") if rec.driver == placement.DRIVER else rec.driver
    return rec.driver, backend


def planned_backend(template: Template, node: str, props: dict | None,
                    node_attributes: dict) -> tuple[str | None, str | None]:
    """(driver, backend) a new instance of the node goes to, decided as the executor will, without asking any
    cloud: the node's driver, or for a node with `implementations` the first candidate in the placement
    policy's order whose backend was not already found unusable when the node was prepared."""
    driver = template.driver_name(node)
    if props is None:  # depends on attributes not known before the build
        has_choices = "implementations" in (template.node_templates[node].properties or {})
        return (placement.DRIVER, None) if has_choices else (driver, driver)
    try:
        routed, routed_props = placement.route(node, driver, props)
    except DriverError:
        return placement.DRIVER, None  # the build reports what is wrong with the implementations
    if routed != placement.DRIVER:
        return routed, routed
    prepared = node_attributes.get("placement") or {}
    usable = [c for c in routed_props["candidates"] if "error" not in (prepared.get(c["label"]) or {})]
    return placement.DRIVER, usable[0]["driver"] if usable else None


def format_plan(plan: Plan) -> str:
    lines = []
    for a in plan.actions:
        if a.kind == NOOP and not a.unknown:
            continue
        label = f"{'?' if a.unknown else SYMBOL[a.kind]} {a.node}[{a.index}] ({a.where()})"
        verb = "replace?" if a.maybe else InstanceStatus.UNKNOWN if a.unknown else a.kind
        lines.append(f"{label:<32} {verb:<8} {a.reason}")
    s = plan.summary()
    unknown = sum(1 for a in plan.actions if a.unknown)
    lines.append(f"Plan for '{plan.infra}': {s[CREATE]} to create, {s[REPLACE]} to replace, "
                 f"{s[DELETE]} to delete, {s[NOOP] - unknown} unchanged"
                 + (f", {unknown} unknown (left as they are)." if unknown else "."))
    return "\n".join(lines)
