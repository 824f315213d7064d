"""The state store's contract, on both backends: every public method behaves the same on SQLite and PostgreSQL."""

import threading

import pytest

from orchestrator.state import MIGRATIONS, HostClaims, LockHeld, StateStore, VersionConflict


@pytest.fixture(autouse=True)
def _home(strato_home):
    """Each test's own STRATO_HOME (a PostgreSQL store keeps its sealing key there)."""


@pytest.fixture
def store(state_location):
    s = StateStore(state_location)
    yield s
    s.close()


def test_infrastructures_nodes_and_delete(store):
    created = store.ensure_infra("app", "d.yaml", {"a": 1, "pw": "s3cret"}, secret=frozenset({"pw"}))
    assert created.status == "new" and created.inputs == {"a": 1, "pw": "s3cret"} and created.secret_inputs == {"pw"}
    store.set_infra_status("app", "ready", {"url": "http://x"})
    again = store.ensure_infra("app", "e.yaml", {"a": 2})   # an update keeps uid, status, created
    assert (again.uid, again.status, again.created, again.descriptor) == (created.uid, "ready", created.created,
                                                                          "e.yaml")
    assert again.outputs == {"url": "http://x"} and again.updated >= created.updated
    store.set_desired_count("app", "web", 3)
    store.set_node_attributes("app", "web", {"port": 80})
    store.set_node_dependencies("app", {"web": ["db"], "db": []})
    rec = store.get_infra("app")
    assert rec.desired == {"web": 3, "db": None} and rec.node_attributes["web"] == {"port": 80}
    assert rec.dependencies == {"web": ["db"], "db": []}
    store.forget_node("app", "db")
    assert "db" not in store.get_infra("app").desired
    assert [i.name for i in store.list_infras()] == ["app"]
    store.record_intent("app", "web", 0, "app/web/0", "noop", "creating")
    store.add_sample("app", "web", 3, 0.5, {"rps": 10.0})
    store.delete_infra("app")
    assert store.get_infra("app") is None and store.instances("app") == [] and store.samples("app", "web") == []


def test_instances_intent_versions_and_cache(store):
    store.ensure_infra("x", None, {})
    store.record_intent("x", "n", 1, "x/n/1", "noop", "creating", "h1", event="create_started", why="t")
    store.record_intent("x", "n", 0, "x/n/0", "noop", "creating")
    store.record_intent("x", "n", 0, "x/n/0", "noop", "updating")      # upsert: keeps spec_hash, bumps version
    rec = store.get_instance("x/n/0")
    assert (rec.status, rec.version, rec.index) == ("updating", 2, 0)
    store.update_instance("x/n/0", expected_version=2, handle={"pid": 7}, attributes={"ip": "1.2.3.4"},
                          status="ready", event="created", event_detail={"ok": True})
    with pytest.raises(VersionConflict):
        store.update_instance("x/n/0", expected_version=2, status="failed")
    cache: dict = {}
    first = store.instances("x", cache)
    assert [i.key for i in first] == ["x/n/0", "x/n/1"] and first[0].handle == {"pid": 7}
    assert store.instances("x", cache)[0] is first[0]                # unchanged rows are not decoded again
    store.remove_instance("x/n/1", infra="x", event="deleted")
    assert [i.key for i in store.instances("x")] == ["x/n/0"]
    assert [e["kind"] for e in store.events("x")] == ["create_started", "created", "deleted"]
    assert store.events("x")[0]["detail"] == {"why": "t"}


def test_journal_cursor_and_node_events(store):
    store.ensure_infra("x", None, {})
    for i in range(5):
        store.journal("x", "scaled" if i % 2 else "other", None, node="web" if i < 4 else "db", n=i)
    after = store.events_after("x", 0, limit=2)
    assert [e["detail"]["n"] for e in after] == [0, 1]
    rest = store.events_after("x", after[-1]["id"])
    assert [e["detail"]["n"] for e in rest] == [2, 3, 4] and store.last_event_id("x") == rest[-1]["id"]
    assert [e["detail"]["n"] for e in store.node_events("x", "web", ("scaled",))] == [1, 3]
    assert store.node_events("x", "db", ("scaled", "other"))[0]["detail"]["n"] == 4
    assert store.last_event_id("nothing") is None


