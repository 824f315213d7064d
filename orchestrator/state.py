"""Durable state: infrastructures, desired counts, instances (versioned), an event journal, and locks. SQLite (WAL)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# State holds inputs (maybe secrets) and handles: owner only (the helpers live with the drivers, which
# make their logs private the same way).
from drivers.common import make_private_dir, make_private_file, process_start_time, provide_claim_store, strato_home
from optimizer.state import OPTIMIZER_SCHEMA, provide_opener
from orchestrator import sealing
from orchestrator.statedb import (  # noqa: F401  (re-exported: the errors and file checks callers import from here)
    SQLITE_HEADER, Database, Migration, StateDamaged, StateError, check_header, damaged, is_url, open_database,
    open_in_this_process, redact)

SCHEMA = """
CREATE TABLE IF NOT EXISTS infrastructures (
    name TEXT PRIMARY KEY, uid TEXT NOT NULL, descriptor TEXT, inputs TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'new', outputs TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    infra TEXT NOT NULL, node TEXT NOT NULL, desired_count INTEGER, attributes TEXT NOT NULL DEFAULT '{}',
    dependencies TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (infra, node));
CREATE TABLE IF NOT EXISTS instances (
    key TEXT PRIMARY KEY, infra TEXT NOT NULL, node TEXT NOT NULL, idx INTEGER NOT NULL, driver TEXT NOT NULL,
    handle TEXT, attributes TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL, spec_hash TEXT, error TEXT,
    version INTEGER NOT NULL DEFAULT 1, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_infra ON instances (infra, node, idx);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, infra TEXT NOT NULL, ts REAL NOT NULL, key TEXT, kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_by_infra ON events (infra, id);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, infra TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, start_time INTEGER,
    progress TEXT NOT NULL DEFAULT '{}', result TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS operations_by_infra ON operations (infra, state);
CREATE TABLE IF NOT EXISTS locks (
    infra TEXT PRIMARY KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    start_time INTEGER, acquired REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    infra TEXT PRIMARY KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    start_time INTEGER, acquired REAL NOT NULL);
CREATE TABLE IF NOT EXISTS scale_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, infra TEXT NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL,
    value INTEGER, instance TEXT, requested REAL NOT NULL, applied REAL, result TEXT);
CREATE INDEX IF NOT EXISTS scale_requests_pending ON scale_requests (infra, applied);
CREATE TABLE IF NOT EXISTS node_control (
    infra TEXT NOT NULL, node TEXT NOT NULL, last_action REAL, last_direction TEXT, last_policy TEXT,
    PRIMARY KEY (infra, node));
CREATE TABLE IF NOT EXISTS policy_state (
    infra TEXT NOT NULL, policy TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL, PRIMARY KEY (infra, policy, node));
CREATE TABLE IF NOT EXISTS health (
    key TEXT PRIMARY KEY, infra TEXT NOT NULL, failing_since REAL NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, infra TEXT NOT NULL, node TEXT NOT NULL, ts REAL NOT NULL,
    instances INTEGER NOT NULL, target REAL, metrics TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS samples_by_node ON samples (infra, node, id);
"""

# model monitoring (orchestrator/mlops/monitoring.py): each request a model server recorded, joined with its label
MODEL_RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_records (
    infra TEXT NOT NULL, node TEXT NOT NULL, rid TEXT NOT NULL, instance TEXT NOT NULL, seq BIGINT NOT NULL,
    ts REAL NOT NULL, version TEXT, features TEXT NOT NULL, prediction TEXT, label TEXT, labelled REAL,
    win INTEGER, PRIMARY KEY (infra, node, rid));
CREATE INDEX IF NOT EXISTS model_records_by_window ON model_records (infra, node, win, ts);
"""

# host-pool claims (the `ssh` driver): which instance holds which host of a pool. The primary key
# (pool, host) makes a claim atomic: two builds, in any processes, never get one host.
HOST_CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS host_claims (
    pool TEXT NOT NULL, host TEXT NOT NULL, key TEXT NOT NULL, infra TEXT NOT NULL, claimed REAL NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0, attributes TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (pool, host));
CREATE UNIQUE INDEX IF NOT EXISTS host_claims_by_key ON host_claims (pool, key);
"""

# Several servers on one database (orchestrator/leases.py, orchestrator/cluster.py): a loop lease gets an owner
# (server id), a fencing token bumped on every acquisition and an expiry on the database's clock; servers
# register with a heartbeat; an operation carries what re-runs it (request), who runs it and since when.
CLUSTER_SCHEMA = """
ALTER TABLE leases ADD COLUMN owner TEXT;
ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN expires_at REAL;
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, url TEXT, started REAL NOT NULL,
    heartbeat REAL NOT NULL);
