"""Autoscaling for one pass: the metrics the policies and alerts ask for, the alerts, and every due policy's decision.

It reads the state store (policy and alert state) but writes nothing: what a pass decided comes back
as a Decisions, which the maintain loop writes once (Maintainer.commit) before it plans and acts. Its
memory between passes (when each policy last decided, decisions still running past a deadline, the
last reason reported) is its own, like a controller's cache.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator import scaling
from orchestrator.bounded import settle
from orchestrator.metrics import LoopMetrics, MetricsError, PrometheusSource, ScrapeSource, instance_metrics_url
from orchestrator.state import InstanceRecord, StateStore
from policies.base import Observation, PolicyError
from policies.factory import scaling_policies

ALERT_TYPE = "strato.policies.Alert"
POLICY_WORKERS = 16
POLICY_SLACK = 0.25        # a rule stopped at the policy deadline still needs a moment to say so
MAX_CANDIDATES = 24        # candidate counts a decision event keeps (the nearest the chosen one)


@dataclass
class Event:
    kind: str
    detail: dict
    key: str | None = None
    once: str | None = None   # journaled only when its text differs from the last one under this name


@dataclass
class Decisions:
    """What one pass decided, in the order the loop writes it."""

    events: list[Event] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)    # `once` names whose trouble cleared (a scrape answers again)
    alerts: list[dict] = field(default_factory=list)   # alert transitions (journaled, saved, sent to webhooks)
    samples: list[tuple] = field(default_factory=list)  # (node, count, target metric, metrics)
    states: list[tuple] = field(default_factory=list)   # (policy id, node, state) changed since last saved
    scaled: list[dict] = field(default_factory=list)    # {node, from, desired, direction, policy, reason, detail}
    decisions: list[dict] = field(default_factory=list)  # one per policy that decided (the pass report's)
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)

    def event(self, kind: str, key: str | None = None, /, *, once: str | None = None, **detail: Any) -> None:
        self.events.append(Event(kind, detail, key, once))


def journal_detail(detail: Any, max_candidates: int = MAX_CANDIDATES) -> dict:
    """A decision's explanation as the journal keeps it: JSON-safe (numpy numbers and arrays as plain numbers and
    lists, NaN and infinity as null, keys as text) and small (floats to 10 significant digits; of many candidate
    counts, the `max_candidates` nearest the chosen one)."""
    if not isinstance(detail, dict) or not detail:
        return {}
    safe = _json_safe(detail)
    candidates = safe.get("candidates")
    if isinstance(candidates, list) and len(candidates) > max_candidates:
        chosen = safe.get("chosen")
        chosen = chosen if isinstance(chosen, (int, float)) else 0

        def distance(c):
            n = c.get("instances") if isinstance(c, dict) else None
            return abs(n - chosen) if isinstance(n, (int, float)) else math.inf
        kept = sorted(sorted(candidates, key=distance)[:max_candidates],
                      key=lambda c: c.get("instances", 0) if isinstance(c, dict) else 0)
        safe["candidates"], safe["candidates_omitted"] = kept, len(candidates) - len(kept)
    return safe


def _json_safe(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()      # numpy arrays and scalars
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    return str(value)


def policy_id(policy) -> str:
    return getattr(policy, "source", "") or getattr(policy, "name", "policy")


class AlertMetric:
    """The metric an alert policy watches, shaped like a policy's MetricSpec."""

    def __init__(self, alert):
        props = alert.properties or {}
        self.query = str(props.get("metric") or "")
        self.name = self.query
        self.aggregation = str(props.get("aggregation") or "mean")
        self.quantile = props.get("quantile")


