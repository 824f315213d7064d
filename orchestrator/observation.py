"""Observing instances now: what each backend says, `unknown` (with the reason) when it cannot say, and what follows.

Every observer (`strato status`, plan and build refreshes, the maintain loop) goes through here, so an
unreachable backend reads `unknown` everywhere and never leaves the stored `ready` standing. The
status an observation implies is written only if nobody changed the instance since it was read: a
refresh must not turn an instance a concurrent scale-down is deleting into `missing`.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from descriptors.functions import FunctionError, Unresolved
from drivers.base import DriverError, Observed, ObservedStatus
from drivers.providers import get_driver
from orchestrator.state import InstanceRecord, StateStore, VersionConflict
from orchestrator.states import OBSERVED, InstanceStatus

READY, UNKNOWN, MISSING = InstanceStatus.READY, InstanceStatus.UNKNOWN, InstanceStatus.MISSING
__all__ = ["OBSERVED", "READY", "UNKNOWN", "MISSING", "describe", "observe", "observe_all", "implied", "record"]


def describe(exc: BaseException) -> str:
    """One line for an error: its message, led by its type when it is a bug rather than a backend's refusal."""
    if isinstance(exc, (DriverError, LookupError, FunctionError, Unresolved, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def observe(rec: InstanceRecord) -> Observed:
    """What the backend says about one instance now; Observed('unknown', detail=why) when it cannot be asked."""
    try:
        return get_driver(rec.driver).observe(rec.handle)
    except Exception as exc:  # noqa: BLE001 - whatever the backend or its SDK raised, the answer is "unknown"
        return Observed(ObservedStatus.UNKNOWN, detail=f"cannot observe: {describe(exc)}")


def observe_all(records: list[InstanceRecord], workers: int = 16) -> dict[str, Observed]:
    """Observations by key: local lookups inline (a driver whose observe is cheap), backend API calls concurrently."""
    cheap = {name: _cheap_observe(name) for name in {r.driver for r in records}}
    slow = [r for r in records if not cheap[r.driver]]
    results = {r.key: observe(r) for r in records if cheap[r.driver]}
    if slow:
        with ThreadPoolExecutor(max_workers=min(workers, len(slow)), thread_name_prefix="strato-observe") as pool:
            results.update(zip((r.key for r in slow), pool.map(observe, slow)))
    return results


def _cheap_observe(driver: str) -> bool:
    """Whether the driver says its observe is a local lookup (an unknown driver: observed like a slow one)."""
    try:
        return get_driver(driver).cheap_observe
    except Exception:  # noqa: BLE001 - observe() reports why this driver cannot be asked
        return False


def implied(rec: InstanceRecord, obs: Observed) -> InstanceRecord:
    """The record as the observation says it is now (a copy): ready, missing, or unknown with the reason."""
    if obs.status == ObservedStatus.UNKNOWN:
        return dataclasses.replace(rec, status=UNKNOWN, error=obs.detail)
    if obs.alive:
        return dataclasses.replace(rec, status=READY, error=None) if rec.status != READY else rec
    return dataclasses.replace(rec, status=MISSING, error=obs.detail or "gone")


def record(store: StateStore, infra: str, rec: InstanceRecord, obs: Observed) -> InstanceRecord | None:
    """Write the status an observation implies, unless the instance changed since `rec` was read.

    Returns the instance as it now stands: the implied record, or (when another process changed it
    meanwhile) the stored one, or None when it was removed."""
    now = implied(rec, obs)
    if (now.status, now.error) == (rec.status, rec.error):
        return rec
    try:
        store.update_instance(rec.key, expected_version=rec.version, status=now.status, error=now.error,
                              event={MISSING: "missing", UNKNOWN: "unknown", READY: "observed"}[now.status],
                              event_detail={"detail": obs.detail}, infra=infra)
    except VersionConflict:
        return store.get_instance(rec.key)
    return dataclasses.replace(now, version=rec.version + 1)
