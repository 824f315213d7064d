"""The states an instance and an infrastructure go through, and a plan's actions: one Enum each, one transition table.

Each is a `StrEnum` (a `str`), in the spirit of Libcloud's NodeState: a member equals its string, so
the state database, the events and every JSON answer hold exactly the strings they held before, and a
status read back from the database (a plain str) compares equal to the member.
"""

from __future__ import annotations

from enum import StrEnum


class InstanceStatus(StrEnum):
    """An instance's status in the state database (UNHEALTHY only in a status view: a health check failed now)."""

    CREATING = "creating"          # create started (intent recorded before the backend is asked)
    REPLACING = "replacing"        # replace started: the old instance may still run under the same key
    READY = "ready"                # built, and observed alive when last looked at
    FAILED = "failed"              # the create/replace failed, or the loop gave up on its health
    UNKNOWN = "unknown"            # its backend could not be asked: neither ready nor gone
    MISSING = "missing"            # observed gone (process exited, resource deleted)
    DELETING = "deleting"          # delete started (a scale-in or a destroy)
    DELETE_FAILED = "delete_failed"
    UNHEALTHY = "unhealthy"        # never stored: `status --check` found it failing its health check


class InfraStatus(StrEnum):
    """An infrastructure's status in the state database (DEGRADED only in a status view)."""

    NEW = "new"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    DESTROYING = "destroying"
    DESTROY_FAILED = "destroy_failed"
    DEGRADED = "degraded"          # never stored: ready, but an instance is not ready now


class PlanAction(StrEnum):
    """What a plan does to one instance."""

    CREATE = "create"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"


# Statuses of instances Strato believes exist on their backend: each refresh observes them again.
OBSERVED = (InstanceStatus.READY, InstanceStatus.UNKNOWN)
# Statuses an instance is probably billed in (cost): unknown most likely still runs.
BILLED = (InstanceStatus.READY, InstanceStatus.UNKNOWN, InstanceStatus.CREATING, InstanceStatus.REPLACING)

_I = InstanceStatus
# Which status may follow which (a row that is removed leaves the table: deleting -> gone). The plan turns any
# status that is not ready (and not unknown) into a create; a refresh moves observed ones to ready/missing/unknown.
INSTANCE_TRANSITIONS: dict[InstanceStatus | None, frozenset[InstanceStatus]] = {
    None: frozenset({_I.CREATING, _I.REPLACING}),
    _I.CREATING: frozenset({_I.READY, _I.FAILED, _I.CREATING, _I.DELETING}),
    _I.REPLACING: frozenset({_I.READY, _I.FAILED, _I.CREATING, _I.DELETING}),
    _I.READY: frozenset({_I.REPLACING, _I.DELETING, _I.MISSING, _I.UNKNOWN, _I.FAILED}),
    _I.UNKNOWN: frozenset({_I.READY, _I.MISSING, _I.DELETING, _I.FAILED}),
    _I.MISSING: frozenset({_I.CREATING, _I.DELETING, _I.READY}),
    _I.FAILED: frozenset({_I.CREATING, _I.DELETING}),
    _I.DELETING: frozenset({_I.DELETE_FAILED}),
    _I.DELETE_FAILED: frozenset({_I.DELETING}),
    _I.UNHEALTHY: frozenset(),
}
_F = InfraStatus
INFRA_TRANSITIONS: dict[InfraStatus, frozenset[InfraStatus]] = {
    _F.NEW: frozenset({_F.BUILDING, _F.DESTROYING}),
    _F.BUILDING: frozenset({_F.READY, _F.FAILED}),
    _F.READY: frozenset({_F.BUILDING, _F.DESTROYING, _F.READY, _F.FAILED}),
    _F.FAILED: frozenset({_F.BUILDING, _F.DESTROYING, _F.READY}),
    _F.DESTROYING: frozenset({_F.DESTROY_FAILED}),  # a destroyed infrastructure's row is removed
    _F.DESTROY_FAILED: frozenset({_F.DESTROYING, _F.BUILDING}),
    _F.DEGRADED: frozenset(),
}


def may_follow(old: str | None, new: str, table: dict = INSTANCE_TRANSITIONS) -> bool:
    """Whether status `new` may follow `old` in the table (statuses as stored, plain strings or members)."""
    return new in table.get(old, frozenset())