def test_operations_scale_requests_and_loop_memory(store):
    store.ensure_infra("x", None, {})
    op = store.create_operation("x", "build")
    store.update_operation(op, progress={"done": 1})
    store.update_operation(op, state="succeeded", result={"ok": True})
    got = store.get_operation(op)
    assert (got["state"], got["progress"], got["result"]) == ("succeeded", {"done": 1}, {"ok": True})
    assert [o["id"] for o in store.operations("x", state="succeeded")] == [op]
    assert store.interrupt_orphaned_operations() == 0
    first = store.add_scale_request("x", "web", "to", 3)
    second = store.add_scale_request("x", "web", "drop", instance="x/web/0")
    assert second > first and [r["id"] for r in store.pending_scale_requests("x")] == [first, second]
    store.finish_scale_request(first, {"applied": True})
    assert store.scale_request(first)["result"] == {"applied": True}
    assert [r["id"] for r in store.pending_scale_requests("x")] == [second]
    store.record_scaling("x", "web", 4, "up", "cpu", {"why": "busy"})
    assert store.get_infra("x").desired["web"] == 4 and store.node_controls("x")["web"]["last_direction"] == "up"
    store.save_policy_state("x", "cpu", "web", {"n": 1})
    store.save_policy_state("x", "cpu", "web", {"n": 2})
    assert store.policy_states("x") == {("cpu", "web"): {"n": 2}}
    store.set_failing("x", "x/web/0", 100.0, "refused")
    store.set_failing("x", "x/web/0", 200.0, "timeout")     # the first time it failed is kept
    assert store.failing("x") == {"x/web/0": (100.0, "timeout")}
    store.set_failing("x", "x/web/0", None)
    assert store.failing("x") == {}
    for i in range(3):
        store.add_sample("x", "web", i + 1, 0.1 * i, {"rps": float(i)})
    assert [s["instances"] for s in store.samples("x", "web", limit=2)] == [2, 3]


def test_locks_and_leases_between_threads(store):
    store.ensure_infra("x", None, {})
    store.acquire_lock("x", "build")
    store.acquire_lock("x", "build")                      # the holding thread may take it again
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(LockHeld, store.acquire_lock, "x", "other")))
    thread.start()
    thread.join(10)
    assert errors and "locked by build" in str(errors[0].value)
    store.release_lock("x")
    with store.locked("x", "scale"):
        pass
    store.acquire_lease("x", "loop")
    assert store.lease_holder("x")["holder"] == "loop"
    store.release_lease("x")
    assert store.lease_holder("x") is None


def test_change_stamp_moves_with_writes_only(store):
    store.ensure_infra("x", None, {})
    before = store.change_stamp()
    store.get_infra("x")
    store.instances("x")
    assert store.change_stamp() == before
    store.journal("x", "poke")
    assert store.change_stamp() != before


def test_host_claims_share_the_store(state_location):
    store = StateStore(state_location)
    claims = HostClaims(store.database)
    assert claims.claim("ssh", ["a:22", "b:22"], "k1", "x") == "a:22"
    assert claims.claim("ssh", ["a:22", "b:22"], "k1", "x") == "a:22"    # the host it already holds
    assert claims.claim("ssh", ["a:22", "b:22"], "k2", "x") == "b:22"
    assert claims.claim("ssh", ["a:22", "b:22"], "k3", "x") is None
    claims.mark_ready("ssh", "a:22", "k1", {"ip": "a"})
    assert claims.readiness("ssh", "k1") == (True, {"ip": "a"}) and claims.held_by("ssh", "k2") == "b:22"
    claims.release("ssh", "a:22", "k2")                                  # a stale key frees nothing
    claims.release("ssh", "a:22", "k1")
    assert [c["host"] for c in claims.claims("ssh")] == ["b:22"]
    opened = HostClaims(state_location)                                   # by location: its own connection
    assert opened.held_by("ssh", "k2") == "b:22"
    opened.close()
    store.close()


