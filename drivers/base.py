"""The driver contract every backend implements: create / observe / delete / find by Strato's instance key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DriverError(Exception):
    """A backend refused or failed. `retryable` marks errors worth another try (throttling, timeouts)."""

    def __init__(self, message: str, retryable: bool = False, backend: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.backend = backend


@dataclass
class InstanceSpec:
    """Everything a driver needs to build one instance of a node template."""

    key: str
    infra: str
    node: str
    index: int
    type: str
    properties: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    node_attributes: dict[str, Any] = field(default_factory=dict)
    descriptor_dir: str = "."
    infra_dir: str = "."
    timeout: float = 300.0


@dataclass
class Observed:
    """What a backend reports about an instance now."""

    status: str  # running | completed | missing | failed
    attributes: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    @property
    def alive(self) -> bool:
        return self.status in ("running", "completed")


class Driver:
    """Base class. A handle is a JSON-serialisable dict the driver can act on later, in another process.

    Every backend resource is tagged/labelled with the instance key so that `find` can adopt
    what a crashed build created but never recorded: no leaks, no duplicates.
    """

    name = "base"
    # True when creating an instance runs a command as the user Strato runs as (the REST API refuses such
    # nodes from HTTP clients unless the server allows local processes).
    runs_host_commands = False

    def create(self, spec: InstanceSpec, key: str) -> dict:
        raise NotImplementedError

    def observe(self, handle: dict) -> Observed:
        raise NotImplementedError

    def delete(self, handle: dict) -> None:
        raise NotImplementedError

    def find(self, key: str) -> dict | None:
        raise NotImplementedError

    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        """Node-level attributes shared by all instances (e.g. a shared port); called before the first create."""
        return {}

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        """Undo prepare_node once the node has no instances left."""
