"""Feature construction shared by the models: scaling events and log-scale inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.samples import SampleSet

# The definition of "after scaling": the mean target over this many samples after
# the instance count changed.
AFTER_WINDOW = 4


@dataclass(frozen=True)
class ScalingEvents:
    """Rows where the instance count changed between sample i and i+1."""

    before: np.ndarray  # index i of the last sample before the change
    delta: np.ndarray  # W[i+1] - W[i]
    after_target: np.ndarray  # mean target over samples i+1 .. i+AFTER_WINDOW
    after_metrics: np.ndarray  # mean metrics over the same samples
    next_metrics: np.ndarray  # metrics of sample i+1 alone (what MiCADO regresses on)


def scaling_events(samples: SampleSet, window: int = AFTER_WINDOW) -> ScalingEvents:
    """Find every instance-count change whose whole after-window lies inside `samples`."""
    w = samples.instances
    change = np.flatnonzero(np.diff(w) != 0)
    change = change[change + window < len(w)]
    after_target = np.array([samples.target[i + 1:i + 1 + window].mean() for i in change])
    after_metrics = np.array([samples.metrics[i + 1:i + 1 + window].mean(axis=0) for i in change])
    k = samples.metrics.shape[1]
    return ScalingEvents(change, w[change + 1] - w[change], after_target,
                         after_metrics.reshape(len(change), k), samples.metrics[change + 1].reshape(len(change), k))


def signed_log(x: np.ndarray) -> np.ndarray:
    """log1p that keeps the sign, so metrics spanning decades become roughly linear inputs."""
    return np.sign(x) * np.log1p(np.abs(x))


def target_inputs(metrics: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Inputs of Strato's target model: log metrics and log instance count.

    On a log scale, load per instance (m / W) is a linear combination of these inputs,
    so the net does not need it spelled out for every metric.
    """
    metrics = np.atleast_2d(metrics)
    return np.column_stack([signed_log(metrics), np.log(np.asarray(instances, dtype=float).reshape(-1))])