def test_concurrent_host_claims_never_share_a_host(state_location):
    store = StateStore(state_location)
    claims, got = HostClaims(store.database), []
    hosts = [f"h{i}:22" for i in range(4)]
    threads = [threading.Thread(target=lambda k=k: got.append(claims.claim("ssh", hosts, f"k{k}", "x")))
               for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(h for h in got if h) == hosts and got.count(None) == 4
    store.close()


def test_optimizer_tables_use_the_store(state_location):
    np = pytest.importorskip("numpy")
    from optimizer.samples import LoadHistoryStore, SampleSet, SampleStore
    store = StateStore(state_location)
    samples = SampleSet(np.arange(3.0) + 1, ("rps",), np.array([[1.0], [2.0], [3.0]]), np.ones(3), np.ones(3))
    with SampleStore(store.database) as sample_store:
        assert sample_store.add("x", "web", samples) == 3
        sample_store.add("x", "web", samples.slice(slice(0, 1)))        # same timestamps: replaced
        assert sample_store.series() == [("x", "web", 3)]
        assert list(sample_store.load("x", "web").metric("rps")) == [1.0, 2.0, 3.0]
    with LoadHistoryStore(store.database) as history:
        assert history.add("x", "web", "rps", [(1.0, 5.0), (2.0, 6.0)]) == 2
        assert history.add("x", "web", "rps", [(2.0, 9.0), (3.0, 7.0)]) == 1   # a stored timestamp keeps its value
        assert history.recent("x", "web", "rps") == [(1.0, 5.0), (2.0, 6.0), (3.0, 7.0)]
        assert history.delete("x", metric="rps") == 3
    store.close()


def test_migrations_apply_once_and_are_recorded(state_location):
    first = StateStore(state_location)
    versions = [r[0] for r in first.database.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS]
    assert first.database.migrate(MIGRATIONS) == []                     # nothing left to apply
    first.close()
    second = StateStore(state_location)                                  # a reopen applies nothing again
    assert second.database.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    assert abs(second.now() - __import__("time").time()) < 5
    second.close()


def test_a_table_appended_to_an_applied_migration_still_arrives(state_location):
    """Helpers extend the base schema in parallel branches: an idempotent migration whose text grew is re-run;
    a changed migration that is not idempotent is refused."""
    from orchestrator.statedb import Migration, StateError
    store = StateStore(state_location)
    grown = [Migration(MIGRATIONS[0].version, MIGRATIONS[0].name, MIGRATIONS[0].sql +
                                        "CREATE TABLE IF NOT EXISTS extra_t (k TEXT PRIMARY KEY, v REAL);")]
    assert store.database.migrate(grown + MIGRATIONS[1:]) == [MIGRATIONS[0].version]
    store.database.execute("INSERT INTO extra_t (k, v) VALUES (?, ?)", ("a", 0.1))
    assert store.database.migrate(grown + MIGRATIONS[1:]) == []
    changed = [Migration(2, "host-pool claims", "ALTER TABLE host_claims ADD COLUMN note TEXT")]
    with pytest.raises(StateError, match="changed after this database applied it"):
        store.database.migrate(changed)
    store.close()


def test_a_state_file_from_before_migrations_is_adopted_unchanged(tmp_path, strato_home):
    import sqlite3

    from orchestrator.state import SCHEMA
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO infrastructures (name, uid, inputs, status, created, updated) "
               "VALUES ('old', 'u1', '{}', 'ready', 1, 2)")
    db.commit()
    db.close()
    store = StateStore(path)
    assert store.get_infra("old").status == "ready" and store.get_infra("old").uid == "u1"
    assert "host_claims" in store.database.tables() and "optimizer_load" in store.database.tables()
    store.close()


@pytest.mark.parametrize("beat_age, taken", [(None, False), (5.0, False), (120.0, True)])
def test_a_lock_held_on_another_machine_is_taken_only_when_its_server_stopped_beating(store, beat_age, taken):
    """A holder on another host: its pid cannot be checked here; its server's heartbeat decides (none: held)."""
    store.ensure_infra("far", "d.yaml", {})
    store.database.execute("INSERT INTO locks (infra, holder, pid, host, start_time, acquired) VALUES (?,?,?,?,?,?)",
                           ("far", "strato serve", 4242, "another-machine.invalid", 1, 0.0))
    if beat_age is not None:
        now = store.now()
        store.database.execute("INSERT INTO servers (id, host, pid, url, started, heartbeat) VALUES (?,?,?,?,?,?)",
                               ("another-machine.invalid:4242:x", "another-machine.invalid", 4242, None,
                                now - 600, now - beat_age))
    if taken:
        store.acquire_lock("far", "strato build")
        assert store._holder("locks", "far")["holder"] == "strato build"
        store.release_lock("far")
    else:
        with pytest.raises(LockHeld, match="another-machine.invalid"):
            store.acquire_lock("far", "strato build")
