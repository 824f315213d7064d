"""Monitoring what models do: each maintain pass pulls the records model servers keep (orchestrator/mlops/record.py),
closes windows of them, computes drift against the training reference of the model version that served them
(policies/drift.py) and accuracy from the labels fed back by request id, and raises an alert after k consecutive
bad windows (an event and an optional webhook) that continuous training (orchestrator/mlops/training.py) acts on.

What must survive a restart lives in the state store: the records (table model_records) and, per node, the
pull cursors, window count and alarm streaks (policy_state, policy id "monitoring").
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from descriptors.values import duration_seconds
from descriptors.yamlpos import to_plain
from orchestrator.autoscale import notify
from orchestrator.metrics import LoopMetrics, is_loopback
from orchestrator.mlops.pinning import registry_for
from orchestrator.mlops.rows import feature_rows, plain_label, read_reference
from orchestrator.state import InstanceRecord, StateStore

log = logging.getLogger("strato.monitoring")

POLICY = "monitoring"
PULL_TIMEOUT = 2.0          # one instance's answer; an unreachable one costs at most this, side by side
PULL_LIMIT = 5000           # records per instance and pass (the server keeps the rest for the next pass)
MAX_WINDOWS_PER_PASS = 20   # a backlog is worked off over a few passes, never in one long pass
MAX_READ_BYTES = 64 * 2 ** 20


@dataclass(frozen=True)
class MonitorSpec:
    """A node's `monitoring` property (data type strato.datatypes.ModelMonitoring), with defaults filled in."""

    window_rows: int | None = 200        # a window closes after this many records...
    window_seconds: float | None = None  # ...or after this long (when `window` is a duration)
    consecutive: int = 3                 # k: bad windows in a row before an alert
    accuracy_min: float | None = None
    min_labels: int = 20                 # fewer labels in a window: accuracy unknown, never an alarm
    webhook: str | None = None
    keep: int = 50000                    # records kept per node (the oldest go first)
    label: str = "label"                 # the reference CSV's column of labels: the prediction's reference
    columns: dict = field(default_factory=dict)  # Reference.from_rows's categorical, numeric, ignore
    drift: dict = field(default_factory=dict)    # DriftConfig's method_defaults, overrides, thresholds, alpha...


def monitor_spec(value: Any) -> MonitorSpec:
    """The spec of a `monitoring` value (validated by the descriptor's data type; anything odd falls back)."""
    value = to_plain(value) if isinstance(value, dict) else {}
    window = value.get("window", 200)
    rows = seconds = None
    if isinstance(window, int) and not isinstance(window, bool):
        rows = max(1, window)
    else:
        seconds = duration_seconds(window, 60.0)
    methods = value.get("methods") or {}
    drift = {"method_defaults": {k: methods[k] for k in ("numeric", "categorical") if methods.get(k)},
             "overrides": value.get("features") or {}, "thresholds": methods.get("thresholds") or {},
             **{k: v for k, v in (("alpha", methods.get("alpha")), ("min_window", value.get("min_window")))
                if v is not None}}
    return MonitorSpec(window_rows=rows, window_seconds=seconds, consecutive=int(value.get("k", 3)),
                       accuracy_min=value.get("accuracy_min"), min_labels=int(value.get("min_labels", 20)),
                       webhook=value.get("webhook"), keep=int(value.get("keep", 50000)),
                       label=str(value.get("label", "label")),
                       columns={k: tuple(value.get(k) or ()) for k in ("categorical", "numeric", "ignore")},
                       drift=drift)


def monitored_nodes(template, inputs: dict | None = None) -> dict[str, MonitorSpec]:
    """node -> its monitoring spec, for every node with a `monitoring` property (get_input resolved)."""
    from descriptors.functions import FunctionError, Unresolved, template_resolver

    def no_attributes(node, name):
        raise Unresolved(node, name)

    given = {n: d.default for n, d in template.inputs.items() if d.has_default}
    resolver = template_resolver(template, {**given, **(inputs or {})}, no_attributes)
    out = {}
    for node, tmpl in template.node_templates.items():
        if isinstance(tmpl.properties.get("monitoring"), dict):
            try:
                out[node] = monitor_spec(resolver.resolve(tmpl.properties["monitoring"], node))
            except (Unresolved, FunctionError, ValueError):
                out[node] = monitor_spec(tmpl.properties["monitoring"])
    return out


