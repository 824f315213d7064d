"""Time-stamped optimizer samples: validation, CSV import/export (MiCADO's format too) and storage in the state DB."""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from optimizer.errors import OptimizerInputError
from optimizer.state import StateDB, open_state

# Column names that other tools (MiCADO, Kubernetes exporters) use for the instance count
# and the target; checked in order when the caller does not name them.
INSTANCE_COLUMN_CANDIDATES = ("instances", "vm_number", "replicas", "WorkerCount", "worker_count")
TARGET_COLUMN_CANDIDATES = ("target", "AVG_LAT_05", "latency", "avg latency (quantile 0.5)")
TIMESTAMP_COLUMN_CANDIDATES = ("timestamp", "time", "ts")


@dataclass(frozen=True)
class SampleSet:
    """Samples in time order: one row per control interval."""

    timestamps: np.ndarray  # seconds since the epoch, strictly increasing
    metric_names: tuple[str, ...]
    metrics: np.ndarray  # shape (n, len(metric_names)), system metrics
    instances: np.ndarray  # instance count at each sample
    target: np.ndarray  # the target metric (e.g. median latency), > 0 for log-scale models
    target_name: str = "target"
    instance_name: str = "instances"
    notes: tuple[str, ...] = field(default=())  # non-fatal findings (e.g. constant columns)

    def __len__(self) -> int:
        return len(self.timestamps)

    def slice(self, rows: slice | np.ndarray) -> "SampleSet":
        return SampleSet(self.timestamps[rows], self.metric_names, self.metrics[rows],
                         self.instances[rows], self.target[rows], self.target_name,
                         self.instance_name, self.notes)

    def until(self, last_timestamp: float) -> "SampleSet":
        return self.slice(self.timestamps <= last_timestamp)

    def after(self, timestamp: float) -> "SampleSet":
        return self.slice(self.timestamps > timestamp)

    def metric(self, name: str) -> np.ndarray:
        return self.metrics[:, self.metric_names.index(name)]

    def constant_metrics(self) -> list[str]:
        if len(self) == 0:
            return []
        spread = np.ptp(self.metrics, axis=0)
        return [n for n, s in zip(self.metric_names, spread) if s == 0]


