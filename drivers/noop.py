"""Drivers that build nothing: `noop` (instant) and `sleep` (takes a set time); they measure the engine itself.

Their instances live in the driver object (one per process), so the contract's find/delete/update
behave as a backend's would within one process.
"""

from __future__ import annotations

import threading
import time

from drivers.base import FREE, Driver, InstanceSpec, Observed, ObservedStatus


class NoopDriver(Driver):
    name = "noop"
    pricing = FREE
    cheap_observe = True

    def __init__(self) -> None:
        self._live: dict[str, dict] = {}
        self._deleted: set[str] = set()
        self._lock = threading.Lock()

    def start(self, spec: InstanceSpec) -> dict:
        handle = {"key": spec.key, "generation": 1}
        with self._lock:
            self._live[spec.key] = handle
            self._deleted.discard(spec.key)
        return handle

    def observe(self, handle: dict) -> Observed:
        # A handle from another process (a later CLI run) is unknown here: taken as running.
        with self._lock:
            gone = handle.get("key") in self._deleted and handle.get("key") not in self._live
        return Observed(ObservedStatus.MISSING if gone else "running", {"key": handle.get("key")})

    def delete(self, handle: dict) -> None:
        with self._lock:
            self._live.pop(handle.get("key"), None)
            self._deleted.add(handle.get("key"))

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        with self._lock:
            found = self._live.get(key)
        return None if found is None else {**found, "adopted": True}

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        return {**handle, "generation": int(handle.get("generation", 1)) + 1}


class SleepDriver(NoopDriver):
    name = "sleep"

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        seconds = float(spec.properties.get("seconds", 0.5))
        time.sleep(min(max(seconds, 0.0), spec.timeout))
        return {**handle, "slept": seconds}
