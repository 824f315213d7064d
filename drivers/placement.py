"""The `placement` driver: a composite over several backends, trying a node's implementations in a chosen order.

The orchestrator's placement policy (orchestrator/placement.py) orders a node's implementations
and hands this driver `candidates` (label, driver, merged properties, price) and a `report` of why.
A handle is `{backend, handle, placement}`: the backend actually used, that backend's own handle,
and the record of the choice (refusals included); observe and delete go straight to that backend.
When a backend refuses (quota, capacity, API error, unreachable), the next candidate is tried.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from drivers.base import Driver, DriverError, InstanceSpec, Observed
from drivers.providers import get_driver

NAME = "placement"


def _candidates(spec: InstanceSpec) -> list[dict]:
    cands = spec.properties.get("candidates")
    if not isinstance(cands, list) or not cands:
        raise DriverError(f"node '{spec.node}': the placement driver needs `candidates` (from a node's "
                          "`implementations`)", backend=NAME)
    return cands


def _candidate_spec(spec: InstanceSpec, cand: dict) -> InstanceSpec:
    prepared = (spec.node_attributes.get("placement") or {}).get(cand["label"]) or {}
    return replace(spec, properties=cand["properties"], node_attributes=prepared)


class PlacementDriver(Driver):
    name = NAME

    # -- node level: every candidate backend is prepared; a failure only marks that candidate ------
    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        done = dict((spec.node_attributes or {}).get("placement") or {})
        drivers = dict((spec.node_attributes or {}).get("drivers") or {})
        for cand in _candidates(spec):
            drivers[cand["label"]] = cand["driver"]
            if cand["label"] in done and "error" not in done[cand["label"]]:
                continue
            cspec = replace(spec, properties=cand["properties"], node_attributes={})
            try:
                done[cand["label"]] = get_driver(cand["driver"]).prepare_node(cspec) or {}
            except (DriverError, LookupError) as exc:
                done[cand["label"]] = {"error": str(exc)}
        return {"placement": done, "drivers": drivers}

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        errors = []
        drivers = node_attributes.get("drivers") or {}
        for label, prepared in (node_attributes.get("placement") or {}).items():
            if not prepared or "error" in prepared or label not in drivers:
                continue
            try:
                get_driver(drivers[label]).release_node(prepared)
            except (DriverError, LookupError) as exc:
                errors.append(str(exc))
        if errors:
            raise DriverError("; ".join(errors), backend=NAME)

    # -- instances ----------------------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> dict:
        """Create on the first candidate that accepts (each candidate's own create waits and cleans up)."""
        refused: list[dict] = []
        report = spec.properties.get("report") or {}
        for cand in _candidates(spec):
            cspec = _candidate_spec(spec, cand)
            if "error" in cspec.node_attributes:
                refused.append({"implementation": cand["label"], "error": cspec.node_attributes["error"]})
                continue
            try:
                handle = get_driver(cand["driver"]).create(cspec)
            except (DriverError, LookupError) as exc:
                refused.append({"implementation": cand["label"], "error": str(exc),
                                "retryable": bool(getattr(exc, "retryable", False))})
                continue
            return self._wrap(cand, handle, refused, report)
        # Worth the engine's retry only when some backend was merely busy or unreachable.
        raise DriverError(f"node '{spec.node}': every implementation refused: "
                          + "; ".join(f"{r['implementation']}: {r['error']}" for r in refused),
                          retryable=any(r.get("retryable") for r in refused), backend=NAME)

    @staticmethod
    def _wrap(cand: dict, handle: dict, refused: list[dict], report: dict, adopted: bool = False) -> dict:
        info = {"driver": cand["driver"], "implementation": cand["label"],
                "cost_per_hour": cand.get("cost_per_hour"), "refused": refused, **report}
        if adopted:
            info["adopted"] = True
        return {"backend": cand["driver"], "handle": handle, "placement": info, "key": handle.get("key")}

    def observe(self, handle: dict) -> Observed:
        observed = get_driver(handle["backend"]).observe(handle["handle"])
        observed.attributes = {**observed.attributes, "placement": handle.get("placement") or {}}
        return observed

    def delete(self, handle: dict) -> None:
        get_driver(handle["backend"]).delete(handle["handle"])

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        """A crashed build may have created the instance on any candidate: look on each backend once."""
        if spec is None:
            return None  # without the descriptor the candidates are unknown
        seen = set()
        for cand in _candidates(spec):
            if cand["driver"] in seen:
                continue
            seen.add(cand["driver"])
            found = get_driver(cand["driver"]).find(key, _candidate_spec(spec, cand))
            if found is not None:
                return self._wrap(cand, found, [], spec.properties.get("report") or {}, adopted=True)
        return None

    def wait_adopted(self, handle: dict, spec: InstanceSpec) -> dict:
        """The readiness wait of the backend that holds the found instance."""
        label = (handle.get("placement") or {}).get("implementation")
        cand = next((c for c in _candidates(spec) if c["label"] == label), None) \
            or next(c for c in _candidates(spec) if c["driver"] == handle["backend"])
        inner = get_driver(handle["backend"]).wait_adopted(handle["handle"], _candidate_spec(spec, cand))
        return {**handle, "handle": inner}

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """In place only while the backend in use is still the first choice; otherwise replace (None)."""
        first = _candidates(spec)[0]
        if first["driver"] != handle.get("backend"):
            return None
        updated = get_driver(first["driver"]).update(handle["handle"], _candidate_spec(spec, first))
        if updated is None:
            return None
        return self._wrap(first, updated, [], spec.properties.get("report") or {})
