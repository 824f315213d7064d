"""Drivers that build nothing: `noop` (instant) and `sleep` (takes a set time); they measure the engine itself."""

from __future__ import annotations

import time

from drivers.base import Driver, InstanceSpec, Observed


class NoopDriver(Driver):
    name = "noop"

    def create(self, spec: InstanceSpec, key: str) -> dict:
        return {"key": key}

    def observe(self, handle: dict) -> Observed:
        return Observed("running", {})

    def delete(self, handle: dict) -> None:
        return None

    def find(self, key: str) -> dict | None:
        return None


class SleepDriver(NoopDriver):
    name = "sleep"

    def create(self, spec: InstanceSpec, key: str) -> dict:
        seconds = float(spec.properties.get("seconds", 0.5))
        time.sleep(min(max(seconds, 0.0), spec.timeout))
        return {"key": key, "slept": seconds}