class Autoscaler:
    """The policies and alerts of one infrastructure, built from its descriptor (`build`) and run pass by pass.

    `options`: the loop's MaintainOptions (policies, dry_run, interval, policy_timeout, prometheus_url)."""

    def __init__(self, store: StateStore, name: str, options, policy_factory: Callable[..., dict] | None = None,
                 loop_metrics: LoopMetrics | None = None):
        self.store, self.name, self.options = store, name, options
        self.policy_factory = policy_factory or scaling_policies
        self.loop_metrics = loop_metrics or LoopMetrics()
        self.scraper = ScrapeSource()
        self.prometheus = PrometheusSource(options.prometheus_url) if options.prometheus_url else None
        self.policies: dict[str, list] = {}
        self.alerts: list = []
        self.error: str | None = None
        self._saved_state: dict[tuple[str, str], str] = {}
        self._last_reason: dict[tuple[str, str], str] = {}
        self._predictions: dict[str, float] = {}
        self._last_eval: dict[tuple[str, str], float] = {}   # when each policy last decided (its `period`)
        self._deciding: dict[tuple[str, str], Any] = {}      # decisions still running past a pass's deadline

    # -- the descriptor's policies -----------------------------------------------------------------
    def build(self, template, inputs: dict) -> list[Event]:
        """Build the policies and alerts of a (new or changed) descriptor; returns what went wrong, as events."""
        self.policies, self.error, events = {}, None, []
        self.alerts = [p for p in template.policies.values()
                       if template.types is not None and template.types.has("policy", p.type)
                       and template.types.is_a(p.type, ALERT_TYPE, "policy")]
        if not self.options.policies or (not template.policies and self.policy_factory is scaling_policies):
            return events
        errors: list = []
        try:
            # the optimizer policy keeps its training samples in this state DB (optimizer.samples.SampleStore)
            self.policies = self.policy_factory(template, inputs, errors=errors, infrastructure=self.name,
                                                state_path=self.store.database) or {}
            events += [Event("policy_broken", {"policy": name, "error": error}, once=f"build:{name}")
                       for name, error in errors]
            self.error = "; ".join(f"{n}: {e}" for n, e in errors) or None
        except ImportError as exc:
            self.error = f"scaling policies unavailable: {exc}"
        except Exception as exc:  # a bad policy setting: report it, keep healing
            self.error = str(exc)
        if self.error and not errors:
            events.append(Event("policy_broken", {"error": self.error}, once="policy_build"))
        return events + self._restore()

    def _restore(self) -> list[Event]:
        """Give each policy the state it saved (a restart of the loop keeps what the policies learnt)."""
        events, stored = [], self.store.policy_states(self.name)
        for node, items in self.policies.items():
            for policy in items:
                saved = stored.get((policy_id(policy), node))
                if not saved:
                    continue
                try:
                    policy.restore(saved)
                except Exception as exc:
                    events.append(Event("policy_broken", {"node": node, "policy": policy_id(policy),
                                                          "error": f"could not restore its state: {exc}"},
                                        once=f"restore:{node}"))
        return events

    # -- metrics and alerts --------------------------------------------------------------------------
    def _wanted(self, template, out: Decisions) -> dict[str, list]:
        """node -> the metrics its policies and alerts read."""
        wanted: dict[str, list] = {}
        for node, items in self.policies.items():
            for policy in items:
                try:
                    wanted.setdefault(node, []).extend(policy.metrics_needed())
                except Exception as exc:
                    out.event("policy_broken", once=f"metrics:{node}", node=node, error=str(exc))
        for alert in self.alerts:
            for node in alert.target_nodes(template):
                wanted.setdefault(node, []).append(AlertMetric(alert))
        return wanted

    def collect(self, template, healthy: dict, counts: dict, latency: dict, out: Decisions) -> dict[str, dict]:
        """Per node: built-in probes plus every metric its policies and alerts ask for."""
        wanted = self._wanted(template, out)
        targets = {}
        for node in wanted:
            for rec in healthy.get(node, []):
                url = instance_metrics_url(rec.attributes or {})
                if url:
                    targets[rec.key] = (node, url)
        if targets:
            # with Prometheus in charge the built-in probes still come from the instances themselves
            self._scrape(targets, out)
        values: dict[str, dict] = {}
        for node in template.node_templates:
            keys = [r.key for r in healthy.get(node, [])]
            values[node] = {"instances": float(counts.get(node, 0)), "ready": float(len(keys))}
            if node in wanted:
                values[node].update(self.scraper.builtins(keys))
                if node in latency:
                    values[node]["health_latency_ms"] = sum(latency[node]) / len(latency[node])
                self._evaluate(node, wanted[node], keys, values[node], out)
        out.metrics = {n: {k: round(v, 6) for k, v in m.items()} for n, m in values.items() if n in wanted}
        return values

    def _evaluate(self, node: str, specs: list, keys: list[str], values: dict, out: Decisions) -> None:
        for spec in specs:
            if spec.name in values and spec.query == spec.name and spec.name in ("instances", "ready"):
                continue
            try:
                value = (self.prometheus or self.scraper).evaluate(spec.query, keys, spec.aggregation, spec.quantile)
            except MetricsError as exc:
                out.errors.append(f"metrics {node}: {exc}")
                out.event("metrics_unavailable", once=f"metrics:{node}:{spec.name}", node=node, error=str(exc))
                continue
            if value is not None:
                values[spec.name] = value

    def _scrape(self, targets: dict[str, tuple[str, str]], out: Decisions) -> None:
        """Scrape the instances (key -> (node, URL)) at once, within the scraper's deadline; an instance that
        fails (no answer in time, an answer over the size limit, an error) is an event naming it, once per reason."""
        self.scraper.scrape({key: url for key, (_, url) in targets.items()})
        for key, (node, _) in targets.items():
            error = self.scraper.errors.get(key)
            if error is None:
                out.forget.append(f"scrape:{key}")
            else:
                out.event("scrape_failed", key, once=f"scrape:{key}", node=node, error=error)

    def evaluate_alerts(self, template, metrics: dict, out: Decisions) -> None:
        """Each alert whose metric crossed its threshold (or came back) since the state last saved."""
        if not self.alerts:
            return
        stored = self.store.policy_states(self.name)
        for alert in self.alerts:
            props = alert.properties or {}
            for node in alert.target_nodes(template):
                spec = AlertMetric(alert)
                value = metrics.get(node, {}).get(spec.name)
                if value is None:
                    continue
                above, below = props.get("above"), props.get("below")
                breach = ((above is not None and value > float(above)) or
                          (below is not None and value < float(below)))
                if breach == bool(stored.get((alert.name, node), {}).get("firing")):
                    continue
                out.alerts.append({"event": "alert_firing" if breach else "alert_resolved", "alert": alert.name,
                                   "node": node, "metric": spec.query, "value": value, "above": above,
                                   "below": below, "infrastructure": self.name,
                                   "firing": breach, "webhook": props.get("webhook")})

    # -- the policies ----------------------------------------------------------------------------------
    def decide(self, template, inputs: dict, counts: dict, healthy: dict, metrics: dict,
               records: list[InstanceRecord], drop: set[str], now: float, out: Decisions) -> None:
        """Every due policy decides at once, within one deadline for the pass; each node takes the largest count.

        `counts` and `drop` become what the policies chose (cooldowns and min/max honoured)."""
        controls = self.store.node_controls(self.name)
        deadline = time.monotonic() + self.options.policy_timeout
        nodes = self._observations(template, inputs, counts, healthy, metrics, now, deadline, out)
        jobs = [(node, policy, obs) for node, (obs, due) in nodes.items() for policy in due]
        outcomes = iter(self._decide_all(jobs, deadline))
        for node, (obs, due) in nodes.items():
            chosen = None
            for policy in due:
                entry = self._take_decision(node, policy, obs, next(outcomes), counts, out)
                if entry is not None and (chosen is None or entry[0].desired > chosen[1].desired):
                    chosen = (policy, *entry)  # several policies on one node: the largest count wins (HPA)
            if chosen is not None:
                self._choose(node, chosen, obs, counts, controls, records, drop, now, out)

    def _observations(self, template, inputs, counts, healthy, metrics, now: float, deadline: float,
                      out: Decisions) -> dict:
        """node -> (its Observation, the policies due this pass); each node's sample goes to `out`."""
        nodes = {}
        for node, items in self.policies.items():
            if node not in template.node_templates or not items:
                continue
            low, high = scaling.node_limits(template.node_templates[node], inputs)
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
            out.samples.append((node, counts[node], target, {k: v for k, v in values.items() if k != "instances"}))
            nodes[node] = (obs, [policy for policy in items if self._due(node, policy, now)])
        return nodes

    def _due(self, node: str, policy, now: float) -> bool:
        """Whether a policy decides this pass (its `period`); a policy still deciding since an earlier pass does not."""
        key = (node, policy_id(policy))
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
        futures = settle([functools.partial(policy.decide, obs) for _, policy, obs in jobs], deadline + POLICY_SLACK,
                         POLICY_WORKERS, "strato-policy")
        outcomes = []
        for (node, policy, _), future in zip(jobs, futures):
            if future.done() and not future.cancelled():
                outcomes.append(future.exception() or future.result())
                continue
            if not future.cancelled():
                self._deciding[(node, policy_id(policy))] = future
            outcomes.append(PolicyError(f"no decision within the loop's {self.options.policy_timeout:g} s deadline "
                                        "for all policies of a pass"))
        return outcomes

    def _take_decision(self, node: str, policy, obs, outcome, counts, out: Decisions) -> tuple | None:
        """Report one policy's decision (or why it has none); (decision, report entry) when it has one."""
        pid = policy_id(policy)
        if isinstance(outcome, BaseException):
            self._policy_failed(node, policy, outcome, obs.metrics, counts, out)
            return None
        try:
            policy.learn(obs)
        except Exception as exc:
            out.event("policy_broken", once=f"learn:{node}:{pid}", node=node, policy=pid,
                      error=f"learning failed: {type(exc).__name__}: {exc}")
        self._policy_state(policy, node, out)
        entry = {"node": node, "policy": pid, "current": counts[node], "desired": int(outcome.desired),
                 "reason": outcome.reason, "drop": list(outcome.drop)}
        out.decisions.append(entry)
        return outcome, entry

    def _policy_failed(self, node: str, policy, exc: BaseException, values: dict, counts, out: Decisions) -> None:
        pid = policy_id(policy)
        absent = self._absent_metrics(policy, values)
        if absent:  # no data yet (a first scrape has no rates, no requests no latency): a wait
            reason = f"waiting for metric(s) {', '.join(absent)}"
            out.decisions.append({"node": node, "policy": pid, "current": counts[node],
                                  "desired": counts[node], "reason": reason})
            if self._last_reason.get((node, pid)) != reason:
                self._last_reason[(node, pid)] = reason
                out.event("decision", node=node, policy=pid, current=counts[node],
                          desired=counts[node], action="hold", reason=reason)
            return
        if self.loop_metrics.registry is not None:
            self.loop_metrics.policy_errors.labels(self.name, pid).inc()
        out.decisions.append({"node": node, "policy": pid, "error": str(exc)})
        out.event("policy_broken", once=f"decide:{node}:{pid}", node=node, policy=pid,
                  error=f"{type(exc).__name__}: {exc}")

    def _hold(self, node: str, pid: str, reason: str, seen: str, current: int, desired: int, action: str,
              out: Decisions, detail: dict | None = None) -> None:
        """One decision event for a hold or a cooldown, when its reason (`seen`) changed or, for a policy that
        explains each decision with a forecast (the optimizer), every time it decides: its timeline needs them all."""
        explained = journal_detail(detail)
        if self._last_reason.get((node, pid)) != seen or "forecast" in explained:
            self._last_reason[(node, pid)] = seen
            out.event("decision", node=node, policy=pid, current=current, desired=desired, action=action,
                      reason=reason, **({"detail": explained} if explained else {}))

    def _choose(self, node: str, chosen: tuple, obs, counts, controls, records, drop, now: float,
                out: Decisions) -> None:
        """Hold, wait out the cooldown, or scale a node to the count its winning policy chose."""
        policy, decision, entry = chosen
        pid = policy_id(policy)
        desired = min(max(obs.min_instances, int(decision.desired)), obs.max_instances)
        predicted = (decision.detail or {}).get("predicted_target")
        if desired == counts[node]:
            self._hold(node, pid, decision.reason, decision.reason, counts[node], desired, "hold", out,
                       decision.detail)
            if isinstance(predicted, (int, float)):
                self._predictions[node] = float(predicted)
            return
        cooldown = float(getattr(policy, "cooldown_s", 0.0) or 0.0)
        last = controls.get(node, {}).get("last_action")
        if cooldown and last and now - last < cooldown:
            reason = f"{decision.reason}; held: cooldown {cooldown:g} s, {now - last:.1f} s since the last action"
            self._hold(node, pid, reason, reason.split(";")[0] + "cooldown", counts[node], desired, "cooldown", out,
                       decision.detail)
            return
        direction = "up" if desired > counts[node] else "down"
        self._last_reason[(node, pid)] = decision.reason
        if isinstance(predicted, (int, float)):
            self._predictions[node] = float(predicted)
        if direction == "down":
            for ident in decision.drop[: counts[node] - desired]:
                target = scaling.resolve_instance(ident, node, records)
                if target is not None:
                    drop.add(target.key)
        entry["action"] = direction
        out.scaled.append({"node": node, "from": counts[node], "desired": desired, "direction": direction,
                           "policy": pid, "reason": decision.reason, "detail": journal_detail(decision.detail),
                           "ts": now})
        if self.loop_metrics.registry is not None:
            self.loop_metrics.actions.labels(self.name, node, pid, direction).inc()
        counts[node] = desired

    @staticmethod
    def _absent_metrics(policy, values: dict) -> list[str]:
        try:
            return sorted({spec.name for spec in policy.metrics_needed()} - set(values))
        except Exception:  # reported by collect already
            return []

    def _prediction_error(self, node: str, measured: float | None) -> None:
        predicted = self._predictions.pop(node, None)
        if predicted is None or measured is None or measured <= 0 or self.loop_metrics.registry is None:
            return
        self.loop_metrics.prediction_error.labels(self.name, node).set(abs(predicted - measured) / measured)

    def _policy_state(self, policy, node: str, out: Decisions) -> None:
        """The policy's state, into `out` when it changed since it was last saved."""
        if self.options.dry_run:
            return
        try:
            state = policy.state()
        except Exception:
            return
        text = json.dumps(state, sort_keys=True, default=str)
        key = (policy_id(policy), node)
        if self._saved_state.get(key) != text:
            out.states.append((key[0], node, state))
            self._saved_state[key] = text


