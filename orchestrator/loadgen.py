"""A bounded open-loop load generator: Poisson arrivals at a trace's request rate against one loopback URL.

Open loop: arrivals follow the schedule whatever the responses do, so a slow service sees its
queue grow as real users would make it grow. Requests run on a bounded pool; an arrival that
finds every slot busy is counted as `dropped` (the generator's own limit, reported, never hidden).
Latency is measured from the arrival's scheduled time, so the generator's own lateness counts
against it rather than flattering the service.
"""
from __future__ import annotations

import csv
import ipaddress
import math
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit


class LoadgenError(Exception):
    """A bad argument or trace: reported as one line by the CLI."""


@dataclass(frozen=True)
class Segment:
    """Requests/s `rate` for `seconds` of wall time."""

    seconds: float
    rate: float


def read_trace(path: str | Path, *, speedup: float = 1.0, scale: float = 1.0, row_seconds: float | None = None,
               start: str | None = None) -> list[Segment]:
    """The trace as wall-time segments: each `period,count` row lasts row_seconds / speedup and its
    rate is count / row_seconds x scale (row_seconds: the gap between the first two periods, else 60)."""
    path = Path(path)
    if not path.is_file():
        raise LoadgenError(f"no such trace file: {path}")
    if not speedup > 0 or not scale > 0:
        raise LoadgenError("--speedup and --scale must be positive")
    periods, counts = [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"period", "count"} <= set(reader.fieldnames):
            raise LoadgenError(f"{path}: a trace needs the columns period,count")
        for line, row in enumerate(reader, start=2):
            if start and row["period"] < start:
                continue
            try:
                value = float(row["count"])
            except (TypeError, ValueError):
                raise LoadgenError(f"{path}:{line}: count {row['count']!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise LoadgenError(f"{path}:{line}: count must be a non-negative number")
            periods.append(row["period"])
            counts.append(value)
    if not counts:
        raise LoadgenError(f"{path}: no trace rows" + (f" from {start}" if start else ""))
    if row_seconds is None:
        row_seconds = 60.0
        if len(periods) >= 2:
            try:
                gap = (datetime.fromisoformat(periods[1]) - datetime.fromisoformat(periods[0])).total_seconds()
                row_seconds = gap if gap > 0 else row_seconds
            except ValueError:
                try:
                    gap = float(periods[1]) - float(periods[0])
                    row_seconds = gap if gap > 0 else row_seconds
                except ValueError:
                    pass
    return [Segment(row_seconds / speedup, c / row_seconds * scale) for c in counts]


def arrivals(segments: list[Segment], duration_s: float, rng: random.Random) -> Iterator[float]:
    """Poisson arrival times (seconds from the start) of a piecewise-constant rate, up to duration_s."""
    begin = 0.0
    for segment in segments:
        end = min(begin + segment.seconds, duration_s)
        t = begin
        while segment.rate > 0:
            t += rng.expovariate(segment.rate)  # memoryless: restarting at a boundary is exact
            if t >= end:
                break
            yield t
        begin = end
        if begin >= duration_s:
            return


def check_loopback(url: str, allow_remote: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadgenError(f"the URL must be http(s)://HOST[:PORT]/PATH (got {url!r})")
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise LoadgenError(f"cannot resolve {parts.hostname}: {error}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_loopback:
            raise LoadgenError(f"{parts.hostname} resolves to {address}, not a loopback address: the load generator "
                               "only loads this machine unless --allow-remote is given (load only what you own)")


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Interval:
    start_s: float
    end_s: float
    offered_rate: float = 0.0  # the schedule's mean rate over the interval (req/s)
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "offered_rate": round(self.offered_rate, 3), "sent": self.sent, "ok": self.ok, "errors": self.errors,
                "dropped": self.dropped, "p50_ms": ms(percentile(lat, 50)), "p95_ms": ms(percentile(lat, 95)),
                "p99_ms": ms(percentile(lat, 99)), "error_kinds": dict(self.error_kinds)}


@dataclass
class LoadReport:
    url: str
    intervals: list[Interval]
    duration_s: float

    def total(self) -> dict:
        whole = Interval(0.0, self.duration_s)
        for i in self.intervals:
            whole.sent += i.sent
            whole.ok += i.ok
            whole.errors += i.errors
            whole.dropped += i.dropped
            whole.latencies += i.latencies
            for k, v in i.error_kinds.items():
                whole.error_kinds[k] = whole.error_kinds.get(k, 0) + v
        whole.offered_rate = (sum(i.offered_rate * (i.end_s - i.start_s) for i in self.intervals)
                              / max(self.duration_s, 1e-9))
        return whole.summary()

    def to_dict(self) -> dict:
        return {"url": self.url, "duration_s": round(self.duration_s, 3),
                "intervals": [i.summary() for i in self.intervals], "total": self.total()}


def _offered(segments: list[Segment], a: float, b: float) -> float:
    """Mean scheduled rate over [a, b)."""
    total, begin = 0.0, 0.0
    for s in segments:
        end = begin + s.seconds
        overlap = max(0.0, min(end, b) - max(begin, a))
        total += overlap * s.rate
        begin = end
    return total / max(b - a, 1e-9)


def _intervals(segments: list[Segment], duration_s: float, interval_s: float) -> tuple[float, list[Interval]]:
    """The duration actually played (no longer than the trace) and its intervals, each with its offered rate."""
    if not duration_s > 0 or not interval_s > 0:
        raise LoadgenError("duration, interval and timeout must be positive and max in-flight at least 1")
    duration_s = min(duration_s, sum(s.seconds for s in segments))
    count = max(1, math.ceil(duration_s / interval_s - 1e-9))
    intervals = [Interval(k * interval_s, min((k + 1) * interval_s, duration_s)) for k in range(count)]
    for i in intervals:
        i.offered_rate = _offered(segments, i.start_s, i.end_s)
    return duration_s, intervals


def _request(url: str, method: str, data: bytes | None, headers: dict[str, str] | None, timeout_s: float) -> str | None:
    """Send one request; None when it succeeded, else what went wrong (http_503, timeout, ConnectionRefusedError)."""
    try:
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return f"http_{response.status}" if response.status >= 400 else None
    except urllib.error.HTTPError as error:
        return f"http_{error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) else type(reason).__name__


def run(url: str, segments: list[Segment], duration_s: float, *, interval_s: float = 5.0, seed: int = 0,
        timeout_s: float = 10.0, max_inflight: int = 256, method: str = "GET", data: bytes | None = None,
        headers: dict[str, str] | None = None, allow_remote: bool = False,
        on_interval: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
        body: Callable[[float], bytes] | None = None) -> LoadReport:
    """Play the schedule for at most duration_s seconds (no longer than the trace); results by completion interval,
    each handed to `on_interval` as it closes. `body(t)`: each request's body by its time (orchestrator/mlops/shift)."""
    check_loopback(url, allow_remote)
    if not timeout_s > 0 or max_inflight < 1:
        raise LoadgenError("duration, interval and timeout must be positive and max in-flight at least 1")
    duration_s, intervals = _intervals(segments, duration_s, interval_s)
    lock, slots = threading.Lock(), threading.BoundedSemaphore(max_inflight)
    stop = stop or threading.Event()
    started = time.monotonic()

    def bucket(at: float) -> Interval:
        return intervals[min(len(intervals) - 1, max(0, int(at // interval_s)))]

    def one(scheduled: float, payload: bytes | None) -> None:
        try:
            kind = _request(url, method, payload, headers, timeout_s)
        finally:
            slots.release()
        done = time.monotonic() - started
        with lock:
            target = bucket(min(done, duration_s))
            if kind is None:
                target.ok += 1
                target.latencies.append(done - scheduled)
            else:
                target.errors += 1
                target.error_kinds[kind] = target.error_kinds.get(kind, 0) + 1

    reported = 0

    def flush(now: float) -> None:
        """Hand over every interval that has closed (completions are counted when they happen)."""
        nonlocal reported
        while reported < len(intervals) and intervals[reported].end_s <= now:
            if on_interval is not None and reported < len(intervals) - 1:
                with lock:
                    summary = intervals[reported].summary()
                on_interval(summary)
            reported += 1

    def wait_until(at: float) -> None:
        while not stop.is_set():
            now = time.monotonic() - started
            flush(now)
            if now >= at:
                return
            stop.wait(min(at - now, 0.05))

    rng = random.Random(seed)
    with ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="loadgen") as pool:
        for at in arrivals(segments, duration_s, rng):
            wait_until(at)
            if stop.is_set():
                break
            if slots.acquire(blocking=False):
                with lock:
                    bucket(at).sent += 1
                pool.submit(one, at, data if body is None else body(at))
            else:
                with lock:
                    bucket(at).dropped += 1
        wait_until(duration_s)  # the schedule is over: wait out the duration, then the requests in flight
    if on_interval is not None:
        on_interval(intervals[-1].summary())  # the last one also holds what completed after the duration
    return LoadReport(url, intervals, duration_s)
