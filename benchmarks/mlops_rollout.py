"""Benchmark piece of issue 20 (benchmarks/mlops.py): progressive rollout on examples/mlops, real model servers behind a
real HAProxy on loopback, a steady request stream through it, the maintain loop every 0.5 s.

 1. A good new version: canary 10 % -> 50 % -> promoted; `good_rollout_failed_requests` (target 0).
 2. A bad version (half its answers are HTTP 500): aborted by the analysis. `bad_rollout_errors_served` is what
    clients received (the router retries a failed attempt on another server), `bad_rollout_canary_failures` what
    the canary failed before any retry, both against the allowance canary weight x analysis window x request rate
    x error rate. `rollback_s`: from the start of the first failed window to the canary's weight 0 (the abort,
    in the same pass; target <= 2 analysis intervals).
Prints the figures, then one JSON line.
    python benchmarks/mlops_rollout.py [--rate 80] [--interval 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.e2e.rollout_harness import Load, Stack, haproxy_missing  # noqa: E402

ERROR_RATE = 0.5
FIRST_WEIGHT = 0.10    # the example's first canary step


def _stack(home: str, name: str, interval: float) -> Stack:
    stack = Stack(home, name, {"analysis_interval": f"{interval:g} s", "step_pause": f"{interval:g} s",
                               "min_samples": 10, "failure_limit": 2, "keep_failed": "2 s",
                               "progress_deadline": "2 m"})
    stack.build()
    return stack


def good_rollout(home: str, rate: float, interval: float) -> dict:
    stack = _stack(home, "bench-good", interval)
    try:
        load = Load(stack.endpoint(), rate=rate).start()
        stack.start_loop()
        time.sleep(1.5)
        t0 = time.time()
        stack.push("good v2")
        promoted = stack.wait_for("rollout_promoted", 120, t0)
        time.sleep(1.0)
        load.finish()
        return {"promoted": promoted is not None, "promote_s": round(promoted["ts"] - t0, 2) if promoted else None,
                "requests": len(load.results), "failed": len(load.failed())}
    finally:
        stack.destroy()


def bad_rollout(home: str, rate: float, interval: float) -> dict:
    stack = _stack(home, "bench-bad", interval)
    try:
        load = Load(stack.endpoint(), rate=rate).start()
        stack.start_loop()
        time.sleep(1.5)
        t0 = time.time()
        stack.push("bad v2", error_rate=ERROR_RATE)
        aborted = stack.wait_for("rollout_aborted", 120, t0)
        time.sleep(1.0)
        load.finish()
        windows = [e for e in stack.events("rollout_analysis") if e["ts"] >= t0]
        failed = [e for e in windows if e["verdict"] == "fail"]
        first_bad = failed[0]["ts"] - failed[0]["window_s"] if failed else None
        canary_failures = sum(round(e["values"].get("canary_error_rate", 0) * e["values"].get("canary_requests", 0))
                              for e in windows)
        return {"aborted": aborted is not None, "reasons": aborted["reasons"] if aborted else None,
                "rollback_s": round(aborted["ts"] - first_bad, 3) if aborted and first_bad else None,
                "errors_served": len(load.failed(t0)), "canary_failures": canary_failures,
                "requests": len(load.results), "windows": [e["verdict"] for e in windows]}
    finally:
        stack.destroy()


def rollout_figures(rate: float = 80.0, interval: float = 2.0) -> dict:
    """Both runs under a private STRATO_HOME; the figures issue 20 asks for."""
    missing = haproxy_missing()
    if missing:
        return {"skipped": missing}
    home = tempfile.mkdtemp(prefix="strato-bench-rollout-")
    os.environ["STRATO_HOME"] = home
    good = good_rollout(home, rate, interval)
    bad = bad_rollout(home, rate, interval)
    allowance = FIRST_WEIGHT * interval * rate * ERROR_RATE
    return {"good_rollout_failed_requests": good["failed"], "good_rollout_requests": good["requests"],
            "good_rollout_promote_s": good["promote_s"],
            "bad_rollout_errors_served": bad["errors_served"], "bad_rollout_canary_failures": bad["canary_failures"],
            "bad_rollout_allowance": allowance,
            "allowance_formula": f"canary weight {FIRST_WEIGHT:g} x window {interval:g} s x {rate:g} req/s x error "
                                 f"rate {ERROR_RATE:g}",
            "bad_rollout_aborted": bad["aborted"], "bad_rollout_reasons": bad["reasons"],
            "bad_rollout_windows": bad["windows"],
            "rollback_s": bad["rollback_s"], "rollback_target_s": 2 * interval, "analysis_interval_s": interval,
            "request_rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second through the router")
    parser.add_argument("--interval", type=float, default=2.0, help="the analysis window, in seconds")
    args = parser.parse_args()
    figures = rollout_figures(args.rate, args.interval)
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
