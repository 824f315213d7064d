"""Issue 20's figures in one run: drift detection, rollouts through HAProxy, and the router's added latency.

    python benchmarks/mlops.py            # each part's table, then one JSON line with every figure
    python benchmarks/mlops.py --only drift,router

The parts run one after another (never at once: two cores), each in this process:
- drift   (benchmarks/mlops_drift.py):   detection_delay_windows {abrupt, gradual}, false_alarms_per_1000_windows;
- rollout (benchmarks/mlops_rollout.py): good_rollout_failed_requests, bad_rollout_errors_served against the
  allowance (canary weight x analysis window x request rate x error rate), rollback_s against 2 intervals;
- router  (benchmarks/mlops_router.py):  router_added_latency_p99_ms, HAProxy path minus direct to one replica.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PARTS = ("drift", "rollout", "router")


def _drift() -> dict:
    from mlops_drift import drift_figures
    return drift_figures()


def _rollout() -> dict:
    from mlops_rollout import rollout_figures
    return rollout_figures()


def _router() -> dict:
    from mlops_router import router_latency
    return router_latency()


RUNNERS = {"drift": _drift, "rollout": _rollout, "router": _router}
HEADLINE = ("detection_delay_windows", "false_alarms_per_1000_windows", "good_rollout_failed_requests",
            "bad_rollout_errors_served", "bad_rollout_allowance", "bad_rollout_canary_failures", "rollback_s",
            "rollback_target_s",
            "router_added_latency_p99_ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run (default: all)")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in RUNNERS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    figures: dict = {}
    for part in chosen:
        started = time.monotonic()
        print(f"== {part}", flush=True)
        result = RUNNERS[part]()
        print(json.dumps(result), flush=True)
        figures[part] = result
        figures[f"{part}_elapsed_s"] = round(time.monotonic() - started, 1)
    for part in chosen:
        for name in HEADLINE:
            if name in figures[part]:
                figures[name] = figures[part][name]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
