"""The executor: runs a plan's driver calls in a bounded pool; each node starts as soon as its own dependencies are done.

All state writes happen on the calling thread (intent before each driver call, result after);
worker threads only talk to backends. A failed node stops only its dependents.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx

from descriptors.functions import FunctionError, Unresolved
from descriptors.secrets import redactor, redactor_for
from descriptors.template import Template
from drivers.base import Driver, DriverError, InstanceSpec
from drivers.providers import get_driver
from orchestrator import lifecycle, placement
from orchestrator.mlops import pinning
from orchestrator.observation import describe as _describe
from orchestrator.plan import (CREATE, DELETE, NOOP, REPLACE, Action, AttributeView, Plan, make_resolver,
                               node_properties, spec_hash)
from orchestrator.state import InfraRecord, StateStore
from orchestrator.states import OBSERVED, InstanceStatus

log = logging.getLogger("strato.executor")
EventSink = Callable[[dict], None]
NODE_DRIVER = "strato_driver"  # in a node's stored attributes: the driver that prepared them


@dataclass
class RunOptions:
    parallelism: int = 32
    timeout: float = 600.0      # per driver operation
    retries: int = 2            # extra attempts for errors a driver marks retryable
    backoff: float = 0.5        # seconds, doubled per attempt
    lock_wait: float = 0.0      # seconds to wait for the infrastructure's lock (a loop's pass) before refusing


@dataclass
class NodeOutcome:
    name: str
    status: str = "waiting"     # waiting | running | done | failed | skipped
    error: str | None = None
    instances: int = 0


def no_work() -> dict[str, int]:
    """What a run did, per kind of action: counted from results, not from the plan."""
    return {CREATE: 0, REPLACE: 0, DELETE: 0, NOOP: 0, "failed": 0, "skipped": 0, "adopted": 0,
            InstanceStatus.UNKNOWN: 0}


@dataclass
class RunResult:
    ok: bool
    nodes: dict[str, NodeOutcome]
    duration: float
    failures: list[dict] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=no_work)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "duration_s": round(self.duration, 3), "failures": self.failures, "done": self.done,
                "nodes": {n: {"status": o.status, "error": o.error, "instances": o.instances}
                          for n, o in self.nodes.items()}}


class _Job:
    __slots__ = ("node", "index", "key", "kind", "deadline", "timed_out", "prior_handle", "spec", "driver",
                 "hash", "started")

    def __init__(self, node, index, key, kind, deadline, prior_handle=None, spec=None, driver=None, hash_=None):
        self.node, self.index, self.key, self.kind = node, index, key, kind
        self.deadline, self.timed_out, self.prior_handle = deadline, False, prior_handle
        self.spec, self.driver, self.hash = spec, driver, hash_
        self.started = time.monotonic()


def _with_retries(fn, options: RunOptions):
    attempt = 0
    while True:
        try:
            return fn()
        except DriverError as exc:
            if not exc.retryable or attempt >= options.retries:
                raise
            time.sleep(min(options.backoff * (2 ** attempt), 10.0))
            attempt += 1


def _create_instance(driver: Driver, spec: InstanceSpec, prior_handle: dict | None, adopt: bool,
                     options: RunOptions) -> tuple[dict, dict, bool]:
    """Worker side of create/replace: adopt what a crashed run left, else create; return (handle, attrs, adopted)."""
    if prior_handle is not None:  # replace: in place when the driver can (e.g. an endpoint's count), else old first
        handle = _with_retries(lambda: driver.update(prior_handle, spec), options)
        if handle is not None:
            return handle, driver.observe(handle).attributes, False
        _with_retries(lambda: driver.delete(prior_handle), options)
    handle = _with_retries(lambda: driver.find(spec.key, spec), options) if adopt else None
    if handle is not None:
        handle = _adopted_when_ready(driver, spec, handle)
    adopted = handle is not None
    if handle is None:
        handle = _with_retries(lambda: driver.create(spec), options)
    observed = driver.observe(handle)
    # Standard operations implemented by playbooks, for drivers that do not run them on their own machines.
    handle, attributes = lifecycle.after_create(driver, spec, handle,
                                                {**lifecycle.stored_attributes(handle), **observed.attributes})
    return handle, attributes, adopted


def _adopted_when_ready(driver: Driver, spec: InstanceSpec, handle: dict) -> dict | None:
    """What a crashed run left (found by its key), once it passes the readiness a fresh create waits for; None
    (and removed) when it is gone or never gets ready, so that a new one is created in its place."""
    if not driver.observe(handle).alive:
        driver.delete(handle)
        return None
    try:
        return driver.adopt(handle, spec)
    except DriverError as exc:
        log.warning("%s: the instance an interrupted run left did not get ready (%s); creating a new one",
                    spec.key, exc)
        return None


class BuildRun:
    """Carry out a plan for one infrastructure."""

    def __init__(self, template: Template, infra: InfraRecord, plan: Plan, graph: nx.DiGraph, inputs: dict,
                 counts: dict[str, int], store: StateStore, options: RunOptions, on_event: EventSink | None = None):
        self.template, self.infra, self.plan, self.graph = template, infra, plan, graph
        self.inputs, self.counts, self.store, self.options = inputs, counts, store, options
        self.on_event = on_event or (lambda e: None)
        self.records = {r.key: r for r in store.instances(infra.name)}
        self.view = AttributeView(counts)
        self.view.node_attrs.update({k: dict(v) for k, v in infra.node_attributes.items()})
        leaving = {a.key for a in plan.actions if a.kind == DELETE}
        for rec in self.records.values():
            if rec.status in OBSERVED and rec.key not in leaving:
                self.view.instance_attrs[(rec.node, rec.index)] = rec.attributes
        self.resolver = make_resolver(template, inputs, self.view)
        # errors are stored, journaled and shown: a backend's message may quote a secret input (a command line)
        self.redact = redactor_for(template, inputs)
        self.by_node: dict[str, list[Action]] = {}
        self.deletes: list[Action] = []
        for action in plan.actions:
            if action.kind == DELETE:
                self.deletes.append(action)
            else:
                self.by_node.setdefault(action.node, []).append(action)
        self.outcomes = {n: NodeOutcome(n) for n in template.node_templates}
        self.pending: dict[str, int] = {}
        self.failures: list[dict] = []
        self.done = no_work()
        self.infra_dir = os.path.join(store.home, "infrastructures", infra.name)

    # -- events -------------------------------------------------------------
    def emit(self, kind: str, node: str | None = None, index: int | None = None, **detail: Any) -> None:
        event = {"event": kind, "node": node, "index": index, "ts": time.time(), **detail}
        self.on_event(event)

    # -- scheduling ---------------------------------------------------------
    def run(self) -> RunResult:
        started = time.monotonic()
        waiting_on = {n: set(self.graph.successors(n)) for n in self.template.node_templates}
        dependents = {n: set(self.graph.predecessors(n)) for n in self.template.node_templates}
        futures: dict[Future, _Job] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallelism), thread_name_prefix="strato")
        ready = [n for n, deps in waiting_on.items() if not deps]
        try:
            for action in self.deletes:
                self._submit_delete(pool, futures, action)
            while ready or futures:
                while ready:
                    self._start_node(ready.pop(), pool, futures, ready, dependents, waiting_on)
                if not futures:
                    break
                now = time.monotonic()
                next_deadline = min(j.deadline for j in futures.values())
                done, _ = wait(list(futures), timeout=max(0.0, next_deadline - now), return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    self._finish_job(job, fut, ready, dependents, waiting_on)
                now = time.monotonic()
                for fut, job in list(futures.items()):
                    if not job.timed_out and now >= job.deadline:
                        job.timed_out = True
                        self._job_failed(job, f"timed out after {self.options.timeout:g} s", ready, dependents,
                                         waiting_on)
                        # The thread may still finish later; its result is then recorded (no leak).
                        futures.pop(fut)
                        fut.add_done_callback(lambda f, j=job: self._late_result(j, f))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        ok = not self.failures and all(o.status == "done" for o in self.outcomes.values())
        counted = sum(v for k, v in self.done.items() if k != "adopted")
        self.done["skipped"] = max(0, len(self.plan.actions) - counted)  # nodes never started (a dependency failed)
        return RunResult(ok, self.outcomes, time.monotonic() - started, self.failures, self.done)

    def _start_node(self, node: str, pool, futures, ready, dependents, waiting_on) -> None:
        outcome = self.outcomes[node]
        outcome.status = "running"
        tmpl_driver = self.template.driver_name(node)
        actions = self.by_node.get(node, [])
        try:
            props = self._pin_model(node, node_properties(self.template, node, self.resolver))
            operations = lifecycle.resolved_operations(self.template, node, self.resolver)
            want_hash = spec_hash(self.template, node, props, tmpl_driver or "?")
            # A node with `implementations` is built by the composite `placement` driver.
            driver_name, props = placement.route(node, tmpl_driver, props)
            if driver_name is None:
                raise DriverError(f"type '{self.template.node_templates[node].type}' names no backend driver; "
                                  "set metadata 'strato.driver' on the node")
            driver = get_driver(driver_name)
        except (DriverError, LookupError, FunctionError, Unresolved, pinning.ModelPinError) as exc:
            self._node_failed(node, str(exc), ready, dependents, waiting_on)
            return
        base_spec = dict(infra=self.infra.name, node=node, type=self.template.node_templates[node].type,
                         properties=props,
                         metadata=lifecycle.spec_metadata(self.template.node_metadata(node), operations, {
                             dep: [self.view.instance_attrs.get((dep, i), {}) for i in range(self.counts.get(dep, 0))]
                             for dep in self.graph.successors(node)}),
                         descriptor_dir=self.template.directory, infra_dir=self.infra_dir,
                         timeout=self.options.timeout)
        if any(a.kind != NOOP or a.maybe for a in actions):
            stored = self.view.node_attrs.get(node) or {}
            try:
                attrs = driver.prepare_node(InstanceSpec(key="", index=-1, node_attributes=dict(stored), **base_spec))
            except DriverError as exc:
                self._node_failed(node, str(exc), ready, dependents, waiting_on)
                return
            if attrs:
                attrs = {**attrs, NODE_DRIVER: driver_name}  # whose release_node undoes it at destroy
            if attrs and attrs != stored:
                self.view.node_attrs[node] = attrs
                self.store.set_node_attributes(self.infra.name, node, attrs)
        node_attrs = self.view.node_attrs.get(node, {})
        submitted = 0
        for action in actions:
            rec = self.records.get(action.key)
            kind = action.kind
            if action.unknown or (kind == NOOP and rec is not None and rec.status == InstanceStatus.UNKNOWN):
                self.done[InstanceStatus.UNKNOWN] += 1  # not observed: neither kept as ready nor touched
                continue
            if kind == NOOP or (kind == REPLACE and action.maybe):
                if rec is not None and rec.spec_hash == want_hash:
                    self.done[NOOP] += 1
                    continue
                kind = REPLACE
            spec = InstanceSpec(key=action.key, index=action.index, node_attributes=node_attrs, **base_spec)
            prior = rec.handle if (kind == REPLACE and rec is not None) else None
            if kind == CREATE and rec is not None and rec.status == InstanceStatus.REPLACING and rec.handle:
                # A replace was interrupted: the old instance may still run under the same key, and
                # `find` would adopt it as the new one. Remove it first, then adopt only what remains.
                prior = rec.handle
            adopt = rec is not None and kind == CREATE
            intent = InstanceStatus.REPLACING if kind == REPLACE else InstanceStatus.CREATING
            self.store.record_intent(self.infra.name, node, action.index, action.key, driver_name, intent, want_hash,
                                     event=f"{kind}_started", reason=action.reason)
            self.emit(f"{kind}_started", node, action.index)
            job = _Job(node, action.index, action.key, kind, time.monotonic() + self.options.timeout,
                       prior, spec, driver_name, want_hash)
            futures[pool.submit(_create_instance, driver, spec, prior, adopt, self.options)] = job
            submitted += 1
        outcome.instances = self.counts.get(node, 0)
        self.pending[node] = submitted
        if submitted == 0:
            self._node_done(node, ready, dependents, waiting_on)

    def _pin_model(self, node: str, props: dict) -> dict:
        """A model server naming its model by reference runs the version pinned for it (pinned now, at its
        first build: after its dependencies, so a trainer that pushes the model has run)."""
        ref = props.get("model")
        if not isinstance(ref, str) or not pinning.is_model_server(self.template.types,
                                                                    self.template.node_templates[node].type):
            return props
        return pinning.with_model(props, pinning.pin_at_start(self.store, self.infra.name, node, ref))

    def _submit_delete(self, pool, futures, action: Action) -> None:
        rec = self.records.get(action.key)
        if rec is None:
            self.done[DELETE] += 1  # removed meanwhile: already gone
            return
        self.store.update_instance(action.key, status=InstanceStatus.DELETING, event="delete_started",
                                   event_detail={"reason": action.reason}, infra=self.infra.name)
        self.emit("delete_started", action.node, action.index)
        job = _Job(action.node, action.index, action.key, DELETE, time.monotonic() + self.options.timeout,
                   rec.handle, driver=rec.driver)
        futures[pool.submit(_delete_instance, rec.driver, rec.handle, action.key, self.options)] = job

    def _finish_job(self, job: _Job, fut: Future, ready, dependents, waiting_on) -> None:
        exc = fut.exception()
        if job.kind == DELETE:
            if exc is None:
                self.store.remove_instance(job.key, self.infra.name, "deleted")
                self.done[DELETE] += 1
                self.emit("deleted", job.node, job.index)
            else:
                self.done["failed"] += 1
                self.store.update_instance(job.key, status=InstanceStatus.DELETE_FAILED, error=self._describe(exc))
                self.failures.append({"node": job.node, "index": job.index, "action": "delete",
                                      "error": self._describe(exc)})
                self.emit("delete_failed", job.node, job.index, error=self._describe(exc))
            return
        if exc is not None:
            self.store.update_instance(job.key, status=InstanceStatus.FAILED, error=self._describe(exc))
            self._job_failed(job, self._describe(exc), ready, dependents, waiting_on)
            return
        handle, attrs, adopted = fut.result()
        self.done[job.kind] += 1
        self.done["adopted"] += adopted
        self.store.update_instance(job.key, status=InstanceStatus.READY, handle=handle, attributes=attrs, error=None,
                                   event="ready", event_detail={"adopted": adopted}, infra=self.infra.name)
        self.view.instance_attrs[(job.node, job.index)] = attrs
        self.emit("ready", job.node, job.index, adopted=adopted, seconds=round(time.monotonic() - job.started, 3))
        self.pending[job.node] -= 1
        if self.pending[job.node] == 0 and self.outcomes[job.node].status == "running":
            self._node_done(job.node, ready, dependents, waiting_on)

    def _late_result(self, job: _Job, fut: Future) -> None:
        # Runs on a worker thread after a timeout: keep the handle so destroy/retry can find it.
        if fut.exception() is None:
            handle, attrs, _ = fut.result()
            self.store.update_instance(job.key, status=InstanceStatus.FAILED, handle=handle, attributes=attrs,
                                       error="finished after its timeout")

    def _describe(self, exc: BaseException) -> str:
        return self.redact.text(_describe(exc))

    def _job_failed(self, job: _Job, error: str, ready, dependents, waiting_on) -> None:
        self.done["failed"] += 1
        error = self.redact.text(error)
        if job.timed_out:
            self.store.update_instance(job.key, status=InstanceStatus.FAILED, error=error)
        self.store.journal(self.infra.name, "failed", job.key, error=error)
        self.failures.append({"node": job.node, "index": job.index, "action": job.kind, "error": error})
        self.emit("failed", job.node, job.index, error=error)
        self.pending[job.node] -= 1
        if self.outcomes[job.node].status == "running":
            self._node_failed(job.node, error, ready, dependents, waiting_on, record=False)

    # -- node completion ----------------------------------------------------
    def _node_done(self, node: str, ready, dependents, waiting_on) -> None:
        self.outcomes[node].status = "done"
        self.emit("node_done", node)
        for dep in dependents[node]:
            waiting_on[dep].discard(node)
            if not waiting_on[dep] and self.outcomes[dep].status == "waiting":
                ready.append(dep)

    def _node_failed(self, node: str, error: str, ready, dependents, waiting_on, record: bool = True) -> None:
        error = self.redact.text(error)
        outcome = self.outcomes[node]
        outcome.status, outcome.error = "failed", error
        if record:
            self.failures.append({"node": node, "index": None, "action": "prepare", "error": error})
            self.store.journal(self.infra.name, "node_failed", None, node=node, error=error)
            self.emit("failed", node, None, error=error)
        for blocked in nx.ancestors(self.graph, node):
            if self.outcomes[blocked].status == "waiting":
                self.outcomes[blocked].status = "skipped"
                self.outcomes[blocked].error = f"not started: dependency '{node}' failed"
                self.emit("skipped", blocked, None, because=node)


def _delete_instance(driver_name: str, handle: dict | None, key: str, options: RunOptions) -> None:
    driver = get_driver(driver_name)
    if handle is None:
        handle = _with_retries(lambda: driver.find(key, None), options)  # intent written, result never recorded
    if handle is not None:
        lifecycle.before_delete(handle)  # stop/delete playbooks recorded at create time
        _with_retries(lambda: driver.delete(handle), options)


def release_nodes(node_attributes: dict[str, dict]) -> list[dict]:
    """Undo prepare_node for every node whose attributes name a backend; returns failures (node, error)."""
    failures = []
    for node, attrs in (node_attributes or {}).items():
        backend = (attrs or {}).get(NODE_DRIVER) or (attrs or {}).get("backend")  # "backend": older state
        if not backend:
            continue
        try:
            get_driver(backend).release_node(attrs)
        except (DriverError, LookupError) as exc:
            failures.append({"node": node, "index": None, "action": "release", "error": str(exc)})
    return failures


class DestroyRun:
    """Delete every instance of an infrastructure, dependents before what they depend on."""

    def __init__(self, infra: InfraRecord, store: StateStore, dependencies: dict[str, list[str]],
                 options: RunOptions, on_event: EventSink | None = None):
        self.infra, self.store, self.options = infra, store, options
        self.dependencies = dependencies
        self.on_event = on_event or (lambda e: None)
        self.redact = redactor(infra.inputs, infra.secret_inputs)

    def run(self) -> RunResult:
        started = time.monotonic()
        records = self.store.instances(self.infra.name)
        by_node: dict[str, list] = {}
        for rec in records:
            by_node.setdefault(rec.node, []).append(rec)
        nodes = set(by_node) | set(self.dependencies)
        # a node may go once every node that depends on it is gone
        blockers = {n: {m for m in nodes if n in self.dependencies.get(m, [])} for n in nodes}
        outcomes = {n: NodeOutcome(n, instances=len(by_node.get(n, []))) for n in nodes}
        failures: list[dict] = []
        futures: dict[Future, Any] = {}
        remaining = {n: len(by_node.get(n, [])) for n in nodes}
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallelism), thread_name_prefix="strato-rm")

        def start(node: str) -> None:
            outcomes[node].status = "running"
            if remaining[node] == 0:
                finish(node)
                return
            for rec in by_node[node]:
                self.store.update_instance(rec.key, status=InstanceStatus.DELETING, event="delete_started",
                                           infra=self.infra.name)
                self.on_event({"event": "delete_started", "node": node, "index": rec.index, "ts": time.time()})
                futures[pool.submit(_delete_instance, rec.driver, rec.handle, rec.key, self.options)] = rec

        ready: list[str] = []

        def finish(node: str) -> None:
            if outcomes[node].status != "failed":
                outcomes[node].status = "done"
            for dep in self.dependencies.get(node, []):
                if dep in blockers:
                    blockers[dep].discard(node)
                    if not blockers[dep] and outcomes[dep].status == "waiting":
                        ready.append(dep)

        ready.extend(n for n in nodes if not blockers[n])
        try:
            while ready or futures:
                while ready:
                    start(ready.pop())
                if not futures:
                    break
                done, _ = wait(list(futures), timeout=self.options.timeout, return_when=FIRST_COMPLETED)
                if not done:
                    for fut, rec in futures.items():
                        failures.append({"node": rec.node, "index": rec.index, "action": "delete",
                                         "error": "timed out"})
                    break
                for fut in done:
                    rec = futures.pop(fut)
                    self._delete_finished(rec, fut.exception(), outcomes[rec.node], failures)
                    remaining[rec.node] -= 1
                    if remaining[rec.node] == 0:
                        finish(rec.node)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if not failures:  # node-level resources (security groups, roles) once every instance is gone
            failures.extend(release_nodes(self.infra.node_attributes))
        for n, o in outcomes.items():
            if o.status == "waiting":
                o.status, o.error = "skipped", "a node that depends on it could not be deleted"
        ok = not failures and all(o.status == "done" for o in outcomes.values())
        return RunResult(ok, outcomes, time.monotonic() - started, failures)

    def _delete_finished(self, rec, exc: BaseException | None, outcome: NodeOutcome, failures: list[dict]) -> None:
        """Record one instance's delete: its row removed, or delete_failed with the (redacted) error."""
        if exc is None:
            self.store.remove_instance(rec.key, self.infra.name, "deleted")
            self.on_event({"event": "deleted", "node": rec.node, "index": rec.index, "ts": time.time()})
            return
        error = self.redact.text(_describe(exc))
        self.store.update_instance(rec.key, status=InstanceStatus.DELETE_FAILED, error=error)
        failures.append({"node": rec.node, "index": rec.index, "action": "delete", "error": error})
        outcome.status, outcome.error = "failed", error
        self.on_event({"event": "delete_failed", "node": rec.node, "index": rec.index, "error": error,
                       "ts": time.time()})
