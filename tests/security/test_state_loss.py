"""Issue 17, data loss and duplicates: no write is lost, no instance is created twice, a refused command writes nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from orchestrator.state import LockHeld, StateDamaged, StateStore
from tests.conftest import REPO, run_strato

LIST_INFRAS = "import sys; from orchestrator.state import StateStore; s = StateStore(sys.argv[1]); " \
              "print(','.join(sorted(i.name for i in s.list_infras()))); s.close()"


def other_process_lists(path) -> set[str]:
    """Open, read and close the state from another process, as any CLI command does."""
    out = subprocess.run([sys.executable, "-c", LIST_INFRAS, str(path)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=60, check=True).stdout.strip()
    return set(filter(None, out.split(",")))


def deleted_state_files(under) -> list[str]:
    """This process's descriptors of state files under `under` whose file was deleted (other tests' are theirs)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)) and "state.db" in target and target.endswith("(deleted)"):
            out.append(target)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to see deleted files")
def test_a_second_store_in_the_process_keeps_the_wal_alive(tmp_path):
    """The server opens the state twice (API + maintain loop); a CLI run must not checkpoint and delete its WAL."""
    path = tmp_path / "state.db"
    api = StateStore(str(path))
    api.ensure_infra("e1", None, {})
    loop = StateStore(str(path))       # a second store in the same process, as `serve --maintain` opens
    assert other_process_lists(path) == {"e1"}   # `strato status` from the CLI
    api.ensure_infra("e2", None, {})
    loop.ensure_infra("e3", None, {})
    assert deleted_state_files(tmp_path) == []
    assert other_process_lists(path) == {"e1", "e2", "e3"}
    api.close()
    loop.close()
    assert other_process_lists(path) == {"e1", "e2", "e3"}


def hold_lock_in_thread(store, holder: str, release: threading.Event) -> threading.Thread:
    """Another thread of this process takes the lock and keeps it until `release` is set."""
    taken = threading.Event()

    def hold():
        with store.locked("x", holder):
            taken.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert taken.wait(10)
    return t


def test_one_lock_holder_per_infrastructure_even_within_a_process(tmp_path):
    """The API's operation thread and the loop thread of one server are two holders: the second must wait."""
    store = StateStore(str(tmp_path / "state.db"))
    store.ensure_infra("x", None, {})
    release = threading.Event()
    t = hold_lock_in_thread(store, "api operation", release)
    try:
        with pytest.raises(LockHeld, match="api operation"):
            store.acquire_lock("x", "strato maintain")
        store.release_lock("x")      # not ours to release: the holder keeps it
        with pytest.raises(LockHeld, match="api operation"):
            store.acquire_lock("x", "another thread")
    finally:
        release.set()
        t.join(10)
    store.acquire_lock("x", "strato maintain")   # free again once released
    store.release_lock("x")


def test_one_lease_holder_within_a_process(tmp_path):
    store = StateStore(str(tmp_path / "state.db"))
    store.acquire_lease("x", "loop one")
    errors = []

    def second():
        try:
            store.acquire_lease("x", "loop two")
        except LockHeld as exc:
            errors.append(str(exc))

    t = threading.Thread(target=second)
    t.start()
    t.join(10)
    assert errors and "loop one" in errors[0]
    store.release_lease("x")


def test_a_waiting_holder_gets_the_lock_when_it_is_released(tmp_path):
    store = StateStore(str(tmp_path / "state.db"))
    release = threading.Event()
    t = hold_lock_in_thread(store, "strato maintain", release)
    threading.Timer(0.3, release.set).start()
    store.acquire_lock("x", "api operation", wait=10)   # waits for the release instead of failing at once
    t.join(10)
    assert store._holder("locks", "x")["holder"] == "api operation"
    store.release_lock("x")


def corrupt_one_handle(home) -> tuple[str, str]:
    db = sqlite3.connect(str(home / "state.db"))
    key, handle = db.execute("SELECT key, handle FROM instances ORDER BY idx LIMIT 1").fetchone()
    db.execute("UPDATE instances SET handle='{not json' WHERE key=?", (key,))
    db.commit()
    db.close()
    return key, handle


def counts(home) -> tuple:
    db = sqlite3.connect(str(home / "state.db"))
    try:
        return (db.execute("SELECT COUNT(*) FROM scale_requests").fetchone()[0],
                db.execute("SELECT desired_count FROM nodes WHERE node='web'").fetchall(),
                db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        db.close()


PROCESSES = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    web:
      type: strato.nodes.Process
      properties: {command: ["sleep", "600"]}
      capabilities:
        scalable: {properties: {default_instances: 2}}
"""


@pytest.mark.parametrize("args", [["--to", "4"], ["--by", "+1"], ["--drop", "web[1]"], ["--to", "4", "--no-apply"],
                                  ["--by", "1", "--no-apply"]])
def test_a_refused_scale_writes_nothing(tmp_path, strato_home, args):
    (tmp_path / "m.yaml").write_text(PROCESSES)
    name = f"dmg{os.getpid()}"
    run_strato("build", str(tmp_path / "m.yaml"), "--name", name, home=strato_home, check=True)
    try:
        key, handle = corrupt_one_handle(strato_home)
        before = counts(strato_home)
        proc = run_strato("scale", name, "web", *args, "--json", home=strato_home)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        error = json.loads(proc.stdout)["error"]
        assert error["code"] == "STATE_DAMAGED" and key in error["message"]
        assert counts(strato_home) == before
    finally:
        db = sqlite3.connect(str(strato_home / "state.db"))
        db.execute("UPDATE instances SET handle=? WHERE key=?", (handle, key))
        db.commit()
        db.close()
        run_strato("destroy", name, "--yes", home=strato_home, check=True)


def test_an_infrastructure_destroyed_while_listing_is_not_listed(tmp_path):
    """Found by benchmarks/soak.py: `strato status` raced an API DELETE and died with a traceback."""
    path = str(tmp_path / "state.db")
    store = StateStore(path)
    for name in ("a", "b", "c"):
        store.ensure_infra(name, None, {})
    other = StateStore(path)   # another process's view, deleting `b` just after `store` read the names
    read = store.get_infra

    def get_infra(name):
        if name == "b":
            other.delete_infra("b")
        return read(name)

    store.get_infra = get_infra
    assert [i.name for i in store.list_infras()] == ["a", "c"]
