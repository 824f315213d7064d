"""Several servers on one state database, in one process: fenced loop leases, the keeper that renews them, fair
shares of the loops, operations claimed exactly once and re-claimed from a dead server; SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator import cluster
from orchestrator.fleet import Fleet
from orchestrator.leases import LeaseKeeper, LeaseSettings, ServerRegistry
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.state import LeaseLost, LockHeld, StateStore
from tests.pg import pg_cluster, pg_url, state_location  # noqa: F401  (fixtures)

FAST = LeaseSettings(duration=0.6, renew_deadline=0.4, retry=0.1)


@pytest.fixture
def stores(state_location):  # noqa: F811
    """Two handles on one state database, as two servers would have."""
    a, b = StateStore(state_location), StateStore(state_location)
    yield a, b
    a.close()
    b.close()


def expire(store: StateStore, infra: str) -> None:
    """The lease's time is up (as if its holder had stopped renewing), without waiting for it."""
    store.database.execute("UPDATE leases SET expires_at=0 WHERE infra=?", (infra,))


def test_a_taken_over_lease_fences_its_old_owner_out(stores):
    a, b = stores
    a.ensure_infra("x", None, {})
    first = a.acquire_lease("x", "loop a", owner="server-a", duration=30)
    with pytest.raises(LockHeld, match="maintained by loop a"):
        b.acquire_lease("x", "loop b", owner="server-b", duration=30)
    fenced = a.fenced_by_lease(first)
    fenced.journal("x", "written_by_a")
    expire(a, "x")
    second = b.acquire_lease("x", "loop b", owner="server-b", duration=30)
    assert second.token == first.token + 1
    with pytest.raises(LeaseLost):
        fenced.journal("x", "stale_write")
    with pytest.raises(LeaseLost):   # a transaction of several writes: none of it lands
        with fenced.transaction():
            fenced.set_infra_status("x", "stale")
    kinds = [e["kind"] for e in a.events("x")]
    assert "written_by_a" in kinds and "stale_write" not in kinds
    assert a.get_infra("x").status == "new" and fenced.lost
    assert a.renew_leases("server-a", 30) == {} and b.renew_leases("server-b", 30) == {"x": second.token}
    assert b.lease_holder("x")["owner"] == "server-b"


def test_release_hands_over_and_the_token_only_grows(stores):
    a, b = stores
    tokens = []
    for store, owner in ((a, "server-a"), (b, "server-b"), (a, "server-a")):
        lease = store.acquire_lease("y", owner, owner=owner, duration=30)
        tokens.append(lease.token)
        assert store.release_lease("y", lease)
        assert store.lease_holder("y") is None
    assert tokens == sorted(set(tokens))
    assert a.renew_leases("server-a", 30) == {}   # a released lease is not revived by a renewal


def test_keeper_renews_and_reports_a_lost_lease_once(stores):
    a, b = stores
    lease = a.acquire_lease("z", "loop", owner="server-a", duration=FAST.duration)
    keeper, lost = LeaseKeeper(a, "server-a", FAST), []
    keeper.add(lease, lambda infra, why: lost.append((infra, why)))
    keeper.start()
    try:
        time.sleep(FAST.duration * 2)
        assert a.lease_holder("z") is not None and lost == []    # renewed past its first expiry
        expire(a, "z")
        b.acquire_lease("z", "loop b", owner="server-b", duration=30)
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lost == [("z", "another server took the lease over")]
    finally:
        keeper.stop()


