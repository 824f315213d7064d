"""The contract every driver's tests inherit: create / observe / find by key / delete, idempotently.

A backend's test module subclasses DriverContract and provides `driver` and `spec` fixtures
(an InstanceSpec whose `key` is unique per test) plus `exists(handle)`, which asks the backend
itself (not the driver) whether the resource is there.
"""

from __future__ import annotations


class DriverContract:
    def exists(self, handle) -> bool:  # pragma: no cover - provided by each backend's tests
        raise NotImplementedError

    def test_create_observe_delete(self, driver, spec):
        handle = driver.create(spec, spec.key)
        try:
            assert self.exists(handle)
            observed = driver.observe(handle)
            assert observed.alive, observed
        finally:
            driver.delete(handle)
        assert not self.exists(handle)
        assert not driver.observe(handle).alive

    def test_find_adopts_what_was_created_but_not_recorded(self, driver, spec):
        assert driver.find(spec.key) is None
        handle = driver.create(spec, spec.key)
        try:
            found = driver.find(spec.key)
            assert found is not None
            assert driver.observe(found).alive
        finally:
            driver.delete(handle)
        assert driver.find(spec.key) is None

    def test_delete_twice_is_harmless(self, driver, spec):
        handle = driver.create(spec, spec.key)
        driver.delete(handle)
        driver.delete(handle)
        assert not self.exists(handle)
