"""The one interface every scaling decision goes through: `decide(observation) -> ScalingDecision`.

The live maintain loop (orchestrator/maintain.py) and the offline simulator (optimizer/simulator.py)
build the same `Observation` and call the same policy objects, so what is evaluated offline is
exactly what runs. A policy keeps only what it may lose: anything that must survive a restart of
the loop (samples, cooldowns, the stabilisation window's recommendations) is handed to it again
through `Observation.history` / `restore()` by the caller, which keeps it in the state store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Observation:
    """What one node looks like at one moment, as a policy sees it."""

    now: float                      # seconds; wall clock live, simulated time offline
    node: str
    instances: int                  # provisioned (desired) count, starting ones included
    ready: int                      # instances observed healthy
    metrics: dict[str, float] = field(default_factory=dict)   # per-node aggregates, by name
    instance_ids: tuple[str, ...] = ()   # the live instances, oldest first (for `drop`)
    min_instances: int = 1
    max_instances: int | None = None
    target: float | None = None     # the measured target metric (e.g. p95 latency), when there is one
    extra: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() by which the decision is due: the live loop's one deadline for all the policies
    # of a pass (a rule's sandbox stops there); None offline, where only each policy's own limits apply
    deadline: float | None = None


@dataclass
class ScalingDecision:
    """A policy's answer: how many instances, optionally which ones to drop, and why."""

    desired: int
    reason: str = ""
    policy: str = ""
    drop: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"desired": self.desired, "reason": self.reason, "policy": self.policy, "drop": list(self.drop),
                "detail": self.detail}


class PolicyError(ValueError):
    """A policy that cannot decide or is badly set (a broken rule, a missing metric, a bad setting).

    The loop reports it and keeps running. It is a ValueError so that callers which validated
    settings with ValueError before keep working."""


AGGREGATIONS = ("sum", "mean", "max", "min", "quantile")


@dataclass(frozen=True)
class MetricSpec:
    """A metric a policy needs: the loop collects it per node and puts it in `Observation.metrics[name]`.

    `query` is PromQL when a Prometheus is configured; when instances are scraped directly it is
    read as a metric name (optionally with a label selector). The per-instance values are combined
    into one node value by `aggregation` (`quantile` uses `quantile`, 0..1)."""

    name: str
    query: str
    aggregation: str = "mean"
    quantile: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError("a metric needs a name")
        if not isinstance(self.query, str) or not self.query.strip():
            raise PolicyError(f"metric {self.name!r} needs a query (PromQL or a metric name)")
        if self.aggregation not in AGGREGATIONS:
            raise PolicyError(f"metric {self.name!r}: aggregation must be one of {', '.join(AGGREGATIONS)} "
                              f"(got {self.aggregation!r})")
        if self.aggregation == "quantile":
            if not isinstance(self.quantile, (int, float)) or not 0 <= self.quantile <= 1:
                raise PolicyError(f"metric {self.name!r}: aggregation 'quantile' needs a quantile between 0 and 1")
        elif self.quantile is not None:
            raise PolicyError(f"metric {self.name!r}: a quantile is only meaningful with aggregation 'quantile'")

    def to_dict(self) -> dict:
        return {"name": self.name, "query": self.query, "aggregation": self.aggregation, "quantile": self.quantile}


class ScalingPolicy:
    """Base class of scaling policies."""

    name = "policy"
    node: str = ""
    min_instances: int | None = None  # the policy's own bounds, applied with the observation's
    max_instances: int | None = None
    source: str = ""                 # the template policy it was built from
    period_s: float | None = None    # how often the template wants it evaluated (None: every pass)
    cooldown_s: float = 0.0          # no new action this soon after the previous one (the loop enforces it)

    def decide(self, observation: Observation) -> ScalingDecision:
        raise NotImplementedError

    def metrics_needed(self) -> list[MetricSpec]:
        """The metrics this policy reads from `Observation.metrics` (what the loop must collect)."""
        return []

    def needs_target(self) -> bool:
        """Whether `Observation.target` (the measured target metric) must be filled in."""
        return False

    def bounded(self, count: int, observation: Observation) -> int:
        """`count` within both the observation's and the policy's own min/max."""
        count = clamp(count, observation)
        if self.min_instances is not None:
            count = max(self.min_instances, count)
        if self.max_instances is not None:
            count = min(self.max_instances, count)
        return int(count)

    def learn(self, observation: Observation) -> None:
        """Called after `decide` with the same observation: retraining happens here, off the decision path."""

    def state(self) -> dict[str, Any]:
        """What must survive a restart of the loop (JSON-serialisable); the caller stores it."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `state()` returned before a restart."""


def clamp(count: int, observation: Observation) -> int:
    """The count within the node's min/max."""
    count = max(observation.min_instances, count)
    if observation.max_instances is not None:
        count = min(observation.max_instances, count)
    return count
