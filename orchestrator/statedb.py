"""The state database under StateStore: one interface, two backends (an SQLite file, PostgreSQL), versioned migrations.

Callers write SQL once, in the dialect both understand: `?` placeholders, `INSERT ... ON CONFLICT`,
`RETURNING`, TEXT/REAL/INTEGER columns. The PostgreSQL backend translates the placeholders (and, in
migrations, REAL to DOUBLE PRECISION, INTEGER to BIGINT, AUTOINCREMENT to an identity column).
`transaction(lock=KEY)` serialises writers that read before they write (SQLite: BEGIN IMMEDIATE, the
file's write lock; PostgreSQL: a transaction-scoped advisory lock on KEY); `now()` is the database's clock.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from drivers.common import make_private_dir, make_private_file, strato_home

SQLITE_HEADER = b"SQLite format 3\x00"
URL_SCHEMES = ("postgresql://", "postgres://")
MIGRATION_LOCK = 0x5354524154   # the advisory lock key migrations run under ("STRAT")


class StateError(Exception):
    """A state operation the user can fix (unknown infrastructure, held lock)."""

    code = "STATE"


class StateUnavailable(StateError):
    """The state database cannot be reached (PostgreSQL down, network gone): nothing was changed by the request."""

    code = "STATE_UNAVAILABLE"


class StateDamaged(StateError):
    """The state file cannot be used as it is; Strato leaves it untouched."""

    code = "STATE_DAMAGED"


def damaged(path: str, what: str) -> StateDamaged:
    return StateDamaged(f"state file {path} {what}. Strato has not changed it. Keep a copy "
                        f"(`strato state backup`), then restore an earlier backup, or move the file away to "
                        f"start with empty state (running processes and cloud resources are then no longer "
                        f"tracked); `strato state check` lists what is wrong")


def open_in_this_process(path: str) -> bool:
    """Whether any file descriptor of this process refers to `path` (found by fstat; nothing is opened).

    SQLite keeps POSIX advisory locks on the state file, and POSIX drops all of a process's locks on a
    file when the process closes *any* descriptor of it. One stray open()/close() of state.db (a header
    check, a copy) while this process has a connection lets the next process that closes its own
    connection believe it is the last: it checkpoints and deletes the WAL under us, and every later
    write of ours goes to a deleted file. So Strato reads a state file outside SQLite only while this
    process holds no descriptor of it."""
    try:
        target = os.stat(path)
    except OSError:
        return False
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (macOS): look at every descriptor number in use
        import resource
        fds = range(min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536))
    for fd in fds:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def check_header(path: str) -> None:
    """Refuse what is not an SQLite database before SQLite touches it (a directory, random bytes, a stray file)."""
    if os.path.isdir(path):
        raise damaged(path, "is a directory, not a state database")
    if open_in_this_process(path):
        return  # checked when this process first opened it; reading it again would drop SQLite's locks
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise damaged(path, f"cannot be read ({exc.strerror})") from None
    if head and not head.startswith(SQLITE_HEADER):
        raise damaged(path, "is not an SQLite database (its first bytes are not SQLite's header)")
    if 0 < len(head) < 100:
        raise damaged(path, f"is truncated ({len(head)} bytes, shorter than SQLite's header)")


# -- selecting a backend ------------------------------------------------------------------------------
def is_url(location: str | None) -> bool:
    return bool(location) and str(location).startswith(URL_SCHEMES)


def default_location() -> str:
    """$STRATO_STATE_URL, else $STRATO_HOME/state.db."""
    return os.environ.get("STRATO_STATE_URL") or os.path.join(strato_home(), "state.db")


def redact(location: str) -> str:
    """A location fit to print: a URL's password replaced by ***."""
    if not is_url(location):
        return location
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_database(location: str | os.PathLike | None = None) -> "Database":
    """The state database at a path (SQLite) or a postgresql:// URL; None: default_location()."""
    location = str(location) if location is not None else default_location()
    if is_url(location):
        return PostgresDatabase(location)
    return SQLiteDatabase(location)


@dataclass(frozen=True)
class Migration:
    """One schema change, applied once per database, in version order. Never edit one that has shipped:
    append a new one. `sql` is portable DDL (statements separated by ';')."""

    version: int
    name: str
    sql: str


