"""Operations any server of a shared state database may run, and who holds what.

An operation is a row with a state machine, queued -> running -> succeeded | failed | interrupted, an
idempotency key, its attempts, the server running it and that server's heartbeat. A server claims the
oldest claimable one in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so claimers never wait
on each other; BEGIN IMMEDIATE on SQLite): a queued one, or a running one whose server's heartbeat is
older than the timeout (its server died). Claiming bumps the attempts, and every write of the run is
fenced by (server, attempt): a server that was presumed dead and wakes up writes nothing more. A
re-claimed build resumes through the executor's intent journal, which adopts what the first attempt
created instead of creating it twice.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

from drivers.common import process_start_time
from orchestrator import sealing
from orchestrator.leases import servers
from orchestrator.state import StateStore

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Claim:
    """An operation this server runs now: which one, at which attempt, and what re-runs it."""

    id: str
    infra: str
    kind: str
    attempt: int
    request: dict | None


def queue_operation(store: StateStore, infra: str, kind: str, request: dict | None, server: str,
                    idem_key: str | None = None, run_here: bool = False) -> tuple[str, bool]:
    """(operation id, whether it is new). With a `request` the operation is queued for any server (or, with
    `run_here`, claimed at once by `server`, which has the request's files at hand); without, it runs on `server`
    (it cannot be re-run elsewhere). The inputs of a request are stored sealed. The same idempotency key twice
    answers the first operation."""
    op_id, now, pid = uuid.uuid4().hex, time.time(), os.getpid()
    if request is not None and request.get("inputs"):
        request = {**request, "inputs": sealing.seal_inputs(request["inputs"], request["inputs"], store.home)}
    queued = request is not None and not run_here
    state = "queued" if queued else "running"
    row = store.database.execute(
        "INSERT INTO operations (id, infra, kind, state, created, updated, pid, host, start_time, server, heartbeat, "
        f"attempts, idem_key, request) VALUES (?,?,?,?,?,?,?,?,?,?,{store.database.now_sql},?,?,?) "
        "ON CONFLICT(idem_key) DO NOTHING RETURNING id",
        (op_id, infra, kind, state, now, now, pid, socket.gethostname(), process_start_time(pid),
         None if queued else server, 0 if queued else 1, idem_key or op_id,
         json.dumps(request) if request is not None else None)).fetchone()
    if row is not None:
        return op_id, True
    return store.database.execute("SELECT id FROM operations WHERE idem_key=?", (idem_key,)).fetchone()[0], False


def claim_operation(store: StateStore, server: str, timeout: float) -> Claim | None:
    """Claim the oldest queued operation, or a running one whose server's heartbeat is older than `timeout`."""
    db = store.database
    with db.transaction(lock=None if db.skip_locked else "operations:claim"):
        row = db.execute(f"SELECT id, infra, kind, request, attempts FROM operations WHERE state='queued' OR "
                         f"(state='running' AND request IS NOT NULL AND heartbeat < {db.now_sql} - ?) "
                         f"ORDER BY created LIMIT 1{db.skip_locked}", (timeout,)).fetchone()
        if row is None:
            return None
        pid = os.getpid()
        db.execute(f"UPDATE operations SET state='running', server=?, attempts=attempts+1, heartbeat={db.now_sql}, "
                   "pid=?, host=?, start_time=?, updated=? WHERE id=?",
                   (server, pid, socket.gethostname(), process_start_time(pid), time.time(), row[0]))
    request = json.loads(row[3]) if row[3] else None
    if request and request.get("inputs"):
        request["inputs"] = sealing.open_inputs(request["inputs"], store.home)[0]
    return Claim(row[0], row[1], row[2], row[4] + 1, request)


def fenced_by_claim(store: StateStore, claim: Claim, server: str) -> StateStore:
    """The store as the claim's run writes through it: each write first beats the operation's heartbeat, and
    changes nothing once another server has re-claimed it."""
    return store.fenced((f"UPDATE operations SET heartbeat={store.database.now_sql} WHERE id=? AND server=? "
                         "AND attempts=?", (claim.id, server, claim.attempt)),
                        f"operation {claim.id} (attempt {claim.attempt})")


def beat_operations(store: StateStore, server: str, running: list[str], timeout: float) -> None:
    """The operations running here now are alive (one whose outcome could not be written is not: it goes stale
    and is claimed again); one that cannot be re-run whose server went silent is over."""
    now = store.database.now_sql
    for op_id in running:
        store.database.execute(f"UPDATE operations SET heartbeat={now} WHERE id=? AND server=? AND state='running'",
                               (op_id, server))
    store.database.execute(f"UPDATE operations SET state='interrupted', updated=?, error=? WHERE state='running' "
                           f"AND request IS NULL AND heartbeat IS NOT NULL AND heartbeat < {now} - ?",
                           (time.time(), "its server stopped while it ran; apply again to resume", timeout))


def requeue_operations(store: StateStore, server: str) -> int:
    """A server that stops hands its running operations back to the queue (another server resumes them)."""
    return store.database.execute("UPDATE operations SET state='queued', server=NULL WHERE server=? AND "
                                  "state='running' AND request IS NOT NULL", (server,)).rowcount


def cluster_view(store: StateStore, duration: float) -> dict:
    """Every server with its heartbeat and the loop leases and operations it holds, and what nobody holds."""
    found = servers(store, duration)
    by_id = {s["id"]: {**s, "leases": [], "operations": []} for s in found}
    unowned = []
    for lease in store.leases():
        entry = {"infrastructure": lease["infra"], "token": lease["token"], "expires_in": lease["expires_in"],
                 "holder": lease["holder"]}
        target = by_id.get(lease["owner"])
        (target["leases"] if target else unowned).append({**entry, "owner": lease["owner"]} if not target else entry)
    rows = store.database.execute("SELECT id, infra, kind, state, attempts, server FROM operations "
                                  "WHERE state IN ('queued', 'running') ORDER BY created").fetchall()
    queued = []
    for r in rows:
        op = {"id": r[0], "infrastructure": r[1], "kind": r[2], "state": r[3], "attempts": r[4]}
        if r[5] in by_id and r[3] == "running":
            by_id[r[5]]["operations"].append(op)
        else:
            queued.append({**op, "server": r[5]})
    return {"servers": list(by_id.values()), "unowned_leases": unowned, "waiting_operations": queued,
            "lease_s": duration}
