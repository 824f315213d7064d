"""The maintain loop: a level-triggered reconcile of one infrastructure, pass by pass.

Each pass re-derives everything from the descriptor, the state store and what the backends say now,
like controller-runtime's Reconcile(request) -> Result with a requeue time; what must survive a
restart (scale requests, cooldowns, policy state, health-failure start times, samples, the loop's
lease) lives in the state store. A pass computes first and commits after (Nomad's reconcile.Compute()):
 1. observe every instance and probe its health checks (orchestrator/health.py);
 2. decide, writing nothing: metrics, alerts and policies (orchestrator/autoscale.py), manual scale
    requests (orchestrator/scaling.py), each node's min/max;
 3. write the decisions once, each an event with its reason;
 4. one plan, acted on under the infrastructure's lock (held only while acting): failed instances
    replaced, missing ones recreated, counts changed.
A driver error, an unreachable metrics source or a broken policy is reported and the loop goes on.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from descriptors.diagnostics import DescriptorError
from descriptors.secrets import Redactor, redactor_for
from drivers.providers import get_driver
from orchestrator import health, scaling, service
from orchestrator.autoscale import Autoscaler, Decisions, file_sd_targets, notify, prometheus_targets_path
from orchestrator.executor import BuildRun, RunOptions
from orchestrator.health import Seen
from orchestrator.metrics import LoopMetrics, write_file_sd
from orchestrator.mlops import routing
from orchestrator.mlops.monitoring import ModelMonitor
from orchestrator.mlops.rollout import RolloutController
from orchestrator.plan import CREATE, NOOP, plan_changes
from orchestrator.scaling import desired_counts
from orchestrator.state import InstanceRecord, LockHeld, StateDamaged, StateStore

log = logging.getLogger("strato.maintain")

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
    requeue_after: float = 0.0   # seconds until the next pass is due (the loop's interval, counted from the start)

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if k == "duration" else v) for k, v in self.__dict__.items()}


class Maintainer:
    """Reconciles one infrastructure, one pass at a time (`run_pass`), or for as long as asked (`run`)."""

    def __init__(self, store: StateStore, name: str, options: MaintainOptions | None = None,
                 policy_factory: Callable[..., dict[str, list]] | None = None,
                 loop_metrics: LoopMetrics | None = None, on_event: Callable[[dict], None] | None = None,
                 template=None):
        self.store, self.name = store, name
        self.options = options or MaintainOptions()
        self.loop_metrics = loop_metrics or LoopMetrics()
        self.on_event = on_event or (lambda e: None)
        self.autoscaler = Autoscaler(store, name, self.options, policy_factory, self.loop_metrics)
        self.rollout = RolloutController(store, name, self.options.dry_run)   # model servers' new versions
        self._read = template   # the stored descriptor when the caller has read it already (not read again)
        self._template_key: tuple | None = None
        self._loaded = None
        self._redact = Redactor([])  # masks the secret inputs' text in journaled events (a probe's error)
        self._last_error: dict[str, str] = {}
        self._create_failures: dict[str, tuple[int, float]] = {}  # key -> (failures, not before)
        self._lease = False
        self._records: dict[str, InstanceRecord] = {}   # decoded rows by key, reused while their version holds
        self.models = ModelMonitor(store, name, self._event, lambda once: self._last_error.pop(once, None),
                                   self.loop_metrics)   # model servers' drift and accuracy; continuous training

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
    def _load(self, report: PassReport) -> tuple | None:
        """(infrastructure record, loaded descriptor, inputs), or None when there is nothing to reconcile."""
        infra = self.store.get_infra(self.name)
        if infra is None or not infra.descriptor:
            report.gone = infra is None
            report.errors.extend([] if infra is None else ["no stored descriptor; run strato build first"])
            return None
        try:
            stamp = os.stat(infra.descriptor).st_mtime_ns
        except OSError:
            stamp = None
        key = (infra.descriptor, stamp, json.dumps(infra.inputs, sort_keys=True, default=str))
        try:
            if key != self._template_key:
                # the descriptor was accepted when it was built; imports are read as the CLI reads them
                loaded = service.load_checked(infra.descriptor, confined=False, template=self._read)
                self._read = None
                inputs = service.resolve_inputs(loaded.template, {k: v for k, v in infra.inputs.items()
                                                                  if k in loaded.template.inputs})
                self._loaded, self._template_key = (loaded, inputs), key
                self._redact = redactor_for(loaded.template, inputs)
                for event in self.autoscaler.build(loaded.template, inputs):
                    self._event(event.kind, event.key, once=event.once, **event.detail)
        except (DescriptorError, OSError) as exc:
            text = "; ".join(d.format() for d in exc.diagnostics) if isinstance(exc, DescriptorError) else str(exc)
            report.errors.append(f"descriptor: {text}")
            self._event("maintain_error", once="descriptor", error=f"descriptor: {text}")
            return None
        return (infra, *self._loaded)

    # -- one pass --------------------------------------------------------------
    def run_pass(self) -> PassReport:
        """Reconcile once; the report says what was seen, decided and done, and when the next pass is due."""
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
        report.requeue_after = max(0.0, self.options.interval - report.duration)
        return report

    def _pass(self, report: PassReport) -> None:
        loaded = self._load(report)
        if loaded is None:
            return
        infra, (template, graph), inputs = loaded[0], (loaded[1].template, loaded[1].graph), loaded[2]
        template, graph = self.rollout.view(template, graph, infra, inputs)   # pinned versions, canary nodes
        records = self.store.instances(self.name, self._records)
        report.instances = len(records)
        now = time.time()
        # 1. observe
        seen = self._observe(template, records, report, now)
        verdicts = self._check_health(seen, now, report)
        report.healthy = sum(len(v) for v in seen.healthy.values())
        # 2. decide (nothing is written yet)
        counts = desired_counts(template, infra, inputs)
        decided, drop = Decisions(), set()
        metrics = self.autoscaler.collect(template, seen.healthy, counts, verdicts.latency, decided)
        self.autoscaler.evaluate_alerts(template, metrics, decided)
        requests = scaling.resolve_requests(self.store.pending_scale_requests(self.name), template, inputs, counts,
                                            seen.records, drop)
        report.requests = [{**request, **result} for request, result in requests]
        self.rollout.step(template, seen, counts, decided, now)
        if self.options.policies:
            self.autoscaler.decide(template, inputs, counts, seen.healthy, metrics, seen.records, drop, now,
                                   decided)
        self.rollout.hold_scaling(decided, counts)   # the autoscaler waits while a rollout step moves weights
        bounded = self._bound(template, inputs, counts, decided)
        # 3. write the decisions once
        drop_requests = self._commit(decided, requests, bounded, counts, report)
        self.models.run_pass(template, inputs, seen.healthy, self.options.dry_run)
        # 4. plan and act
        self._reconcile(infra, template, graph, inputs, seen.records, counts, frozenset(drop), verdicts.failed,
                        drop_requests, now, report)
        # 5. routers follow the instances ready now (a replica made by this pass is routed by it)
        if not self.options.dry_run:
            self._route(template, None if report.acted else seen.records, report)

    # -- 1. observe ---------------------------------------------------------------------------------
    def _observe(self, template, records: list[InstanceRecord], report: PassReport, now: float) -> Seen:
        """Observe every instance (health.observe), reporting what went wrong."""
        def unknown(rec: InstanceRecord, detail: str) -> None:
            report.errors.append(f"observe {rec.key}: {detail}")
            self._event("observe_failed", rec.key, once=f"observe:{rec.key}", error=detail)

        seen = health.observe(self.store, self.name, template, records, not self.options.dry_run, unknown)
        for key, detail in seen.missing:
            report.missing.append(key)
            self.on_event({"event": "missing", "key": key, "detail": detail, "ts": now})
        report.unknown.extend(seen.unknown)
        return seen

    def _check_health(self, seen: Seen, now: float, report: PassReport) -> health.Verdicts:
        """Judge the health checks (health.judge) and record who started failing and who recovered."""
        opts = self.options
        failing = self.store.failing(self.name) if seen.to_check else {}
        grace = opts.default_grace if opts.default_grace is not None else 2 * opts.interval
        verdicts = health.judge(seen, failing, opts.health_timeout, now, grace)
        for change in verdicts.changes:
            rec = change[1]
            if change[0] == "recovered" and not opts.dry_run:
                self.store.set_failing(self.name, rec.key, None)
                self._event("recovered", rec.key, node=rec.node)
            elif change[0] == "unhealthy":
                if not opts.dry_run:
                    self.store.set_failing(self.name, rec.key, now, change[2])
                self._event("unhealthy", rec.key, node=rec.node, detail=change[2], grace_s=change[3])
        report.failed.extend(r.key for r in verdicts.failed)
        report.unhealthy.extend(r.key for r in verdicts.unhealthy)
        return verdicts

    def _route(self, template, records: list[InstanceRecord] | None, report: PassReport,
               leaving: frozenset[str] = frozenset()) -> None:
        """Sync each Router node with its routed node's ready instances; a change is an event, a failure an error."""
        for outcome in routing.sync_routers(self.store, self.name, template, records, self.rollout.weights_for,
                                            leaving=leaving, servers_for=self.rollout.servers_for):
            if outcome.error:
                report.errors.append(f"route {outcome.key}: {outcome.error}")
                self._event("route_failed", outcome.key, once=f"route:{outcome.key}", error=outcome.error)
            elif outcome.report.changed or outcome.report.draining:
                self._last_error.pop(f"route:{outcome.key}", None)
                self._event("routed", outcome.key, node=outcome.router, target=outcome.target,
                            servers=outcome.servers, **outcome.report.to_dict())

    def _backing_off(self, action, now: float) -> bool:
        """An instance whose create keeps failing is retried with exponential backoff, not every pass."""
        entry = self._create_failures.get(action.key)
        return bool(entry) and action.kind == CREATE and now < entry[1]

    # -- 2. decide -------------------------------------------------------------------------------------
    def _bound(self, template, inputs: dict, counts: dict, decided: Decisions) -> dict[str, int]:
        """Each node's count within its min/max (and Strato's ceiling): node -> the count it was brought to."""
        bounded = {}
        for node, tmpl in template.node_templates.items():
            low, high = scaling.node_limits(tmpl, inputs)
            count = min(max(low, counts[node]), high)
            if count != counts[node]:
                decided.event("bounded", node=node, desired=count, reason=f"{counts[node]} is outside min {low} / max {high}")
                bounded[node] = counts[node] = count
        return bounded

    # -- 3. write ----------------------------------------------------------------------------------------
    def _commit(self, decided: Decisions, requests: list[tuple[dict, dict]], bounded: dict[str, int],
                counts: dict, report: PassReport) -> list[dict]:
        """Write what the pass decided, once (a dry run only reports it); returns the drop requests that finish
        when their instance is gone."""
        for once in decided.forget:
            self._last_error.pop(once, None)
        for event in decided.events:
            self._event(event.kind, event.key, once=event.once, **event.detail)
        self._write_alerts(decided.alerts, report)
        drop_requests = self._write_requests(requests, counts)
        report.decisions, report.metrics = decided.decisions, decided.metrics
        report.errors.extend(decided.errors)
        if not self.options.dry_run:
            for node, count, target, values in decided.samples:
                self.store.add_sample(self.name, node, count, target, values)
            for policy, node, state in decided.states:
                self.store.save_policy_state(self.name, policy, node, state)
        for action in decided.scaled:
            if not self.options.dry_run:
                self.store.record_scaling(self.name, action["node"], action["desired"], action["direction"],
                                          action["policy"], {"from": action["from"], "reason": action["reason"],
                                                             "detail": action["detail"]})
            self.on_event({"event": "scaled", **{k: action[k] for k in ("node", "from", "desired", "policy",
                                                                         "reason", "ts")}})
        for node, count in bounded.items() if not self.options.dry_run else ():
            self.store.set_desired_count(self.name, node, count)
        return drop_requests

    def _write_alerts(self, alerts: list[dict], report: PassReport) -> None:
        for alert in alerts:
            firing, webhook = alert.pop("firing"), alert.pop("webhook")
            report.alerts.append(dict(alert))
            detail = {k: v for k, v in alert.items() if k != "event"}
            self._event(alert["event"], **detail)
            if self.options.dry_run:
                continue
            self.store.save_policy_state(self.name, alert["alert"], alert["node"],
                                         {"firing": firing, "since": time.time()})
            if webhook:
                notify(str(webhook), dict(alert), lambda url, error: self._event(
                    "webhook_failed", once=f"webhook:{url}", url=url, error=error))

    def _write_requests(self, requests: list[tuple[dict, dict]], counts: dict) -> list[dict]:
        """Each request's new count and its outcome; a drop finishes only once its instance is gone."""
        drop_requests = []
        for request, result in requests if not self.options.dry_run else ():
            node, kind = request["node"], request["kind"]
            if result["ok"]:
                self.store.set_desired_count(self.name, node, result["desired"])
                self._event("scaled", node=node, count=result["desired"], request=request["id"], kind=kind)
            if result["ok"] and kind == scaling.ScaleKind.DROP:
                drop_requests.append({**request, **result})
                continue
            self.store.finish_scale_request(request["id"], result)
            self._event("scale_request_applied" if result["ok"] else "scale_request_refused", node=node,
                        kind=kind, value=request.get("value"), instance=request.get("instance"), **result)
        return drop_requests

    # -- 4. plan and act ---------------------------------------------------------------------------------
    def _reconcile(self, infra, template, graph, inputs, records, counts, drop: frozenset, replace,
                   drop_requests: list[dict], now: float, report: PassReport) -> None:
        """One plan for what the decisions asked; acted on unless a destroy is under way (or this is a dry run)."""
        if self.autoscaler.prometheus is not None and not self.options.dry_run:  # Prometheus's file_sd targets
            write_file_sd(prometheus_targets_path(self.store, self.name), file_sd_targets(self.name, records))
        states = Counter((rec.node, rec.status) for rec in records)
        plan = plan_changes(template, infra, records, inputs, graph, counts, drop)
        changes = [a for a in plan.changes if not self._backing_off(a, now)]
        report.plan = plan.summary()
        report.planned = [a.to_dict() for a in changes]
        if infra.status in ("destroying", "destroy_failed"):
            if changes or replace:   # never rebuild what a destroy is taking down
                report.deferred = f"infrastructure is {infra.status.replace('_', ' ')}; run strato destroy again"
        elif (changes or replace) and not self.options.dry_run:
            leaving = frozenset(a.key for a in changes if a.kind != CREATE) | {r.key for r in replace}
            if leaving:   # routers stop sending requests to what is about to go, and let those in flight finish
                self._route(template, records, report, leaving)
            self._act(template, graph, inputs, counts, drop, replace, drop_requests, report)
        elif not self.options.dry_run:
            for request in drop_requests:  # already carried out (e.g. the instance was gone)
                self.store.finish_scale_request(request["id"], {"ok": True})
        self.loop_metrics.observe_pass(self.name, 0.0 if not report.started else time.time() - report.started,
                                       states)

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
            outputs = service.compute_outputs(template, store, self.name, inputs, counts)
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
                stop.wait(max(0.0, report.requeue_after - (time.monotonic() - started) + report.duration))
        finally:
            self.release()
        return done



