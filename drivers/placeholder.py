"""`placeholder`: stands for a resource Strato has no backend for (e.g. an imported Occopus resource); it never builds.

A descriptor converted from another tool keeps such a node so that it validates and shows the
whole infrastructure; building it fails at once with the message the node carries, which says
what to add (an implementation on a cloud Strato has a driver for).
"""

from __future__ import annotations

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus


class PlaceholderDriver(Driver):
    name = "placeholder"

    def start(self, spec: InstanceSpec) -> dict:
        what = spec.properties.get("resource_type") or "unknown"
        todo = spec.properties.get("todo") or "add an implementation on a backend Strato has a driver for"
        raise DriverError(f"node '{spec.node}' is a placeholder for a '{what}' resource that Strato cannot build: "
                          f"{todo}", retryable=False, backend=self.name)

    def observe(self, handle: dict) -> Observed:
        return Observed(ObservedStatus.MISSING, detail="placeholders are never built")

    def delete(self, handle: dict) -> None:
        return None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        return None