def test_a_maintain_loop_whose_lease_is_taken_stops_and_says_so(stores):
    a, b = stores
    a.ensure_infra("w", None, {})
    maintainer = Maintainer(a, "w", MaintainOptions(interval=0.05, lease=FAST))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (maintainer.run(), done.set()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while a.lease_holder("w") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    expire(a, "w")
    b.acquire_lease("w", "loop b", owner="server-b", duration=30)
    assert done.wait(5), "the loop went on after its lease was taken over"
    assert maintainer.lost
    assert any(e["kind"] == "lease_lost" for e in a.events("w"))
    assert b.lease_holder("w")["owner"] == "server-b"


def test_servers_take_fair_shares_and_a_stopping_one_hands_its_loops_over(stores):
    a, b = stores
    for name in ("i1", "i2", "i3", "i4"):
        a.ensure_infra(name, None, {})
        a.set_infra_status(name, "ready")
    fleets = []
    for store in (a, b):
        registry = ServerRegistry(store, FAST)
        registry.register()
        keeper = LeaseKeeper(store, registry.id, FAST)
        keeper.beats.append(registry.beat)
        fleets.append(Fleet(store, MaintainOptions(interval=0.2, lease=FAST), registry, keeper.start()))
    try:
        fleets[0].step()
        assert len(fleets[0].loops) == 2        # two servers alive: half each
        fleets[1].step()
        assert len(fleets[1].loops) == 2 and not set(fleets[0].loops) & set(fleets[1].loops)
        fleets[0].stop()
        fleets[0].keeper.stop()
        fleets[0].registry.deregister()
        fleets[1].step()
        assert len(fleets[1].loops) == 4        # handed back: taken on the next look, not after a lease
        view = cluster.cluster_view(a, FAST.duration)
        assert [len(s["leases"]) for s in view["servers"]] == [4]
    finally:
        for fleet in fleets:
            fleet.stop()
            fleet.keeper.stop()


def test_each_operation_is_claimed_exactly_once_by_concurrent_servers(stores, state_location):  # noqa: F811
    a, _ = stores
    for i in range(30):
        cluster.queue_operation(a, f"infra{i}", "create", {"runner": "none", "i": i}, "submitter")
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()

    def server(n: int) -> None:
        store = StateStore(state_location)
        try:
            while (claim := cluster.claim_operation(store, f"server-{n}", 60)) is not None:
                with lock:
                    claims.append((claim.id, f"server-{n}"))
        finally:
            store.close()
    threads = [threading.Thread(target=server, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [c[0] for c in claims]
    assert len(ids) == 30 and len(set(ids)) == 30


def test_a_dead_servers_operation_is_claimed_again_and_its_writes_are_fenced(stores):
    a, b = stores
    op_id, new = cluster.queue_operation(a, "v", "create", {"runner": "build", "inputs": {"pw": "s3cret"}},
                                         "submitter", idem_key="key-1")
    assert new and cluster.queue_operation(a, "v", "create", {"runner": "build"}, "x", idem_key="key-1") == (op_id,
                                                                                                           False)
    assert "s3cret" not in a.database.execute("SELECT request FROM operations WHERE id=?", (op_id,)).fetchone()[0]
    first = cluster.claim_operation(a, "server-a", timeout=0.3)
    assert first.attempt == 1 and first.request["inputs"] == {"pw": "s3cret"}
    assert cluster.claim_operation(b, "server-b", timeout=0.3) is None   # its heartbeat is fresh
    time.sleep(0.5)                                                     # server-a goes silent
    second = cluster.claim_operation(b, "server-b", timeout=0.3)
    assert second.id == op_id and second.attempt == 2
    stale = cluster.fenced_by_claim(a, first, "server-a")
    with pytest.raises(LeaseLost):
        stale.update_operation(op_id, state="succeeded")
    cluster.fenced_by_claim(b, second, "server-b").update_operation(op_id, state="succeeded")
    assert a.get_operation(op_id)["state"] == "succeeded"


NOOP = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    web:
      type: strato.nodes.Noop
      capabilities: {scalable: {properties: {default_instances: 2}}}
"""


def test_maintain_all_processes_share_the_loops_and_status_servers_shows_who_holds_what(strato, strato_home, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO
    desc = tmp_path / "noop.yaml"
    desc.write_text(NOOP)
    for name in ("one", "two"):
        assert strato("build", str(desc), "--name", name, "-q").returncode == 0
    env = dict(os.environ, STRATO_HOME=str(strato_home), PYTHONPATH=REPO)
    argv = [sys.executable, "-m", "orchestrator", "maintain", "--all", "--interval", "0.3s", "--lease", "3s",
            "--renew-deadline", "2s", "--retry", "0.3s"]
    procs = [subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    try:
        def shares():
            view = json.loads(strato("status", "--servers", "--json").stdout)
            held = sorted(len(s["leases"]) for s in view["servers"])
            return held == [1, 1] and view
        deadline = time.monotonic() + 30
        view = shares()
        while not view and time.monotonic() < deadline:
            time.sleep(0.3)
            view = shares()
        assert view, strato("status", "--servers").stdout
        text = strato("status", "--servers").stdout
        assert text.count("loops: ") == 2 and "alive" in text
        procs[0].send_signal(signal.SIGTERM)
        procs[0].wait(20)
        store = StateStore(str(strato_home / "state.db"))
        survivor = str(procs[1].pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
                (h := store.lease_holder(n)) and h["owner"].split(":")[1] == survivor for n in ("one", "two")):
            time.sleep(0.1)
        assert all(store.lease_holder(n)["owner"].split(":")[1] == survivor for n in ("one", "two"))
        store.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
