"""PostgreSQL state: migrations under concurrency, `strato state migrate` with its verifier, and a real build on PG."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from orchestrator.state import MIGRATIONS, HostClaims, StateStore
from tests.conftest import REPO, run_strato


def test_two_processes_starting_at_once_create_the_schema_once(pg_url, strato_home):
    start_at = time.time() + 1.5   # both wait for the same instant, so their migrations really race
    code = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {REPO!r})
        from orchestrator.state import StateStore
        time.sleep(max(0.0, {start_at!r} - time.time()))
        s = StateStore({pg_url!r})
        s.ensure_infra("racer", None, {{}})
        print("ok", flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    store = StateStore(pg_url)
    rows = store.database.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    assert [i.name for i in store.list_infras()] == ["racer"]
    store.close()


def rich_sqlite_state(path: str) -> None:
    """Something in every table, ids with gaps, a sealed secret, floats that must survive exactly."""
    store = StateStore(path)
    store.ensure_infra("app", "/srv/app.yaml", {"size": 3, "token": "s3cret"}, secret=frozenset({"token"}))
    store.set_infra_status("app", "ready", {"url": "http://127.0.0.1:1"})
    store.set_desired_count("app", "web", 2)
    store.set_node_dependencies("app", {"web": ["db"]})
    for i in range(2):
        store.record_intent("app", "web", i, f"app/web/{i}", "noop", "creating", "h", event="create_started")
        store.update_instance(f"app/web/{i}", status="ready", handle={"pid": 100 + i}, event="ready", infra="app")
    for n in range(30):
        store.journal("app", "tick", None, n=n, node="web")
    store.database.execute("DELETE FROM events WHERE id IN (3, 4)")             # gaps in the ids
    op = store.create_operation("app", "build")
    store.update_operation(op, state="succeeded", result={"ok": True})
    store.finish_scale_request(store.add_scale_request("app", "web", "to", 2), {"applied": True})
    store.record_scaling("app", "web", 2, "up", "cpu", {})
    store.save_policy_state("app", "cpu", "web", {"x": 0.1 + 0.2})
    store.set_failing("app", "app/web/1", 1234.5678901234, "refused")
    for i in range(2500):                                                            # more than one copy batch
        store.add_sample("app", "web", 2, 0.123456789 * i, {"rps": i / 7})
    HostClaims(store.database).claim("ssh", ["h:22"], "app/web/0", "app")
    store.database.execute("INSERT INTO optimizer_load (infrastructure, node, metric, timestamp, value) "
                           "VALUES (?,?,?,?,?)", ("app", "web", "rps", 1.5, 2.25))
    store.close()


def test_state_migrate_copies_every_table_and_verifies(tmp_path, strato_home, pg_url):
    source = str(strato_home / "state.db")
    rich_sqlite_state(source)
    proc = run_strato("state", "migrate", "--to", pg_url, "--json", home=strato_home)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["rows_copied"] > 2500
    tables = {t["table"]: t for t in result["tables"]}
    assert {"infrastructures", "instances", "events", "samples", "host_claims", "optimizer_load"} <= set(tables)
    assert all(t["source_rows"] == t["target_rows"] and not t["problem"] for t in tables.values())
    assert tables["samples"]["target_rows"] == 2500
    # the PostgreSQL store reads what the SQLite one held, the sealed secret too (same STRATO_HOME key)
    os.environ["STRATO_HOME"] = str(strato_home)
    old, new = StateStore(source), StateStore(pg_url)
    assert new.get_infra("app").inputs == old.get_infra("app").inputs == {"size": 3, "token": "s3cret"}
    assert [i.to_dict() for i in new.instances("app")] == [i.to_dict() for i in old.instances("app")]
    assert new.events("app", 1000) == old.events("app", 1000)
    assert new.failing("app") == {"app/web/1": (1234.5678901234, "refused")}
    new.journal("app", "after")                                            # ids go on after the copied ones
    assert new.last_event_id("app") > old.last_event_id("app")
    old.close()
    new.close()


def test_state_migrate_refuses_a_target_with_infrastructures_unless_forced(strato_home, pg_url):
    rich_sqlite_state(str(strato_home / "state.db"))
    assert run_strato("state", "migrate", "--to", pg_url, home=strato_home).returncode == 0
    again = run_strato("state", "migrate", "--to", pg_url, home=strato_home)
    assert again.returncode == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds 1 infrastructure" in lines[0] and "--force" in lines[0]
    as_json = run_strato("state", "migrate", "--to", pg_url, "--json", home=strato_home)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == "TARGET_NOT_EMPTY"
    forced = run_strato("state", "migrate", "--to", pg_url, "--force", home=strato_home)
    assert forced.returncode == 0 and "verified: all" in forced.stdout and "copying samples" in forced.stderr
    bad = run_strato("state", "migrate", "--to", "/not/a/url", home=strato_home)
    assert bad.returncode == 64 and "postgresql://" in bad.stderr


def test_verifier_finds_a_changed_and_a_missing_row(strato_home, pg_url):
    rich_sqlite_state(str(strato_home / "state.db"))
    assert run_strato("state", "migrate", "--to", pg_url, home=strato_home).returncode == 0
    os.environ["STRATO_HOME"] = str(strato_home)
    target = StateStore(pg_url)
    target.database.execute("UPDATE instances SET status='failed' WHERE key='app/web/1'")
    target.database.execute("DELETE FROM samples WHERE id = (SELECT MIN(id) FROM samples)")
    target.close()
    proc = run_strato("state", "migrate", "--to", pg_url, "--verify-only", "--json", home=strato_home)
    assert proc.returncode == 1
    problems = {t["table"]: t["problem"] for t in json.loads(proc.stdout)["tables"] if t["problem"]}
    assert set(problems) == {"instances", "samples"}
    assert "contents differ" in problems["instances"] and "app/web/1" in problems["instances"]
    assert "2500 rows in the source, 2499 in the target" == problems["samples"]
    text = run_strato("state", "migrate", "--to", pg_url, "--verify-only", home=strato_home)
    assert text.returncode == 1 and "VERIFY_FAILED: 2 of" in text.stderr


def test_an_unreachable_database_is_one_clear_line_without_the_password(pg_cluster, strato_home):
    url = pg_cluster.url("no_such_db").replace("postgres@", "postgres:hunter2@")
    proc = run_strato("--state", url, "status", home=strato_home, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to the PostgreSQL state" in lines[0] and "no_such_db" in lines[0]
    assert "hunter2" not in proc.stderr and ":***@" in lines[0]


DESCRIPTOR = """\
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    base: {type: strato.nodes.Noop}
    app:
      type: strato.nodes.Process
      properties:
        command: ["{python}", "-c", "import time; time.sleep(600)"]
      capabilities:
        scalable: {properties: {default_instances: 2}}
      requirements: [{dependency: base}]
