"""Health: what a pass sees of each instance, through its backend (orchestrator/observation.py) and its checks.

The checks (HTTP with an expected status, TCP, a command) run side by side, each within its own time
limit. Only loopback addresses are contacted: an address a cloud or an emulator returned is judged by
its driver's observe() alone.
"""

from __future__ import annotations

import functools
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from descriptors.values import duration_seconds
from orchestrator.bounded import Exceeded, http_get, settle
from orchestrator.metrics import is_loopback
from orchestrator import observation
from orchestrator.state import InstanceRecord, StateStore


def descriptor_seconds(value: Any, default: float | None) -> float | None:
    """A duration from a descriptor: a number of seconds or a TOSCA time ('30 s'); default when it is not one
    (validate reports such values; the loop keeps going)."""
    try:
        return duration_seconds(value, default)
    except ValueError:
        return default


# -- probes -------------------------------------------------------------
# A probe of a stopped (SIGSTOP) or wedged replica waits its whole time limit: probes run side by
# side, each within its own limit, and a pass waits for them no longer than the largest limit.

MAX_PROBE_TIMEOUT = 10.0   # whatever a descriptor asks, one probe never holds a pass longer
PROBE_WORKERS = 32
PROBE_SLACK = 0.25         # how long after the largest probe limit the pass stops waiting


@dataclass
class HealthResult:
    ok: bool
    detail: str = ""
    latency_ms: float = 0.0
    probed: bool = True    # False: no verdict (the pass's probe deadline came before the probe could run)


def _instance_host_port(rec: InstanceRecord) -> tuple[str | None, int | None]:
    attrs = rec.attributes or {}
    return attrs.get("host") or (rec.handle or {}).get("host"), attrs.get("port") or (rec.handle or {}).get("port")


def probe_timeout(check: dict, default: float) -> float:
    """A check's own time limit (its `timeout`: seconds or a TOSCA time, else `default`), at most MAX_PROBE_TIMEOUT."""
    try:
        seconds = descriptor_seconds(check.get("timeout"), default)
    except (TypeError, ValueError):
        seconds = default
    return min(max(float(seconds or default), 0.05), MAX_PROBE_TIMEOUT)


def probe_all(targets: Sequence[tuple[InstanceRecord, dict]], timeout: float = 2.0,
              deadline: float | None = None, workers: int = PROBE_WORKERS) -> dict[str, HealthResult | None]:
    """Every instance's health check at once: instance key -> HealthResult, or None when its check has
    nothing the loop may contact (only loopback hosts are probed).

    Each probe keeps its own time limit (the check's `timeout`, else `timeout`; at most 10 s) and
    this returns within the largest of them plus a moment, or by `deadline` (a time.monotonic()
    value) when that is sooner. A probe that could not run in full by then has probed=False."""
    from descriptors.yamlpos import to_plain
    plain = [(rec, to_plain(check)) for rec, check in targets]
    limits = [probe_timeout(check, timeout) for _, check in plain]
    until = time.monotonic() + max(limits, default=0.0) + PROBE_SLACK
    if deadline is not None:
        until = min(until, deadline)
    calls = [functools.partial(run_health_check, check, rec, timeout, until) for rec, check in plain]
    futures = settle(calls, until, workers, "strato-probe")
    return {rec.key: _probe_outcome(future, limit) for (rec, _), future, limit in zip(plain, futures, limits)}


def _probe_outcome(future, limit: float) -> HealthResult | None:
    if future.cancelled():
        return HealthResult(False, "not probed: the pass's probe deadline came first", probed=False)
    if not future.done():
        return HealthResult(False, f"no answer within {limit:g} s")
    error = future.exception()
    if error is not None:  # e.g. expect_status that is not a number: the check itself is broken
        return HealthResult(False, f"the check could not run: {type(error).__name__}: {error}")
    return future.result()


def run_health_check(check: dict, rec: InstanceRecord, timeout: float,
                     deadline: float | None = None) -> HealthResult | None:
    """All configured checks of one instance, together within the check's one time limit; None when there is
    nothing the loop may check. `deadline` (time.monotonic()) cuts the limit short: no verdict then.

    Only loopback hosts are contacted: an address a cloud (or an emulator) returned is judged by the
    driver's own observe() alone."""
    limit = probe_timeout(check, timeout)
    started = time.monotonic()
    end = started + limit if deadline is None else min(deadline, started + limit)
    probes = _probes(check, rec)
    if not probes:
        return None
    for probe in probes:
        failure = probe(end, limit)
        if failure is None:
            continue
        if end < started + limit and time.monotonic() >= end:
            return HealthResult(False, "not probed in full: the pass's probe deadline came first", probed=False)
        return HealthResult(False, failure)
    return HealthResult(True, "", 1000.0 * (time.monotonic() - started))


def _probes(check: dict, rec: InstanceRecord) -> list[Callable[[float, float], str | None]]:
    """The probes a check asks for, each called as probe(deadline, limit) -> why it failed, or None."""
    host, port = _instance_host_port(rec)
    local = is_loopback(host)
    urls = [str(u) for u in (check.get("urls") or [])]
    if check.get("http") and local and port:
        path = str(check["http"])
        urls.append(f"http://{host}:{port}{path if path.startswith('/') else '/' + path}")
    expect = check.get("expect_status")
    probes: list = [functools.partial(_probe_http, url, expect) for url in urls if _loopback_url(url)]
    if check.get("tcp") and local and port:
        probes.append(functools.partial(_probe_tcp, host, int(port)))
    if check.get("command"):
        probes.append(functools.partial(_probe_command, check["command"], rec, host, port))
    return probes