class Result:
    """The rows a statement returned (read eagerly) and how many rows it changed."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list, rowcount: int):
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


class Database:
    """The interface StateStore (and HostClaims, the optimizer's tables) use; see the module's docstring."""

    kind = ""
    location = ""

    @property
    def identity(self) -> str:
        """What names this database for in-process bookkeeping (two handles on one database agree)."""
        return self.location

    def execute(self, sql: str, args: tuple = ()) -> Result: raise NotImplementedError
    def executemany(self, sql: str, rows: list[tuple]) -> int: raise NotImplementedError
    def transaction(self, lock: str | None = None) -> contextlib.AbstractContextManager: raise NotImplementedError
    def now(self) -> float: raise NotImplementedError
    def json_text(self, column: str, key: str) -> str: raise NotImplementedError
    def tables(self) -> list[str]: raise NotImplementedError
    def change_stamp(self, blocking: bool = True) -> tuple | None: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError

    def ddl(self, sql: str) -> str:
        return sql

    def migrate(self, migrations: list[Migration]) -> list[int]:
        """Apply the migrations this database has not had yet (once, whoever runs it first); their versions."""
        with self._migration_connection() as run:
            return apply_migrations(run, self.ddl, migrations, time.time())

    def _migration_connection(self):
        raise NotImplementedError

    def columns(self, table: str) -> list[str]: raise NotImplementedError


IDEMPOTENT = re.compile(r"CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\b", re.I)


def checksum(migration: Migration) -> str:
    return hashlib.sha256(migration.sql.encode()).hexdigest()[:16]


def apply_migrations(run, ddl, migrations: list[Migration], now: float) -> list[int]:
    """`run(sql, args) -> rows` on one connection inside one transaction, under the migration lock.

    A migration applied before whose text has changed since is applied again when all its statements are
    `CREATE ... IF NOT EXISTS` (a table appended to the base schema reaches databases made before it);
    any other change is refused: append a new migration instead."""
    run(ddl("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied REAL NOT NULL, checksum TEXT)"), ())
    done = {r[0]: r[1] for r in run("SELECT version, checksum FROM schema_migrations", ())}
    applied = []
    for migration in sorted(migrations, key=lambda m: m.version):
        digest = checksum(migration)
        if done.get(migration.version, digest) == digest and migration.version in done:
            continue
        parts = statements(ddl(migration.sql))
        if migration.version in done and not all(IDEMPOTENT.match(p) for p in parts):
            raise StateError(f"schema migration {migration.version} ({migration.name}) changed after this database "
                             "applied it; a change to the schema must be a new migration")
        for statement in parts:
            run(statement, ())
        run("DELETE FROM schema_migrations WHERE version=?", (migration.version,))
        run("INSERT INTO schema_migrations (version, name, applied, checksum) VALUES (?,?,?,?)",
            (migration.version, migration.name, now, digest))
        applied.append(migration.version)
    return applied


# -- SQLite ---------------------------------------------------------------------------------------------
class SQLiteDatabase(Database):
    """One SQLite file in WAL mode, one connection shared by this process's threads (each write its own
    transaction unless inside `transaction()`)."""

    kind = "sqlite"

    def __init__(self, path: str, timeout: float = 10):
        self.location = self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory) or os.path.abspath(directory) == os.path.abspath(strato_home()):
            make_private_dir(directory)
        check_header(path)
        if not os.path.exists(path):
            make_private_file(path)  # SQLite gives -wal and -shm the database file's mode
        try:
            self.raw = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise damaged(path, f"cannot be opened ({exc})") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._check_and_configure()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                make_private_file(path + suffix)
        st = os.stat(path)
        self._file_id = f"sqlite:{st.st_dev}:{st.st_ino}"

    def _check_and_configure(self) -> None:
        with self._lock:
            try:
                # a damaged file is refused before anything is written to it (quick_check reads only)
                verdict = [r[0] for r in self.raw.execute("PRAGMA quick_check(5)")]
                if verdict != ["ok"]:
                    self.raw.close()
                    raise damaged(self.path, "is damaged (SQLite's check: " + "; ".join(verdict) + ")")
                self.raw.execute("PRAGMA journal_mode=WAL")
                self.raw.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:
                self.raw.close()
                raise damaged(self.path, f"is damaged ({exc})") from None

    @property
    def identity(self) -> str:
        return self._file_id

    def execute(self, sql: str, args: tuple = ()) -> Result:
        with self._lock:
            try:
                cursor = self.raw.execute(sql, args)
                return Result(cursor.fetchall(), cursor.rowcount)
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:  # damage found after opening (pages quick_check did not read)
                raise damaged(self.path, f"is damaged ({exc})") from None

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        with self._lock:
            return self.raw.executemany(sql, rows).rowcount

    @contextlib.contextmanager
    def transaction(self, lock: str | None = None) -> Iterator["SQLiteDatabase"]:
        """One transaction (joined when this thread is already in one); `lock`: take the write lock first."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self.raw.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self.raw.execute("ROLLBACK")
                raise
            self._depth = 0
            self.raw.execute("COMMIT")

    @contextlib.contextmanager
    def _migration_connection(self):
        with self.transaction(lock="migrations"):
            yield lambda sql, args: self.execute(sql, args).rows

    def now(self) -> float:
        return time.time()  # the file is on this machine: its clock is the database's

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def tables(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.execute(f"PRAGMA table_info({table})")]

    def primary_key(self, table: str) -> list[str]:
        rows = sorted((r[5], r[1]) for r in self.execute(f"PRAGMA table_info({table})") if r[5])
        return [name for _, name in rows]

    def change_stamp(self, blocking: bool = True) -> tuple[int, int] | None:
        """Changes by this connection plus commits by any other one: equal stamps mean nothing was written.
        Non-blocking: None while another thread is using the connection."""
        if not self._lock.acquire(blocking):
            return None
        try:
            return self.raw.total_changes, self.raw.execute("PRAGMA data_version").fetchone()[0]
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self.raw.close()


