"""Keeps each Router node's HAProxy backend in step with the ready instances of the node its `route_to` names.

The maintain loop calls `sync_routers` at the end of every pass (and a build once it is done), so a new replica
is routed in the pass that made it and a leaving one is drained. Weights are equal unless `weights_for` (a
rollout) gives them; servers change through HAProxy's runtime API only, never a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from drivers.base import DriverError
from drivers.haproxy import HaproxyAdmin, SyncReport, server_name, slots_for
from orchestrator.states import InstanceStatus

if TYPE_CHECKING:
    from orchestrator.state import InstanceRecord

ROUTER_DRIVER = "haproxy"
ROUTE_REQUIREMENT = "route_to"
MAX_DRAIN_WAIT = 10.0   # seconds a pass waits for leaving servers' requests to finish before deleting them

# (router node, routed node, the routed node's ready instances) -> server name -> weight, or None: equal weights
WeightsFor = Callable[[str, str, "list[InstanceRecord]"], "dict[str, int] | None"]


@dataclass(frozen=True)
class Route:
    router: str   # the Router node
    target: str   # the node it routes to


@dataclass
class RouteSync:
    """One router instance synced (`report`), or why it could not be (`error`)."""

    router: str
    key: str
    index: int
    target: str
    servers: int = 0
    report: SyncReport | None = None
    error: str | None = None


def routes(template) -> list[Route]:
    """Every node built by the haproxy driver with a `route_to` requirement, and the node it names."""
    found = []
    for name, node in template.node_templates.items():
        if template.driver_name(name) != ROUTER_DRIVER:
            continue
        found.extend(Route(name, req.target) for req in node.requirements if req.name == ROUTE_REQUIREMENT)
    return found


def routed_instances(records: list[InstanceRecord], node: str) -> list[InstanceRecord]:
    """The instances of `node` a router may send traffic to: those ready now, by index."""
    return sorted((r for r in records if r.node == node and r.status == InstanceStatus.READY), key=lambda r: r.index)


def sync_router(router: InstanceRecord, servers: list[InstanceRecord], weights: dict[str, int] | None = None,
                wait: float = 0.0) -> SyncReport:
    """Give one router instance exactly these servers (equal weights unless `weights`, by server name)."""
    attrs = router.attributes
    slots = slots_for([{**r.attributes, "name": server_name(r.node, r.index)} for r in servers], weights)
    admin = HaproxyAdmin(attrs["admin_socket"])
    return admin.sync(attrs["backend"], slots, drain_timeout=float(attrs.get("drain_timeout") or 30.0), wait=wait)


def sync_routers(store, name: str, template, records: list[InstanceRecord] | None = None,
                 weights_for: WeightsFor | None = None, leaving: frozenset[str] = frozenset(),
                 servers_for: Callable[[list, str], list] | None = None) -> list[RouteSync]:
    """Sync every ready router instance of the infrastructure with its routed node's ready instances.

    records: the infrastructure's instances as they stand now (read from the store when None). leaving: keys of
    instances about to be deleted: their servers are drained now, and this call waits (up to the router's
    drain_timeout, at most MAX_DRAIN_WAIT s) for their requests in flight to finish."""
    found = routes(template)
    if not found:
        return []
    records = store.instances(name) if records is None else records
    done = []
    for route in found:
        servers = [r for r in (servers_for or routed_instances)(records, route.target)   # with a rollout's canary
                   if r.key not in leaving]
        weights = weights_for(route.router, route.target, servers) if weights_for else None
        for router in routed_instances(records, route.router):
            outcome = RouteSync(route.router, router.key, router.index, route.target, len(servers))
            if not router.attributes.get("admin_socket"):
                outcome.error = "the router reports no admin socket"
            else:
                try:
                    wait = min(float(router.attributes.get("drain_timeout") or 0), MAX_DRAIN_WAIT) if leaving else 0.0
                    outcome.report = sync_router(router, servers, weights, wait)
                except (DriverError, OSError, ValueError) as exc:
                    outcome.error = str(exc)
            done.append(outcome)
    return done