def _loopback_url(url: str) -> bool:
    try:
        return is_loopback(urllib.parse.urlsplit(url).hostname)
    except ValueError:
        return False


def _probe_http(url: str, expect, deadline: float, limit: float) -> str | None:
    try:
        code, _ = http_get(url, deadline)
    except Exceeded:
        return f"HTTP {url}: no answer within {limit:g} s"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"HTTP {url}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
    good = code == int(expect) if expect is not None else 200 <= code < 400
    if good:
        return None
    return f"HTTP {url} answered {code}" + (f", expected {expect}" if expect else "")


def _probe_tcp(host: str, port: int, deadline: float, limit: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic())):
            return None
    except OSError as exc:
        return f"TCP {host}:{port}: {exc.strerror or exc}"


def _probe_command(command, rec: InstanceRecord, host, port, deadline: float, limit: float) -> str | None:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
    env = dict(os.environ, STRATO_INSTANCE_KEY=rec.key, STRATO_INSTANCE_HOST=str(host or ""),
               STRATO_INSTANCE_PORT=str(port or ""))
    try:
        # its own session: on a timeout the whole group goes, not only the shell (a child of the
        # shell holding the output pipe would otherwise keep the probe waiting)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    except OSError as exc:
        return f"command could not start: {exc.strerror or exc}"
    try:
        output, _ = proc.communicate(timeout=max(0.01, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"command timed out after {limit:g} s"
    if proc.returncode == 0:
        return None
    tail = output.decode(errors="replace").strip().splitlines()[-1:]
    return f"command exited {proc.returncode}" + (f": {tail[0]}" if tail else "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    if proc.stdout is not None:
        proc.stdout.close()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass


# -- observation and verdicts of a maintain pass --------------------------------------------------

@dataclass
class Seen:
    """What observing a pass's instances found: the records as they now stand, the instances healthy as far
    as their backend says (by node), those with a health check still to probe, and what went wrong."""

    records: list[InstanceRecord]
    healthy: dict[str, list[InstanceRecord]] = field(default_factory=dict)
    to_check: list[tuple[InstanceRecord, dict]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (key, why)
    unknown: list[str] = field(default_factory=list)


def observe(store: StateStore, infra: str, template, records: list[InstanceRecord], write: bool,
            on_unknown: Callable[[InstanceRecord, str], None]) -> Seen:
    """Observe every live instance and (when `write`) record what each observation implies: a vanished one is
    missing, one whose backend did not answer unknown (each passed to `on_unknown` first)."""
    live = [r for r in records if r.status in observation.OBSERVED and r.handle is not None]
    observed = observation.observe_all(live)
    for rec in live:
        if observed[rec.key].status == observation.UNKNOWN:
            on_unknown(rec, observed[rec.key].detail)
    seen, changed = Seen(records), {}
    for rec in live:
        obs = observed[rec.key]
        # records may be cached: never modified, copied
        now = observation.record(store, infra, rec, obs) if write else observation.implied(rec, obs)
        if now is not rec:
            changed[rec.key] = now
        if now is None or now.status not in observation.OBSERVED:
            if now is not None and now.status == observation.MISSING:  # not changed by another process
                seen.missing.append((rec.key, obs.detail))
        elif now.status == observation.UNKNOWN:  # neither healthy nor missing: nothing is done over it
            seen.unknown.append(rec.key)
        else:
            tmpl = template.node_templates.get(now.node)
            check = tmpl.properties.get("health_check") if tmpl is not None else None
            if isinstance(check, dict) and obs.status == "running":
                seen.to_check.append((now, check))
            else:
                seen.healthy.setdefault(now.node, []).append(now)
    if changed:
        seen.records = [r for r in (changed.get(r.key, r) for r in records) if r is not None]
    return seen


@dataclass
class Verdicts:
    """The health checks of a pass judged: what changed (in order), what to replace, each node's probe latencies."""

    changes: list[tuple] = field(default_factory=list)   # ("recovered", rec) | ("unhealthy", rec, detail, grace)
    failed: list[InstanceRecord] = field(default_factory=list)      # failing past their grace period
    unhealthy: list[InstanceRecord] = field(default_factory=list)   # failing, still within it (still serving)
    latency: dict[str, list[float]] = field(default_factory=dict)


def judge(seen: Seen, failing: dict, timeout: float, now: float, default_grace: float) -> Verdicts:
    """Probe every (record, check) of `seen` at once (probe_all); a healthy or still-graced instance joins
    `seen.healthy`. `failing`: key -> (since, detail) of the instances already failing their checks."""
    verdicts = Verdicts()
    results = probe_all(seen.to_check, timeout) if seen.to_check else {}
    for rec, check in seen.to_check:
        result = results.get(rec.key)
        if result is not None and not result.probed:   # no verdict this pass: keep what we knew
            seen.healthy.setdefault(rec.node, []).append(rec)
            continue
        if result is None or result.ok:
            seen.healthy.setdefault(rec.node, []).append(rec)
            if result is not None:
                verdicts.latency.setdefault(rec.node, []).append(result.latency_ms)
            if rec.key in failing:
                verdicts.changes.append(("recovered", rec))
            continue
        grace = descriptor_seconds(check.get("grace_period"), default_grace)
        if rec.key not in failing:
            verdicts.changes.append(("unhealthy", rec, result.detail, grace))
        if now - failing.get(rec.key, (now, ""))[0] >= grace:
            verdicts.failed.append(rec)
        else:
            verdicts.unhealthy.append(rec)
            seen.healthy.setdefault(rec.node, []).append(rec)  # still serving within its grace period
    return verdicts
