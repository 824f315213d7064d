"""Target tracking by the Kubernetes HPA rule: desired = ceil(current x metric / target), the baseline to beat.

Defaults are the HPA's (autoscaling/v2 `behavior` defaults): no change while the ratio is within
the 0.1 tolerance, scale-down acts on the highest recommendation of the last 300 s, scale-up adds
at most max(+100 %, +4) instances per 15 s. Every one of them can be overridden.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from policies.base import MetricSpec, Observation, PolicyError, ScalingDecision, ScalingPolicy


@dataclass(frozen=True)
class TargetTrackingConfig:
    target_value: float  # desired per-instance value of the tracked metric (e.g. 0.6 CPU utilisation)
    tolerance: float = 0.1  # HPA's default: no change while |metric/target - 1| <= 0.1
    scale_down_stabilization_s: float = 300.0  # HPA's default stabilisation window for scale-down
    min_instances: int = 1
    max_instances: int | None = 100
    scale_up_percent: float = 100.0  # HPA's default scale-up policies: +100 % or +4 per 15 s, the larger
    scale_up_instances: int = 4
    scale_up_period_s: float = 15.0
    scale_up_stabilization_s: float = 0.0  # HPA's default: scale up at once

    def __post_init__(self):
        def number(name, low, strict=False):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (strict and value == low):
                raise PolicyError(f"target tracking: {name} must be a number {'>' if strict else '>='} {low:g} "
                                  f"(got {value!r})")
        number("target_value", 0, strict=True)
        number("tolerance", 0)
        number("scale_down_stabilization_s", 0)
        number("scale_up_stabilization_s", 0)
        number("scale_up_percent", 0)
        number("scale_up_instances", 0)
        number("scale_up_period_s", 0, strict=True)
        number("min_instances", 0)
        if self.max_instances is not None:
            number("max_instances", max(1, self.min_instances))


class TargetTracker:
    """desired = ceil(W * metric / target), with HPA's tolerance, scale-up limit and stabilisation windows.

    `desired` assumes the caller acts on what it returns: the scale-ups it returns are what the
    per-period rate limit counts."""

    def __init__(self, config: TargetTrackingConfig):
        self.config = config
        self._recommendations: deque[tuple[float, int]] = deque()
        self._scale_ups: deque[tuple[float, int]] = deque()  # (time, instances added) within the rate period

    def desired(self, now: float, instances: int, metric_value: float) -> int:
        return self.recommend(now, instances, metric_value)[0]

    def recommend(self, now: float, instances: int, metric_value: float) -> tuple[int, list[str]]:
        """The count to have and notes on what shaped it (tolerance, rate limit, bounds, stabilisation)."""
        cfg = self.config
        if not isinstance(metric_value, (int, float)) or not math.isfinite(metric_value) or metric_value < 0:
            raise PolicyError(f"target tracking needs a finite non-negative metric value (got {metric_value!r})")
        notes: list[str] = []
        ratio = metric_value / cfg.target_value
        if abs(ratio - 1.0) <= cfg.tolerance:
            proposal = instances
            notes.append(f"within the {cfg.tolerance:g} tolerance")
        else:
            proposal = math.ceil(instances * ratio - 1e-9)
        # Scale-up rate limit: relative to the count at the start of the period (HPA's periodStartReplicas).
        while self._scale_ups and self._scale_ups[0][0] <= now - cfg.scale_up_period_s:
            self._scale_ups.popleft()
        start = instances - sum(d for _, d in self._scale_ups)
        limit = max(math.ceil(start * (1 + cfg.scale_up_percent / 100.0)), start + int(cfg.scale_up_instances),
                    instances)
        if proposal > limit:
            notes.append(f"scale-up limited to {limit} (max(+{cfg.scale_up_percent:g} %, "
                         f"+{cfg.scale_up_instances}) per {cfg.scale_up_period_s:g} s)")
            proposal = limit
        bounded = max(cfg.min_instances, proposal)
        if cfg.max_instances is not None:
            bounded = min(cfg.max_instances, bounded)
        if bounded != proposal:
            notes.append(f"bounded to {bounded}")
            proposal = bounded
        # Stabilisation: act on the highest recommendation of the scale-down window (and, when one
        # is set, the lowest of the scale-up window).
        self._recommendations.append((now, proposal))
        horizon = max(cfg.scale_down_stabilization_s, cfg.scale_up_stabilization_s)
        while self._recommendations and self._recommendations[0][0] < now - horizon:
            self._recommendations.popleft()
        if proposal < instances:
            held = min(instances, max(r for t, r in self._recommendations
                                      if t >= now - cfg.scale_down_stabilization_s))
            if held != proposal:
                notes.append(f"scale-down to {proposal} held at {held} by the "
                             f"{cfg.scale_down_stabilization_s:g} s stabilisation window")
            proposal = held
        elif proposal > instances and cfg.scale_up_stabilization_s > 0:
            held = max(instances, min(r for t, r in self._recommendations
                                      if t >= now - cfg.scale_up_stabilization_s))
            if held != proposal:
                notes.append(f"scale-up to {proposal} held at {held} by the "
                             f"{cfg.scale_up_stabilization_s:g} s scale-up stabilisation window")
            proposal = held
        if proposal > instances:
            self._scale_ups.append((now, proposal - instances))
        return int(proposal), notes

    def state(self) -> dict:
        return {"recommendations": [[t, r] for t, r in self._recommendations],
                "scale_ups": [[t, d] for t, d in self._scale_ups]}

    def restore(self, state: dict) -> None:
        try:
            self._recommendations = deque((float(t), int(r)) for t, r in state.get("recommendations", []))
            self._scale_ups = deque((float(t), int(d)) for t, d in state.get("scale_ups", []))
        except (TypeError, ValueError, AttributeError) as error:
            raise PolicyError(f"target tracking: unreadable saved state ({error})") from None


class TargetTrackingPolicy(ScalingPolicy):
    """The HPA rule on one node metric, as a `ScalingPolicy`.

    The metric is read per instance: with aggregation `sum` the node total is divided by the
    instance count (HPA's AverageValue target); otherwise the aggregate is taken as the
    per-instance value (HPA's Utilization target). With `unready_as_idle` the value is scaled by
    ready / instances, as the HPA counts starting pods as idle."""

    name = "target_tracking"

    def __init__(self, metric: MetricSpec, config: TargetTrackingConfig, *, node: str = "",
                 unready_as_idle: bool = False, label: str | None = None):
        if not isinstance(metric, MetricSpec):
            raise PolicyError("target tracking needs a MetricSpec")
        self.metric, self.config, self.node = metric, config, node
        self.unready_as_idle = unready_as_idle
        self.min_instances, self.max_instances = config.min_instances, config.max_instances
        self.tracker = TargetTracker(config)
        if label:
            self.name = label

    def metrics_needed(self) -> list[MetricSpec]:
        return [self.metric]

    def per_instance_value(self, observation: Observation) -> float:
        if self.metric.name not in observation.metrics:
            raise PolicyError(f"target tracking: metric {self.metric.name!r} is missing from this observation")
        value = observation.metrics[self.metric.name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PolicyError(f"target tracking: metric {self.metric.name!r} is not a finite non-negative number "
                              f"({value!r})")
        value = float(value)
        if self.metric.aggregation == "sum":
            value /= max(observation.instances, 1)
        if self.unready_as_idle and observation.instances > 0:
            value *= max(observation.ready, 0) / observation.instances
        return value

    def decide(self, observation: Observation) -> ScalingDecision:
        value = self.per_instance_value(observation)
        count, notes = self.tracker.recommend(observation.now, observation.instances, value)
        final = self.bounded(count, observation)
        if final != count:
            notes.append(f"bounded to {final} by the node's min/max")
        reason = (f"target tracking: {self.metric.name} {value:.3g} per instance vs target "
                  f"{self.config.target_value:g} -> {final}")
        if notes:
            reason += " (" + "; ".join(notes) + ")"
        return ScalingDecision(final, reason, self.name,
                               detail={"metric": self.metric.name, "value": value,
                                       "target": self.config.target_value})

    def state(self) -> dict:
        return self.tracker.state()

    def restore(self, state: dict) -> None:
        self.tracker.restore(state or {})
