"""Loop leases kept alive, and the servers that share one state database: the lease settings, the keeper thread
that renews a server's leases (and beats its heartbeat) against the database's clock, and the server registry.

In the manner of Kubernetes' leader election: a lease lasts `duration` seconds and is renewed every `retry`
seconds; a holder that could not renew for `renew_deadline` seconds gives its leases up on its own (its
loops stop) before another server may take them at `duration`. A lease that the renewal no longer finds
was taken over: the loop that held it stops at once and says so.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from drivers.common import process_start_time
from orchestrator.state import Lease, StateStore, new_owner_id

log = logging.getLogger("strato.leases")


@dataclass(frozen=True)
class LeaseSettings:
    """Seconds: how long a lease lasts, how long its holder keeps acting without a renewal, how often it renews
    (and how often a server looks for leases to take and operations to claim)."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def check(self) -> "LeaseSettings":
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError(f"leases need 0 < retry ({self.retry:g} s) < renew deadline ({self.renew_deadline:g} s) "
                             f"< lease ({self.duration:g} s)")
        return self


class LeaseKeeper:
    """Renews every lease of one owner every `retry` seconds in one statement, and runs the owner's other
    heartbeats (`beats`) on the same tick. `on_lost(infra, why)` of a lease runs once when it is lost."""

    def __init__(self, store: StateStore, owner: str | None = None, settings: LeaseSettings | None = None):
        self.store, self.owner = store, owner or new_owner_id()
        self.settings = settings or LeaseSettings()
        self.beats: list[Callable[[], None]] = []
        self._held: dict[str, tuple[Lease, Callable[[str, str], None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_renewed = time.monotonic()

    def add(self, lease: Lease, on_lost: Callable[[str, str], None]) -> None:
        with self._lock:
            self._held[lease.infra] = (lease, on_lost)

    def discard(self, infra: str) -> None:
        with self._lock:
            self._held.pop(infra, None)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def start(self) -> "LeaseKeeper":
        self._thread = threading.Thread(target=self._run, name="strato-lease-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.retry):
            self.tick()

    def tick(self) -> None:
        """One renewal: leases found, beats beaten; a database that does not answer costs the leases only once
        the renew deadline has passed."""
        try:
            kept = self.store.renew_leases(self.owner, self.settings.duration)
            for beat in self.beats:
                beat()
        except Exception as exc:  # noqa: BLE001 - the database is away (or a beat failed): count the time
            waited = time.monotonic() - self.last_renewed
            log.warning("lease renewal by %s failed (%.1f s since the last one): %s", self.owner, waited, exc)
            if waited > self.settings.renew_deadline:
                self._lose(self.held(), f"no renewal for {waited:.1f} s (renew deadline "
                                        f"{self.settings.renew_deadline:g} s): {exc}")
            return
        self.last_renewed = time.monotonic()
        with self._lock:
            lost = [infra for infra, (lease, _) in self._held.items() if kept.get(infra) != lease.token]
        self._lose(lost, "another server took the lease over")

    def _lose(self, infras: list[str], why: str) -> None:
        for infra in infras:
            with self._lock:
                entry = self._held.pop(infra, None)
            if entry is not None:
                entry[1](infra, why)


# -- the servers of one state database --------------------------------------------------------------
class ServerRegistry:
    """This server's row in `servers` (id host:pid:random, a heartbeat on the database's clock) and the others'."""

    def __init__(self, store: StateStore, settings: LeaseSettings, server_id: str | None = None,
                 url: str | None = None):
        self.store, self.settings = store, settings
        self.id = server_id or new_owner_id()
        self.url = url

    def register(self) -> None:
        db = self.store.database
        db.execute(f"INSERT INTO servers (id, host, pid, url, started, heartbeat) VALUES (?,?,?,?,{db.now_sql},"
                   f"{db.now_sql}) ON CONFLICT(id) DO UPDATE SET heartbeat=excluded.heartbeat, url=excluded.url",
                   (self.id, socket.gethostname(), os.getpid(), self.url))

    def beat(self) -> None:
        db = self.store.database
        db.execute(f"UPDATE servers SET heartbeat={db.now_sql} WHERE id=?", (self.id,))

    def deregister(self) -> None:
        self.store.database.execute("DELETE FROM servers WHERE id=?", (self.id,))

    def alive(self) -> list[str]:
        """The ids of servers whose heartbeat is younger than a lease (this one included); a server on this
        machine whose process is gone is not counted, however young its heartbeat."""
        rows = self.store.database.execute(f"SELECT id, host, pid FROM servers WHERE heartbeat > "
                                           f"{self.store.database.now_sql} - ? ORDER BY id",
                                           (self.settings.duration,)).fetchall()
        here = socket.gethostname()
        return [r[0] for r in rows if r[0] == self.id or r[1] != here or process_alive(r[2])]

    def fair_share(self, infrastructures: int) -> int:
        """How many loops this server should run: ceil(infrastructures / servers alive)."""
        return math.ceil(infrastructures / max(1, len(self.alive())))


def process_alive(pid: int) -> bool:
    return process_start_time(pid) is not None


def servers(store: StateStore, duration: float) -> list[dict]:
    """Every registered server: id, host, pid, url, started, heartbeat, age (seconds) and whether it is alive."""
    db = store.database
    rows = db.execute(f"SELECT id, host, pid, url, started, heartbeat, {db.now_sql} FROM servers "
                      "ORDER BY id").fetchall()
    return [{"id": r[0], "host": r[1], "pid": r[2], "url": r[3], "started": r[4], "heartbeat": r[5],
             "heartbeat_age_s": round(r[6] - r[5], 3), "alive": r[6] - r[5] < duration} for r in rows]
