"""The maintain loop: a level-triggered reconcile (observe every instance, compare with the desired state, act).

Each pass re-derives everything from the descriptor, the state store and what the backends say
now, like a Kubernetes controller; what must survive a restart of the loop (scale requests,
each node's last scaling action for cooldowns, policy state, health-failure start times,
samples, the loop's lease) lives in the state store. Acting reuses `plan_changes` and the
executor (`BuildRun`), holding the infrastructure's lock only while it acts, so a `strato build`
is never blocked for longer than one action.

A pass, in order:
 1. observe every ready instance through its driver; a vanished one is marked missing;
 2. health checks (HTTP with expected status, TCP, a command; loopback addresses only, never an
    address a cloud or emulator returned); failing longer than the grace period -> failed;
 3. metrics (instances scraped directly, or PromQL over Prometheus) and alerts;
 4. pending manual scale requests (`strato scale --to/--by/--drop`);
 5. the node's scaling policies, with cooldowns; every decision is an event with its reason;
 6. min/max of each node; then one plan, acted on under the lock: failed instances replaced,
    missing ones recreated, counts changed.
A driver error, an unreachable metrics source or a broken policy is reported and the loop goes on.
"""

from __future__ import annotations

import functools
import gc
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from descriptors.diagnostics import DescriptorError
from descriptors.secrets import Redactor, redactor_for
from drivers.base import Observed
from drivers.providers import get_driver
from orchestrator import observation
from orchestrator.bounded import Exceeded, http_get, settle
from orchestrator.executor import BuildRun, RunOptions
from orchestrator.metrics import (LoopMetrics, MetricsError, PrometheusSource, ScrapeSource, instance_metrics_url,
                                  is_loopback, write_file_sd)
from orchestrator.plan import CREATE, NOOP, desired_counts, plan_changes
from orchestrator.state import InstanceRecord, LockHeld, StateDamaged, StateStore

log = logging.getLogger("strato.maintain")

ALERT_TYPE = "strato.policies.Alert"
HOLDER = "strato maintain"


@dataclass
class MaintainOptions:
    interval: float = 10.0
    dry_run: bool = False
    policies: bool = True               # False: heal, min/max and scale requests only (`strato scale` without a loop)
    prometheus_url: str | None = None   # PromQL source; None: scrape instances directly
    run: RunOptions = field(default_factory=lambda: RunOptions(parallelism=32, timeout=300.0))
    health_timeout: float = 2.0
    default_grace: float | None = None  # seconds an instance may fail its checks before it is replaced
    retry_backoff: float = 5.0          # first wait before recreating an instance whose create failed
    policy_timeout: float = 10.0        # one deadline for all the policies of a pass (a rule also stops at its own)


@dataclass
class PassReport:
    infrastructure: str
    started: float
    duration: float = 0.0
    instances: int = 0
    healthy: int = 0
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)   # not observed: their backend did not answer
    unhealthy: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)
    planned: list[dict] = field(default_factory=list)
    acted: bool = False
    deferred: str | None = None
    errors: list[str] = field(default_factory=list)
    gone: bool = False

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if k == "duration" else v) for k, v in self.__dict__.items()}


