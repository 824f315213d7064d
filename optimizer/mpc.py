"""Model-predictive choice of an instance count: replica cost plus a priced expected violation, over the forecast.

The decision at time t can add capacity only from t + d (d = start-up delay in intervals) but removes
it at once, and what it removes cannot come back before t + 1 + d. So, per step h ahead, the cost of
a count n is n replica-intervals plus `price` x the probability that the step violates the target,
taken over the load forecast's distribution and the capacity model's uncertainty, plus the d - 1
intervals a new instance is paid for before it serves. One objective for
every candidate: the replicas are counted on the steps d..H, where any choice acts, and the expected
violations on every step 1..H, where a scale-down already acts (before d, every count from the
current one up serves the same). H = d + 1: what is needed later is decided later (the decision is
re-taken every interval, receding horizon).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from optimizer.forecast import LEVEL_WEIGHTS, Forecast

OVERLOAD = 0.5   # more likely than not to violate: an overload, whatever the price

# violation_probability(loads (m,), counts (m,)) -> (probability (m,), predicted target (m,))
ViolationModel = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MpcState:
    provisioned: int      # instances asked for (starting ones included)
    ready: int            # instances serving now
    min_instances: int
    max_instances: int
    max_up: int
    max_down: int
    startup_steps: int    # d: intervals before a new instance serves


@dataclass(frozen=True)
class MpcChoice:
    instances: int
    cost: float                   # mean cost per step of the chosen count (replica-intervals)
    candidates: list[dict]        # per candidate: instances, cost, violation_probability, predicted_target
    reason: str


def horizon_for(startup_steps: int) -> int:
    return max(1, startup_steps) + 1


def _ready_by_step(state: MpcState, count: int, horizon: int) -> np.ndarray:
    """Instances serving at steps 1..horizon if the count becomes `count` now."""
    steps = np.arange(1, horizon + 1)
    if count >= state.provisioned:  # starting ones (assumed to serve at d at the latest) and new ones serve at d
        return np.where(steps >= state.startup_steps, count, state.ready)
    return np.where(steps >= state.startup_steps, count, min(count, state.ready))


def evaluate(state: MpcState, forecast: Forecast, price: float, model: ViolationModel) -> list[dict]:
    """Every candidate count with its cost: replica-intervals over the steps d..H where any count acts, plus
    `price` x the expected violated steps over 1..H (where a scale-down already acts), per step of d..H."""
    horizon, d = forecast.horizon, min(max(1, state.startup_steps), forecast.horizon)
    low = max(state.min_instances, state.provisioned - state.max_down)
    high = min(state.max_instances, state.provisioned + state.max_up)
    counts = list(range(min(low, state.provisioned), max(high, state.provisioned) + 1))
    # One model call for every (candidate, step, quantile) triple.
    ready = np.array([_ready_by_step(state, n, horizon) for n in counts], float)          # (c, H)
    loads = np.broadcast_to(forecast.values[None, :, :], (len(counts), *forecast.values.shape))
    counts_grid = np.broadcast_to(np.maximum(ready, 1)[:, :, None], loads.shape)
    probability, predicted = model(loads.reshape(-1), counts_grid.reshape(-1))
    probability = probability.reshape(loads.shape) @ LEVEL_WEIGHTS                     # (c, H)
    predicted = predicted.reshape(loads.shape)[:, :, len(LEVEL_WEIGHTS) // 2]           # at the median load
    acting = horizon - d + 1
    out = []
    for i, n in enumerate(counts):
        expected = float(probability[i].sum())
        # A new instance is paid for d - 1 intervals before it serves: spread over the steps it is judged on.
        starting = max(0, n - state.provisioned) * (d - 1) / horizon
        out.append({"instances": n, "violation_probability": round(expected / horizon, 5),
                    "acting_probability": float(probability[i, d - 1:].mean()),
                    "predicted_target": round(float(predicted[i, -1]), 6),
                    "cost": n + starting + price * expected / acting})
    return out


def choose(state: MpcState, forecast: Forecast, price: float, model: ViolationModel) -> MpcChoice:
    """The count to ask for now; see the module's doc."""
    candidates = evaluate(state, forecast, price, model)
    # Ties go to the current count, then to fewer instances.
    chosen = min(candidates, key=lambda c: (round(c["cost"], 9), c["instances"] != state.provisioned, c["instances"]))
    keep = next(c for c in candidates if c["instances"] == state.provisioned)
    overloaded = min(c["acting_probability"] for c in candidates) > OVERLOAD
    if overloaded or (keep["acting_probability"] > OVERLOAD and chosen["instances"] < state.provisioned):
        # A step's violation probability cannot see how deep an overload is, nor the backlog it leaves for
        # the steps after the horizon: when no reachable count is likely to keep the target, or the current
        # one is not, capacity is never removed, and all the step limit allows is added when nothing fits.
        chosen = max(candidates, key=lambda c: c["instances"]) if overloaded else keep
    for c in candidates:
        c["cost"] = round(c["cost"], 4)
        c.pop("acting_probability")
    # The reason stays the same while the choice does (the loop journals a hold only when its reason
    # changes); the costs and probabilities are in the candidates.
    why = (f"{chosen['instances']} instance(s): overloaded at every reachable count" if overloaded else
           f"{chosen['instances']} instance(s) cost least over the {forecast.method} load forecast")
    return MpcChoice(int(chosen["instances"]), float(chosen["cost"]), candidates, why)
