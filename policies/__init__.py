"""Scaling and placement policies and their safe rule evaluation (light: numpy/sklearn load only with the optimizer policy)."""
from policies.base import (MetricSpec, Observation, PolicyError, ScalingDecision, ScalingPolicy,  # noqa: F401
                           clamp)
from policies.factory import build_policy, metrics_needed, scaling_policies  # noqa: F401
from policies.target_tracking import (TargetTracker, TargetTrackingConfig,  # noqa: F401
                                      TargetTrackingPolicy)