# -- pulling records -----------------------------------------------------------------------------------
def records_url(rec: InstanceRecord, after: int, limit: int = PULL_LIMIT) -> str | None:
    """Where an instance serves its records: its own loopback host and port (never another address)."""
    attrs = rec.attributes or {}
    host, port = attrs.get("host") or "127.0.0.1", attrs.get("port")
    if not is_loopback(host) or not isinstance(port, int) or isinstance(port, bool):
        return None
    return f"http://{host}:{port}/strato/records?after={int(after)}&limit={int(limit)}"


def fetch_records(url: str, timeout: float = PULL_TIMEOUT) -> dict:
    """One page of the records protocol; raises OSError/ValueError with what went wrong."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.loads(response.read(MAX_READ_BYTES))
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ValueError("the answer is not a records document")
    return body


def pull_all(instances: list[InstanceRecord], cursors: dict, timeout: float = PULL_TIMEOUT) -> dict[str, Any]:
    """Each instance's page after its cursor, side by side, within one bounded wait: key -> document or error text."""
    urls = {}
    for rec in instances:
        cursor = cursors.get(rec.key) or {}
        url = records_url(rec, cursor.get("after", 0))
        urls[rec.key] = url
    out: dict[str, Any] = {k: "no loopback host and port to pull records from" for k, u in urls.items() if u is None}
    todo = {k: u for k, u in urls.items() if u is not None}
    if not todo:
        return out
    pool = ThreadPoolExecutor(max_workers=min(16, len(todo)), thread_name_prefix="strato-records")
    futures = {pool.submit(fetch_records, url, timeout): key for key, url in todo.items()}
    done, _ = wait(futures, timeout=timeout + 0.5)
    pool.shutdown(wait=False, cancel_futures=True)
    for future, key in futures.items():
        if future not in done:
            out[key] = f"no answer within {timeout:g} s"
            continue
        try:
            out[key] = future.result()
        except (OSError, ValueError, urllib.error.URLError) as exc:
            out[key] = str(getattr(exc, "reason", exc))
    return out


def advance(cursor: dict | None, page: dict) -> tuple[dict, list[dict]]:
    """The cursor after a page and the page's records that are new to it. A page of another stream (the server
    restarted and counts from 1 again) was asked for after the old cursor: it is dropped and the next pull
    starts the new stream from 0."""
    cursor = dict(cursor or {"after": 0})
    stream = page.get("stream")
    if cursor.get("stream") is not None and cursor["stream"] != stream:
        return {"stream": stream, "after": 0}, []
    cursor["stream"] = stream
    records = [r for r in page["records"] if isinstance(r, dict) and isinstance(r.get("seq"), int)
               and r["seq"] > cursor["after"] and "features" in r and r.get("id")]
    nxt = page.get("next")
    cursor["after"] = max([cursor["after"], *(r["seq"] for r in records),
                           *([nxt] if isinstance(nxt, int) and not isinstance(nxt, bool) else [])])
    return cursor, records


def accuracy_of(records: list[dict]) -> float | None:
    """Share of the labelled records whose prediction equals their label (policies/drift.accuracy)."""
    from policies.drift import accuracy
    pairs = [(str(plain_label(r["prediction"])), str(plain_label(r["label"]))) for r in records
             if r.get("label") is not None]
    return accuracy(pairs, kind="classification").get("accuracy") if pairs else None