def prometheus_targets_path(store: StateStore, name: str) -> str:
    """Where the loop lists an infrastructure's scrape targets for Prometheus (file_sd_configs:
    files: [$STRATO_HOME/prometheus/*.json])."""
    return os.path.join(store.home, "prometheus", f"{name}.json")


def file_sd_targets(name: str, records: list[InstanceRecord]) -> list[dict]:
    """The ready instances that serve metrics, as Prometheus file_sd targets."""
    targets = []
    for rec in records:
        url = instance_metrics_url(rec.attributes or {}) if rec.status == "ready" else None
        if url:
            targets.append({"targets": [urllib.parse.urlsplit(url).netloc],
                            "labels": {"infrastructure": name, "node": rec.node, "strato_instance": rec.key}})
    return targets


def notify(url: str, payload: dict, on_error: Callable[[str, str], None]) -> None:
    """POST an alert to its webhook from a thread of its own: an unreachable webhook never holds the loop."""
    threading.Thread(target=_post_webhook, args=(url, payload, on_error), daemon=True).start()


def _post_webhook(url: str, payload: dict, on_error: Callable[[str, str], None]) -> None:
    try:
        req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5):
            pass
    except Exception as exc:  # an unreachable webhook is reported, never fatal
        on_error(url, str(exc))
