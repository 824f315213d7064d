"""The contract every driver's tests inherit: create / observe / find and adopt after a lost handle / delete twice /
update / prepare and release node-level resources, against the driver's real backend or emulator.

A backend's test class subclasses DriverContract and provides fixtures `driver` and `spec` (an
InstanceSpec whose `key` is unique per test) and `exists(handle)`, which asks the backend itself
(not the driver) whether the resource is there. Optional hooks:
  updated_spec(spec)      a spec the driver changes in place (update returns a handle); None when
                          the driver replaces instead (update must then return None)
  check_updated(handle, spec)  asks the backend that the change took effect
  node_resources(attrs)   asks the backend whether prepare_node's resources exist (None: there are none)
  failing_spec(spec)      a spec whose create fails after the backend call: nothing may be left behind
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.base import DriverError, InstanceSpec


class DriverContract:
    def exists(self, handle) -> bool:  # pragma: no cover - provided by each backend's tests
        raise NotImplementedError

    def updated_spec(self, spec: InstanceSpec) -> InstanceSpec | None:
        return None

    def check_updated(self, handle: dict, spec: InstanceSpec) -> None:
        """Assert (asking the backend) that `spec`'s change is in effect."""

    def node_resources(self, attrs: dict) -> bool | None:
        return None

    def failing_spec(self, spec: InstanceSpec) -> InstanceSpec | None:
        return None

    # -- the tests ----------------------------------------------------------------------
    def test_create_observe_delete(self, driver, spec):
        handle = driver.create(spec)
        try:
            assert handle.get("key", spec.key) == spec.key
            assert self.exists(handle)
            observed = driver.observe(handle)
            assert observed.alive, observed
        finally:
            driver.delete(handle)
        assert not self.exists(handle)
        assert not driver.observe(handle).alive

    def test_find_adopts_what_was_created_but_not_recorded(self, driver, spec):
        assert driver.find(spec.key, spec) is None
        handle = driver.create(spec)
        del handle  # the build "crashed" before recording it
        found = driver.find(spec.key, spec)
        try:
            assert found is not None
            assert self.exists(found)
            assert driver.observe(found).alive
            found = driver.adopt(found, spec)  # the readiness wait a resumed build runs before adopting it
            assert self.exists(found) and driver.observe(found).alive
        finally:
            if found is not None:
                driver.delete(found)
        assert driver.find(spec.key, spec) is None
        assert not self.exists(found)

    def test_delete_twice_is_harmless(self, driver, spec):
        handle = driver.create(spec)
        driver.delete(handle)
        driver.delete(handle)
        assert not self.exists(handle)

    def test_update_in_place_or_declined(self, driver, spec):
        handle = driver.create(spec)
        current = handle
        try:
            changed = self.updated_spec(spec)
            if changed is None:
                assert driver.update(handle, spec) is None  # the driver replaces instead
                return
            new = driver.update(handle, changed)
            assert new is not None, "update declined a change the driver claims to make in place"
            current = new
            assert self.exists(new) and driver.observe(new).alive
            self.check_updated(new, changed)
        finally:
            driver.delete(current)
            if current is not handle:
                driver.delete(handle)
        assert not self.exists(current)

    def test_prepare_and_release_node(self, driver, spec):
        node_spec = replace(spec, key="", index=-1, node_attributes={})
        attrs = driver.prepare_node(node_spec)
        try:
            assert isinstance(attrs, dict)
            # A second call with what the first returned has nothing left to do.
            assert driver.prepare_node(replace(node_spec, node_attributes=dict(attrs))) == attrs
            if self.node_resources(attrs) is not None:
                assert self.node_resources(attrs)
            handle = driver.create(replace(spec, node_attributes=dict(attrs)))
            try:
                assert driver.observe(handle).alive
            finally:
                driver.delete(handle)
        finally:
            driver.release_node(attrs)
        driver.release_node(attrs)  # twice: harmless
        if self.node_resources(attrs) is not None:
            assert not self.node_resources(attrs)

    def test_failed_create_leaves_nothing(self, driver, spec):
        bad = self.failing_spec(spec)
        if bad is None:
            pytest.skip("this backend has no way to fail after the create call")
        with pytest.raises(DriverError):
            driver.create(bad)
        assert driver.find(bad.key, bad) is None