def _seconds(value: Any, default: float | None) -> float | None:
    """A duration from a descriptor: a number of seconds or a TOSCA time ('30 s')."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    from descriptors.values import scalar_unit
    seconds = scalar_unit(value, "scalar-unit.time")
    return default if seconds is None else seconds


def default_policy_factory(template, inputs: dict, errors: list | None = None, **options) -> dict[str, list]:
    """node -> scaling policy objects, read from `template.policies` by policies/ (the same objects the simulator runs).

    A policy that cannot be built (a bad setting, a rule the sandbox refuses) goes to `errors` as
    (policy name, message) and the others still steer their nodes."""
    from policies.factory import build_policy
    out: dict[str, list] = {}
    for policy in template.policies.values():
        for node in policy.target_nodes(template):
            try:
                built = build_policy(template, policy, node, inputs, **options)
            except Exception as exc:
                if errors is None:
                    raise
                errors.append((policy.name, f"{type(exc).__name__}: {exc}"))
                break
            if built is not None:
                out.setdefault(node, []).append(built)
    return out


# -- health checks -------------------------------------------------------------
# A probe of a stopped (SIGSTOP) or wedged replica waits its whole time limit: probes run side by
# side, each within its own limit, and a pass waits for them no longer than the largest limit.

MAX_PROBE_TIMEOUT = 10.0   # whatever a descriptor asks, one probe never holds a pass longer
PROBE_WORKERS = 32
PROBE_SLACK = 0.25         # how long after the largest probe limit the pass stops waiting
POLICY_WORKERS = 16
POLICY_SLACK = 0.25        # a rule stopped at the policy deadline still needs a moment to say so


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
        seconds = _seconds(check.get("timeout"), default)
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


# -- the loop -------------------------------------------------------------------

class Maintainer:
    """Reconciles one infrastructure, one pass at a time (`run_pass`), or for as long as asked (`run`)."""

    def __init__(self, store: StateStore, name: str, options: MaintainOptions | None = None,
                 policy_factory: Callable[..., dict[str, list]] | None = None,
                 loop_metrics: LoopMetrics | None = None, on_event: Callable[[dict], None] | None = None):
        self.store, self.name = store, name
        self.options = options or MaintainOptions()
        self.policy_factory = policy_factory or default_policy_factory
        self.loop_metrics = loop_metrics or LoopMetrics()
        self.on_event = on_event or (lambda e: None)
        self.scraper = ScrapeSource()
        self.prometheus = PrometheusSource(self.options.prometheus_url) if self.options.prometheus_url else None
        self._template_key: tuple | None = None
        self._loaded = None
        self._redact = Redactor([])  # masks the secret inputs' text in journaled events (a probe's error)
        self._policies: dict[str, list] = {}
        self._policy_error: str | None = None
        self._alerts: list = []
        self._saved_policy_state: dict[tuple[str, str], str] = {}
        self._last_reason: dict[tuple[str, str], str] = {}
        self._last_error: dict[str, str] = {}
        self._predictions: dict[str, float] = {}
        self._last_eval: dict[tuple[str, str], float] = {}   # when each policy last decided (its `period`)
        self._deciding: dict[tuple[str, str], Any] = {}      # decisions still running past a pass's deadline
        self._create_failures: dict[str, tuple[int, float]] = {}  # key -> (failures, not before)
        self._lease = False
        self._records: dict[str, InstanceRecord] = {}   # decoded rows by key, reused while their version holds

    # -- reporting -----------------------------------------------------------
    def _event(self, kind: str, key: str | None = None, /, *, once: str | None = None, **detail: Any) -> None:
        """Journal an event; with `once`, only when its text differs from the last one under that name."""
        if once is not None:
            text = json.dumps(detail, sort_keys=True, default=str)
            if self._last_error.get(once) == text:
                return
            self._last_error[once] = text
        detail = self._redact.value(detail)
        if not self.options.dry_run:
            self.store.journal(self.name, kind, key, **detail)
        self.on_event({"event": kind, "key": key, "ts": time.time(), **detail})

    # -- the descriptor, re-read when it changes -------------------------------
    def _template(self, path: str, inputs: dict):
        from orchestrator import service
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            stamp = None
        key = (path, stamp, json.dumps(inputs, sort_keys=True, default=str))
        if key != self._template_key:
            # the descriptor was accepted when it was built; imports are read as the CLI reads them
            loaded = service.load_checked(path, confined=False)
            resolved = service.resolve_inputs(loaded.template, {k: v for k, v in inputs.items()
                                                                if k in loaded.template.inputs})
            self._loaded = (loaded, resolved)
            self._redact = redactor_for(loaded.template, resolved)
            self._template_key = key
            self._build_policies(loaded.template, resolved)
        return self._loaded

    def _build_policies(self, template, inputs: dict) -> None:
        self._policies, self._policy_error = {}, None
        errors: list = []
        self._alerts = [p for p in template.policies.values()
                        if template.types is not None and template.types.has("policy", p.type)
                        and template.types.is_a(p.type, ALERT_TYPE, "policy")]
        if not self.options.policies or (not template.policies and self.policy_factory is default_policy_factory):
            return
        try:
            # the optimizer policy keeps its training samples in this state DB (optimizer.samples.SampleStore)
            errors: list = []
            self._policies = self.policy_factory(template, inputs, errors=errors, infrastructure=self.name,
                                                 state_path=self.store.path) or {}
            for name, error in errors:
                self._event("policy_broken", once=f"build:{name}", policy=name, error=error)
            self._policy_error = "; ".join(f"{n}: {e}" for n, e in errors) or None
        except ImportError as exc:
            self._policy_error = f"scaling policies unavailable: {exc}"
        except Exception as exc:  # a bad policy setting: report it, keep healing
            self._policy_error = str(exc)
        if self._policy_error and not errors:
            self._event("policy_broken", once="policy_build", error=self._policy_error)
        stored = self.store.policy_states(self.name)
        for node, items in self._policies.items():
            for policy in items:
                saved = stored.get((self._policy_id(policy), node))
                if saved:
                    try:
                        policy.restore(saved)
                    except Exception as exc:
                        self._event("policy_broken", once=f"restore:{node}", node=node,
                                    policy=self._policy_id(policy), error=f"could not restore its state: {exc}")

    @staticmethod
    def _bounds(tmpl, inputs: dict) -> tuple[int, int]:
        """A node's (min, max) instances, inputs applied, max capped by Strato's per-node ceiling."""
        from orchestrator import bounds
        low, high = bounds.node_bounds(tmpl, inputs)
        ceiling = bounds.ceiling()
        return int(low or 0), min(high, ceiling) if high is not None else ceiling

    @staticmethod
    def _policy_id(policy) -> str:
        return getattr(policy, "source", "") or getattr(policy, "name", "policy")

    # -- one pass --------------------------------------------------------------
    def run_pass(self) -> PassReport:
        report = PassReport(self.name, time.time())
        started = time.perf_counter()
        # A pass allocates one record per instance and frees them all at the end: the cyclic collector
        # would only rescan them mid-pass (a third of a 10,000-instance pass), so it waits until after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._pass(report)
        except StateDamaged as exc:  # the user's to repair: one line, no traceback
            log.error("maintain pass of %s: %s", self.name, exc)
            report.errors.append(f"{exc.code}: {exc}")
        except Exception as exc:  # nothing inside a pass may kill the loop
            log.exception("maintain pass of %s failed", self.name)
            report.errors.append(f"{type(exc).__name__}: {exc}")
            self._event("maintain_error", once="pass", error=f"{type(exc).__name__}: {exc}")
        finally:
            if collecting:
                gc.enable()
        report.duration = time.perf_counter() - started
        return report

    def _pass(self, report: PassReport) -> None:
        store, opts = self.store, self.options
        infra = store.get_infra(self.name)
        if infra is None:
            report.gone = True
            return
        if not infra.descriptor:
            report.errors.append("no stored descriptor; run strato build first")
            return
        try:
            loaded, inputs = self._template(infra.descriptor, infra.inputs)
        except (DescriptorError, OSError) as exc:
            text = "; ".join(d.format() for d in exc.diagnostics) if isinstance(exc, DescriptorError) else str(exc)
            report.errors.append(f"descriptor: {text}")
            self._event("maintain_error", once="descriptor", error=f"descriptor: {text}")
            return
        template, graph = loaded.template, loaded.graph
        records = store.instances(self.name, self._records)
        report.instances = len(records)
        now = time.time()

        # 1. observe ---------------------------------------------------------
        live = [r for r in records if r.status in observation.OBSERVED and r.handle is not None]
        observed = self._observe(live, report)
        healthy: dict[str, list[InstanceRecord]] = {}
        changed: dict[str, InstanceRecord | None] = {}
        to_check: list[tuple[InstanceRecord, dict]] = []
        for rec in live:
            obs = observed[rec.key]
            # records may be cached: never modified, copied
            now_rec = observation.implied(rec, obs) if opts.dry_run else observation.record(store, self.name, rec, obs)
            if now_rec is not rec:
                changed[rec.key] = now_rec
            if now_rec is None or now_rec.status not in observation.OBSERVED:
                if now_rec is not None and now_rec.status == observation.MISSING:  # not changed by another process
                    report.missing.append(rec.key)
                    self.on_event({"event": "missing", "key": rec.key, "detail": obs.detail, "ts": now})
                continue
            if now_rec.status == observation.UNKNOWN:  # neither healthy nor missing: nothing is done over it
                report.unknown.append(rec.key)
                continue
            rec = now_rec
            check = (template.node_templates[rec.node].properties.get("health_check")
                     if rec.node in template.node_templates else None)
            if isinstance(check, dict) and obs.status == "running":
                to_check.append((rec, check))
            else:
                healthy.setdefault(rec.node, []).append(rec)

        if changed:
            records = [r for r in (changed.get(r.key, r) for r in records) if r is not None]

        # 2. health checks ------------------------------------------------------
        replace, health_latency = self._check_health(to_check, healthy, now, report)
        report.healthy = sum(len(v) for v in healthy.values())

        # 3. metrics and alerts ---------------------------------------------------
        counts = desired_counts(template, infra, inputs)
        metrics = self._collect_metrics(template, healthy, counts, health_latency, report)
        self._evaluate_alerts(template, metrics, report)

        # 4. manual scale requests --------------------------------------------------
        drop: set[str] = set()
        drop_requests: list[dict] = []
        for request in store.pending_scale_requests(self.name):
            self._apply_request(request, template, counts, records, drop, drop_requests, report)

        # 5. policies -----------------------------------------------------------------
        if opts.policies:
            self._run_policies(template, counts, healthy, metrics, records, drop, report)

        # 6. min/max, then one plan ---------------------------------------------------------
        for node, tmpl in template.node_templates.items():
            low, high = self._bounds(tmpl, inputs)
            bounded = min(max(low, counts[node]), high)
            if bounded != counts[node]:
                self._event("bounded", node=node, desired=bounded,
                            reason=f"{counts[node]} is outside min {low} / max {high}")
                if not opts.dry_run:
                    store.set_desired_count(self.name, node, bounded)
                counts[node] = bounded
        self._write_prometheus_targets(records)
        states: dict[tuple[str, str], int] = {}
        for rec in records:
            states[(rec.node, rec.status)] = states.get((rec.node, rec.status), 0) + 1
        plan = plan_changes(template, infra, records, inputs, graph, counts, frozenset(drop))
        changes = [a for a in plan.changes if not self._backing_off(a, now)]
        report.plan = plan.summary()
        report.planned = [a.to_dict() for a in changes]
        if infra.status in ("destroying", "destroy_failed"):
            if changes or replace:   # never rebuild what a destroy is taking down
                report.deferred = f"infrastructure is {infra.status.replace('_', ' ')}; run strato destroy again"
        elif (changes or replace) and not opts.dry_run:
            self._act(template, graph, inputs, counts, frozenset(drop), replace, drop_requests, report)
        elif not opts.dry_run:
            for request in drop_requests:  # already carried out (e.g. the instance was gone)
                store.finish_scale_request(request["id"], {"ok": True})
        self.loop_metrics.observe_pass(self.name, 0.0 if not report.started else time.time() - report.started,
                                       states)

    # -- pieces of a pass ---------------------------------------------------------------
    def _observe(self, live: list[InstanceRecord], report: PassReport) -> dict[str, Observed]:
        """Every live instance's observation; one whose backend did not answer is `unknown`, and reported."""
        results = observation.observe_all(live)
        for rec in live:
            obs = results[rec.key]
            if obs.status == observation.UNKNOWN:
                report.errors.append(f"observe {rec.key}: {obs.detail}")
                self._event("observe_failed", rec.key, once=f"observe:{rec.key}", error=obs.detail)
        return results

    def _check_health(self, to_check: list, healthy: dict, now: float,
                      report: PassReport) -> tuple[list[InstanceRecord], dict[str, list[float]]]:
        """Probe every (record, check) at once (probe_all); a healthy or still-graced instance joins `healthy`.

        Returns the instances failing past their grace period (to replace) and each node's probe latencies."""
        store, opts = self.store, self.options
        replace: list[InstanceRecord] = []
        health_latency: dict[str, list[float]] = {}
        if not to_check:
            return replace, health_latency
        failing = store.failing(self.name)
        results = probe_all(to_check, opts.health_timeout)
        for rec, check in to_check:
            result = results.get(rec.key)
            if result is not None and not result.probed:   # no verdict this pass: keep what we knew
                healthy.setdefault(rec.node, []).append(rec)
                continue
            if result is None or result.ok:
                healthy.setdefault(rec.node, []).append(rec)
                if result is not None:
                    health_latency.setdefault(rec.node, []).append(result.latency_ms)
                if rec.key in failing and not opts.dry_run:
                    store.set_failing(self.name, rec.key, None)
                    self._event("recovered", rec.key, node=rec.node)
                continue
            since = failing.get(rec.key, (now, ""))[0]
            grace = _seconds(check.get("grace_period"),
                             opts.default_grace if opts.default_grace is not None else 2 * opts.interval)
            if rec.key not in failing:
                if not opts.dry_run:
                    store.set_failing(self.name, rec.key, now, result.detail)
                self._event("unhealthy", rec.key, node=rec.node, detail=result.detail, grace_s=grace)
            if now - since >= grace:
                report.failed.append(rec.key)
                replace.append(rec)
            else:
                report.unhealthy.append(rec.key)
                healthy.setdefault(rec.node, []).append(rec)  # still serving within its grace period
        return replace, health_latency

    def _backing_off(self, action, now: float) -> bool:
        """An instance whose create keeps failing is retried with exponential backoff, not every pass."""
        entry = self._create_failures.get(action.key)
        return bool(entry) and action.kind == CREATE and now < entry[1]

    def _collect_metrics(self, template, healthy, counts, health_latency, report) -> dict[str, dict]:
        """Per node: built-in probes plus every metric its policies and alerts ask for."""
        wanted: dict[str, list] = {}
        for node, items in self._policies.items():
            for policy in items:
                try:
                    wanted.setdefault(node, []).extend(policy.metrics_needed())
                except Exception as exc:
                    self._event("policy_broken", once=f"metrics:{node}", node=node, error=str(exc))
        for alert in self._alerts:
            for node in alert.target_nodes(template):
                wanted.setdefault(node, []).append(_AlertMetric(alert))
        out: dict[str, dict] = {}
        scrape_nodes = set(wanted)
        targets = {}
        for node in scrape_nodes:
            for rec in healthy.get(node, []):
                url = instance_metrics_url(rec.attributes or {})
                if url:
                    targets[rec.key] = (node, url)
        if targets:
            # with Prometheus in charge the built-in probes still come from the instances themselves
            self._scrape(targets)
        for node in template.node_templates:
            keys = [r.key for r in healthy.get(node, [])]
            values: dict[str, float] = {"instances": float(counts.get(node, 0)), "ready": float(len(keys))}
            if node in scrape_nodes:
                values.update(self.scraper.builtins(keys))
                if node in health_latency:
                    values["health_latency_ms"] = sum(health_latency[node]) / len(health_latency[node])
                for spec in wanted[node]:
                    if spec.name in values and spec.query == spec.name and spec.name in ("instances", "ready"):
                        continue
                    try:
                        source = self.prometheus or self.scraper
                        value = source.evaluate(spec.query, keys, spec.aggregation, spec.quantile)
                    except MetricsError as exc:
                        report.errors.append(f"metrics {node}: {exc}")
                        self._event("metrics_unavailable", once=f"metrics:{node}:{spec.name}", node=node,
                                    error=str(exc))
                        continue
                    if value is not None:
                        values[spec.name] = value
            out[node] = values
        report.metrics = {n: {k: round(v, 6) for k, v in m.items()} for n, m in out.items() if n in scrape_nodes}
        return out

    def _scrape(self, targets: dict[str, tuple[str, str]]) -> None:
        """Scrape the instances (key -> (node, URL)) at once, within the scraper's deadline; an instance that
        fails (no answer in time, an answer over the size limit, an error) is an event naming it, once per reason."""
        self.scraper.scrape({key: url for key, (_, url) in targets.items()})
        for key, (node, _) in targets.items():
            error = self.scraper.errors.get(key)
            if error is None:
                self._last_error.pop(f"scrape:{key}", None)
            else:
                self._event("scrape_failed", key, once=f"scrape:{key}", node=node, error=error)

    def _evaluate_alerts(self, template, metrics, report) -> None:
        if not self._alerts:
            return
        stored = self.store.policy_states(self.name)
        for alert in self._alerts:
            props = alert.properties or {}
            for node in alert.target_nodes(template):
                spec = _AlertMetric(alert)
                value = metrics.get(node, {}).get(spec.name)
                if value is None:
                    continue
                above, below = props.get("above"), props.get("below")
                breach = ((above is not None and value > float(above)) or
                          (below is not None and value < float(below)))
                firing = bool(stored.get((alert.name, node), {}).get("firing"))
                if breach == firing:
                    continue
                kind = "alert_firing" if breach else "alert_resolved"
                detail = {"alert": alert.name, "node": node, "metric": spec.query, "value": value,
                          "above": above, "below": below, "infrastructure": self.name}
                report.alerts.append({"event": kind, **detail})
                self._event(kind, **detail)
                if not self.options.dry_run:
                    self.store.save_policy_state(self.name, alert.name, node, {"firing": breach, "since": time.time()})
                    webhook = props.get("webhook")
                    if webhook:
                        threading.Thread(target=self._post_webhook, args=(str(webhook), {"event": kind, **detail}),
                                         daemon=True).start()

    def _post_webhook(self, url: str, payload: dict) -> None:
        try:
            req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5):
                pass
        except Exception as exc:  # an unreachable webhook is reported, never fatal
            self._event("webhook_failed", once=f"webhook:{url}", url=url, error=str(exc))

    def _apply_request(self, request, template, counts, records, drop, drop_requests, report) -> None:
        node, kind = request["node"], request["kind"]
        result: dict[str, Any]
        tmpl = template.node_templates.get(node)
        if tmpl is None:
            result = {"ok": False, "error": f"no node '{node}' in the descriptor"}
        else:
            current = counts[node]
            if kind == "to":
                wanted = int(request["value"])
            elif kind == "by":
                wanted = current + int(request["value"])
            else:
                target = resolve_instance(request["instance"], node, records)
                if target is None or target.key in drop:
                    wanted = None
                    result = {"ok": False, "error": f"node '{node}' has no instance '{request['instance']}'"}
                else:
                    wanted = current - 1
                    drop.add(target.key)
            if wanted is not None:
                low, high = self._bounds(tmpl, self._loaded[1])
                if wanted < low or wanted > high:
                    if kind == "drop":
                        drop.discard(target.key)
                    result = {"ok": False, "error": f"{node} would have {wanted} instance(s), outside its "
                                                    f"min {low} / max {high}"}
                else:
                    counts[node] = wanted
                    result = {"ok": True, "desired": wanted}
        entry = {**request, **result}
        report.requests.append(entry)
        if self.options.dry_run:
            return
        if result.get("ok") and kind == "drop":
            drop_requests.append(entry)   # finished once the instance is really gone
            self.store.set_desired_count(self.name, node, counts[node])
            return
        if result.get("ok"):
            self.store.set_desired_count(self.name, node, counts[node])
        self.store.finish_scale_request(request["id"], result)
        self._event("scale_request_applied" if result.get("ok") else "scale_request_refused", node=node,
                    kind=kind, value=request.get("value"), instance=request.get("instance"), **result)

    def _run_policies(self, template, counts, healthy, metrics, records, drop, report) -> None:
        """Every due policy decides at once, within one deadline for the pass; each node takes the largest count."""
        controls = self.store.node_controls(self.name)
        now = time.time()
        deadline = time.monotonic() + self.options.policy_timeout
        nodes = self._policy_observations(template, counts, healthy, metrics, now, deadline)
        jobs = [(node, policy, obs) for node, (obs, due) in nodes.items() for policy in due]
        outcomes = iter(self._decide_all(jobs, deadline))
        for node, (obs, due) in nodes.items():
            chosen = None
            for policy in due:
                entry = self._take_decision(node, policy, obs, next(outcomes), counts, report)
                if entry is not None and (chosen is None or entry[0].desired > chosen[1].desired):
                    chosen = (policy, *entry)  # several policies on one node: the largest count wins (HPA)
            if chosen is not None:
                self._apply_decision(node, chosen, obs, counts, controls, records, drop, now, report)

    def _policy_observations(self, template, counts, healthy, metrics, now: float, deadline: float) -> dict:
        """node -> (its Observation, the policies due this pass); each node's sample is recorded here."""
        from policies.base import Observation
        out = {}
        for node, items in self._policies.items():
            if node not in template.node_templates or not items:
                continue
            low, high = self._bounds(template.node_templates[node], self._loaded[1])
            live = sorted(healthy.get(node, []), key=lambda r: r.index)
            values = metrics.get(node, {})
            target = None
            for policy in items:
                if policy.needs_target():
                    spec = getattr(policy, "target", None) or getattr(policy, "target_metric", None)
                    name = getattr(spec, "name", None)
                    if name and name in values:
                        target = values[name]
            self._prediction_error(node, target)
            obs = Observation(now=now, node=node, instances=counts[node], ready=len(live), metrics=dict(values),
                              instance_ids=tuple(r.key for r in live), min_instances=low, max_instances=high,
                              target=target, extra={"infrastructure": self.name}, deadline=deadline)
            if not self.options.dry_run:
                self.store.add_sample(self.name, node, counts[node], target,
                                      {k: v for k, v in values.items() if k not in ("instances",)})
            out[node] = (obs, [policy for policy in items if self._due(node, policy, now)])
        return out

    def _due(self, node: str, policy, now: float) -> bool:
        """Whether a policy decides this pass (its `period`); a policy still deciding since an earlier pass does not."""
        key = (node, self._policy_id(policy))
        period = getattr(policy, "period_s", None) or 0.0
        last_eval = self._last_eval.get(key)
        if last_eval is not None and now - last_eval < period - 0.05 * self.options.interval:
            return False   # the template asks for this policy less often than the loop passes
        if key in self._deciding and not self._deciding[key].done():
            return False   # abandoned at an earlier pass's deadline and not finished yet: never twice at once
        self._deciding.pop(key, None)
        self._last_eval[key] = now
        return True

    def _decide_all(self, jobs: list, deadline: float) -> list:
        """policy.decide(observation) for every (node, policy, observation) side by side, waiting until `deadline`:
        one outcome per job, the decision or the exception (a policy with no decision by then gets a PolicyError)."""
        from policies.base import PolicyError
        futures = settle([functools.partial(policy.decide, obs) for _, policy, obs in jobs], deadline + POLICY_SLACK,
                         POLICY_WORKERS, "strato-policy")
        outcomes = []
        for (node, policy, _), future in zip(jobs, futures):
            if future.done() and not future.cancelled():
                outcomes.append(future.exception() or future.result())
                continue
            if not future.cancelled():
                self._deciding[(node, self._policy_id(policy))] = future
            outcomes.append(PolicyError(f"no decision within the loop's {self.options.policy_timeout:g} s deadline "
                                        "for all policies of a pass"))
        return outcomes

    def _take_decision(self, node: str, policy, obs, outcome, counts, report) -> tuple | None:
        """Report one policy's decision (or why it has none); (decision, report entry) when it has one."""
        pid = self._policy_id(policy)
        if isinstance(outcome, BaseException):
            self._policy_failed(node, policy, outcome, obs.metrics, counts, report)
            return None
        decision = outcome
        try:
            policy.learn(obs)
        except Exception as exc:
            self._event("policy_broken", once=f"learn:{node}:{pid}", node=node, policy=pid,
                        error=f"learning failed: {type(exc).__name__}: {exc}")
        self._save_policy_state(policy, node)
        entry = {"node": node, "policy": pid, "current": counts[node], "desired": int(decision.desired),
                 "reason": decision.reason, "drop": list(decision.drop)}
        report.decisions.append(entry)
        return decision, entry

    def _policy_failed(self, node: str, policy, exc: BaseException, values: dict, counts, report) -> None:
        pid = self._policy_id(policy)
        absent = self._absent_metrics(policy, values)
        if absent:  # no data yet (a first scrape has no rates, no requests no latency): a wait
            reason = f"waiting for metric(s) {', '.join(absent)}"
            report.decisions.append({"node": node, "policy": pid, "current": counts[node],
                                     "desired": counts[node], "reason": reason})
            if self._last_reason.get((node, pid)) != reason:
                self._last_reason[(node, pid)] = reason
                self._event("decision", node=node, policy=pid, current=counts[node],
                            desired=counts[node], action="hold", reason=reason)
            return
        if self.loop_metrics.registry is not None:
            self.loop_metrics.policy_errors.labels(self.name, pid).inc()
        report.decisions.append({"node": node, "policy": pid, "error": str(exc)})
        self._event("policy_broken", once=f"decide:{node}:{pid}", node=node, policy=pid,
                    error=f"{type(exc).__name__}: {exc}")

    def _apply_decision(self, node: str, chosen: tuple, obs, counts, controls, records, drop, now: float,
                        report) -> None:
        """Hold, wait out the cooldown, or scale a node to the count its winning policy chose."""
        policy, decision, entry = chosen
        pid = self._policy_id(policy)
        desired = min(max(obs.min_instances, int(decision.desired)), obs.max_instances)
        predicted = (decision.detail or {}).get("predicted_target")
        if desired == counts[node]:
            if self._last_reason.get((node, pid)) != decision.reason:
                self._last_reason[(node, pid)] = decision.reason
                self._event("decision", node=node, policy=pid, current=counts[node], desired=desired,
                            action="hold", reason=decision.reason)
            if isinstance(predicted, (int, float)):
                self._predictions[node] = float(predicted)
            return
        cooldown = float(getattr(policy, "cooldown_s", 0.0) or 0.0)
        last = controls.get(node, {}).get("last_action")
        if cooldown and last and now - last < cooldown:
            reason = f"{decision.reason}; held: cooldown {cooldown:g} s, {now - last:.1f} s since the last action"
            if self._last_reason.get((node, pid)) != reason.split(";")[0] + "cooldown":
                self._last_reason[(node, pid)] = reason.split(";")[0] + "cooldown"
                self._event("decision", node=node, policy=pid, current=counts[node], desired=desired,
                            action="cooldown", reason=reason)
            return
        direction = "up" if desired > counts[node] else "down"
        self._last_reason[(node, pid)] = decision.reason
        if isinstance(predicted, (int, float)):
            self._predictions[node] = float(predicted)
        if direction == "down":
            for ident in decision.drop[: counts[node] - desired]:
                target_rec = resolve_instance(ident, node, records)
                if target_rec is not None:
                    drop.add(target_rec.key)
        entry["action"] = direction
        if not self.options.dry_run:
            self.store.record_scaling(self.name, node, desired, direction, pid,
                                      {"from": counts[node], "reason": decision.reason,
                                       "detail": decision.detail})
        self.on_event({"event": "scaled", "node": node, "from": counts[node], "desired": desired,
                       "policy": pid, "reason": decision.reason, "ts": now})
        if self.loop_metrics.registry is not None:
            self.loop_metrics.actions.labels(self.name, node, pid, direction).inc()
        counts[node] = desired

    @staticmethod
    def _absent_metrics(policy, values: dict) -> list[str]:
        try:
            return sorted({spec.name for spec in policy.metrics_needed()} - set(values))
        except Exception:  # reported by _collect_metrics already
            return []

    def _prediction_error(self, node: str, measured: float | None) -> None:
        predicted = self._predictions.pop(node, None)
        if predicted is None or measured is None or measured <= 0 or self.loop_metrics.registry is None:
            return
        self.loop_metrics.prediction_error.labels(self.name, node).set(abs(predicted - measured) / measured)

    def _save_policy_state(self, policy, node: str) -> None:
        if self.options.dry_run:
            return
        try:
            state = policy.state()
        except Exception:
            return
        text = json.dumps(state, sort_keys=True, default=str)
        key = (self._policy_id(policy), node)
        if self._saved_policy_state.get(key) != text:
            self.store.save_policy_state(self.name, key[0], node, state)
            self._saved_policy_state[key] = text

    def _write_prometheus_targets(self, records: list[InstanceRecord]) -> None:
        """Tell a configured Prometheus (file_sd) which instances to scrape."""
        if self.prometheus is None or self.options.dry_run:
            return
        from urllib.parse import urlsplit
        targets = []
        for rec in records:
            url = instance_metrics_url(rec.attributes or {}) if rec.status == "ready" else None
            if url:
                parts = urlsplit(url)
                targets.append({"targets": [parts.netloc], "labels": {"infrastructure": self.name, "node": rec.node,
                                                                        "strato_instance": rec.key}})
        write_file_sd(prometheus_targets_path(self.store, self.name), targets)

    def _act(self, template, graph, inputs, counts, drop, replace, drop_requests, report) -> None:
        """Take the infrastructure lock (skip this pass if a build holds it), replace failed instances, run the plan."""
        store = self.store
        try:
            store.acquire_lock(self.name, HOLDER)
        except LockHeld as exc:
            report.deferred = str(exc)
            self._event("maintain_deferred", once="deferred", reason=str(exc))
            return
        self._last_error.pop("deferred", None)
        try:
            infra = store.get_infra(self.name)
            if infra is None or infra.status in ("destroying", "destroy_failed"):
                return   # destroyed (or being destroyed) since this pass looked
            for rec in replace:
                # The process may still run (it only fails its checks): delete it, or the create would adopt it.
                try:
                    get_driver(rec.driver).delete(rec.handle)
                except Exception as exc:
                    report.errors.append(f"delete {rec.key}: {exc}")
                store.update_instance(rec.key, status="failed", handle=None, error="health checks failed",
                                      event="failed", event_detail={"reason": "health checks failed"}, infra=self.name)
                store.set_failing(self.name, rec.key, None)
            # re-read under the lock: a build may have changed things since we looked
            infra = store.get_infra(self.name)
            records = store.instances(self.name)
            plan = plan_changes(template, infra, records, inputs, graph, counts, drop)
            now = time.time()
            changes = [a for a in plan.changes if not self._backing_off(a, now)]
            if not changes:
                return
            if len(changes) != len(plan.changes):
                plan.actions = [a for a in plan.actions if a.kind == NOOP or a in changes]
            healing = {a.key for a in changes if a.kind == CREATE and a.reason != "new instance"}
            self._event("maintain_acting", changes=len(changes), summary=plan.summary())
            result = BuildRun(template, infra, plan, graph, inputs, counts, store, self.options.run,
                              self.on_event).run()
            report.acted = True
            after = {r.key: r for r in store.instances(self.name)}
            for action in changes:
                rec = after.get(action.key)
                if action.kind == CREATE and (rec is None or rec.status != "ready"):
                    failures, _ = self._create_failures.get(action.key, (0, 0.0))
                    wait = min(self.options.retry_backoff * (2 ** failures), 300.0)
                    self._create_failures[action.key] = (failures + 1, time.time() + wait)
                else:
                    self._create_failures.pop(action.key, None)
                    if action.key in healing and self.loop_metrics.registry is not None:
                        self.loop_metrics.heals.labels(self.name, action.node).inc()
            for request in drop_requests:
                gone = all(key not in after for key in drop)
                store.finish_scale_request(request["id"], {"ok": gone, "desired": request.get("desired")})
            from orchestrator.service import compute_outputs
            outputs = compute_outputs(template, store, self.name, inputs, counts)
            store.set_infra_status(self.name, "ready" if result.ok else "failed", outputs)
            if not result.ok:
                report.errors.extend(f"{f['node']}[{f['index']}] {f['action'] if 'action' in f else ''}: {f['error']}"
                                     for f in result.failures)
            self._event("maintain_acted", ok=result.ok, failures=result.failures, summary=plan.summary(),
                        done=result.done, healed=len(healing))
        finally:
            store.release_lock(self.name)

    # -- running ------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Become the infrastructure's one maintain loop (LockHeld names the loop that already is)."""
        self.store.acquire_lease(self.name, f"{HOLDER} (pid {os.getpid()})")
        self._lease = True

    def release(self) -> None:
        if self._lease:
            self.store.release_lease(self.name)
            self._lease = False

    def run(self, stop: threading.Event | None = None, passes: int | None = None,
            on_report: Callable[[PassReport], None] | None = None) -> int:
        """Pass after pass every `interval` until `stop` is set, `passes` ran or the infrastructure is destroyed."""
        stop = stop or threading.Event()
        self.acquire()
        done = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                report = self.run_pass()
                done += 1
                if on_report is not None:
                    on_report(report)
                if report.gone or (passes is not None and done >= passes):
                    break
                stop.wait(max(0.0, self.options.interval - (time.monotonic() - started)))
        finally:
            self.release()
        return done


