"""Continuous training: a drift or accuracy alert of a monitored model server re-runs its trainer node as a one-shot
job on the recent labelled records, pushes what it trained to the registry and moves the alias, so that the
node's rollout rolls it out. Every step is an event, so that "why did this model change?" has an answer:

    retrain_triggered (the alert that caused it) -> retrain_finished (ok or the error) -> model_pushed -> alias_moved

A descriptor asks for it with a policy of type strato.policies.ContinuousTraining on the model server:
{trainer: NODE, model: NAME, on: [drift, accuracy], cooldown: 10m, alias: champion}. The trainer runs through
its node's own driver, as the build runs it (a local process, a container, a Kubernetes Job), under a key of its
own, with the env STRATO_TRAINING_DATA (a CSV of features and `label`, private to the user) and
STRATO_MODEL_NAME; its attribute `model_path` names what it trained. One retraining at a time per policy
(dedup) and none within `cooldown` of the last one; the policy's state lives in policy_state.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from descriptors.yamlpos import to_plain
from drivers.base import InstanceSpec
from drivers.common import make_private_dir, make_private_file
from drivers.providers import get_driver
from orchestrator import lifecycle, placement
from orchestrator.mlops.pinning import registry_for
from orchestrator.mlops.rows import feature_rows, plain_label, read_reference
from orchestrator.plan import attribute_view, instance_key, make_resolver, node_properties
from orchestrator.scaling import desired_counts
from orchestrator.state import StateStore

log = logging.getLogger("strato.training")

POLICY_TYPE = "strato.policies.ContinuousTraining"
STATE = "continuous_training"
MAX_ROWS = 20000            # the most recent labelled records a retraining gets
RUN_INDEX = 10000           # a retraining's instance index (key, work dir) is RUN_INDEX + its run number
JOB_TIMEOUT = 3600.0


@dataclass(frozen=True)
class TrainingSpec:
    policy: str
    targets: tuple[str, ...]
    trainer: str
    model: str
    on: tuple[str, ...] = ("drift", "accuracy")
    cooldown: float = 600.0
    alias: str = "champion"
    min_rows: int = 20


def training_specs(template, inputs: dict | None = None) -> list[TrainingSpec]:
    """The descriptor's ContinuousTraining policies (type defaults merged, get_input resolved)."""
    from policies.factory import PolicySettings
    out = []
    for name, policy in template.policies.items():
        if template.types is None or not template.types.has("policy", policy.type) \
                or not template.types.is_a(policy.type, POLICY_TYPE, "policy"):
            continue
        props = PolicySettings(template, policy, inputs)
        on = to_plain(props.get("on", ["drift", "accuracy"]))
        out.append(TrainingSpec(name, tuple(policy.target_nodes(template)), str(props.get("trainer")),
                                str(props.get("model")), tuple(on if isinstance(on, list) else [on]),
                                props.seconds("cooldown", 600.0), str(props.get("alias", "champion")),
                                int(props.get("min_rows", 20))))
    return out


