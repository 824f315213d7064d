"""Asynchronous operations of the REST API: builds, applies, scales and destroys run in background workers, one per
infrastructure at a time, with per-node progress persisted in the state database (a restart marks them interrupted).

In a cluster (`join_cluster`: several servers on one database) an operation that can be re-run from what it
stored (`request`, run by a registered runner) is queued instead, and any server's claimer runs it; one whose
server died is claimed again and resumed (orchestrator/cluster.py)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from descriptors.diagnostics import DescriptorError
from orchestrator import cluster
from orchestrator.api.errors import ApiError
from orchestrator.service import UserError
from orchestrator.state import LeaseLost, StateError, StateStore
from orchestrator.statedb import StateUnavailable

log = logging.getLogger("strato.operations")
Work = Callable[[Callable[[dict], None]], dict]
# request["runner"] -> how to re-run it: (store to write through, the request, on_event) -> result
RUNNERS: dict[str, Callable[[StateStore, dict, Callable[[dict], None]], dict]] = {}


def runner(name: str):
    """Register how an operation's stored request is run (by whichever server claims it)."""
    def register(fn):
        RUNNERS[name] = fn
        return fn
    return register
_COUNTED = {"ready": "ready", "deleted": "deleted", "failed": "failed", "delete_failed": "failed"}


class Progress:
    """Per-node progress of one operation, built from the executor's events."""

    def __init__(self):
        self.total = 0
        self.done = 0
        self.nodes: dict[str, dict] = {}

    def apply(self, event: dict) -> None:
        kind, node = event.get("event"), event.get("node")
        if kind == "planned":
            self.total = int(event.get("changes") or 0)
            return
        if node is None:
            return
        entry = self.nodes.setdefault(node, {"status": "waiting", "started": 0, "ready": 0, "deleted": 0,
                                             "failed": 0, "error": None})
        if kind.endswith("_started"):
            entry["started"] += 1
            entry["status"] = "running"
        elif kind in _COUNTED:
            entry[_COUNTED[kind]] += 1
            self.done += 1
            if kind in ("failed", "delete_failed"):
                entry["status"], entry["error"] = "failed", event.get("error")
        elif kind == "node_done":
            entry["status"] = "done"
        elif kind == "skipped":
            entry["status"], entry["error"] = "skipped", f"dependency '{event.get('because')}' failed"

    def to_dict(self) -> dict:
        return {"total": self.total, "done": self.done, "nodes": self.nodes}


