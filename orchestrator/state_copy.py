"""`strato state migrate`: copy an SQLite state into PostgreSQL, every table, then prove nothing was lost.

The copy runs in one target transaction (all or nothing). The verifier reads both stores again, table by
table, and compares row counts and contents (rows as sets of values, so the backends' orders do not matter).
"""
from __future__ import annotations

import hashlib
from typing import Callable

from orchestrator.statedb import Database, StateError, is_url, redact
from orchestrator.state import StateStore

BATCH = 2000
SKIPPED = {"schema_migrations"}   # each database keeps its own migration record


class Refused(StateError):
    code = "TARGET_NOT_EMPTY"


def copied_tables(source: Database, target: Database) -> list[str]:
    """The source's tables; one the target lacks is an error (copying would lose it)."""
    tables = [t for t in source.tables() if t not in SKIPPED]
    missing = sorted(set(tables) - set(target.tables()))
    if missing:
        raise StateError(f"the target has no table {', '.join(missing)}: this Strato does not know the source's "
                         "schema (upgrade Strato, then migrate)")
    return tables


def _copy_table(source: Database, target: Database, table: str, progress: Callable[[str, int, int], None]) -> int:
    columns = source.columns(table)
    total = source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}").rows
    target.execute(f"DELETE FROM {table}")
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for start in range(0, len(rows), BATCH):
        target.executemany(insert, rows[start:start + BATCH])
        progress(table, min(start + BATCH, total), total)
    if not rows:
        progress(table, 0, 0)
    for column in getattr(target, "identity_columns", lambda _t: [])(table):
        # ids copied as they were: the next generated id follows the largest one
        target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                       f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
    return len(rows)


def _value(v):
    """A value as both backends return it: numbers compare as floats (SQLite's REAL column may hold 5, PG 5.0)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return float(v)
    return v


def table_rows(db: Database, table: str, columns: list[str]) -> list[tuple]:
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").rows
    return sorted((tuple(_value(v) for v in row) for row in rows), key=repr)


def verify(source: Database, target: Database) -> list[dict]:
    """Per table: rows on each side, a digest of the contents, and what differs (empty `problem` when equal)."""
    report = []
    for table in [t for t in source.tables() if t not in SKIPPED]:
        columns = source.columns(table)
        left = table_rows(source, table, columns)
        right = table_rows(target, table, columns) if table in target.tables() else []
        entry = {"table": table, "source_rows": len(left), "target_rows": len(right),
                 "digest": hashlib.sha256(repr(left).encode()).hexdigest()[:16], "problem": ""}
        if len(left) != len(right):
            entry["problem"] = f"{len(left)} rows in the source, {len(right)} in the target"
        elif left != right:
            differ = next(i for i, (a, b) in enumerate(zip(left, right)) if a != b)
            entry["problem"] = (f"contents differ: source row {dict(zip(columns, left[differ]))} is not in the "
                                "target as it is")
        report.append(entry)
    return report


def migrate(source_path: str, target_url: str, *, force: bool = False, verify_only: bool = False,
            progress: Callable[[str, int, int], None] = lambda *_: None) -> dict:
    """Copy the SQLite state at source_path into the PostgreSQL database at target_url, then verify."""
    if is_url(source_path) or not is_url(target_url):
        raise StateError("state migrate copies an SQLite state file (--state) into a postgresql:// URL (--to)")
    source, target = StateStore(source_path), StateStore(target_url)
    try:
        copied = 0
        if not verify_only:
            held = target.database.execute("SELECT COUNT(*) FROM infrastructures").fetchone()[0]
            if held and not force:
                raise Refused(f"{redact(target_url)} already holds {held} infrastructure(s); "
                              "--force replaces the target's state with the source's")
            tables = copied_tables(source.database, target.database)
            with target.transaction(lock="state-migrate"):
                copied = sum(_copy_table(source.database, target.database, t, progress) for t in tables)
        tables = verify(source.database, target.database)
        return {"ok": not any(t["problem"] for t in tables), "source": source_path, "target": redact(target_url),
                "rows_copied": copied, "tables": tables}
    finally:
        source.close()
        target.close()