def request_scale(store: StateStore, name: str, node: str, kind: str, value: int | None = None,
                  instance: str | None = None, wait: float = 0.0, template=None) -> dict:
    """Record a scale request (checked first with scaling.check_scale) and see it applied: by the running loop
    on its next pass (waiting up to `wait` seconds), otherwise by one pass run here.

    `template`: the stored descriptor when the caller has read it already. Returns {request, applied_by, result}."""
    request_id = scaling.record_request(store, name, node, kind, value, instance)
    return apply_request(store, name, node, request_id, wait, template)


def apply_request(store: StateStore, name: str, node: str, request_id: int, wait: float = 0.0,
                  template=None) -> dict:
    """See a recorded request applied (request_scale); what the pass did, when this call ran one, is under `pass`."""
    out: dict[str, Any] = {"infrastructure": name, "node": node, "request": request_id}
    holder = store.lease_holder(name)
    if holder is None:
        maintainer = Maintainer(store, name, MaintainOptions(policies=False), template=template)
        try:
            maintainer.acquire()
        except LockHeld:   # a loop started meanwhile: it applies the request
            holder = store.lease_holder(name)
        else:
            try:
                report = maintainer.run_pass()
            finally:
                maintainer.release()
            return scaling.request_outcome(store, request_id, {
                **out, "applied_by": "this command", "pass": {"acted": report.acted, "plan": report.plan,
                                                              "errors": report.errors, "deferred": report.deferred}})
    scaling.wait_applied(store, request_id, wait)
    by = f"{holder['holder']} on {holder['host']}" if holder else "a maintain loop"
    return scaling.request_outcome(store, request_id, {**out, "applied_by": by})


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
