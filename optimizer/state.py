"""Where the optimizer's tables live: the state database Strato's store hands over, through a narrow interface.

The optimizer never chooses a database: Strato's engine gives it its open state database (SQLite or
PostgreSQL), or a location that the opener the orchestrator provided turns into one. Only when the optimizer
runs on its own (no orchestrator loaded) does a path open a plain SQLite file here, with the same tables.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

# The optimizer's tables in portable SQL (SQLite and PostgreSQL); Strato's migrations create them too.
OPTIMIZER_SCHEMA = """
CREATE TABLE IF NOT EXISTS optimizer_series (
    infrastructure TEXT NOT NULL, node TEXT NOT NULL,
    metric_names TEXT NOT NULL, instance_name TEXT NOT NULL, target_name TEXT NOT NULL,
    PRIMARY KEY (infrastructure, node));
CREATE TABLE IF NOT EXISTS optimizer_samples (
    infrastructure TEXT NOT NULL, node TEXT NOT NULL, timestamp REAL NOT NULL,
    instances REAL NOT NULL, target REAL NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (infrastructure, node, timestamp));
CREATE TABLE IF NOT EXISTS optimizer_load (
    infrastructure TEXT NOT NULL, node TEXT NOT NULL, metric TEXT NOT NULL, timestamp REAL NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (infrastructure, node, metric, timestamp));
"""


class StateDB(Protocol):
    """What the optimizer needs of a state database: `?` placeholders, one transaction at a time per thread."""

    def execute(self, sql: str, args: tuple = ()) -> Any: ...   # rows via fetchone()/fetchall()/iteration
    def executemany(self, sql: str, rows: list[tuple]) -> int: ...  # rows changed
    def transaction(self) -> contextlib.AbstractContextManager: ...


_opener: list[Callable[[str], StateDB]] = []


def provide_opener(opener: Callable[[str], StateDB]) -> None:
    """The orchestrator's state layer registers how a location (path or URL) opens (its callers close it)."""
    _opener[:] = [opener]


def default_state_path() -> Path:
    home = os.environ.get("STRATO_HOME") or os.path.join(os.path.expanduser("~"), ".strato")
    return Path(home) / "state.db"


def open_state(location: str | os.PathLike | None) -> tuple[str, StateDB]:
    """(location, an open database the caller closes) for a path or URL; None is Strato's default state."""
    if location is None:
        location = os.environ.get("STRATO_STATE_URL") or default_state_path()
    location = str(location)
    if _opener:
        return location, _opener[0](location)
    return location, _LocalSQLite(Path(location))


class _LocalSQLite:
    """A plain SQLite state file, for the optimizer used without the orchestrator (WAL, private from the start)."""

    def __init__(self, path: Path):
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:  # only a file that does not exist yet is opened outside SQLite (see orchestrator.state)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(OPTIMIZER_SCHEMA)

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        with self._lock:
            return self._db.executemany(sql, rows).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator["_LocalSQLite"]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
