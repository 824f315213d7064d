"""The driver contract every backend implements: create / observe / delete / find by Strato's instance key."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Everything under $STRATO_HOME is private to its user, whatever writes it (SQLite's -wal, Ansible's
# artifacts, Terraform's state, an unpacked bundle, a trainer's model in its work dir): Strato's entry
# points set umask 077 once, and the processes it starts inherit it.
_UMASK_SET: list[bool] = []


def private_umask() -> None:
    """Set this process's umask to 077 (idempotent)."""
    if not _UMASK_SET:
        import os
        os.umask(0o077)
        _UMASK_SET.append(True)

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Pricing:
    """How an instance of a backend is priced from the price tables (orchestrator/cost.py reads it).

    `table` names the section of the price file; `size` the properties naming the priced size, the
    first one set wins (else `default`); `count` a property multiplying the price; `regional`: the
    section holds one table per region. `free`: running it costs nothing; `per_use`: billed per
    request on top (its hourly price is 0)."""

    table: str = ""
    size: tuple[str, ...] = ()
    default: str = ""
    count: str = ""
    regional: bool = True
    free: bool = False
    per_use: bool = False


FREE = Pricing(free=True)


class ObservedStatus(StrEnum):
    """What a backend says an instance is doing now (a str: drivers may pass the plain string)."""

    RUNNING = "running"
    COMPLETED = "completed"  # a job that ran to its end: alive, nothing to replace
    MISSING = "missing"
    FAILED = "failed"
    UNKNOWN = "unknown"      # the backend could not be asked; detail says why


@dataclass
class Observed:
    """What a backend reports about an instance now."""

    status: ObservedStatus
    attributes: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def __post_init__(self) -> None:
        self.status = ObservedStatus(self.status)  # a status no observer knows is a driver bug: fail here

    @property
    def alive(self) -> bool:
        return self.status in (ObservedStatus.RUNNING, ObservedStatus.COMPLETED)


class Driver:
    """Base class. A handle is a JSON-serialisable dict the driver can act on later, in another process.

    Every backend resource is tagged/labelled with the instance key (`spec.key`) so that `find`
    can adopt what a crashed build created but never recorded: no leaks, no duplicates.

    A backend implements `start` (ask for the resource, return its handle at once) and, when the
    resource takes a while, `wait_ready`; `create` is the one sequence around them: start, wait,
    and on any failure (or interruption) delete what was started. `adopt` is the same wait for
    what `find` returned: a crashed run may have started it without ever seeing it ready.
    """

    name = "base"
    # What building an instance makes THIS machine run, as the user Strato runs as, that the descriptor decides
    # (one clause, e.g. "starts a process on this machine"); "" when nothing. The REST API refuses nodes that
    # do, on every route that builds, unless the server was started with --allow-local-processes.
    runs_on_server_host = ""
    # Properties naming a file or directory on this machine, relative to the descriptor's directory (a
    # descriptor received over HTTP may only name files inside its own bundle).
    path_properties: tuple[str, ...] = ()
    # How the price tables price an instance (None: no known price unless the node gives cost_per_hour).
    pricing: Pricing | None = None
    # observe() is a local lookup (a process table, memory): observed inline, not from the thread pool.
    cheap_observe = False

    @classmethod
    def host_code(cls, properties: dict[str, Any], deleting: bool = False) -> str:
        """What creating (or, with `deleting`, removing) an instance with these properties runs on this machine
        as Strato's user; "" when nothing. Removing runs nothing unless a backend overrides this."""
        return "" if deleting else cls.runs_on_server_host

    @classmethod
    def server_paths(cls, properties: dict[str, Any]) -> list[tuple[str, Any]]:
        """(property path, value) of each file or directory on this machine an instance would read.

        A value that is a mapping or holds a line break is content, not a path."""
        return [(name, properties[name]) for name in cls.path_properties
                if properties.get(name) is not None and not isinstance(properties[name], dict)
                and "\n" not in str(properties[name])]

    # -- the contract -------------------------------------------------------------
    def create(self, spec: InstanceSpec) -> dict:
        """Start one instance and wait until it is usable; leaves nothing behind when that fails."""
        handle = self.start(spec)
        return self._ready_or_deleted(self.wait_ready, handle, spec, "cleaning up after a failed create")

    def adopt(self, handle: dict, spec: InstanceSpec) -> dict:
        """Wait until an instance `find` returned is usable, as create waits for a new one; on failure delete it."""
        return self._ready_or_deleted(self.wait_adopted, handle, spec, "removing it after it failed to get ready")

    def _ready_or_deleted(self, wait, handle: dict, spec: InstanceSpec, cleanup: str) -> dict:
        try:
            return wait(handle, spec)
        except BaseException:
            try:
                self.delete(handle)
            except Exception as exc:  # noqa: BLE001 - the first error is the one to report
                log.warning("%s: %s (%s) also failed: %s", self.name, cleanup, spec.key, exc)
            raise

    def observe(self, handle: dict) -> Observed:
        raise NotImplementedError

    def delete(self, handle: dict) -> None:
        """Remove the instance; deleting what is already gone is not an error."""
        raise NotImplementedError

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        """The handle of a live resource labelled with `key`, or None.

        `spec` carries the node's connection settings; it is None when only the stored state is
        known (a destroy), in which case the environment's defaults apply.
        """
        raise NotImplementedError

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """Change the instance in place to match `spec` and return its new handle, or None: replace it.

        Backends that can resize or reconfigure without a new resource override this.
        """
        return None

    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        """Node-level resources shared by all instances (a shared port, a security group, a role).

        Called before the node's instances are created, with `spec.node_attributes` holding what
        an earlier call returned (empty the first time): return it unchanged when nothing is left
        to do. The engine stores the result and hands it to this driver's release_node at destroy.
        """
        return dict(spec.node_attributes)

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        """Undo prepare_node once the node has no instances left."""

    # -- what create is made of ----------------------------------------------------
    def start(self, spec: InstanceSpec) -> dict:
        """Ask the backend for the instance; return its handle without waiting for it to be usable."""
        raise NotImplementedError

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        """Block (bounded by the spec's timeouts) until the instance is usable; return the final handle."""
        return handle

    def wait_adopted(self, handle: dict, spec: InstanceSpec) -> dict:
        """wait_ready for a found instance; a backend whose wait_ready does more than wait (configures) overrides it."""
        return self.wait_ready(handle, spec)