class _AlertMetric:
    """The metric an alert policy watches, shaped like a policy's MetricSpec."""

    def __init__(self, alert):
        props = alert.properties or {}
        self.query = str(props.get("metric") or "")
        self.name = self.query
        self.aggregation = str(props.get("aggregation") or "mean")
        self.quantile = props.get("quantile")


def resolve_instance(ident: str, node: str, records: list[InstanceRecord]) -> InstanceRecord | None:
    """An instance named by its key, `node[i]`, `node/i` or its index alone."""
    ident = str(ident).strip()
    for rec in records:
        if rec.node != node:
            continue
        if ident in (rec.key, f"{node}[{rec.index}]", f"{node}/{rec.index}", str(rec.index)):
            return rec
    return None


def prometheus_targets_path(store: StateStore, name: str) -> str:
    """Where the loop lists an infrastructure's scrape targets for Prometheus (file_sd_configs:
    files: [$STRATO_HOME/prometheus/*.json])."""
    return os.path.join(store.home, "prometheus", f"{name}.json")


def current_count(infra, node: str) -> int:
    """A node's desired count now: set by scale/a policy, else the descriptor's (with the stored inputs)."""
    if infra.desired.get(node) is not None:
        return int(infra.desired[node])
    from orchestrator import service
    template = service.stored_template(infra)
    if template is None or node not in template.node_templates:
        return 0
    return template.node_templates[node].instance_count(service.stored_inputs(template, infra))