def _parse_number(text: str, row: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise OptimizerInputError(f"row {row}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise OptimizerInputError(f"row {row}, column {column!r}: value is {text!r}; "
                                  "NaN and infinite values are not allowed (drop or fill those rows first)")
    return value


def _pick(header: Sequence[str], wanted: str | None, candidates: Sequence[str], role: str) -> str:
    if wanted is not None:
        if wanted not in header:
            raise OptimizerInputError(f"missing column {wanted!r} ({role}); the file has: {', '.join(header)}")
        return wanted
    for name in candidates:
        if name in header:
            return name
    raise OptimizerInputError(f"missing {role} column: expected one of {', '.join(candidates)} "
                              f"(or name it with an option); the file has: {', '.join(header)}")


def validate_samples(samples: SampleSet) -> SampleSet:
    """Check the invariants every model relies on; return the set with notes on soft problems."""
    n = len(samples)
    arrays = {"timestamp": samples.timestamps, samples.instance_name: samples.instances,
              samples.target_name: samples.target}
    for name, values in arrays.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise OptimizerInputError(f"column {name!r} has {bad.size} NaN/infinite value(s), first at row {bad[0] + 1}")
    if samples.metrics.size:
        bad_rows, bad_cols = np.nonzero(~np.isfinite(samples.metrics))
        if bad_rows.size:
            raise OptimizerInputError(f"column {samples.metric_names[bad_cols[0]]!r} has NaN/infinite values, "
                                      f"first at row {bad_rows[0] + 1} ({bad_rows.size} in all metric columns)")
    if n >= 2:
        steps = np.diff(samples.timestamps)
        backwards = np.flatnonzero(steps <= 0)
        if backwards.size:
            i = backwards[0]
            raise OptimizerInputError(f"timestamps must increase: row {i + 2} ({samples.timestamps[i + 1]:.0f}) "
                                      f"is not after row {i + 1} ({samples.timestamps[i]:.0f})")
    if n and np.any(samples.instances < 1):
        raise OptimizerInputError(f"column {samples.instance_name!r} must be >= 1 (found {samples.instances.min():g})")
    if n and np.any(samples.target <= 0):
        raise OptimizerInputError(f"column {samples.target_name!r} must be > 0 (found {samples.target.min():g}); "
                                  "the target is modelled on a log scale")
    notes = []
    constant = samples.constant_metrics()
    if constant:
        notes.append(f"constant metric column(s) ignored by the models: {', '.join(constant)}")
    if n >= 2 and np.ptp(samples.target) == 0:
        notes.append(f"the target {samples.target_name!r} never varies: there is nothing to learn")
    return SampleSet(samples.timestamps, samples.metric_names, samples.metrics, samples.instances,
                     samples.target, samples.target_name, samples.instance_name, tuple(notes))


def read_csv(path: str | os.PathLike, *, target: str | None = None, instances: str | None = None,
             timestamp: str | None = None) -> SampleSet:
    """Read samples from a CSV with a header row; MiCADO's optimizer CSV reads as is.

    Every column other than the timestamp, instance count and target is a system metric.
    """
    path = Path(path)
    if not path.is_file():
        raise OptimizerInputError(f"no such file: {path}")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise OptimizerInputError(f"{path}: the file is empty") from None
        rows = [r for r in reader if r and any(cell.strip() for cell in r)]
    if len(set(header)) != len(header):
        raise OptimizerInputError(f"{path}: duplicate column names in the header")
    ts_col = _pick(header, timestamp, TIMESTAMP_COLUMN_CANDIDATES, "timestamp")
    inst_col = _pick(header, instances, INSTANCE_COLUMN_CANDIDATES, "instance count")
    target_col = _pick(header, target, TARGET_COLUMN_CANDIDATES, "target")
    metric_cols = [h for h in header if h not in (ts_col, inst_col, target_col)]
    if not metric_cols:
        raise OptimizerInputError(f"{path}: no system metric columns besides {ts_col}, {inst_col}, {target_col}")
    if not rows:
        raise OptimizerInputError(f"{path}: the file has a header but no samples")
    index = {h: i for i, h in enumerate(header)}
    table = np.empty((len(rows), len(header)))
    for r, row in enumerate(rows, start=2):  # row numbers as a spreadsheet shows them
        if len(row) != len(header):
            raise OptimizerInputError(f"{path}: row {r} has {len(row)} fields, the header has {len(header)}")
        for name, c in index.items():
            table[r - 2, c] = _parse_number(row[c], r, name)
    samples = SampleSet(
        timestamps=table[:, index[ts_col]], metric_names=tuple(metric_cols),
        metrics=table[:, [index[m] for m in metric_cols]], instances=table[:, index[inst_col]],
        target=table[:, index[target_col]], target_name=target_col, instance_name=inst_col)
    return validate_samples(samples)


def write_csv(samples: SampleSet, path: str | os.PathLike) -> None:
    """Write samples in the same column layout MiCADO uses: timestamp, metrics, instances, target."""
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *samples.metric_names, samples.instance_name, samples.target_name])
        for i in range(len(samples)):
            writer.writerow([repr(float(samples.timestamps[i])), *(repr(float(v)) for v in samples.metrics[i]),
                             repr(float(samples.instances[i])), repr(float(samples.target[i]))])