class Operations:
    """Runs mutating work in a bounded pool; a second mutating operation on one infrastructure is refused (409)."""

    def __init__(self, store: StateStore, workers: int = 4, clustered: bool = False):
        self.store = store
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="strato-op")
        self.running: dict[str, str] = {}
        self._lock = threading.Lock()
        self.server: str | None = None      # this server's id, once it joined a cluster
        self._wake = threading.Event()
        self._leaving = threading.Event()
        self._claimer: threading.Thread | None = None
        # one server alone: what a dead process ran is over (resumed by applying again); in a cluster another
        # server resumes it once its heartbeat is old
        self.interrupted = 0 if clustered else store.interrupt_orphaned_operations()

    def busy(self, infra: str) -> None:
        """409 naming the operation that is changing this infrastructure, if one is."""
        running = self.running.get(infra)
        if running is None:
            others = (self.store.operations(infra, state="running", limit=1)
                      or self.store.operations(infra, state="queued", limit=1))
            running = others[0]["id"] if others else None
        if running is not None:
            op = self.store.get_operation(running) or {"kind": "operation"}
            raise ApiError(409, "OPERATION_RUNNING", f"infrastructure '{infra}' is busy with {op['kind']} operation "
                                                     f"{running}; wait for it to finish", operation=running)

    def by_key(self, idem_key: str | None) -> str | None:
        """The operation an idempotency key already started, if any."""
        if not idem_key:
            return None
        row = self.store.database.execute("SELECT id FROM operations WHERE idem_key=?", (idem_key,)).fetchone()
        return row[0] if row else None

    def submit(self, infra: str, kind: str, work: Work, prepare: Callable[[], object] | None = None,
               request: dict | None = None, idem_key: str | None = None) -> str:
        """Start work in the background; `prepare` runs first, under the same check that nothing else runs. In a
        cluster, an operation with a `request` (see RUNNERS) runs here when a worker is free (this server holds
        the request's files), else it waits queued for whichever server claims it first."""
        claim = None
        with self._lock:
            self.busy(infra)
            if prepare is not None:
                prepare()
            if self.server is not None and request is not None:
                here = len(self.running) < self.workers
                op_id, new = cluster.queue_operation(self.store, infra, kind, request, self.server, idem_key, here)
                if new and here:
                    claim = cluster.Claim(op_id, infra, kind, 1, request)
                    self.running[infra] = op_id
            else:
                op_id = self._own_operation(infra, kind, idem_key)
                self.running[infra] = op_id
        if self.server is not None and request is not None:
            if claim is not None:
                self._dispatch(claim)
            self._wake.set()
            return op_id
        try:
            self.pool.submit(self._run, infra, op_id, work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._finish(infra, op_id, "interrupted", None, "the server is stopping")
            raise ApiError(409, "SERVER_STOPPING", "the server is stopping; try again after it restarts")
        return op_id

    def _own_operation(self, infra: str, kind: str, idem_key: str | None) -> str:
        """An operation only this server can run (in a cluster: interrupted when its heartbeat goes stale)."""
        if self.server is not None:
            return cluster.queue_operation(self.store, infra, kind, None, self.server, idem_key)[0]
        op_id = self.store.create_operation(infra, kind)
        if idem_key:
            self.store.database.execute("UPDATE operations SET idem_key=? WHERE id=?", (idem_key, op_id))
        return op_id

    def _run(self, infra: str, op_id: str, work: Work, store: StateStore | None = None) -> None:
        store = store or self.store
        progress = Progress()
        last_write = [0.0]

        def on_event(event: dict) -> None:
            progress.apply(event)
            now = time.monotonic()
            if now - last_write[0] > 0.2 or event.get("event") in ("planned", "node_done", "failed"):
                last_write[0] = now
                store.update_operation(op_id, progress=progress.to_dict())

        state, result, error = "failed", None, None
        try:
            result = work(on_event)
            state = "succeeded" if result.get("ok", True) else "failed"
            if state == "failed":
                failures = result.get("failures") or []
                error = "; ".join(f"{f.get('node')}: {f.get('error')}" for f in failures[:5]) or "the operation failed"
        except LeaseLost as exc:   # another server claimed it again (this one was presumed dead): it finishes it
            log.warning("operation %s stops here: %s", op_id, exc)
            self._forget(infra, op_id)
            return
        except StateUnavailable as exc:
            if store is not self.store:   # a claimed operation: it goes stale and is resumed once the database is back
                log.warning("operation %s pauses: %s", op_id, exc)
                self._forget(infra, op_id)
                return
            error = str(exc)
        except DescriptorError as exc:
            error = "; ".join(d.format() for d in exc.diagnostics[:5])
        except (UserError, StateError, ApiError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a driver or engine bug: recorded on the operation, not lost
            error = f"{type(exc).__name__}: {exc}"
        self._finish(infra, op_id, state, result, error, progress, store)

    def _finish(self, infra: str, op_id: str, state: str, result: dict | None, error: str | None,
                progress: Progress | None = None, store: StateStore | None = None) -> None:
        for attempt in range(3):   # the database may be restarting: a moment later the outcome is kept
            try:
                (store or self.store).update_operation(op_id, state=state, result=result, error=error,
                                                       progress=progress.to_dict() if progress else None)
                break
            except LeaseLost as exc:
                log.warning("operation %s: its outcome is not recorded here: %s", op_id, exc)
                break
            except StateError as exc:   # unreachable: in a cluster, the operation goes stale and is run again
                log.warning("operation %s: cannot record its outcome (%s)", op_id, exc)
                time.sleep(1.0 + attempt)
        self._forget(infra, op_id)

    def _forget(self, infra: str, op_id: str) -> None:
        with self._lock:
            if self.running.get(infra) == op_id:
                del self.running[infra]
        self._wake.set()

    # -- several servers -----------------------------------------------------------------------------
    def join_cluster(self, server: str, settings, keeper) -> None:
        """Claim queued operations (and those of dead servers) from now on, as server `server`."""
        self.server, self.settings = server, settings
        keeper.beats.append(lambda: cluster.beat_operations(self.store, server, list(self.running.values()),
                                                            settings.duration))
        self._claimer = threading.Thread(target=self._claim_loop, name="strato-op-claimer", daemon=True)
        self._claimer.start()

    def leave_cluster(self) -> None:
        """Stop claiming; what runs here goes on until the process ends (a dead server's work is re-claimed)."""
        self._leaving.set()
        self._wake.set()
        if self._claimer is not None:
            self._claimer.join(10)

    def _claim_loop(self) -> None:
        while not self._leaving.is_set():
            self._wake.wait(self.settings.retry)
            self._wake.clear()
            try:
                while not self._leaving.is_set() and len(self.running) < self.workers and self._claim_one():
                    pass
            except Exception as exc:  # noqa: BLE001 - the database is away: claim again on the next look
                log.warning("claiming operations: %s", exc)

    def _claim_one(self) -> bool:
        claim = cluster.claim_operation(self.store, self.server, self.settings.duration)
        if claim is None:
            return False
        self._dispatch(claim)
        return True

    def _dispatch(self, claim: cluster.Claim) -> None:
        """Run a claimed operation on a worker, every write fenced by the claim."""
        store = cluster.fenced_by_claim(self.store, claim, self.server)
        with self._lock:
            self.running[claim.infra] = claim.id
        if claim.attempt > cluster.MAX_ATTEMPTS or (claim.request or {}).get("runner") not in RUNNERS:
            why = (f"gave up after {claim.attempt - 1} attempts" if claim.attempt > cluster.MAX_ATTEMPTS
                   else f"this server cannot run '{(claim.request or {}).get('runner')}' operations")
            self._finish(claim.infra, claim.id, "failed", None, why, store=store)
            return
        work = self._work(claim)
        self.pool.submit(self._run, claim.infra, claim.id, lambda on_event: work(store, on_event), store)

    @staticmethod
    def _work(claim: cluster.Claim) -> Callable[[StateStore, Any], dict]:
        run = RUNNERS[claim.request["runner"]]
        return lambda store, on_event: run(store, claim.request, on_event)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.running

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