def one_line(exc: Exception) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


# -- PostgreSQL -----------------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` (and a literal `%` to `%%`), leaving quoted text alone."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def pg_ddl(sql: str) -> str:
    """Portable DDL in PostgreSQL's types: REAL is double precision there as in SQLite, integers 64-bit."""
    sql = re.sub(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                 sql, flags=re.I)
    sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)
    return re.sub(r"\bINTEGER\b", "BIGINT", sql)


class PostgresDatabase(Database):
    """A PostgreSQL database through a psycopg_pool.ConnectionPool: concurrent threads write in parallel."""

    kind = "postgresql"

    def __init__(self, url: str, max_size: int | None = None, connect_timeout: float = 10):
        try:
            import psycopg  # imported here only: the CLI starts fast without it
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StateError("a postgresql:// state needs psycopg 3 and psycopg-pool: "
                             "pip install 'strato[postgres]'") from None
        self.location = url
        self._local = threading.local()
        try:  # one direct connection first: a wrong URL fails at once, with PostgreSQL's own reason
            with psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))) as probe:
                info = probe.info
                self._identity = f"postgresql:{info.host}:{info.port}:{info.dbname}"
        except psycopg.Error as exc:
            raise StateUnavailable(f"cannot connect to the PostgreSQL state at {redact(url)}: {one_line(exc)}") from None
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size or 16, open=False,
                                   kwargs={"autocommit": True}, timeout=30, name="strato-state")
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            self.pool.close()
            raise StateError(f"cannot connect to the PostgreSQL state at {redact(url)} ({exc})") from None

    def ddl(self, sql: str) -> str:
        return pg_ddl(sql)

    @property
    def identity(self) -> str:
        return self._identity  # host, port and database as the server names them: two spellings of a URL agree

    @contextlib.contextmanager
    def _reachable(self):
        """A lost server or connection becomes StateUnavailable, one line, instead of a driver's traceback."""
        import psycopg
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"the PostgreSQL state at {redact(self.location)} is unreachable: "
                                   f"{one_line(exc)}") from None

    @contextlib.contextmanager
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self._reachable(), self.pool.connection() as conn:
                yield conn

    def execute(self, sql: str, args: tuple = ()) -> Result:
        with self._connection() as conn, self._reachable():
            cursor = conn.execute(to_psycopg(sql), tuple(args))
            rows = cursor.fetchall() if cursor.description else []
            return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        if not rows:
            return 0
        with self._connection() as conn, self._reachable(), conn.cursor() as cursor:
            cursor.executemany(to_psycopg(sql), [tuple(r) for r in rows])
            return cursor.rowcount

    @contextlib.contextmanager
    def transaction(self, lock: str | None = None) -> Iterator["PostgresDatabase"]:
        """One transaction on one pooled connection (joined when this thread is already in one); `lock`: an
        advisory lock on that key for the transaction, so that read-then-write sections run one at a time."""
        if getattr(self._local, "conn", None) is not None:
            yield self
            return
        with self._reachable(), self.pool.connection() as conn, conn.transaction():
            self._local.conn = conn
            try:
                if lock:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                yield self
            finally:
                self._local.conn = None

    @contextlib.contextmanager
    def _migration_connection(self):
        """A dedicated connection holding the session advisory lock: concurrent starters migrate one at a time."""
        import psycopg
        with psycopg.connect(self.location, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                with conn.transaction():
                    yield lambda sql, args: (lambda c: c.fetchall() if c.description else [])(
                        conn.execute(to_psycopg(sql), tuple(args)))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def now(self) -> float:
        return float(self.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])

    def json_text(self, column: str, key: str) -> str:
        return f"(({column})::jsonb ->> '{key}')"

    def tables(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                           "ORDER BY tablename")]

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_schema = current_schema() AND table_name = ? "
                                           "ORDER BY ordinal_position", (table,))]

    def identity_columns(self, table: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_schema = current_schema() AND table_name = ? "
                                           "AND is_identity = 'YES'", (table,))]

    def change_stamp(self, blocking: bool = True) -> tuple | None:
        """The server's WAL position: it moves with every committed write (to any database of the cluster:
        a false alarm at worst, never a missed change)."""
        return (self.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0],)

    def close(self) -> None:
        self.pool.close()