class TrainingRun:
    """One retraining running on a thread of its own (a trainer may take minutes; the loop goes on)."""

    def __init__(self, driver, spec: InstanceSpec):
        self.driver, self.spec = driver, spec
        self.result: dict | None = None
        self.thread = threading.Thread(target=self._run, name=f"strato-retrain-{spec.node}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            handle = self.driver.create(self.spec)
            attrs = dict(self.driver.observe(handle).attributes)
            try:
                self.driver.delete(handle)   # a finished job: its process, container or Job object goes
            except Exception as exc:  # noqa: BLE001 - what it trained is there; the leftover is only reported
                log.warning("removing the finished retraining %s: %s", self.spec.key, exc)
            self.result = {"ok": True, "attributes": attrs}
        except Exception as exc:  # noqa: BLE001 - a failed trainer is an event, never a broken loop
            self.result = {"ok": False, "error": str(exc)}

    @property
    def done(self) -> bool:
        return self.result is not None


EventSink = Callable[..., None]


class ContinuousTraining:
    """The ContinuousTraining policies of one infrastructure, run once per maintain pass after monitoring."""

    def __init__(self, store: StateStore, name: str, event: EventSink):
        self.store, self.name, self.event = store, name, event
        self.runs: dict[str, TrainingRun] = {}   # policy -> its retraining running in this process

    def registry(self):
        return registry_for(self.store.home)

    def run_pass(self, template, inputs: dict, alerts: list[dict]) -> None:
        """Finish what has finished (push, move the alias), then start a retraining for a new alert."""
        specs = training_specs(template, inputs)
        if not specs:
            return
        states = self.store.policy_states(self.name)
        for spec in specs:
            state = dict(states.get((STATE, spec.policy)) or {})
            before = dict(state)
            self._finish(spec, state)
            for alert in alerts:
                if alert["node"] in spec.targets and alert["alert"] in spec.on:
                    self._trigger(template, inputs, spec, alert, state)
            if state != before:
                self.store.save_policy_state(self.name, STATE, spec.policy, state)

    # -- starting --------------------------------------------------------------------------------------
    def _trigger(self, template, inputs: dict, spec: TrainingSpec, alert: dict, state: dict) -> None:
        """Start a retraining for the alert, unless one runs already or the last one started within the cooldown."""
        node, now = alert["node"], time.time()
        why = {"policy": spec.policy, "node": node, "alert": alert["event"], "window": alert.get("window")}
        if state.get("running"):
            self.event("retrain_skipped", **why, reason=f"retraining run {state['running']['run']} is still running")
            return
        wait = spec.cooldown - (now - float(state.get("last_started", 0.0)))
        if wait > 0:
            self.event("retrain_skipped", **why, reason=f"in cooldown for {wait:.0f} s more")
            return
        run = int(state.get("runs", 0)) + 1
        data = self._training_data(spec, node, run)
        if data is None:
            return
        path, rows, digest = data
        try:
            job = self._start(template, inputs, spec, run, path)
        except Exception as exc:  # noqa: BLE001 - a trainer that cannot start is reported; the next alert retries
            self.event("retrain_failed", **why, run=run, error=f"the trainer could not start: {exc}")
            return
        self.runs[spec.policy] = job
        parent = self._current(spec)
        state.update(runs=run, last_started=now, running={
            "run": run, "started": now, "key": job.spec.key, "node": node, "data": path, "rows": rows,
            "data_digest": digest, "parent": parent, "cause": {k: v for k, v in alert.items() if k != "statistics"}})
        self.event("retrain_triggered", **why, run=run, trainer=spec.trainer, model=spec.model, rows=rows,
                   data=path, parent=parent, cause=alert,
                   reason=f"{alert['event']} on {node}: {alert.get('reason', '')}".strip(": "))

    def _training_data(self, spec: TrainingSpec, node: str, run: int) -> tuple[str, int, str] | None:
        """The recent labelled records as a private CSV (features, then `label`): (path, rows, sha256)."""
        records = self.store.labelled_model_records(self.name, node, 0.0, MAX_ROWS)
        if len(records) < spec.min_rows:
            self.event("retrain_skipped", policy=spec.policy, node=node,
                       reason=f"{len(records)} labelled records; it takes {spec.min_rows} (POST them to "
                              f"/v1/infrastructures/{self.name}/nodes/{node}/feedback)")
            return None
        records.reverse()   # oldest first, as they were served
        rows = feature_rows(records, self._columns(spec))
        columns = list(dict.fromkeys(k for r in rows for k in r if k != "label"))
        directory = os.path.join(self.store.home, "infrastructures", self.name, "training")
        make_private_dir(directory)
        path = os.path.join(directory, f"{spec.policy}-{run}.csv")
        make_private_file(path)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns + ["label"])
            for row, rec in zip(rows, records):
                writer.writerow([row.get(c, "") for c in columns] + [plain_label(rec["label"])])
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        return path, len(records), digest

    def _columns(self, spec: TrainingSpec) -> list[str]:
        """The current version's reference columns, naming features a server records as a list."""
        try:
            reference = self.registry().resolve(f"{spec.model}@{spec.alias}").reference_path
            return [c for c in (read_reference(reference, 1)[0] if reference else {}) if c != "label"]
        except Exception:  # noqa: BLE001 - no reference: features recorded by name need none
            return []

    def _current(self, spec: TrainingSpec) -> int | None:
        from orchestrator.mlops.registry import RegistryError
        try:
            return self.registry().resolve(f"{spec.model}@{spec.alias}").version
        except RegistryError:
            return None

    def _start(self, template, inputs: dict, spec: TrainingSpec, run: int, data: str) -> TrainingRun:
        """The trainer node's job, resolved as the build resolves it, with the training data in its env."""
        infra = self.store.get_infra(self.name)
        counts = desired_counts(template, infra, inputs)
        view = attribute_view(counts, infra, self.store.instances(self.name))
        props = node_properties(template, spec.trainer, make_resolver(template, inputs, view))
        props["env"] = {**(props.get("env") or {}), "STRATO_TRAINING_DATA": data, "STRATO_MODEL_NAME": spec.model}
        driver_name, props = placement.route(spec.trainer, template.driver_name(spec.trainer), props)
        index = RUN_INDEX + run
        job = InstanceSpec(key=instance_key(infra, spec.trainer, index), infra=self.name, node=spec.trainer,
                           index=index, type=template.node_templates[spec.trainer].type, properties=props,
                           metadata=lifecycle.spec_metadata(template.node_metadata(spec.trainer), {}, {}),
                           node_attributes=dict(infra.node_attributes.get(spec.trainer) or {}),
                           descriptor_dir=template.directory,
                           infra_dir=os.path.join(self.store.home, "infrastructures", self.name), timeout=JOB_TIMEOUT)
        return TrainingRun(get_driver(driver_name or "local"), job)

    # -- finishing -------------------------------------------------------------------------------------
    def _finish(self, spec: TrainingSpec, state: dict) -> None:
        """A finished retraining: its event, then its model pushed and the alias moved to it."""
        running = state.get("running")
        if not running:
            return
        job = self.runs.get(spec.policy)
        if job is None:   # started by a loop that has stopped since: its thread went with it
            result = {"ok": False, "error": "the maintain loop that ran it stopped before it finished"}
        elif not job.done:
            return
        else:
            result = job.result
        self.runs.pop(spec.policy, None)
        state["running"] = None
        took = round(time.time() - float(running["started"]), 3)
        base = {"policy": spec.policy, "node": running["node"], "run": running["run"]}
        if not result["ok"]:
            self.event("retrain_failed", **base, seconds=took, error=result["error"])
            return
        model_path = result["attributes"].get("model_path")
        self.event("retrain_finished", **base, seconds=took, model_path=model_path)
        if not model_path:
            self.event("retrain_failed", **base, error=f"the trainer '{spec.trainer}' set no model_path attribute "
                                                       "(write it to $STRATO_ATTRIBUTES_FILE)")
            return
        self._publish(spec, running, str(model_path), result["attributes"].get("metrics"), state)

    def _publish(self, spec: TrainingSpec, running: dict, model_path: str, metrics: Any, state: dict) -> None:
        from orchestrator.mlops.registry import RegistryError
        base = {"policy": spec.policy, "node": running["node"], "run": running["run"]}
        cause = running["cause"]
        reason = f"continuous training run {running['run']} after {cause['event']} on {running['node']}"
        registry = self.registry()
        try:
            version = registry.push(spec.model, model_path, metrics=metrics if isinstance(metrics, dict) else None,
                                    data_digest=running["data_digest"], parent=running["parent"],
                                    created_by="continuous-training", reference_path=running["data"], note=reason)
            self.event("model_pushed", **base, model=spec.model, version=version.version, ref=version.ref,
                       parent=running["parent"], data_digest=running["data_digest"], reason=reason)
            if version.version != running["parent"]:
                registry.promote(spec.model, version.version, spec.alias, reason=reason)
                self.event("alias_moved", **base, model=spec.model, alias=spec.alias, version=version.version,
                           previous=running["parent"], reason=reason)
            state["last"] = {"run": running["run"], "version": version.ref, "at": time.time(), "cause": cause}
        except (RegistryError, OSError) as exc:
            self.event("retrain_failed", **base, error=f"pushing {model_path}: {exc}")