def alarm_step(state: dict, name: str, bad: bool | None, k: int) -> str | None:
    """Feed one window to the node's ConsecutiveAlarm `name` (kept in `state`): "raised" at the k-th bad window in
    a row, "cleared" at the first good one after that, else None (an inconclusive window, bad None, changes nothing)."""
    from policies.drift import ConsecutiveAlarm
    saved = state.get(f"{name}_alarm")
    alarm = ConsecutiveAlarm.from_state(saved) if saved and saved.get("k") == k else ConsecutiveAlarm(max(1, k))
    was_firing = alarm.fired
    raised = alarm.update(bad)
    state[f"{name}_alarm"] = alarm.to_state()
    if raised:
        return "raised"
    return "cleared" if was_firing and not alarm.fired else None


EventSink = Callable[..., None]


class ModelMonitor:
    """The monitoring of one infrastructure's model servers, run once per maintain pass (`run_pass`)."""

    def __init__(self, store: StateStore, name: str, event: EventSink, forget: Callable[[str], Any] = lambda once: None,
                 loop_metrics: LoopMetrics | None = None):
        """`event(kind, key=None, /, *, once=None, **detail)` journals; `forget(once)` lets a `once` event be
        journaled again (what went wrong was put right)."""
        self.store, self.name, self.event, self.forget = store, name, event, forget
        self.loop_metrics = loop_metrics
        self._detectors: dict[str, tuple] = {}   # node -> ((version, reference, its mtime, spec), DriftDetector)
        self._training = None

    def run_pass(self, template, inputs: dict, healthy: dict[str, list[InstanceRecord]], dry_run: bool) -> None:
        """Pull, window, judge and alert for every monitored node; then let continuous training act on the alerts.
        Nothing here may stop the pass: what goes wrong is journaled (once) and the pass goes on."""
        nodes = monitored_nodes(template, inputs)
        alerts: list[dict] = []
        if nodes and not dry_run:
            states = self.store.policy_states(self.name)
            for node, spec in nodes.items():
                saved = states.get((POLICY, node)) or {}
                state = json.loads(json.dumps(saved))   # a deep copy: written back only when it changed
                try:
                    alerts += self._node_pass(template, node, spec, healthy.get(node, []), state)
                except Exception as exc:   # a broken reference or record: reported, the loop goes on
                    log.exception("monitoring %s/%s", self.name, node)
                    self.event("monitoring_failed", once=f"monitoring:{node}", node=node, error=str(exc))
                if state != saved:
                    self.store.save_policy_state(self.name, POLICY, node, state)
        if not dry_run:
            try:
                self.training().run_pass(template, inputs, alerts)
            except Exception as exc:  # a broken policy setting: reported once, monitoring goes on
                log.exception("continuous training of %s", self.name)
                self.event("policy_broken", once="continuous_training", policy="continuous training", error=str(exc))

    def training(self):
        if self._training is None:
            from orchestrator.mlops.training import ContinuousTraining
            self._training = ContinuousTraining(self.store, self.name, self.event)
        return self._training

    def _node_pass(self, template, node: str, spec: MonitorSpec, instances: list[InstanceRecord],
                   state: dict) -> list[dict]:
        self._pull(node, spec, instances, state)
        alerts = []
        for _ in range(MAX_WINDOWS_PER_PASS):
            rows = self._close_window(node, spec, state)
            if rows is None:
                break
            alerts += self._judge(node, spec, rows, state)
        return alerts

    # -- records ---------------------------------------------------------------------------------------
    def _pull(self, node: str, spec: MonitorSpec, instances: list[InstanceRecord], state: dict) -> None:
        cursors = state.setdefault("cursors", {})
        for key, page in pull_all(instances, cursors).items():
            if isinstance(page, str):
                self.event("model_records_unreachable", key, once=f"records:{key}", node=node, error=page)
                continue
            self.forget(f"records:{key}")
            cursors[key], records = advance(cursors.get(key), page)
            if records:
                self.store.add_model_records(self.name, node, key, records, spec.keep)
            if page.get("dropped"):
                self.event("model_records_dropped", key, node=node, dropped=int(page["dropped"]),
                           reason="the server's record buffer overflowed between two passes")
        live = {rec.key for rec in instances}
        for key in [k for k in cursors if k not in live]:   # instances gone: their cursors go too
            cursors.pop(key)

    def _close_window(self, node: str, spec: MonitorSpec, state: dict) -> list[dict] | None:
        """The next window's records, once it is complete (by rows, or by time); None while it is not."""
        now = time.time()
        if spec.window_rows:
            open_rows = self.store.open_model_records(self.name, node, limit=spec.window_rows)
            if len(open_rows) < spec.window_rows:
                return None
            until = open_rows[-1]["ts"]
        else:
            first = self.store.open_model_records(self.name, node, limit=1)
            if not first or now - first[0]["ts"] < spec.window_seconds:
                return None
            until = first[0]["ts"] + spec.window_seconds - 1e-6
        state["window"] = state.get("window", 0) + 1
        return self.store.close_model_window(self.name, node, state["window"], until)

    # -- judging a window ----------------------------------------------------------------------------------
    def _judge(self, node: str, spec: MonitorSpec, rows: list[dict], state: dict) -> list[dict]:
        """Drift and accuracy of one closed window, its `model_window` event, and the alerts it raises."""
        version = _majority(r.get("version") for r in rows)
        if version != state.get("version"):   # another model: its own reference, its own streaks
            state.update(version=version, drift_alarm=None, accuracy_alarm=None)
        drift = self._drift(node, spec, version, rows)
        accuracy, labels = self._accuracy(node, spec, state)
        summary = {"window": state["window"], "ts": time.time(), "rows": len(rows), "version": version,
                   "drifted": None if drift is None else drift["drifted"],
                   "features": {} if drift is None else drift["features"], "accuracy": accuracy, "labels": labels}
        state["last"] = summary
        self.event("model_window", node=node, **_compact(summary))
        self._export(node, summary)
        alerts = []
        acc_bad = None if accuracy is None or spec.accuracy_min is None else accuracy < float(spec.accuracy_min)
        for name, bad in (("drift", summary["drifted"]), ("accuracy", acc_bad)):
            change = alarm_step(state, name, bad, spec.consecutive)
            if change == "raised":
                alerts.append(self._alert(node, spec, name, summary))
            elif change == "cleared":
                self.event(f"model_{name}_cleared", node=node, version=version, window=summary["window"],
                           reason=f"window {summary['window']} is no longer "
                                  + ("drifted" if name == "drift" else f"below accuracy_min {spec.accuracy_min}"))
        return alerts

    def _alert(self, node: str, spec: MonitorSpec, name: str, summary: dict) -> dict:
        """Journal the alert (model_drift or model_accuracy_low), post it to the webhook; returns it."""
        kind = "model_drift" if name == "drift" else "model_accuracy_low"
        detail = {"node": node, "alert": name, "version": summary["version"], "window": summary["window"],
                  "windows": spec.consecutive}
        if name == "drift":
            drifted = {f: v for f, v in summary["features"].items() if v.get("drifted")}
            detail.update(features=sorted(drifted), statistics=drifted,
                          reason=f"{spec.consecutive} drifted windows in a row: {', '.join(sorted(drifted))}")
        else:
            detail.update(accuracy=summary["accuracy"], accuracy_min=spec.accuracy_min, labels=summary["labels"],
                          reason=f"accuracy {summary['accuracy']:.3f} below {spec.accuracy_min} for "
                                 f"{spec.consecutive} windows in a row")
        self.event(kind, **detail)
        if spec.webhook:
            notify(str(spec.webhook), {"event": kind, "infrastructure": self.name, **detail},
                   lambda url, error: self.event("webhook_failed", once=f"webhook:{url}", url=url, error=error))
        return {"event": kind, **detail}

    def _drift(self, node: str, spec: MonitorSpec, version: str | None, rows: list[dict]) -> dict | None:
        """{drifted, features: {name: {method, statistic, threshold, drifted, ...}}} of the window against the
        reference of the version that served it (the prediction is one of the features); None without one."""
        detector = self._detector(node, spec, version)
        if detector is None:
            return None
        columns = list(detector.reference.columns)
        window = [{**f, "prediction": plain_label(r.get("prediction"))}
                  for r, f in zip(rows, feature_rows(rows, columns))]
        result = detector.window(window)
        columns = [*result.features.values(), *([result.prediction] if result.prediction is not None else [])]
        features = {f.name: {**f.to_dict(), "score": drift_score(f.to_dict())} for f in columns}
        return {"drifted": result.verdict(), "features": features}

    def _detector(self, node: str, spec: MonitorSpec, version: str | None):
        """The DriftDetector of a model version's training reference (built once per reference file)."""
        path = self._reference_path(node, version)
        if path is None:
            return None
        try:
            key = (version, path, os.stat(path).st_mtime_ns, repr(spec))
        except OSError as exc:
            self.event("model_reference_missing", once=f"reference:{node}", node=node, version=version,
                       error=f"the reference {path} cannot be read: {exc.strerror}")
            return None
        cached = self._detectors.get(node)
        if cached is None or cached[0] != key:
            from policies.drift import DriftConfig, DriftDetector, Reference
            rows = read_reference(path)
            if rows and spec.label in rows[0] and "prediction" not in rows[0]:
                rows = [{**{k: v for k, v in r.items() if k != spec.label}, "prediction": plain_label(r[spec.label])}
                        for r in rows]
            reference = Reference.from_rows(rows, **spec.columns)
            self._detectors[node] = cached = (key, DriftDetector(reference, DriftConfig(**spec.drift)))
        self.forget(f"reference:{node}")
        return cached[1]

    def _reference_path(self, node: str, version: str | None) -> str | None:
        """The registry's reference_path of the version the records name (reported once when there is none)."""
        if not version or version == "unknown":
            self.event("model_reference_missing", once=f"reference:{node}", node=node, version=version,
                       error="the records name no model version (Recorder(version=$STRATO_MODEL_VERSION))")
            return None
        from orchestrator.mlops.registry import RegistryError
        try:
            path = registry_for(self.store.home).resolve(version).reference_path
        except RegistryError as exc:
            path, why = None, str(exc)
        else:
            why = f"{version} has no training reference (push it with --reference CSV)"
        if path is None:
            self.event("model_reference_missing", once=f"reference:{node}", node=node, version=version, error=why)
        return path

    def _accuracy(self, node: str, spec: MonitorSpec, state: dict) -> tuple[float | None, int]:
        """Accuracy of the labels that arrived since the last accuracy was taken; (None, n) while fewer than
        `min_labels` have arrived (they wait for the next window)."""
        since = float(state.get("labels_since", 0.0))
        labelled = self.store.labelled_model_records(self.name, node, since)
        if not labelled or len(labelled) < spec.min_labels:
            return None, len(labelled)
        state["labels_since"] = max(r["labelled"] for r in labelled)
        accuracy = accuracy_of(labelled)
        return (None if accuracy is None else round(accuracy, 4)), len(labelled)

    def _export(self, node: str, summary: dict) -> None:
        metrics = self.loop_metrics
        if metrics is None or getattr(metrics, "registry", None) is None or not hasattr(metrics, "model_drift"):
            return
        for feature, v in summary["features"].items():
            labels = (self.name, node, feature, v.get("method") or "")
            if v.get("statistic") is not None:
                metrics.model_drift.labels(*labels).set(float(v["statistic"]))
            metrics.model_drifted.labels(*labels).set(1.0 if v.get("drifted") else 0.0)
        if summary["accuracy"] is not None:
            metrics.model_accuracy.labels(self.name, node).set(summary["accuracy"])


