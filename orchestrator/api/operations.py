"""Asynchronous operations of the REST API: builds, applies, scales and destroys run in background workers, one per
infrastructure at a time, with per-node progress persisted in the state database (a restart marks them interrupted)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from descriptors.diagnostics import DescriptorError
from orchestrator.api.errors import ApiError
from orchestrator.service import UserError
from orchestrator.state import StateError, StateStore

Work = Callable[[Callable[[dict], None]], dict]
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

    def __init__(self, store: StateStore, workers: int = 4):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="strato-op")
        self.running: dict[str, str] = {}
        self._lock = threading.Lock()
        self.interrupted = store.interrupt_orphaned_operations()

    def busy(self, infra: str) -> None:
        """409 naming the operation that is changing this infrastructure, if one is."""
        running = self.running.get(infra)
        if running is None:
            others = self.store.operations(infra, state="running", limit=1)
            running = others[0]["id"] if others else None
        if running is not None:
            op = self.store.get_operation(running) or {"kind": "operation"}
            raise ApiError(409, "OPERATION_RUNNING", f"infrastructure '{infra}' is busy with {op['kind']} operation "
                                                     f"{running}; wait for it to finish", operation=running)

    def submit(self, infra: str, kind: str, work: Work, prepare: Callable[[], object] | None = None) -> str:
        """Start work in the background; `prepare` runs first, under the same check that nothing else runs."""
        with self._lock:
            self.busy(infra)
            if prepare is not None:
                prepare()
            op_id = self.store.create_operation(infra, kind)
            self.running[infra] = op_id
        try:
            self.pool.submit(self._run, infra, op_id, work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._finish(infra, op_id, "interrupted", None, "the server is stopping")
            raise ApiError(409, "SERVER_STOPPING", "the server is stopping; try again after it restarts")
        return op_id

    def _run(self, infra: str, op_id: str, work: Work) -> None:
        progress = Progress()
        last_write = [0.0]

        def on_event(event: dict) -> None:
            progress.apply(event)
            now = time.monotonic()
            if now - last_write[0] > 0.2 or event.get("event") in ("planned", "node_done", "failed"):
                last_write[0] = now
                self.store.update_operation(op_id, progress=progress.to_dict())

        state, result, error = "failed", None, None
        try:
            result = work(on_event)
            state = "succeeded" if result.get("ok", True) else "failed"
            if state == "failed":
                failures = result.get("failures") or []
                error = "; ".join(f"{f.get('node')}: {f.get('error')}" for f in failures[:5]) or "the operation failed"
        except DescriptorError as exc:
            error = "; ".join(d.format() for d in exc.diagnostics[:5])
        except (UserError, StateError, ApiError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a driver or engine bug: recorded on the operation, not lost
            error = f"{type(exc).__name__}: {exc}"
        self._finish(infra, op_id, state, result, error, progress)

    def _finish(self, infra: str, op_id: str, state: str, result: dict | None, error: str | None,
                progress: Progress | None = None) -> None:
        self.store.update_operation(op_id, state=state, result=result, error=error,
                                    progress=progress.to_dict() if progress else None)
        with self._lock:
            if self.running.get(infra) == op_id:
                del self.running[infra]

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.running

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
