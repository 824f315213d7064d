"""State store: intent/result rows, versions, journal and the per-infrastructure lock (SQLite and PostgreSQL)."""

import os
import subprocess
import sys

import pytest

from orchestrator.state import LockHeld, StateStore, VersionConflict, is_url


def test_lock_refuses_a_live_holder_and_names_it(state_location, strato_home):
    path = state_location
    store = StateStore(path)
    store.ensure_infra("demo", None, {})
    # another live process holds the lock
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {os.getcwd()!r})
from orchestrator.state import StateStore
s = StateStore({path!r})
s.acquire_lock("demo", "strato build")
print("locked", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as err:
            store.acquire_lock("demo", "strato build")
        assert f"pid {holder.pid}" in str(err.value) and "strato build" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and taken over
    store.acquire_lock("demo", "strato build")
    store.release_lock("demo")


def test_versions_detect_concurrent_changes(state_location, strato_home):
    store = StateStore(state_location)
    store.ensure_infra("x", None, {})
    store.record_intent("x", "n", 0, "k", "noop", "creating")
    rec = store.get_instance("k")
    store.update_instance("k", expected_version=rec.version, status="ready")
    with pytest.raises(VersionConflict):
        store.update_instance("k", expected_version=rec.version, status="failed")
    assert store.get_instance("k").status == "ready"


def test_intent_and_journal_survive_reopen(state_location, strato_home):
    path = state_location
    store = StateStore(path)
    store.ensure_infra("x", "d.yaml", {"a": 1})
    store.record_intent("x", "n", 0, "k", "local", "creating", "h1", event="create_started")
    store.close()
    again = StateStore(path)
    rec = again.get_instance("k")
    assert rec.status == "creating" and rec.spec_hash == "h1" and rec.driver == "local"
    assert again.get_infra("x").inputs == {"a": 1}
    assert [e["kind"] for e in again.events("x")] == ["create_started"]
    if is_url(path):
        return
    with open(path, "rb") as fh:
        assert fh.read(16).startswith(b"SQLite format 3")
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