class _StateTables:
    """A store over the state database: handed an open one (Strato's engine does), or a path/URL opened here."""

    def __init__(self, state: "str | os.PathLike | StateDB | None" = None):
        if hasattr(state, "execute"):
            self.path, self._db, self._owned = getattr(state, "location", ""), state, False
        else:
            self.path, self._db = open_state(state)
            self._owned = True

    def close(self) -> None:
        if self._owned:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SampleStore(_StateTables):
    """Optimizer samples kept in Strato's state store, keyed by (infrastructure, node, timestamp)."""

    def _series(self, infrastructure: str, node: str):
        return self._db.execute(
            "SELECT metric_names, instance_name, target_name FROM optimizer_series "
            "WHERE infrastructure=? AND node=?", (infrastructure, node)).fetchone()

    def add(self, infrastructure: str, node: str, samples: SampleSet) -> int:
        """Store samples (replacing rows with the same timestamp); returns how many were written."""
        samples = validate_samples(samples)
        known = self._series(infrastructure, node)
        names = json.dumps(list(samples.metric_names))
        if known and json.loads(known[0]) != list(samples.metric_names):
            raise OptimizerInputError(
                f"{infrastructure}/{node} already stores metrics {', '.join(json.loads(known[0]))}; "
                f"these samples have {', '.join(samples.metric_names)}")
        with self._db.transaction():
            if not known:
                self._db.execute("INSERT INTO optimizer_series (infrastructure, node, metric_names, instance_name, "
                                 "target_name) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                                 (infrastructure, node, names, samples.instance_name, samples.target_name))
            self._db.executemany(
                "INSERT INTO optimizer_samples (infrastructure, node, timestamp, instances, target, metrics) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (infrastructure, node, timestamp) DO UPDATE SET "
                "instances=excluded.instances, target=excluded.target, metrics=excluded.metrics",
                [(infrastructure, node, float(samples.timestamps[i]), float(samples.instances[i]),
                  float(samples.target[i]), json.dumps([float(v) for v in samples.metrics[i]]))
                 for i in range(len(samples))])
        return len(samples)

    def load(self, infrastructure: str, node: str, *, since: float | None = None) -> SampleSet:
        known = self._series(infrastructure, node)
        if not known:
            raise OptimizerInputError(f"no optimizer samples stored for {infrastructure}/{node} in {self.path}")
        names, instance_name, target_name = json.loads(known[0]), known[1], known[2]
        rows = self._db.execute(
            "SELECT timestamp, instances, target, metrics FROM optimizer_samples "
            "WHERE infrastructure=? AND node=? AND timestamp>? ORDER BY timestamp",
            (infrastructure, node, -math.inf if since is None else since)).fetchall()
        metrics = np.array([json.loads(r[3]) for r in rows], dtype=float).reshape(len(rows), len(names))
        return SampleSet(np.array([r[0] for r in rows], dtype=float), tuple(names), metrics,
                         np.array([r[1] for r in rows], dtype=float), np.array([r[2] for r in rows], dtype=float),
                         target_name, instance_name)

    def series(self) -> list[tuple[str, str, int]]:
        return self._db.execute(
            "SELECT infrastructure, node, COUNT(*) FROM optimizer_samples GROUP BY infrastructure, node").fetchall()


def check_load_rows(rows: Iterable[tuple[float, float]], where: str = "row") -> list[tuple[float, float]]:
    """(timestamp, value) pairs as floats, refused whole when one is not finite, a value is negative or a
    timestamp repeats; returned oldest first."""
    out, seen = [], set()
    for i, (timestamp, value) in enumerate(rows, start=1):
        timestamp, value = float(timestamp), float(value)
        if not (math.isfinite(timestamp) and math.isfinite(value)):
            raise OptimizerInputError(f"{where} {i}: NaN and infinite values are not allowed")
        if value < 0:
            raise OptimizerInputError(f"{where} {i}: a load cannot be negative (got {value:g})")
        if timestamp in seen:
            raise OptimizerInputError(f"{where} {i}: timestamp {timestamp:.3f} repeats an earlier row")
        seen.add(timestamp)
        out.append((timestamp, value))
    return sorted(out)


class LoadHistoryStore(_StateTables):
    """The offered load (a request rate, or whatever metric the optimizer policy forecasts) per node, over time,
    in the state DB: one row per (infrastructure, node, metric, timestamp), so importing the same rows twice
    adds nothing."""

    def add(self, infrastructure: str, node: str, metric: str, rows: Iterable[tuple[float, float]]) -> int:
        """Store (timestamp, value) rows in one transaction (all or none); a timestamp already stored keeps its
        value. Returns how many rows were new."""
        rows = check_load_rows(rows)
        with self._db.transaction():
            return self._db.executemany(
                "INSERT INTO optimizer_load (infrastructure, node, metric, timestamp, value) VALUES (?,?,?,?,?) "
                "ON CONFLICT DO NOTHING", [(infrastructure, node, metric, t, v) for t, v in rows])

    def recent(self, infrastructure: str, node: str, metric: str, limit: int = 10000) -> list[tuple[float, float]]:
        """The last `limit` rows, oldest first."""
        rows = self._db.execute(
            "SELECT timestamp, value FROM optimizer_load WHERE infrastructure=? AND node=? AND metric=? "
            "ORDER BY timestamp DESC LIMIT ?", (infrastructure, node, metric, int(limit))).fetchall()
        return rows[::-1]

    def between(self, infrastructure: str, node: str, metric: str, start: float, end: float,
                limit: int = 100000) -> list[tuple[float, float]]:
        """Rows with start <= timestamp <= end, oldest first (at most `limit`, the latest ones)."""
        rows = self._db.execute(
            "SELECT timestamp, value FROM optimizer_load WHERE infrastructure=? AND node=? AND metric=? "
            "AND timestamp BETWEEN ? AND ? ORDER BY timestamp DESC LIMIT ?",
            (infrastructure, node, metric, float(start), float(end), int(limit))).fetchall()
        return rows[::-1]

    def count(self, infrastructure: str, node: str, metric: str) -> int:
        return self.span(infrastructure, node, metric)[0]

    def span(self, infrastructure: str, node: str, metric: str) -> tuple[int, float | None, float | None]:
        """(rows, first timestamp, last timestamp)."""
        return tuple(self._db.execute(
            "SELECT COUNT(*), MIN(timestamp), MAX(timestamp) FROM optimizer_load "
            "WHERE infrastructure=? AND node=? AND metric=?", (infrastructure, node, metric)).fetchone())

    def metrics(self, infrastructure: str, node: str) -> list[str]:
        """The metrics stored for a node."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT metric FROM optimizer_load WHERE infrastructure=? AND node=? ORDER BY metric",
            (infrastructure, node))]

    def delete(self, infrastructure: str, node: str | None = None, metric: str | None = None) -> int:
        """Forget an infrastructure's history (or one node's, or one metric's); returns the rows removed."""
        sql, args = "DELETE FROM optimizer_load WHERE infrastructure=?", [infrastructure]
        for column, value in (("node", node), ("metric", metric)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        with self._db.transaction():
            return self._db.execute(sql, tuple(args)).rowcount


class StoreLoadHistory:
    """One node's load history in the state DB, for the optimizer policy: `add` each pass, `recent` to warm up
    its forecaster after a restart (or from an imported history: `strato optimizer history import`)."""

    def __init__(self, path: str | os.PathLike | None, infrastructure: str, node: str, metric: str):
        self.path, self.infrastructure, self.node, self.metric = path, infrastructure, node, metric

    def add(self, timestamp: float, value: float) -> None:
        """Keep one observation; OptimizerInputError when it is not finite or negative."""
        with LoadHistoryStore(self.path) as store:
            store.add(self.infrastructure, self.node, self.metric, [(timestamp, value)])

    def recent(self, limit: int) -> list[tuple[float, float]]:
        """The last `limit` (timestamp, value) rows, oldest first."""
        with LoadHistoryStore(self.path) as store:
            return store.recent(self.infrastructure, self.node, self.metric, limit)


def from_rows(rows: Iterable[dict], metric_names: Sequence[str], *, instance_key: str = "instances",
              target_key: str = "target", timestamp_key: str = "timestamp") -> SampleSet:
    """Build a validated SampleSet from dicts, as the maintain loop collects them."""
    rows = list(rows)
    for key in (timestamp_key, instance_key, target_key, *metric_names):
        missing = [i for i, r in enumerate(rows) if key not in r]
        if missing:
            raise OptimizerInputError(f"sample {missing[0] + 1} has no {key!r}")
    samples = SampleSet(
        np.array([r[timestamp_key] for r in rows], dtype=float), tuple(metric_names),
        np.array([[r[m] for m in metric_names] for r in rows], dtype=float).reshape(len(rows), len(metric_names)),
        np.array([r[instance_key] for r in rows], dtype=float), np.array([r[target_key] for r in rows], dtype=float))
    return validate_samples(samples)
