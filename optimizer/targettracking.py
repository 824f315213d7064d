"""Target tracking by the Kubernetes HPA formula: the fallback policy and the baseline to beat."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetTrackingConfig:
    target_value: float  # desired per-instance value of the tracked metric (e.g. 0.6 CPU utilisation)
    tolerance: float = 0.1  # HPA's default: no change while |metric/target - 1| <= 0.1
    scale_down_stabilization_s: float = 300.0  # HPA's default stabilisation window for scale-down
    min_instances: int = 1
    max_instances: int = 100


class TargetTracker:
    """desired = ceil(W * metric / target), with HPA's tolerance, scale-up limit and scale-down stabilisation."""

    def __init__(self, config: TargetTrackingConfig):
        if config.target_value <= 0:
            raise ValueError("target tracking needs a positive target value")
        self.config = config
        self._recommendations: deque[tuple[float, int]] = deque()

    def desired(self, now: float, instances: int, metric_value: float) -> int:
        cfg = self.config
        ratio = metric_value / cfg.target_value
        if abs(ratio - 1.0) <= cfg.tolerance:
            proposal = instances
        else:
            proposal = math.ceil(instances * ratio - 1e-9)
        # HPA's default scale-up policy: at most +100 % or +4 pods per period, whichever is more.
        proposal = min(proposal, max(2 * instances, instances + 4))
        proposal = max(cfg.min_instances, min(cfg.max_instances, proposal))
        # Scale-down stabilisation: act on the highest recommendation of the window.
        self._recommendations.append((now, proposal))
        while self._recommendations and self._recommendations[0][0] < now - cfg.scale_down_stabilization_s:
            self._recommendations.popleft()
        if proposal < instances:
            proposal = min(instances, max(r for _, r in self._recommendations))
        return proposal
