"""Every infrastructure's maintain loop, shared by the servers of one state database (`strato serve --maintain`,
`strato maintain --all`): each server takes a fair share of the leases nobody holds, runs one loop thread per
lease it holds, gives back what exceeds its share when servers join, and hands all back when it stops.
"""
from __future__ import annotations

import logging
import threading
import zlib

from orchestrator.leases import LeaseKeeper, ServerRegistry
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.metrics import LoopMetrics
from orchestrator.state import LockHeld, StateStore

log = logging.getLogger("strato.fleet")


class _Loop:
    """One infrastructure's loop on its own thread, with its own stop."""

    def __init__(self, maintainer: Maintainer, keeper: LeaseKeeper):
        self.maintainer, self.stop = maintainer, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(keeper,), daemon=True,
                                       name=f"strato-maintain-{maintainer.name}")

    def _run(self, keeper: LeaseKeeper) -> None:
        try:
            self.maintainer.run(self.stop, keeper=keeper)
        except Exception:  # noqa: BLE001 - a loop's crash must not take the server's other loops with it
            log.exception("maintain loop of %s ended", self.maintainer.name)
            self.maintainer.release()


class Fleet:
    """The loops this server runs (see the module's docstring)."""

    def __init__(self, store: StateStore, options: MaintainOptions, registry: ServerRegistry,
                 keeper: LeaseKeeper, loop_metrics: LoopMetrics | None = None):
        self.store, self.options, self.registry, self.keeper = store, options, registry, keeper
        self.loop_metrics = loop_metrics or LoopMetrics()
        self.loops: dict[str, _Loop] = {}

    def names(self) -> list[str]:
        """Infrastructures a loop keeps, in an order of this server's own (servers starting at once spread out)."""
        names = [i.name for i in self.store.list_infras() if i.status not in ("new", "destroying")]
        return sorted(names, key=lambda n: zlib.crc32(f"{self.registry.id}/{n}".encode()))

    def step(self) -> None:
        """One look: forget ended loops, give back beyond the fair share, take free leases up to it."""
        for name in [n for n, loop in self.loops.items() if not loop.thread.is_alive()]:
            del self.loops[name]
        names = self.names()
        share = self.registry.fair_share(len(names))
        for name in sorted(self.loops)[share:]:   # servers joined: hand the surplus back (they take it next)
            self.loops.pop(name).stop.set()
        for name in names:
            if len(self.loops) >= share:
                break
            if name in self.loops:
                continue
            maintainer = Maintainer(self.store, name, self.options, loop_metrics=self.loop_metrics)
            try:
                maintainer.acquire(self.keeper.owner)
            except LockHeld:
                continue
            loop = self.loops[name] = _Loop(maintainer, self.keeper)
            loop.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every loop; each hands its lease back as it ends (another server takes it on its next look)."""
        for loop in self.loops.values():
            loop.stop.set()
        for loop in self.loops.values():
            loop.thread.join(timeout)
        self.loops.clear()


def maintain_fleet(store: StateStore, options: MaintainOptions, stop: threading.Event,
                   loop_metrics: LoopMetrics | None = None, registry: ServerRegistry | None = None,
                   keeper: LeaseKeeper | None = None) -> None:
    """Run this server's share of the loops until `stop` (registering the server and keeping its leases when the
    caller did not already)."""
    registry = registry or ServerRegistry(store, options.lease)
    own_keeper = keeper is None
    if own_keeper:
        registry.register()
        keeper = LeaseKeeper(store, registry.id, options.lease)
        keeper.beats.append(registry.beat)
        keeper.start()
    fleet = Fleet(store, options, registry, keeper, loop_metrics)
    try:
        while not stop.is_set():
            try:
                fleet.step()
            except Exception as exc:  # noqa: BLE001 - the database may be away for a while: look again later
                log.warning("maintain fleet of %s: %s", registry.id, exc)
            stop.wait(options.lease.retry)
    finally:
        fleet.stop()
        if own_keeper:
            keeper.stop()
            try:
                registry.deregister()
            except Exception as exc:  # noqa: BLE001
                log.warning("cannot deregister %s: %s", registry.id, exc)