def drift_score(feature: dict) -> float | None:
    """One scale for every method, 1 at the threshold and above it when drifted: log p / log threshold for the
    p-value tests (ks, chi2), statistic / max(threshold, noise floor) for the distances."""
    threshold = feature.get("threshold")
    if not threshold:
        return None
    if feature.get("p_value") is not None:
        return round(math.log(max(feature["p_value"], 1e-300)) / math.log(threshold), 4)
    if feature.get("statistic") is not None:
        return round(feature["statistic"] / max(threshold, feature.get("noise_floor") or 0.0), 4)
    return None


def _majority(values) -> str | None:
    counts: dict = {}
    for v in values:
        if v is not None:
            counts[str(v)] = counts.get(str(v), 0) + 1
    return max(counts, key=counts.get) if counts else None


def _compact(summary: dict) -> dict:
    """A window for the journal: per feature [statistic, drifted, score] only, so that drift over time can be drawn."""
    return {**{k: v for k, v in summary.items() if k not in ("features", "ts")},
            "features": {f: [v.get("statistic"), bool(v.get("drifted")), v.get("score")]
                         for f, v in summary["features"].items()}}


# -- feedback (POST /v1/infrastructures/NAME/nodes/NODE/feedback) ----------------------------------------------
MAX_LABELS = 10000


