"""Offered-load history from outside Strato: a CSV (timestamp,value or a `period,count` trace) or a Prometheus range
query, as (timestamp, value) rows for optimizer.samples.LoadHistoryStore."""
from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from optimizer.errors import OptimizerInputError

TIMESTAMP_COLUMNS = ("timestamp", "time", "ts")
VALUE_COLUMNS = ("value", "load", "rate")
PROMETHEUS_TIMEOUT_S = 30.0
PROMETHEUS_MAX_BYTES = 64 * 1024 * 1024
PROMETHEUS_MAX_POINTS = 10000      # per request; Prometheus refuses more than 11,000 points per series
MAX_ROWS = 5_000_000               # weeks of 1 s samples; more is a mistake, not a history


def parse_time(text: str) -> float:
    """Seconds since the epoch from epoch seconds or ISO 8601 text (a time without a zone is UTC)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is neither epoch seconds nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a time")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: NaN and infinite values are not allowed")
    if value < 0:
        raise ValueError(f"{text!r}: a load cannot be negative")
    return value


def _columns(header: list[str], path: Path) -> tuple[int, int, bool]:
    """(timestamp column, value column, whether it is a period,count trace of counts per period)."""
    names = [h.strip().lower() for h in header]
    if "period" in names and "count" in names:
        return names.index("period"), names.index("count"), True
    ts = next((names.index(c) for c in TIMESTAMP_COLUMNS if c in names), None)
    value = next((names.index(c) for c in VALUE_COLUMNS if c in names), None)
    if value is None and ts is not None and len(names) == 2:
        value = 1 - ts
    if ts is None or value is None:
        raise OptimizerInputError(f"{path}: expected the columns timestamp,value (or a period,count trace); "
                                  f"the header has: {', '.join(header)}")
    return ts, value, False


def read_history_csv(path: str | Path) -> tuple[list[tuple[float, float]], str]:
    """(rows oldest first, a note on how they were read). A `period,count` trace becomes a per-second rate
    (count / the gap between periods), as `strato loadgen --trace` replays it. One bad row refuses the file,
    naming its line."""
    path = Path(path)
    if not path.is_file():
        raise OptimizerInputError(f"no such file: {path}")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise OptimizerInputError(f"{path}: the file is empty")
        ts_col, value_col, trace = _columns(header, path)
        rows, seen = [], {}
        for line, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise OptimizerInputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
            try:
                timestamp, value = parse_time(row[ts_col]), _number(row[value_col])
            except ValueError as error:
                raise OptimizerInputError(f"{path}:{line}: {error}") from None
            if timestamp in seen:
                raise OptimizerInputError(f"{path}:{line}: the time {row[ts_col].strip()} repeats line {seen[timestamp]}")
            seen[timestamp] = line
            rows.append((timestamp, value))
            if len(rows) > MAX_ROWS:
                raise OptimizerInputError(f"{path}: more than {MAX_ROWS} rows")
    if not rows:
        raise OptimizerInputError(f"{path}: the file has a header but no rows")
    rows.sort()
    if not trace:
        return rows, "timestamp,value rows"
    gap = rows[1][0] - rows[0][0] if len(rows) > 1 else 60.0
    return [(t, v / gap) for t, v in rows], f"period,count trace: counts per {gap:g} s read as a rate per second"


def _get_json(url: str, timeout: float, max_bytes: int) -> dict:
    """GET a Prometheus API URL: no redirects followed (only the URL the user gave), a bounded body."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=timeout) as r:
            body = r.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        body = error.read(max_bytes + 1)
        if not body.lstrip().startswith(b"{"):
            raise OptimizerInputError(f"Prometheus answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OptimizerInputError(f"cannot reach Prometheus: {reason}") from None
    if len(body) > max_bytes:
        raise OptimizerInputError(f"Prometheus's answer is larger than {max_bytes:,} bytes; "
                                  "use a shorter range or a larger --step")
    try:
        return json.loads(body)
    except ValueError:
        raise OptimizerInputError("Prometheus's answer is not JSON (is the URL Prometheus's?)") from None


def _series_rows(answer: dict) -> list[tuple[float, float]]:
    if answer.get("status") != "success":
        raise OptimizerInputError(f"Prometheus refused the query: {answer.get('error') or answer.get('status')}")
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix":
        raise OptimizerInputError(f"expected a range of one series, Prometheus returned a {data.get('resultType')}")
    series = data.get("result") or []
    if len(series) > 1:
        labels = ", ".join(json.dumps(s.get("metric", {}), sort_keys=True) for s in series[:3])
        raise OptimizerInputError(f"the query returned {len(series)} series ({labels}...); aggregate it to one, "
                                  "e.g. sum(rate(...))")
    rows = []
    for stamp, text in (series[0].get("values") or []) if series else []:
        value = float(text)
        if math.isfinite(value) and value >= 0:  # a stale or NaN point is a gap, not a load
            rows.append((float(stamp), value))
    return rows


def query_prometheus(url: str, query: str, start: float, end: float, step: float, *,
                     timeout: float = PROMETHEUS_TIMEOUT_S, max_bytes: int = PROMETHEUS_MAX_BYTES,
                     max_points: int = PROMETHEUS_MAX_POINTS) -> list[tuple[float, float]]:
    """One series over [start, end] every `step` seconds from Prometheus's /api/v1/query_range, asked for in
    pieces of at most `max_points` points; points that are NaN or negative are left out."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptimizerInputError(f"--prometheus must be an http(s) URL, got {url!r}")
    if not (step > 0 and end > start):
        raise OptimizerInputError("the range needs --start before --end and a positive --step")
    if (end - start) / step > MAX_ROWS:
        raise OptimizerInputError(f"{(end - start) / step:.0f} points asked for; at most {MAX_ROWS}")
    base = url.rstrip("/") + "/api/v1/query_range?"
    rows: dict[float, float] = {}
    piece_start = start
    while piece_start <= end:
        piece_end = min(end, piece_start + step * (max_points - 1))
        params = urllib.parse.urlencode({"query": query, "start": f"{piece_start:.3f}", "end": f"{piece_end:.3f}",
                                         "step": f"{step:g}"})
        rows.update(_series_rows(_get_json(base + params, timeout, max_bytes)))
        piece_start = piece_end + step
    return sorted(rows.items())


def parse_step(text: str) -> float:
    """Seconds from '60', '60s', '5m', '1h'."""
    text = text.strip().lower()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise OptimizerInputError(f"--step {text!r} is not a duration like 60s, 5m or 1h") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise OptimizerInputError(f"--step must be positive (got {text!r})")
    return seconds
