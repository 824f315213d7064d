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

import dataclasses
import gc
import json
import logging
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from descriptors.diagnostics import DescriptorError
from descriptors.secrets import Redactor, redactor_for
from drivers.base import Driver
from drivers.providers import get_driver
from orchestrator.executor import BuildRun, RunOptions
from orchestrator.metrics import (LoopMetrics, MetricsError, PrometheusSource, ScrapeSource, instance_metrics_url,
                                  is_loopback, write_file_sd)
from orchestrator.plan import CREATE, NOOP, desired_counts, plan_changes
from orchestrator.state import InstanceRecord, LockHeld, StateStore

log = logging.getLogger("strato.maintain")

ALERT_TYPE = "strato.policies.Alert"
HOLDER = "strato maintain"
# Drivers whose observe() is a local lookup; others (cloud APIs) are observed from a thread pool.
CHEAP_OBSERVE = {"noop", "sleep", "local"}


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


@dataclass
class PassReport:
    infrastructure: str
    started: float
    duration: float = 0.0
    instances: int = 0
    healthy: int = 0
    missing: list[str] = field(default_factory=list)
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

@dataclass
class HealthResult:
    ok: bool
    detail: str = ""
    latency_ms: float = 0.0


def _instance_host_port(rec: InstanceRecord) -> tuple[str | None, int | None]:
    attrs = rec.attributes or {}
    return attrs.get("host") or (rec.handle or {}).get("host"), attrs.get("port") or (rec.handle or {}).get("port")


