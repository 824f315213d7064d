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


class PolicyError(Exception):
    """A policy that cannot decide (a broken rule, a missing metric): the loop reports it and keeps running."""


class ScalingPolicy:
    """Base class of scaling policies."""

    name = "policy"

    def decide(self, observation: Observation) -> ScalingDecision:
        raise NotImplementedError

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