def record_feedback(store: StateStore, infra: str, node: str, labels: list[tuple[str, Any]]) -> dict:
    """Attach labels to the stored records by request id: {received, matched, unmatched}. A label for a request
    the loop has not pulled yet does not match (send it again later, or after the next pass)."""
    matched = store.label_model_records(infra, node, labels) if labels else 0
    return {"infrastructure": infra, "node": node, "received": len(labels), "matched": matched,
            "unmatched": len(labels) - matched}


# -- what status, /v1 and the dashboard show -------------------------------------------------------------------
def _alarm_view(saved: dict | None) -> dict:
    saved = saved or {}
    return {"firing": bool(saved.get("fired")), "run": int(saved.get("run", 0)), "k": saved.get("k")}


def node_summary(state: dict) -> dict:
    """One monitored node at a glance: the last window (drift per feature, accuracy), and the alarms."""
    last = state.get("last") or {}
    return {"version": state.get("version"), "windows": state.get("window", 0),
            "last_window": {k: last.get(k) for k in ("window", "ts", "rows", "version", "drifted", "accuracy",
                                                      "labels")} if last else None,
            "features": {f: {k: v.get(k) for k in ("method", "statistic", "p_value", "threshold", "score", "drifted")}
                         for f, v in (last.get("features") or {}).items()},
            "alarms": {"drift": _alarm_view(state.get("drift_alarm")),
                       "accuracy": _alarm_view(state.get("accuracy_alarm"))},
            "instances": {k: {"after": c.get("after")} for k, c in (state.get("cursors") or {}).items()}}


def monitoring_status(store: StateStore, infra: str) -> dict[str, dict]:
    """node -> node_summary, for every node monitoring has seen (read from state only: no backend is asked)."""
    return {node: node_summary(state) for (policy, node), state in store.policy_states(infra).items()
            if policy == POLICY}


WINDOW_EVENTS = ("model_window",)
ALERT_EVENTS = ("model_drift", "model_drift_cleared", "model_accuracy_low", "model_accuracy_cleared",
                "retrain_triggered", "retrain_skipped", "retrain_finished", "retrain_failed", "model_pushed",
                "alias_moved")


def node_monitoring(store: StateStore, infra: str, node: str, windows: int = 50) -> dict:
    """node_summary plus the recent windows (drift over time) and the alerts and retraining steps."""
    state = store.policy_states(infra).get((POLICY, node)) or {}
    return {"infrastructure": infra, "node": node, **node_summary(state),
            "history": [{"ts": e["ts"], **e["detail"]} for e in store.node_events(infra, node, WINDOW_EVENTS,
                                                                                 limit=windows)] if windows else [],
            "events": [{"ts": e["ts"], "kind": e["kind"], **e["detail"]}
                       for e in store.node_events(infra, node, ALERT_EVENTS, limit=50)]}