def run_health_check(check: dict, rec: InstanceRecord, timeout: float) -> HealthResult | None:
    """All configured checks of one instance; None when there is nothing the loop may check.

    Only loopback hosts are contacted: an address a cloud (or an emulator) returned is judged by the
    driver's own observe() alone."""
    host, port = _instance_host_port(rec)
    timeout = float(check.get("timeout") or timeout)
    timeout = min(timeout, 10.0)
    started = time.perf_counter()
    checked = False
    local = is_loopback(host)
    paths = []
    if check.get("http"):
        paths.append(str(check["http"]))
    urls = [str(u) for u in (check.get("urls") or [])]
    if local and port:
        urls += [f"http://{host}:{port}{p if p.startswith('/') else '/' + p}" for p in paths]
    expect = check.get("expect_status")
    for url in urls:
        from urllib.parse import urlsplit
        if not is_loopback(urlsplit(url).hostname):
            continue
        checked = True
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                code = resp.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (OSError, ValueError) as exc:
            return HealthResult(False, f"HTTP {url}: {getattr(exc, 'reason', exc)}")
        good = code == int(expect) if expect is not None else 200 <= code < 400
        if not good:
            return HealthResult(False, f"HTTP {url} answered {code}" + (f", expected {expect}" if expect else ""))
    if check.get("tcp") and local and port:
        checked = True
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
        except OSError as exc:
            return HealthResult(False, f"TCP {host}:{port}: {exc.strerror or exc}")
    command = check.get("command")
    if command:
        checked = True
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        env = dict(os.environ, STRATO_INSTANCE_KEY=rec.key, STRATO_INSTANCE_HOST=str(host or ""),
                   STRATO_INSTANCE_PORT=str(port or ""))
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return HealthResult(False, f"command timed out after {timeout:g} s")
        except OSError as exc:
            return HealthResult(False, f"command could not start: {exc.strerror or exc}")
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-1:]
            return HealthResult(False, f"command exited {proc.returncode}" + (f": {tail[0]}" if tail else ""))
    if not checked:
        return None
    return HealthResult(True, "", 1000.0 * (time.perf_counter() - started))


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
        live = [r for r in records if r.status == "ready" and r.handle is not None]
        observed = self._observe(live, report)
        healthy: dict[str, list[InstanceRecord]] = {}
        vanished: dict[str, InstanceRecord] = {}
        to_check: list[tuple[InstanceRecord, dict]] = []
        for rec in live:
            obs = observed.get(rec.key)
            if obs is None:          # the backend could not answer: keep what we knew
                healthy.setdefault(rec.node, []).append(rec)
                continue
            if not obs.alive:
                report.missing.append(rec.key)
                vanished[rec.key] = dataclasses.replace(rec, status="missing")  # records may be cached: copy
                if not opts.dry_run:
                    store.update_instance(rec.key, status="missing", error=obs.detail or "gone",
                                          event="missing", event_detail={"detail": obs.detail}, infra=self.name)
                self.on_event({"event": "missing", "key": rec.key, "detail": obs.detail, "ts": now})
                continue
            check = (template.node_templates[rec.node].properties.get("health_check")
                     if rec.node in template.node_templates else None)
            if isinstance(check, dict) and obs.status == "running":
                to_check.append((rec, check))
            else:
                healthy.setdefault(rec.node, []).append(rec)

        if vanished:
            records = [vanished.get(r.key, r) for r in records]

        # 2. health checks ------------------------------------------------------
        replace: list[InstanceRecord] = []
        health_latency: dict[str, list[float]] = {}
        if to_check:
            failing = store.failing(self.name)
            with ThreadPoolExecutor(max_workers=min(16, len(to_check))) as pool:
                results = list(pool.map(lambda item: run_health_check(self._resolved_check(item[1]), item[0],
                                                                      opts.health_timeout), to_check))
            for (rec, check), result in zip(to_check, results):
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
    def _drivers(self, names) -> dict[str, Driver | None]:
        out = {}
        for name in names:
            try:
                out[name] = get_driver(name)
            except LookupError:
                out[name] = None
        return out

    def _observe(self, live: list[InstanceRecord], report: PassReport) -> dict:
        drivers = self._drivers({r.driver for r in live})
        results: dict[str, Any] = {}
        slow: list[InstanceRecord] = []

        def one(rec):
            driver = drivers.get(rec.driver)
            if driver is None:
                return rec, None, f"no driver named '{rec.driver}'"
            try:
                return rec, driver.observe(rec.handle), None
            except Exception as exc:  # a backend error: keep the instance as it was, report, retry next pass
                return rec, None, f"{type(exc).__name__}: {exc}"

        outcomes = []
        for rec in live:
            if rec.driver in CHEAP_OBSERVE:
                outcomes.append(one(rec))
            else:
                slow.append(rec)
        if slow:
            with ThreadPoolExecutor(max_workers=min(16, len(slow))) as pool:
                outcomes.extend(pool.map(one, slow))
        for rec, obs, error in outcomes:
            if error is not None:
                report.errors.append(f"observe {rec.key}: {error}")
                self._event("observe_failed", rec.key, once=f"observe:{rec.key}", error=error)
            else:
                results[rec.key] = obs
        return results

    @staticmethod
    def _resolved_check(check: dict) -> dict:
        from descriptors.yamlpos import to_plain
        return to_plain(check)

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
                    targets[rec.key] = url
        if targets and self.prometheus is None:
            self.scraper.scrape(targets)
        elif targets:
            # with Prometheus in charge the built-in probes still come from the instances themselves
            self.scraper.scrape(targets)
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
        from policies.base import Observation
        controls = self.store.node_controls(self.name)
        now = time.time()
        for node, items in self._policies.items():
            if node not in template.node_templates or not items:
                continue
            tmpl = template.node_templates[node]
            low, high = self._bounds(tmpl, self._loaded[1])
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
                              instance_ids=tuple(r.key for r in live),
                              min_instances=low, max_instances=high,
                              target=target, extra={"infrastructure": self.name})
            if not self.options.dry_run:
                self.store.add_sample(self.name, node, counts[node], target,
                                      {k: v for k, v in values.items() if k not in ("instances",)})
            chosen = None
            for policy in items:
                pid = self._policy_id(policy)
                period = getattr(policy, "period_s", None) or 0.0
                last_eval = self._last_eval.get((node, pid))
                if last_eval is not None and now - last_eval < period - 0.05 * self.options.interval:
                    continue   # the template asks for this policy less often than the loop passes
                self._last_eval[(node, pid)] = now
                try:
                    decision = policy.decide(obs)
                except Exception as exc:  # PolicyError or a bug inside the policy: report it as broken
                    absent = self._absent_metrics(policy, values)
                    if absent:  # no data yet (a first scrape has no rates, no requests no latency): a wait
                        reason = f"waiting for metric(s) {', '.join(absent)}"
                        report.decisions.append({"node": node, "policy": pid, "current": counts[node],
                                                 "desired": counts[node], "reason": reason})
                        if self._last_reason.get((node, pid)) != reason:
                            self._last_reason[(node, pid)] = reason
                            self._event("decision", node=node, policy=pid, current=counts[node],
                                        desired=counts[node], action="hold", reason=reason)
                        continue
                    self.loop_metrics.policy_errors.labels(self.name, pid).inc() if self.loop_metrics.registry else None
                    report.decisions.append({"node": node, "policy": pid, "error": str(exc)})
                    self._event("policy_broken", once=f"decide:{node}:{pid}", node=node, policy=pid,
                                error=f"{type(exc).__name__}: {exc}")
                    continue
                try:
                    policy.learn(obs)
                except Exception as exc:
                    self._event("policy_broken", once=f"learn:{node}:{pid}", node=node, policy=pid,
                                error=f"learning failed: {type(exc).__name__}: {exc}")
                self._save_policy_state(policy, node)
                entry = {"node": node, "policy": pid, "current": counts[node], "desired": int(decision.desired),
                         "reason": decision.reason, "drop": list(decision.drop)}
                report.decisions.append(entry)
                if chosen is None or decision.desired > chosen[1].desired:
                    chosen = (policy, decision, entry)  # several policies on one node: the largest count wins (HPA)
            if chosen is None:
                continue
            policy, decision, entry = chosen
            pid = self._policy_id(policy)
            desired = min(max(low, int(decision.desired)), high)
            predicted = (decision.detail or {}).get("predicted_target")
            if desired == counts[node]:
                if self._last_reason.get((node, pid)) != decision.reason:
                    self._last_reason[(node, pid)] = decision.reason
                    self._event("decision", node=node, policy=pid, current=counts[node], desired=desired,
                                action="hold", reason=decision.reason)
                if isinstance(predicted, (int, float)):
                    self._predictions[node] = float(predicted)
                continue
            cooldown = float(getattr(policy, "cooldown_s", 0.0) or 0.0)
            last = controls.get(node, {}).get("last_action")
            if cooldown and last and now - last < cooldown:
                reason = f"{decision.reason}; held: cooldown {cooldown:g} s, {now - last:.1f} s since the last action"
                if self._last_reason.get((node, pid)) != reason.split(";")[0] + "cooldown":
                    self._last_reason[(node, pid)] = reason.split(";")[0] + "cooldown"
                    self._event("decision", node=node, policy=pid, current=counts[node], desired=desired,
                                action="cooldown", reason=reason)
                continue
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
                        healed=len(healing))
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
    template = service._stored_template(infra)
    if template is None or node not in template.node_templates:
        return 0
    return template.node_templates[node].instance_count(service._stored_inputs(template, infra))


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