"""


def api_reads_postgresql(pg_url, monkeypatch):
    """`strato serve`'s app on the same PostgreSQL state: lists the infrastructure, never shows the URL."""
    from fastapi.testclient import TestClient

    from orchestrator.api import ApiSettings, create_app
    from tests.conftest import API_READ_TOKEN, API_WRITE_TOKEN
    monkeypatch.setenv("STRATO_API_TOKEN", API_WRITE_TOKEN)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", API_READ_TOKEN)
    client = TestClient(create_app(pg_url, ApiSettings()))
    listed = client.get("/v1/infrastructures", headers={"Authorization": f"Bearer {API_READ_TOKEN}"})
    assert listed.status_code == 200 and "pgdemo" in listed.text and pg_url not in listed.text
    client.app.state.ctx.ops.wait_idle(30)


@pytest.mark.e2e
def test_build_status_destroy_on_postgresql(tmp_path, strato_home, pg_url, monkeypatch):
    monkeypatch.setenv("STRATO_STATE_URL", pg_url)
    path = tmp_path / "pg.yaml"
    path.write_text(DESCRIPTOR)
    build = run_strato("build", str(path), "--name", "pgdemo", "--json", home=strato_home, timeout=180)
    assert build.returncode == 0, build.stderr
    status = run_strato("status", "pgdemo", "--json", home=strato_home)
    assert status.returncode == 0, status.stderr
    assert "pgdemo" in status.stdout and '"ready"' in status.stdout
    once = run_strato("maintain", "pgdemo", "--once", "--json", home=strato_home, timeout=120)
    assert once.returncode == 0, once.stderr
    assert not (strato_home / "state.db").exists()                      # nothing went to SQLite
    api_reads_postgresql(pg_url, monkeypatch)
    store = StateStore(pg_url)
    pids = [i.handle["pid"] for i in store.instances("pgdemo") if i.node == "app"]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{pid}") for pid in pids)
    store.close()
    destroy = run_strato("destroy", "pgdemo", "--yes", "--json", home=strato_home, timeout=120)
    assert destroy.returncode == 0, destroy.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    store = StateStore(pg_url)
    assert store.get_infra("pgdemo") is None and store.instances("pgdemo") == []
    store.close()


def test_a_server_gone_mid_use_is_state_unavailable_in_one_line(strato_home):
    """Its own cluster (the session's must stay up): stopped under an open store, the next call says so."""
    from orchestrator.statedb import StateUnavailable
    from tests.pg import start_cluster
    try:
        cluster = start_cluster()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        store = StateStore(cluster.url())
        store.ensure_infra("x", None, {})
        subprocess.run(["bash", os.path.join(REPO, "tests", "env", "postgres.sh"), "stop", cluster.directory],
                       check=True, timeout=60)
        with pytest.raises(StateUnavailable) as err:
            store.get_infra("x")
        assert "\n" not in str(err.value) and "is unreachable" in str(err.value)
        store.database.pool.close(timeout=1)
    finally:
        cluster.stop()