ALTER TABLE operations ADD COLUMN server TEXT;
ALTER TABLE operations ADD COLUMN heartbeat REAL;
ALTER TABLE operations ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN idem_key TEXT;
ALTER TABLE operations ADD COLUMN request TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS operations_by_idem_key ON operations (idem_key);
CREATE INDEX IF NOT EXISTS operations_claimable ON operations (state, heartbeat)
"""

# Every table of the state database, on SQLite and PostgreSQL alike, as one list of migrations applied once
# each, in order (a database records the versions it has in schema_migrations). To add a table or a column,
# APPEND a Migration with the next version and portable SQL (TEXT/REAL/INTEGER/BIGINT, an `id INTEGER PRIMARY KEY AUTOINCREMENT`
# becomes an identity column on PostgreSQL, ON CONFLICT upserts); never edit one that has shipped. The first ones use CREATE ... IF NOT EXISTS so
# that state files written before migrations existed adopt them unchanged.
MIGRATIONS: list[Migration] = [
    Migration(1, "infrastructures, instances, journal, operations, locks, loop state", SCHEMA),
    Migration(2, "host-pool claims", HOST_CLAIMS_SCHEMA),
    Migration(3, "optimizer samples and load history", OPTIMIZER_SCHEMA),
    Migration(4, "records of what model servers were asked and answered (drift, accuracy)", MODEL_RECORDS_SCHEMA),
    Migration(5, "several servers: fenced loop leases, the server registry, claimable operations", CLUSTER_SCHEMA),
]


def check_file(path: str) -> list[str]:
    """Everything wrong with a state file (empty when it is sound): header, SQLite's integrity check, JSON."""
    try:
        check_header(path)
    except StateDamaged as exc:
        return [str(exc).split(". Strato")[0]]
    if not os.path.exists(path):
        return [f"{path} does not exist"]
    problems = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                problems += [f"integrity: {r}" for r in rows[:20]]
            else:
                problems += _json_problems(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        problems.append(f"SQLite: {exc}")
    return problems


def _json_problems(db: sqlite3.Connection) -> list[str]:
    columns = {"infrastructures": ("name", ("inputs", "outputs")), "nodes": ("infra || '/' || node",
                                                                           ("attributes", "dependencies")),
               "instances": ("key", ("handle", "attributes")), "events": ("id", ("detail",))}
    problems = []
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, (key, cols) in columns.items():
        if table not in tables:
            continue
        for row in db.execute(f"SELECT {key}, {', '.join(cols)} FROM {table}"):
            for col, text in zip(cols, row[1:]):
                if text is None:
                    continue
                try:
                    json.loads(text)
                except (TypeError, ValueError):
                    problems.append(f"{table} row {row[0]}: column {col} is not valid JSON")
    return problems


def backup(path: str, target: str | None = None) -> str:
    """Copy the state file to TARGET (default state.db.backup-YYYYmmdd-HHMMSS beside it), mode 0600.

    A sound database is copied with SQLite's online backup (consistent while others write); a
    damaged one byte for byte, with its -wal, so nothing is lost before trying to repair it.
    """
    check_header_ok = not os.path.isdir(path) and os.path.exists(path)
    if not check_header_ok:
        raise StateError(f"nothing to back up: {path} " + ("is a directory" if os.path.isdir(path)
                                                           else "does not exist"))
    target = target or f"{path}.backup-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.exists(target):
        raise StateError(f"{target} already exists; name another --output")
    make_private_file(target)
    if not check_file(path):
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    else:
        _copy_bytes(path, target)
        if os.path.exists(path + "-wal"):
            make_private_file(target + "-wal")
            _copy_bytes(path + "-wal", target + "-wal")
    return target


_KEPT_OPEN: list[int] = []  # descriptors of state files this process must never close (see open_in_this_process)


def _copy_bytes(source: str, target: str) -> None:
    """Copy a file byte for byte; a file this process also has open is read through a descriptor left open."""
    keep = open_in_this_process(source)
    fd = os.open(source, os.O_RDONLY)
    try:
        with open(target, "wb") as out:
            while chunk := os.read(fd, 1 << 20):
                out.write(chunk)
    finally:
        if keep:
            _KEPT_OPEN.append(fd)   # closing it would drop this process's SQLite locks on the file
        else:
            os.close(fd)


# a claim (build lock, loop lease) held on another machine is taken over once that machine's server has not beaten
# in `servers` for this long: two default leases (15 s), so a server that is only slow is never robbed
REMOTE_HOLDER_STALE_S = 30.0


class LockHeld(StateError):
    code = "LOCKED"


class LeaseLost(StateError):
    """A fenced write found its lease (or operation claim) taken over: nothing was written, the writer must stop."""

    code = "LEASE_LOST"


WRITES = ("INSERT", "UPDATE", "DELETE")


def new_owner_id() -> str:
    """A server's (or a one-off loop's) identity: host:pid:random, unique across restarts and machines."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Lease:
    """A loop lease held: the infrastructure, who holds it, and the fencing token of this holding."""

    infra: str
    owner: str
    token: int
    holder: str = ""


class VersionConflict(StateError):
    code = "CONFLICT"


def default_state_path() -> str:
    return os.path.join(strato_home(), "state.db")


@dataclass
class InstanceRecord:
    key: str
    infra: str
    node: str
    index: int
    driver: str
    handle: dict | None
    attributes: dict
    status: str
    spec_hash: str | None
    error: str | None
    version: int
    updated: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("key", "node", "index", "driver", "status", "attributes",
                                              "handle", "error", "version", "updated")}


@dataclass
class InfraRecord:
    name: str
    uid: str
    descriptor: str | None
    inputs: dict
    status: str
    outputs: dict
    created: float
    updated: float
    desired: dict[str, int | None] = field(default_factory=dict)
    node_attributes: dict[str, dict] = field(default_factory=dict)
    dependencies: dict[str, list[str]] = field(default_factory=dict)
    secret_inputs: frozenset[str] = frozenset()  # the inputs stored sealed (orchestrator.sealing)


# (state file, table, infrastructure) -> the thread of this process that holds that lock or lease
_HOLDERS: dict[tuple, int] = {}
_HOLDERS_LOCK = threading.Lock()


class StateStore:
    """The state store, on an SQLite file (default) or PostgreSQL. Safe to share between threads; each write is
    its own transaction, and `transaction()` groups several."""

    def __init__(self, path: str | None = None, database: Database | None = None):
        """`path`: an SQLite file or a postgresql:// URL (default $STRATO_STATE_URL, else $STRATO_HOME/state.db);
        or an open `database` (its migrations are applied; closing the store closes it)."""
        self.database = database or open_database(path)
        self.path = self.database.location
        if is_url(self.path):
            make_private_dir(self.home)  # the sealing key of secret inputs lives there, whatever the backend
        try:
            self.database.migrate(MIGRATIONS)
        except BaseException:
            self.database.close()
            raise

    @property
    def _db(self):
        """The SQLite connection (an SQLite store only: for SQLite's own pragmas)."""
        return self.database.raw

    @property
    def home(self) -> str:
        """Where this state's private files live (the sealing key): beside an SQLite file, else STRATO_HOME."""
        return strato_home() if is_url(self.path) else os.path.dirname(os.path.abspath(self.path))

    @property
    def shown(self) -> str:
        """The location fit to print (a URL's password hidden)."""
        return redact(self.path)

    def close(self) -> None:
        self.database.close()

    _fence: tuple | None = None   # set on a fenced() view only
    lost: str | None = None

    def _exec(self, sql: str, args: tuple = ()):
        if self._fence is not None and sql.lstrip()[:6].upper() in WRITES \
                and not getattr(self._fence_local, "depth", 0):
            with self._fenced_transaction(None):
                return self.database.execute(sql, args)
        return self.database.execute(sql, args)

    def transaction(self, lock: str | None = None):
        """Several writes as one (see orchestrator.statedb.Database.transaction)."""
        if self._fence is not None:
            return self._fenced_transaction(lock)
        return self.database.transaction(lock)

    def now(self) -> float:
        """The database's clock (leases and fencing compare times on it, never on a server's own clock)."""
        return self.database.now()

    def _json(self, text: str | None, where: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise damaged(self.path, f"holds invalid JSON in {where}") from None

    # -- infrastructures -------------------------------------------------
    def get_infra(self, name: str) -> InfraRecord | None:
        row = self._exec("SELECT name, uid, descriptor, inputs, status, outputs, created, updated "
                         "FROM infrastructures WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        where = f"infrastructure '{name}'"
        inputs, sealed = sealing.open_inputs(self._json(row[3], f"the inputs of {where}"), self.home)
        rec = InfraRecord(row[0], row[1], row[2], inputs, row[4], self._json(row[5], f"the outputs of {where}"),
                          row[6], row[7], secret_inputs=sealed)
        for node, count, attrs, deps in self._exec(
                "SELECT node, desired_count, attributes, dependencies FROM nodes WHERE infra=?", (name,)):
            rec.desired[node] = count
            rec.node_attributes[node] = self._json(attrs, f"node '{node}' of {where}")
            rec.dependencies[node] = self._json(deps, f"node '{node}' of {where}")
        return rec

    def list_infras(self) -> list[InfraRecord]:
        names = [r[0] for r in self._exec("SELECT name FROM infrastructures ORDER BY name")]
        # one destroyed by another process between the two reads is simply no longer listed
        return [infra for infra in map(self.get_infra, names) if infra is not None]

    def ensure_infra(self, name: str, descriptor: str | None, inputs: dict, secret=frozenset()) -> InfraRecord:
        """Create or update an infrastructure's row; the inputs named in `secret` are stored sealed."""
        now = time.time()
        try:
            stored = json.dumps(sealing.seal_inputs(inputs, secret, self.home))
        except sealing.SealError as exc:
            raise StateError(str(exc)) from None
        # one statement: a new row gets a uid and status 'new', an existing one keeps them
        self._exec("INSERT INTO infrastructures (name, uid, descriptor, inputs, status, created, updated) "
                   "VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET descriptor=excluded.descriptor, "
                   "inputs=excluded.inputs, updated=excluded.updated",
                   (name, uuid.uuid4().hex[:8], descriptor, stored, "new", now, now))
        return self.get_infra(name)

    def set_infra_status(self, name: str, status: str, outputs: dict | None = None) -> None:
        if outputs is None:
            self._exec("UPDATE infrastructures SET status=?, updated=? WHERE name=?", (status, time.time(), name))
        else:
            self._exec("UPDATE infrastructures SET status=?, outputs=?, updated=? WHERE name=?",
                       (status, json.dumps(outputs), time.time(), name))

    def delete_infra(self, name: str) -> None:
        with self.transaction(lock=f"infra:{name}"):
            for table in ("instances", "nodes", "scale_requests", "node_control", "policy_state", "health",
                          "samples", "model_records", "infrastructures"):
                col = "name" if table == "infrastructures" else "infra"
                self._exec(f"DELETE FROM {table} WHERE {col}=?", (name,))

    def set_desired_count(self, infra: str, node: str, count: int | None) -> None:
        self._exec("INSERT INTO nodes (infra, node, desired_count) VALUES (?,?,?) "
                   "ON CONFLICT(infra, node) DO UPDATE SET desired_count=excluded.desired_count", (infra, node, count))

    def set_node_attributes(self, infra: str, node: str, attributes: dict) -> None:
        self._exec("INSERT INTO nodes (infra, node, attributes) VALUES (?,?,?) "
                   "ON CONFLICT(infra, node) DO UPDATE SET attributes=excluded.attributes",
                   (infra, node, json.dumps(attributes)))

    def set_node_dependencies(self, infra: str, dependencies: dict[str, list[str]]) -> None:
        self._transaction([("INSERT INTO nodes (infra, node, dependencies) VALUES (?,?,?) "
                            "ON CONFLICT(infra, node) DO UPDATE SET dependencies=excluded.dependencies",
                            (infra, node, json.dumps(sorted(deps)))) for node, deps in dependencies.items()])

    def forget_node(self, infra: str, node: str) -> None:
        self._exec("DELETE FROM nodes WHERE infra=? AND node=?", (infra, node))

    # -- instances -------------------------------------------------------
    _COLS = "key, infra, node, idx, driver, handle, attributes, status, spec_hash, error, version, updated"

    def _instance(self, row) -> InstanceRecord:
        where = f"instance {row[0]}"
        return InstanceRecord(row[0], row[1], row[2], row[3], row[4],
                              self._json(row[5], where) if row[5] else None, self._json(row[6], where),
                              row[7], row[8], row[9], row[10], row[11])

    def instances(self, infra: str, cache: dict | None = None) -> list[InstanceRecord]:
        """An infrastructure's instances in one query. With `cache` (kept by the caller between calls), a row
        whose version is unchanged reuses its decoded record: a loop pass over 10,000 unchanged instances
        then decodes nothing. Callers of the cached form must not modify the records they get."""
        rows = self._exec(f"SELECT {self._COLS} FROM instances WHERE infra=? ORDER BY node, idx", (infra,)).fetchall()
        if cache is None:
            return [self._instance(r) for r in rows]
        out, fresh = [], {}
        for r in rows:
            rec = cache.get(r[0])
            if rec is None or rec.version != r[10] or rec.updated != r[11]:
                rec = self._instance(r)
            fresh[r[0]] = rec
            out.append(rec)
        cache.clear()
        cache.update(fresh)
        return out

    def get_instance(self, key: str) -> InstanceRecord | None:
        row = self._exec(f"SELECT {self._COLS} FROM instances WHERE key=?", (key,)).fetchone()
        return self._instance(row) if row else None

    def _transaction(self, statements: list[tuple[str, tuple]]) -> list:
        """Run statements as one transaction (one commit): a state change and its journal entry together."""
        with self.transaction():
            return [self._exec(sql, args) for sql, args in statements]

    @staticmethod
    def _event_stmt(infra: str, kind: str, key: str | None, detail: dict) -> tuple[str, tuple]:
        return ("INSERT INTO events (infra, ts, key, kind, detail) VALUES (?,?,?,?,?)",
                (infra, time.time(), key, kind, json.dumps(detail, default=str)))

    def record_intent(self, infra: str, node: str, index: int, key: str, driver: str, status: str,
                      spec_hash: str | None = None, event: str | None = None, **detail: Any) -> None:
        """Write what is about to happen to an instance before the driver is called (with its journal entry)."""
        stmts = [("INSERT INTO instances (key, infra, node, idx, driver, status, spec_hash, updated) "
                  "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
                  "driver=excluded.driver, spec_hash=COALESCE(excluded.spec_hash, instances.spec_hash), "
                  "error=NULL, version=instances.version+1, updated=excluded.updated",
                  (key, infra, node, index, driver, status, spec_hash, time.time()))]
        if event:
            stmts.append(self._event_stmt(infra, event, key, detail))
        self._transaction(stmts)

    def record_intents(self, infra: str, driver: str, intents: list[tuple]) -> None:
        """Many record_intent at once, in one transaction of two batched statements: (node, index, key, status,
        spec_hash, event, detail) each. Every driver call still comes after its intent is committed."""
        now = time.time()
        with self.transaction():
            self.database.executemany(
                "INSERT INTO instances (key, infra, node, idx, driver, status, spec_hash, updated) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET status=excluded.status, "
                "driver=excluded.driver, spec_hash=COALESCE(excluded.spec_hash, instances.spec_hash), "
                "error=NULL, version=instances.version+1, updated=excluded.updated",
                [(key, infra, node, index, driver, status, spec, now)
                 for node, index, key, status, spec, _, _ in intents])
            self.database.executemany("INSERT INTO events (infra, ts, key, kind, detail) VALUES (?,?,?,?,?)",
                                      [(infra, now, key, event, json.dumps(detail, default=str))
                                       for _, _, key, _, _, event, detail in intents if event])

    def mark_ready(self, infra: str, ready: list[tuple]) -> None:
        """Instances whose driver answered, at once: (key, handle, attributes, event detail) each, with a `ready`
        event for each."""
        now = time.time()
        with self.transaction():
            self.database.executemany(
                "UPDATE instances SET status='ready', handle=?, attributes=?, error=NULL, version=version+1, "
                "updated=? WHERE key=?",
                [(json.dumps(handle) if handle is not None else None, json.dumps(attrs), now, key)
                 for key, handle, attrs, _ in ready])
            self.database.executemany("INSERT INTO events (infra, ts, key, kind, detail) VALUES (?,?,?,?,?)",
                                      [(infra, now, key, "ready", json.dumps(detail, default=str))
                                       for key, _, _, detail in ready])

    def update_instance(self, key: str, expected_version: int | None = None, event: str | None = None,
                        event_detail: dict | None = None, infra: str | None = None, **fields: Any) -> None:
        """Update an instance row; with expected_version, fail if someone else changed it meanwhile."""
        sets, args = [], []
        for name, value in fields.items():
            if name in ("handle", "attributes"):
                value = json.dumps(value) if value is not None else None
            sets.append(f"{name}=?")
            args.append(value)
        sets.append("version=version+1")
        sets.append("updated=?")
        args.append(time.time())
        sql = f"UPDATE instances SET {', '.join(sets)} WHERE key=?"
        args.append(key)
        if expected_version is not None:
            sql += " AND version=?"
            args.append(expected_version)
        stmts = [(sql, tuple(args))]
        if event:
            if infra is None:
                row = self._exec("SELECT infra FROM instances WHERE key=?", (key,)).fetchone()
                infra = row[0] if row else None
            if infra:
                stmts.append(self._event_stmt(infra, event, key, event_detail or {}))
        cur = self._transaction(stmts)[0]
        if cur.rowcount == 0 and expected_version is not None:
            raise VersionConflict(f"instance {key} was changed by another Strato process; retry")

    def remove_instance(self, key: str, infra: str | None = None, event: str | None = None) -> None:
        stmts = [("DELETE FROM instances WHERE key=?", (key,))]
        if event and infra:
            stmts.append(self._event_stmt(infra, event, key, {}))
        self._transaction(stmts)

    # -- journal ---------------------------------------------------------
    def journal(self, infra: str, kind: str, key: str | None = None, /, **detail: Any) -> None:
        self._exec("INSERT INTO events (infra, ts, key, kind, detail) VALUES (?,?,?,?,?)",
                   (infra, time.time(), key, kind, json.dumps(detail, default=str)))

    def events(self, infra: str, limit: int = 100) -> list[dict]:
        rows = self._exec("SELECT ts, key, kind, detail FROM events WHERE infra=? ORDER BY id DESC LIMIT ?",
                          (infra, limit)).fetchall()
        return [{"ts": r[0], "key": r[1], "kind": r[2], "detail": self._json(r[3], f"event of '{infra}'")}
                for r in reversed(rows)]

    def events_after(self, infra: str, after_id: int, limit: int = 500) -> list[dict]:
        """Journal entries with their ids, oldest first, after a cursor (for resumable event streams)."""
        rows = self._exec("SELECT id, ts, key, kind, detail FROM events WHERE infra=? AND id>? ORDER BY id LIMIT ?",
                          (infra, after_id, limit)).fetchall()
        return [{"id": r[0], "ts": r[1], "key": r[2], "kind": r[3], "detail": json.loads(r[4])} for r in rows]

    def node_events(self, infra: str, node: str, kinds: tuple[str, ...], since: float = 0.0,
                    limit: int = 2000) -> list[dict]:
        """The last `limit` events of these kinds whose detail names `node`, since a time, oldest first."""
        marks = ",".join("?" * len(kinds))
        rows = self._exec(f"SELECT ts, key, kind, detail FROM events WHERE infra=? AND kind IN ({marks}) AND ts>=? "
                          f"AND {self.database.json_text('detail', 'node')}=? ORDER BY id DESC LIMIT ?",
                          (infra, *kinds, since, node, limit)).fetchall()
        return [{"ts": r[0], "key": r[1], "kind": r[2], "detail": self._json(r[3], f"event of '{infra}'")}
                for r in reversed(rows)]

    def last_event_id(self, infra: str) -> int | None:
        return self._exec("SELECT MAX(id) FROM events WHERE infra=?", (infra,)).fetchone()[0]

    def change_stamp(self, blocking: bool = True) -> tuple | None:
        """Changes by this connection plus commits by any other one: equal stamps mean nothing was written.

        Non-blocking, None while another thread is using the connection (a caller on an event loop then
        falls back to a worker thread instead of stalling the loop)."""
        return self.database.change_stamp(blocking)

    # -- operations (asynchronous API requests) ----------------------------
    _OP_COLS = "id, infra, kind, state, created, updated, pid, host, progress, result, error, attempts, server"

    def create_operation(self, infra: str, kind: str) -> str:
        """A running operation owned by this process (a restart finds it by pid and marks it interrupted)."""
        op_id, now, pid = uuid.uuid4().hex, time.time(), os.getpid()
        self._exec("INSERT INTO operations (id, infra, kind, state, created, updated, pid, host, start_time) "
                   "VALUES (?,?,?,?,?,?,?,?,?)",
                   (op_id, infra, kind, "running", now, now, pid, socket.gethostname(), process_start_time(pid)))
        return op_id

    def update_operation(self, op_id: str, state: str | None = None, progress: dict | None = None,
                         result: dict | None = None, error: str | None = None) -> None:
        sets, args = ["updated=?"], [time.time()]
        for col, value in (("state", state), ("progress", progress), ("result", result), ("error", error)):
            if value is not None:
                sets.append(f"{col}=?")
                args.append(value if isinstance(value, str) else json.dumps(value, default=str))
        self._exec(f"UPDATE operations SET {', '.join(sets)} WHERE id=?", (*args, op_id))

    @staticmethod
    def _operation(row) -> dict:
        return {"id": row[0], "infrastructure": row[1], "kind": row[2], "state": row[3], "created": row[4],
                "updated": row[5], "progress": json.loads(row[8]), "result": json.loads(row[9]) if row[9] else None,
                "error": row[10], "attempts": row[11], "server": row[12]}

    def get_operation(self, op_id: str) -> dict | None:
        row = self._exec(f"SELECT {self._OP_COLS} FROM operations WHERE id=?", (op_id,)).fetchone()
        return self._operation(row) if row else None

    def operations(self, infra: str | None = None, state: str | None = None, limit: int = 100) -> list[dict]:
        sql, args = f"SELECT {self._OP_COLS} FROM operations WHERE 1=1", []
        if infra is not None:
            sql += " AND infra=?"
            args.append(infra)
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        rows = self._exec(sql + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._operation(r) for r in rows]

    def interrupt_orphaned_operations(self) -> int:
        """Running operations whose owning process is gone become 'interrupted' (their builds resume cleanly)."""
        host = socket.gethostname()
        orphaned = []
        for op_id, pid, op_host, start in self._exec(
                "SELECT id, pid, host, start_time FROM operations WHERE state='running'").fetchall():
            if op_host == host and (process_start_time(pid) is None or process_start_time(pid) != start):
                orphaned.append(op_id)
        for op_id in orphaned:
            self.update_operation(op_id, state="interrupted", error="the server stopped while it ran; "
                                                                    "apply again to resume")
        return len(orphaned)

    # -- locks and leases ------------------------------------------------
    # A lock is held while acting on an infrastructure (build, destroy, a maintain pass that acts); a
    # lease is held by the one maintain loop of an infrastructure for as long as it runs. Both are
    # claimed the same way: a holder whose process is gone (pid + start time) is taken over. Within one
    # process (`serve --maintain`: API operations and the loop) the holder is the thread that claimed
    # it, remembered in _HOLDERS: another thread of the same process is refused like another process.
    def _claim(self, table: str, infra: str, holder: str, what: str, advice: str, wait: float = 0.0) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._claim_once(table, infra, holder, what, advice)
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _claim_once(self, table: str, infra: str, holder: str, what: str, advice: str) -> None:
        pid, host, owner = os.getpid(), socket.gethostname(), (self.database.identity, table, infra)
        me, assigned, previous = threading.get_ident(), False, None
        try:
            # the database's lock first, then _HOLDERS_LOCK (the order every path takes them in)
            with self.transaction(lock=f"{table}:{infra}"), _HOLDERS_LOCK:
                row = self._exec(f"SELECT holder, pid, host, start_time, acquired FROM {table} WHERE infra=?",
                                 (infra,)).fetchone()
                if row is not None:
                    h_holder, h_pid, h_host, h_start, h_acquired = row
                    alive = (self._remote_holder_alive(h_host, h_pid) if h_host != host
                             else process_start_time(h_pid) is not None and process_start_time(h_pid) == h_start)
                    ours = h_pid == pid and h_host == host
                    if alive and (not ours or _HOLDERS.get(owner, me) != me):
                        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h_acquired))
                        raise LockHeld(f"infrastructure '{infra}' is {what} by {h_holder} (pid {h_pid} on {h_host}, "
                                       f"since {since}); {advice}")
                    self._exec(f"DELETE FROM {table} WHERE infra=?", (infra,))
                self._exec(f"INSERT INTO {table} (infra, holder, pid, host, start_time, acquired) VALUES (?,?,?,?,?,?)",
                           (infra, holder, pid, host, process_start_time(pid), time.time()))
                previous, _HOLDERS[owner], assigned = _HOLDERS.get(owner), me, True
        except BaseException:
            if assigned:  # the commit failed: the claim was not written, so this thread holds what it held before
                with _HOLDERS_LOCK:
                    if previous is None:
                        _HOLDERS.pop(owner, None)
                    else:
                        _HOLDERS[owner] = previous
            raise

    def _remote_holder_alive(self, host: str, pid: int) -> bool:
        """Whether a claim held on another machine still has a live holder. Its pid cannot be looked at from here,
        but a server (`strato serve`/`maintain --all`) beats in `servers`: a holder whose row there has not beaten
        for REMOTE_HOLDER_STALE_S died (kill -9, a lost machine). A holder with no row (a CLI on that machine) is
        taken as alive, as before: nothing here can tell."""
        row = self._exec(f"SELECT MAX(heartbeat), {self.database.now_sql} FROM servers WHERE host=? AND pid=?",
                         (host, pid)).fetchone()
        return row is None or row[0] is None or row[1] - row[0] < REMOTE_HOLDER_STALE_S

    def _unclaim(self, table: str, infra: str) -> None:
        """Give up a claim this thread holds (another thread's claim in this process is left alone)."""
        owner = (self.database.identity, table, infra)
        with self.transaction(), _HOLDERS_LOCK:
            if _HOLDERS.get(owner, threading.get_ident()) != threading.get_ident():
                return
            _HOLDERS.pop(owner, None)
            self._exec(f"DELETE FROM {table} WHERE infra=? AND pid=? AND host=?",
                       (infra, os.getpid(), socket.gethostname()))

    def _holder(self, table: str, infra: str) -> dict | None:
        row = self._exec(f"SELECT holder, pid, host, start_time, acquired FROM {table} WHERE infra=?",
                         (infra,)).fetchone()
        if row is None:
            return None
        alive = row[2] != socket.gethostname() or (process_start_time(row[1]) is not None
                                                   and process_start_time(row[1]) == row[3])
        return {"holder": row[0], "pid": row[1], "host": row[2], "since": row[4], "alive": alive}

    def acquire_lock(self, infra: str, holder: str, wait: float = 0.0) -> None:
        """Take the infrastructure's lock, waiting up to `wait` seconds, else fail naming who holds it (a dead
        holder's lock is taken over)."""
        self._claim("locks", infra, holder, "locked", "wait for it to finish", wait)

    def release_lock(self, infra: str) -> None:
        self._unclaim("locks", infra)

    def locked(self, infra: str, holder: str, wait: float = 0.0) -> "_LockContext":
        return _LockContext(self, infra, holder, wait)

    # -- loop leases (fenced) -----------------------------------------------
    # A loop lease row (infra, owner, token, expires_at) names the one maintain loop of an infrastructure.
    # It is taken by a conditional UPDATE on the token last seen (compare-and-set: of two takers one
    # wins), with its expiry on the database's clock; every taking bumps the token. The owner's writes
    # then go through `fenced(lease)`, which checks owner and token inside each write's transaction: a
    # loop whose lease was taken over writes nothing more (LeaseLost). A holder on this machine whose
    # process is gone is taken over at once, without waiting for the expiry.
    _LEASE_COLS = "holder, pid, host, start_time, acquired, owner, token, expires_at"

    def _lease_row(self, infra: str) -> dict | None:
        row = self._exec(f"SELECT {self._LEASE_COLS}, {self.database.now_sql} FROM leases WHERE infra=?",
                         (infra,)).fetchone()
        if row is None:
            return None
        entry = dict(zip(("holder", "pid", "host", "start_time", "since", "owner", "token", "expires_at"), row))
        expired = entry["expires_at"] is not None and entry["expires_at"] <= row[8]
        here = entry["host"] == socket.gethostname()
        gone = here and (process_start_time(entry["pid"]) is None
                         or process_start_time(entry["pid"]) != entry["start_time"])
        entry["alive"] = not expired and not gone
        entry["expires_in"] = None if entry["expires_at"] is None else round(entry["expires_at"] - row[8], 3)
        return entry

    def acquire_lease(self, infra: str, holder: str, owner: str | None = None, duration: float = 15.0) -> Lease:
        """Become the one maintain loop of an infrastructure for `duration` seconds (renew_leases keeps it), or
        fail (LockHeld) naming the loop that is. `owner`: the server taking it (default: a new id)."""
        owner = owner or new_owner_id()
        pid, host = os.getpid(), socket.gethostname()
        self._exec("INSERT INTO leases (infra, holder, pid, host, start_time, acquired, owner, token, expires_at) "
                   "VALUES (?,?,?,?,?,?,?,0,0) ON CONFLICT(infra) DO NOTHING",
                   (infra, holder, pid, host, process_start_time(pid), time.time(), ""))
        row = self._lease_row(infra)
        if row["alive"] and row["owner"] != owner:
            raise self._lease_held(infra, row)
        now = self.database.now_sql
        taken = self._exec(f"UPDATE leases SET holder=?, pid=?, host=?, start_time=?, acquired={now}, owner=?, "
                           f"token=token+1, expires_at={now}+? WHERE infra=? AND token=? RETURNING token",
                           (holder, pid, host, process_start_time(pid), owner, duration, infra,
                            row["token"])).fetchone()
        if taken is None:   # another server took it between our read and our write
            raise self._lease_held(infra, self._lease_row(infra) or row)
        with _HOLDERS_LOCK:
            _HOLDERS[(self.database.identity, "leases", infra)] = owner
        return Lease(infra, owner, taken[0], holder)

    @staticmethod
    def _lease_held(infra: str, row: dict) -> LockHeld:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["since"]))
        return LockHeld(f"infrastructure '{infra}' is maintained by {row['holder']} (pid {row['pid']} on "
                        f"{row['host']}, since {since}); stop that loop first, or let it apply your change")

    def renew_leases(self, owner: str, duration: float) -> dict[str, int]:
        """Extend every lease `owner` still holds by `duration` from now (database clock): infra -> token. A lease
        missing from the answer was taken over."""
        rows = self._exec(f"UPDATE leases SET expires_at={self.database.now_sql}+? WHERE owner=? "
                          "RETURNING infra, token", (duration, owner)).fetchall()
        return {r[0]: r[1] for r in rows}

    def release_lease(self, infra: str, lease: Lease | None = None) -> bool:
        """Hand a lease back (it expires now, keeping its token); without `lease`, the one this process took last."""
        with _HOLDERS_LOCK:
            owner = lease.owner if lease else _HOLDERS.get((self.database.identity, "leases", infra))
            if owner is not None and _HOLDERS.get((self.database.identity, "leases", infra)) == owner:
                _HOLDERS.pop((self.database.identity, "leases", infra), None)
        if owner is None:
            return False
        sql = "UPDATE leases SET expires_at=0, owner='' WHERE infra=? AND owner=?"
        return self._exec(sql + (" AND token=?" if lease else ""),
                          (infra, owner, *((lease.token,) if lease else ()))).rowcount > 0

    def lease_holder(self, infra: str) -> dict | None:
        """The live maintain loop of an infrastructure or None: {holder, pid, host, since, owner, token, expires_in}."""
        row = self._lease_row(infra)
        return row if row and row["alive"] else None

    def leases(self) -> list[dict]:
        """Every live loop lease, with its infrastructure."""
        names = [r[0] for r in self._exec("SELECT infra FROM leases ORDER BY infra")]
        return [{"infra": n, **row} for n in names if (row := self.lease_holder(n)) is not None]

    # -- fenced writes --------------------------------------------------------
    def fenced(self, check: tuple[str, tuple], what: str) -> "StateStore":
        """This store, with every write checked first by `check` (an UPDATE that must change one row) in the
        write's own transaction: when it changes nothing, the write is not made and LeaseLost is raised.
        The check's row lock (PostgreSQL) or the write lock (SQLite) holds until the write commits, so a
        takeover, which updates that row, is ordered before or after the whole write, never in between."""
        view = copy.copy(self)
        view._fence, view._fence_what, view._fence_local = check, what, threading.local()
        view.lost = None
        return view

    def fenced_by_lease(self, lease: Lease) -> "StateStore":
        return self.fenced(("UPDATE leases SET token=token WHERE infra=? AND owner=? AND token=?",
                            (lease.infra, lease.owner, lease.token)),
                           f"the lease on '{lease.infra}' (token {lease.token})")

    def _check_fence(self) -> None:
        sql, args = self._fence
        if self.database.execute(sql, args).rowcount != 1:
            self.lost = f"{self._fence_what} was taken over by another server"
            raise LeaseLost(self.lost)

    @contextlib.contextmanager
    def _fenced_transaction(self, lock: str | None):
        local = self._fence_local
        if getattr(local, "depth", 0):
            local.depth += 1
            try:
                yield self.database
            finally:
                local.depth -= 1
            return
        with self.database.transaction(lock) as db:
            local.depth = 1
            try:
                self._check_fence()
                yield db
            finally:
                local.depth = 0

    # -- scale requests ---------------------------------------------------
    def add_scale_request(self, infra: str, node: str, kind: str, value: int | None = None,
                          instance: str | None = None) -> int:
        """Record a manual scale request (kind: to | by | drop); the maintain loop applies it on its next pass."""
        stmts = [("INSERT INTO scale_requests (infra, node, kind, value, instance, requested) VALUES (?,?,?,?,?,?) "
                  "RETURNING id",
                  (infra, node, kind, value, instance, time.time())),
                 self._event_stmt(infra, "scale_requested", instance, {"node": node, "kind": kind, "value": value})]
        return self._transaction(stmts)[0].fetchone()[0]

    def pending_scale_requests(self, infra: str) -> list[dict]:
        rows = self._exec("SELECT id, node, kind, value, instance, requested FROM scale_requests "
                          "WHERE infra=? AND applied IS NULL ORDER BY id", (infra,)).fetchall()
        return [{"id": r[0], "node": r[1], "kind": r[2], "value": r[3], "instance": r[4], "requested": r[5]}
                for r in rows]

    def finish_scale_request(self, request_id: int, result: dict) -> None:
        self._exec("UPDATE scale_requests SET applied=?, result=? WHERE id=?",
                   (time.time(), json.dumps(result, default=str), request_id))

    def scale_request(self, request_id: int) -> dict | None:
        row = self._exec("SELECT id, node, kind, value, instance, requested, applied, result FROM scale_requests "
                         "WHERE id=?", (request_id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "node": row[1], "kind": row[2], "value": row[3], "instance": row[4],
                "requested": row[5], "applied": row[6], "result": json.loads(row[7]) if row[7] else None}

    # -- what the maintain loop remembers between passes --------------------
    def node_controls(self, infra: str) -> dict[str, dict]:
        rows = self._exec("SELECT node, last_action, last_direction, last_policy FROM node_control WHERE infra=?",
                          (infra,)).fetchall()
        return {r[0]: {"last_action": r[1], "last_direction": r[2], "last_policy": r[3]} for r in rows}

    def record_scaling(self, infra: str, node: str, desired: int, direction: str, policy: str,
                       detail: dict) -> None:
        """A scaling action: new desired count, the node's last action (for cooldowns) and its event, at once."""
        now = time.time()
        self._transaction([
            ("INSERT INTO nodes (infra, node, desired_count) VALUES (?,?,?) ON CONFLICT(infra, node) "
             "DO UPDATE SET desired_count=excluded.desired_count", (infra, node, desired)),
            ("INSERT INTO node_control (infra, node, last_action, last_direction, last_policy) VALUES (?,?,?,?,?) "
             "ON CONFLICT(infra, node) DO UPDATE SET last_action=excluded.last_action, "
             "last_direction=excluded.last_direction, last_policy=excluded.last_policy",
             (infra, node, now, direction, policy)),
            self._event_stmt(infra, "scaled", None, {"node": node, "desired": desired, "direction": direction,
                                                     "policy": policy, **detail})])

    def policy_states(self, infra: str) -> dict[tuple[str, str], dict]:
        rows = self._exec("SELECT policy, node, state FROM policy_state WHERE infra=?", (infra,)).fetchall()
        return {(r[0], r[1]): json.loads(r[2]) for r in rows}

    def save_policy_state(self, infra: str, policy: str, node: str, state: dict) -> None:
        self._exec("INSERT INTO policy_state (infra, policy, node, state, updated) VALUES (?,?,?,?,?) "
                   "ON CONFLICT(infra, policy, node) DO UPDATE SET state=excluded.state, updated=excluded.updated",
                   (infra, policy, node, json.dumps(state, default=str), time.time()))

    def failing(self, infra: str) -> dict[str, tuple[float, str]]:
        """Instances whose health checks fail: key -> (since, why). Rows exist only while failing."""
        rows = self._exec("SELECT key, failing_since, detail FROM health WHERE infra=?", (infra,)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def set_failing(self, infra: str, key: str, since: float | None, detail: str = "") -> None:
        if since is None:
            self._exec("DELETE FROM health WHERE key=?", (key,))
        else:
            self._exec("INSERT INTO health (key, infra, failing_since, detail) VALUES (?,?,?,?) "
                       "ON CONFLICT(key) DO UPDATE SET detail=excluded.detail", (key, infra, since, detail))

    def add_sample(self, infra: str, node: str, instances: int, target: float | None, metrics: dict) -> None:
        self._exec("INSERT INTO samples (infra, node, ts, instances, target, metrics) VALUES (?,?,?,?,?,?)",
                   (infra, node, time.time(), instances, target, json.dumps(metrics)))

    def samples(self, infra: str, node: str, limit: int = 10000) -> list[dict]:
        rows = self._exec("SELECT ts, instances, target, metrics FROM samples WHERE infra=? AND node=? "
                          "ORDER BY id DESC LIMIT ?", (infra, node, limit)).fetchall()
        return [{"ts": r[0], "instances": r[1], "target": r[2], "metrics": json.loads(r[3])} for r in reversed(rows)]

    # -- model records (orchestrator/mlops/monitoring.py): what model servers saw and predicted, and labels ------
    _RECORD_COLS = "rid, instance, seq, ts, version, features, prediction, label, labelled, win"

    def add_model_records(self, infra: str, node: str, instance: str, records: list[dict], keep: int) -> int:
        """Store pulled records (a request id seen before is kept as it was); then only the node's `keep`
        newest remain. Returns how many were new."""
        stmts = [("INSERT INTO model_records (infra, node, rid, instance, seq, ts, version, features, prediction) "
                  "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(infra, node, rid) DO NOTHING",
                  (infra, node, str(r["id"]), instance, int(r["seq"]), float(r["ts"]), r.get("version"),
                   json.dumps(r["features"], default=str), json.dumps(r.get("prediction"), default=str)))
                 for r in records]
        stmts.append(("DELETE FROM model_records WHERE infra=? AND node=? AND ts < (SELECT ts FROM model_records "
                      "WHERE infra=? AND node=? ORDER BY ts DESC LIMIT 1 OFFSET ?)", (infra, node, infra, node, max(keep - 1, 0))))
        return sum(max(c.rowcount, 0) for c in self._transaction(stmts)[:-1])

    def _model_rows(self, where: str, args: tuple, limit: int) -> list[dict]:
        rows = self._exec(f"SELECT {self._RECORD_COLS} FROM model_records WHERE {where} LIMIT ?",
                          (*args, limit)).fetchall()
        return [{"id": r[0], "instance": r[1], "seq": r[2], "ts": r[3], "version": r[4], "features": json.loads(r[5]),
                 "prediction": json.loads(r[6]) if r[6] is not None else None,
                 "label": json.loads(r[7]) if r[7] is not None else None, "labelled": r[8], "window": r[9]}
                for r in rows]

    def open_model_records(self, infra: str, node: str, limit: int = 100000) -> list[dict]:
        """Records not yet in a closed window, oldest first."""
        return self._model_rows("infra=? AND node=? AND win IS NULL ORDER BY ts", (infra, node), limit)

    def close_model_window(self, infra: str, node: str, window: int, until_ts: float) -> list[dict]:
        """Put the open records up to `until_ts` into window number `window`; returns them, oldest first."""
        self._exec("UPDATE model_records SET win=? WHERE infra=? AND node=? AND win IS NULL AND ts<=?",
                   (window, infra, node, until_ts))
        return self._model_rows("infra=? AND node=? AND win=? ORDER BY ts", (infra, node, window), 10 ** 6)

    def label_model_records(self, infra: str, node: str, labels: list[tuple[str, Any]]) -> int:
        """Attach labels by request id; returns how many records they matched. The same label sent again keeps its
        first arrival time (accuracy counts it once)."""
        now = time.time()
        cursors = self._transaction([("UPDATE model_records SET labelled=CASE WHEN label=? THEN labelled ELSE ? END, "
                                      "label=? WHERE infra=? AND node=? AND rid=?",
                                      (text, now, text, infra, node, str(rid)))
                                     for rid, text in ((r, json.dumps(v, default=str)) for r, v in labels)])
        return sum(max(c.rowcount, 0) for c in cursors)

    def labelled_model_records(self, infra: str, node: str, since: float = 0.0, limit: int = 100000) -> list[dict]:
        """Records labelled after `since`, the most recently labelled first."""
        return self._model_rows("infra=? AND node=? AND labelled>? ORDER BY labelled DESC, ts DESC",
                                (infra, node, since), limit)


class _LockContext:
    def __init__(self, store: StateStore, infra: str, holder: str, wait: float = 0.0):
        self.store, self.infra, self.holder, self.wait = store, infra, holder, wait

    def __enter__(self):
        self.store.acquire_lock(self.infra, self.holder, self.wait)
        return self

    def __exit__(self, *exc):
        self.store.release_lock(self.infra)
        return False



# -- host-pool claims (the `ssh` driver) --------------------------------------------------------------
class HostClaims:
    """Claims on pooled hosts, kept in the state database (safe across threads and processes)."""

    def __init__(self, location: "str | Database"):
        """`location`: an open state database (used, not closed), or a path/URL (opened here, closed by close())."""
        self._owned = not isinstance(location, Database)
        self.database = open_database(location) if self._owned else location
        self.path = self.database.location
        if self._owned:
            self.database.migrate(MIGRATIONS)

    def close(self) -> None:
        if self._owned:
            self.database.close()

    def claim(self, pool: str, candidates: list[str], key: str, infra: str) -> str | None:
        """The host `key` already holds, else the first free candidate (now held by `key`), else None."""
        db = self.database
        with db.transaction(lock=f"host_claims:{pool}"):
            row = db.execute("SELECT host FROM host_claims WHERE pool=? AND key=?", (pool, key)).fetchone()
            if row is not None:
                return row[0]
            taken = {r[0] for r in db.execute("SELECT host FROM host_claims WHERE pool=?", (pool,))}
            host = next((h for h in candidates if h not in taken), None)
            if host is not None:
                db.execute("INSERT INTO host_claims (pool, host, key, infra, claimed) VALUES (?,?,?,?,?)",
                           (pool, host, key, infra, time.time()))
            return host

    def held_by(self, pool: str, key: str) -> str | None:
        row = self.database.execute("SELECT host FROM host_claims WHERE pool=? AND key=?", (pool, key)).fetchone()
        return row[0] if row else None

    def readiness(self, pool: str, key: str) -> tuple[bool, dict]:
        """(configured?, the attributes its configuration produced) for the claim `key` holds."""
        row = self.database.execute("SELECT ready, attributes FROM host_claims WHERE pool=? AND key=?",
                                    (pool, key)).fetchone()
        return (bool(row[0]), json.loads(row[1])) if row else (False, {})

    def mark_ready(self, pool: str, host: str, key: str, attributes: dict | None = None) -> None:
        """Record that the holder finished configuring the host (a claim without it is a build that crashed)."""
        self.database.execute("UPDATE host_claims SET ready=1, attributes=? WHERE pool=? AND host=? AND key=?",
                              (json.dumps(attributes or {}, default=str), pool, host, key))

    def release(self, pool: str, host: str, key: str) -> None:
        """Free the host if `key` holds it (a stale handle never frees another instance's host)."""
        self.database.execute("DELETE FROM host_claims WHERE pool=? AND host=? AND key=?", (pool, host, key))

    def claims(self, pool: str | None = None) -> list[dict]:
        sql = "SELECT pool, host, key, infra, claimed, ready FROM host_claims"
        rows = self.database.execute(sql + (" WHERE pool=?" if pool else "") + " ORDER BY pool, host",
                                     (pool,) if pool else ()).fetchall()
        return [{"pool": r[0], "host": r[1], "key": r[2], "infra": r[3], "claimed": r[4], "ready": bool(r[5])}
                for r in rows]


def _open_migrated(location: str) -> Database:
    """The state database at a location, with every migration applied (the caller closes it)."""
    database = open_database(location)
    try:
        database.migrate(MIGRATIONS)
    except BaseException:
        database.close()
        raise
    return database


provide_claim_store(HostClaims)  # drivers (ssh) reach the claims table through drivers.common, never by importing this
provide_opener(_open_migrated)   # the optimizer reaches its tables the same way, through optimizer.state