def request_scale(store: StateStore, name: str, node: str, kind: str, value: int | None = None,
                  instance: str | None = None, wait: float = 0.0) -> dict:
    """Record a scale request; a running loop applies it on its next pass, otherwise this call runs one pass.

    Returns {request, applied_by, result}."""
    from orchestrator.service import UserError, require_infra
    infra = require_infra(store, name)
    if infra.dependencies and node not in infra.dependencies:
        raise UserError(f"infrastructure '{name}' has no node '{node}' (nodes: {', '.join(sorted(infra.dependencies))})")
    if kind == "to" and (value is None or value < 0):
        raise UserError("an instance count cannot be negative")
    request_id = store.add_scale_request(name, node, kind, value, instance)
    holder = store.lease_holder(name)
    out: dict[str, Any] = {"infrastructure": name, "node": node, "request": request_id}
    if holder is not None:
        out["applied_by"] = f"{holder['holder']} on {holder['host']}"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            done = store.scale_request(request_id)
            if done and done["applied"] is not None:
                break
            time.sleep(0.1)
    else:
        out["applied_by"] = "this command"
        maintainer = Maintainer(store, name, MaintainOptions(policies=False))
        maintainer.acquire()
        try:
            report = maintainer.run_pass()
        finally:
            maintainer.release()
        out["pass"] = {"acted": report.acted, "plan": report.plan, "errors": report.errors,
                       "deferred": report.deferred}
    done = store.scale_request(request_id)
    out["applied"] = bool(done and done["applied"])
    out["result"] = done["result"] if done else None
    if out["result"] and out["result"].get("desired") is not None:
        out["desired"] = out["result"]["desired"]
    return out


def maintain_all(store: StateStore, options: MaintainOptions, stop: threading.Event,
                 loop_metrics: LoopMetrics | None = None) -> None:
    """Maintain every infrastructure of a state store (what `strato serve --maintain` runs in a thread).

    An infrastructure whose lease another loop holds is left to that loop and looked at again later."""
    loop_metrics = loop_metrics or LoopMetrics()
    maintainers: dict[str, Maintainer] = {}
    while not stop.is_set():
        started = time.monotonic()
        names = {i.name for i in store.list_infras() if i.status not in ("new", "destroying")}
        for name in list(maintainers):
            if name not in names:
                maintainers.pop(name).release()
        for name in sorted(names):
            m = maintainers.get(name)
            if m is None:
                m = Maintainer(store, name, options, loop_metrics=loop_metrics)
                try:
                    m.acquire()
                except LockHeld:
                    continue
                maintainers[name] = m
            report = m.run_pass()
            if report.gone:
                maintainers.pop(name).release()
        stop.wait(max(0.0, options.interval - (time.monotonic() - started)))
    for m in maintainers.values():
        m.release()
