"""Target tracking by the Kubernetes HPA formula (the advisor's fallback): it lives in policies.target_tracking."""
from policies.target_tracking import TargetTracker, TargetTrackingConfig

__all__ = ["TargetTracker", "TargetTrackingConfig"]
