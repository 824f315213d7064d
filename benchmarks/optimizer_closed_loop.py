"""Closed-loop benchmark: Strato's predictive optimizer against the HPA's cost/violation frontier and the clairvoyant limit.

    python benchmarks/optimizer_closed_loop.py --frontier --json   # every load: the issue's figures
    python benchmarks/optimizer_closed_loop.py                     # one WorldCup98 stretch, every policy
    python benchmarks/optimizer_closed_loop.py --frontier --quick  # iteration aid: 3 loads, 1 seed

Per load (--frontier): the HPA is run at every target CPU utilisation of FRONTIER_HPA_TARGETS, which
draws its frontier of replica-hours against SLO-violation time; the clairvoyant policy (it knows the
coming load and provisions, one start-up delay ahead, what the coming peak needs at utilisation u) is
run at every u of ORACLE_UTILISATIONS; Strato runs ONCE per seed with ONE fixed setting for every
load. The figures:
- violation_ratio_at_equal_cost: Strato's violation % over the HPA frontier's, interpolated at
  Strato's replica-hours (none when Strato's cost lies outside the frontier);
- cost_vs_oracle: Strato's replica-hours over the oracle's cheapest point with no more violations;
- forecast pinball loss (Strato's forecaster) over a seasonal-naive forecast's, on the evaluation
  stretch, one start-up delay plus one interval ahead.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

# One BLAS thread per process: with --jobs > 1 the worker processes otherwise oversubscribe the cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import loads as load_catalogue  # noqa: E402
from optimizer.calibration import calibration_from_json  # noqa: E402
from optimizer.errors import OptimizerInputError  # noqa: E402
from optimizer.forecast import LoadForecaster, pinball_loss  # noqa: E402
from optimizer.mpc import horizon_for  # noqa: E402
from optimizer.predictive import DEFAULT_VIOLATION_PRICE, PredictiveAdvisor, PredictiveConfig  # noqa: E402
from optimizer.simulator import (HpaPolicy, MicadoPolicy, OraclePolicy, ServiceModel, StaticPolicy,  # noqa: E402
                                 StratoPolicy, read_trace, rescale_trace, simulate)

DEFAULT_TRACE = REPO.parent / "shared" / "data" / "worldcup98_requests_per_minute.csv"
CALIBRATION = REPO / "benchmarks" / "data" / "ai_inference_calibration.json"
DEFAULT_START, DEFAULT_END = "1998-06-29 00:00:00", "1998-07-01 00:00:00"
HPA_TARGET_MM1 = 0.6
FRONTIER_HPA_TARGETS = tuple(round(0.3 + 0.05 * k, 2) for k in range(13))  # 0.30 .. 0.90
ORACLE_UTILISATIONS = tuple(round(0.40 + 0.01 * k, 2) for k in range(58))  # 0.40 .. 0.97
DEFAULT_SEEDS = "0,1,2"
# Strato's settings: the whole list. violation_price is the operator's one tuning setting; the rest
# are the learning cadence (shown by the run's JSON, not tuned per load).
MIN_SAMPLES, RETRAIN_EVERY, TRAIN_WINDOW = 100, 40, 2000


def settings(args) -> dict:
    return {"violation_price": args.violation_price, "min_samples": MIN_SAMPLES, "retrain_every": RETRAIN_EVERY,
            "train_window": TRAIN_WINDOW, "fallback_hpa_target": args.hpa_target}


# ----------------------------------------------------------------- the world
def service_of(args) -> ServiceModel:
    curve = ServiceModel.curve_from_calibration(calibration_from_json(args.service_curve)) if args.service_curve else ()
    return ServiceModel(slo_s=args.slo, startup_delay_s=args.startup_delay, interval_s=args.interval,
                        noise=args.noise, curve=curve)


def fallback_target(service: ServiceModel, slo: float) -> float:
    """The HPA target at the same fraction of the SLO's utilisation as 0.6 is under M/M/1 (0.7)."""
    return round(HPA_TARGET_MM1 * service.max_rate_per_replica_at_slo()
                 / ServiceModel(slo_s=slo).max_rate_per_replica_at_slo(), 3)


class World:
    """One load rescaled for one service: rates per row, the history's rates, and the replica limits."""

    def __init__(self, args, load: load_catalogue.Load):
        self.service = service_of(args)
        scale = args.peak_replicas * self.service.max_rate_per_replica_at_slo() / load.evaluation.max()
        self.rates = rescale_trace(load.evaluation, self.service, args.peak_replicas)
        self.history = np.asarray(load.history, float) * scale
        self.max_replicas = int(math.ceil(args.peak_replicas * 1.5))
        self.peak_replicas = int(math.ceil(self.rates.max() / self.service.max_rate_per_replica_at_slo()))
        self.initial = max(1, int(math.ceil(self.rates[0] / (args.hpa_target * self.service.service_rate))))

    def measured_history(self) -> np.ndarray:
        """The history as the loop would have measured it (the same measurement noise as the run)."""
        rng = np.random.default_rng(7)
        return self.history * np.exp(rng.normal(0, self.service.noise, len(self.history)))


def strato_policy(args, world: World, seed: int) -> StratoPolicy:
    service = world.service
    config = PredictiveConfig(
        threshold=service.slo_s, load_metric="request_rate", interval_s=service.interval_s,
        startup_delay_s=service.startup_delay_s, violation_price=args.violation_price, min_instances=1,
        max_instances=world.max_replicas, max_up=max(4, world.max_replicas // 4), max_down=4,
        min_samples=MIN_SAMPLES, tracking_metric="cpu_utilization", tracking_target=args.hpa_target,
        season_steps=(load_catalogue.DAY_ROWS, 7 * load_catalogue.DAY_ROWS))
    advisor = PredictiveAdvisor(config)
    if len(world.history):
        advisor.load_history(world.measured_history())
    return StratoPolicy(advisor, retrain_every=RETRAIN_EVERY, window=TRAIN_WINDOW, seed=seed,
                        reselect_alpha_every=5)


def make_policy(args, world: World, name: str, seed: int, knob: float | None):
    if name == "strato":
        return strato_policy(args, world, seed)
    if name == "hpa":
        return HpaPolicy(knob if knob is not None else args.hpa_target, world.max_replicas)
    if name == "oracle":
        return OraclePolicy(world.rates, world.service, knob, world.max_replicas)
    if name == "static_peak":
        return StaticPolicy(world.peak_replicas)
    if name == "micado":
        slo = world.service.slo_s
        return MicadoPolicy(0.5 * slo, 0.85 * slo, world.max_replicas, HpaPolicy(args.hpa_target, world.max_replicas),
                            retrain_every=RETRAIN_EVERY)
    raise OptimizerInputError(f"unknown policy {name!r}")


def run_task(task) -> dict:
    """One policy on one load and seed: its replica-hours, violation %, actions (and Strato's advice timing)."""
    args, load, name, knob, seed = task
    world = World(args, load)
    policy = make_policy(args, world, name, seed, knob)
    first = world.peak_replicas if name == "static_peak" else world.initial
    result = simulate(world.rates, policy, world.service, first, world.max_replicas, seed=seed)
    out = {"replica_hours": result.replica_hours, "violation_pct": result.slo_violation_pct,
           "actions": result.actions}
    if name == "strato":
        out["advice_p99_ms"] = float(np.percentile(np.array(policy.advice_seconds) * 1000, 99))
        out["phases"] = dict(policy.phases)
        if args.plot:
            out["series"] = (result.replicas.tolist(), result.latency.tolist())
    return out


def run_all(args, tasks: list) -> list[dict]:
    if args.jobs <= 1:
        return [run_task(t) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: tasks[i][2] != "strato")  # the long runs first
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        done = pool.map(run_task, [tasks[i] for i in order], chunksize=1)
    results = [None] * len(tasks)
    for i, r in zip(order, done):
        results[i] = r
    return results


# ----------------------------------------------------------------- the figures
def frontier_points(points: list[list[float]]) -> list[list[float]]:
    """The (cost, violations) points no other point beats on both, by cost."""
    return [p for p in sorted(points) if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points)]


def equal_cost_ratio(hpa_points: list[list[float]], strato: list[float]) -> dict:
    """Strato's violations over the HPA frontier's, interpolated linearly at Strato's replica-hours."""
    points = frontier_points(hpa_points)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    cost, violations = strato
    inside = xs[0] <= cost <= xs[-1]
    at_cost = float(np.interp(cost, xs, ys)) if inside else None
    ratio = None
    if at_cost is not None:
        ratio = round(violations / at_cost, 4) if at_cost > 0 else (0.0 if violations == 0 else None)
    return {"hpa_violation_pct_at_equal_cost": None if at_cost is None else round(at_cost, 4),
            "violation_ratio_at_equal_cost": ratio, "within_frontier": inside,
            "frontier_replica_hours": [round(xs[0], 3), round(xs[-1], 3)]}


def oracle_ratio(oracle_points: list[tuple[float, float, float]], strato: list[float]) -> dict:
    """Strato's replica-hours over the oracle's cheapest point (over u) with no more violations than Strato's."""
    cost, violations = strato
    fitting = [(c, v, u) for u, c, v in oracle_points if v <= violations + 1e-9]
    if not fitting:
        return {"cost_vs_oracle": None, "oracle_point": None}
    best = min(fitting)
    return {"cost_vs_oracle": round(cost / best[0], 4),
            "oracle_point": {"utilisation": best[2], "replica_hours": round(best[0], 3),
                             "violation_pct": round(best[1], 4)}}


def forecast_losses(args, load: load_catalogue.Load) -> dict:
    """Pinball loss of Strato's forecaster and of a seasonal-naive one, d + 1 steps ahead, on the evaluation stretch."""
    world = World(args, load)
    service = world.service
    rng = np.random.default_rng(0)
    measured = world.rates * np.exp(rng.normal(0, service.noise, len(world.rates)))
    horizon = horizon_for(max(1, math.ceil(service.startup_delay_s / service.interval_s - 1e-9)))
    seasons = (load_catalogue.DAY_ROWS, 7 * load_catalogue.DAY_ROWS)
    losses = {}
    for label, methods in (("strato", None), ("seasonal_naive", ("seasonal_naive",))):
        forecaster = LoadForecaster(service.interval_s, horizon, seasons, methods, judged_from=horizon - 1)
        forecaster.extend(world.measured_history())
        made, actual, used = [], [], {}
        for i, value in enumerate(measured):
            forecast = forecaster.forecast()
            if forecast is not None and i + horizon - 1 < len(measured):
                made.append(forecast.values[-1])
                actual.append(measured[i + horizon - 1])
                used[forecast.method] = used.get(forecast.method, 0) + 1
            forecaster.add(value)
        scale = float(np.mean(actual))  # relative to the mean load, so that loads compare
        losses[label] = round(pinball_loss(np.array(made), np.array(actual)) / scale, 5)
        if label == "strato":
            losses["methods_used"] = used
    losses["ratio"] = round(losses["strato"] / losses["seasonal_naive"], 4)
    return losses


def catalogue(args) -> list[load_catalogue.Load]:
    names = [n.strip() for n in args.loads.split(",") if n.strip()] if args.loads else None
    if args.quick and names is None:
        names = ["wc98_06-29", "diurnal", "step"]
    out = []
    for name, start, end in load_catalogue.WC_STRETCHES:
        if names is None or name in names:
            out.append(load_catalogue.worldcup(args.trace, name, start, end, read_trace))
    for kind in load_catalogue.SYNTHETIC:
        if names is None or kind in names:
            out.append(load_catalogue.synthetic(kind))
    unknown = set(names or ()) - {load.name for load in out}
    if unknown:
        raise OptimizerInputError(f"unknown load(s): {', '.join(sorted(unknown))}")
    return out


def frontier(args) -> int:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    loads = catalogue(args)
    targets = (0.4, 0.5, 0.6, 0.7, 0.8) if args.quick else FRONTIER_HPA_TARGETS
    print("Closed-loop frontier: Strato's predictive optimizer against the HPA's frontier and the clairvoyant limit")
    print(f"Service: M/M/1 replicas at {args.interval:g} s intervals, start-up {args.startup_delay:g} s, p95 SLO "
          f"{args.slo:g} s, measurement noise {args.noise:g}; each load rescaled so that its peak needs "
          f"{args.peak_replicas:g} replicas. Strato: ONE setting for every load: {settings(args)}. Seeds {seeds}.")
    tasks, keys = [], []
    for index, load in enumerate(loads):
        for seed in seeds:
            tasks.append((args, load, "strato", None, seed))
            keys.append((index, "strato", None, seed))
            tasks += [(args, load, "hpa", t, seed) for t in targets]
            keys += [(index, "hpa", t, seed) for t in targets]
        tasks += [(args, load, "oracle", u, seeds[0]) for u in ORACLE_UTILISATIONS]
        keys += [(index, "oracle", u, seeds[0]) for u in ORACLE_UTILISATIONS]
    started = time.perf_counter()
    results = dict(zip(keys, run_all(args, tasks)))
    payload = {"loads": {}, "seeds": seeds, "hpa_targets": list(targets), "settings": settings(args)}
    for index, load in enumerate(loads):
        payload["loads"][load.name] = figures = load_figures(args, load, index, results, seeds, targets)
        print_load(load, figures)
    payload["summary"] = summary(payload["loads"], time.perf_counter() - started)
    payload["advice_p99_ms"] = round(max(results[k]["advice_p99_ms"] for k in results if k[1] == "strato"), 3)
    s = payload["summary"]
    print(f"Summary over {s['loads']} loads: violation ratio at equal cost: geometric mean {s['geometric_mean_ratio']} "
          f"(target <= 0.5), worst {s['worst_ratio']} (target <= 0.8); cost vs oracle worst {s['worst_cost_vs_oracle']} "
          f"(target <= 1.25); forecast pinball loss vs seasonal naive: worst ratio {s['worst_pinball_ratio']} "
          f"(< 1 beats it); {len(payload['settings'])} settings; advice p99 {payload['advice_p99_ms']} ms; "
          f"{s['seconds']} s.")
    if args.plot:
        plot_frontier(args, payload, loads, results, seeds)
        print(f"per-load timelines and frontiers written to {args.plot}")
    print(json.dumps(payload))
    return 0


def load_figures(args, load, index: int, results: dict, seeds: list[int], targets) -> dict:
    mean = lambda name, knob, key: float(np.mean([results[(index, name, knob, s)][key] for s in seeds]))  # noqa: E731
    hpa = [[round(mean("hpa", t, "replica_hours"), 3), round(mean("hpa", t, "violation_pct"), 4)] for t in targets]
    strato = [round(mean("strato", None, "replica_hours"), 3), round(mean("strato", None, "violation_pct"), 4)]
    oracle = [(u, results[(index, "oracle", u, seeds[0])]["replica_hours"],
               results[(index, "oracle", u, seeds[0])]["violation_pct"]) for u in ORACLE_UTILISATIONS]
    compared = equal_cost_ratio(hpa, strato)
    return {"description": load.description, "history_days": load.history_days, "strato": strato, "hpa": hpa,
            **compared, **oracle_ratio(oracle, strato), "settings": settings(args),
            "actions": {"strato": mean("strato", None, "actions"),
                        "hpa_at_fallback_target": mean("hpa", args.hpa_target, "actions")
                        if args.hpa_target in targets else None},
            "forecast_pinball": forecast_losses(args, load)}


def print_load(load, f: dict) -> None:
    print(f"\n{load.name}: {load.description}")
    for cost, violations in f["hpa"]:
        print(f"  hpa      replica-hours {cost:8.2f}   SLO violation {violations:7.3f} %")
    print(f"  strato   replica-hours {f['strato'][0]:8.2f}   SLO violation {f['strato'][1]:7.3f} %   "
          f"actions {f['actions']['strato']:.0f}")
    ratio = f["violation_ratio_at_equal_cost"]
    print(f"  -> violations x{ratio} of the HPA frontier's at equal replica-hours"
          if ratio is not None else f"  -> outside the HPA frontier {f['frontier_replica_hours']}: no ratio")
    point = f["oracle_point"]
    print(f"  -> cost x{f['cost_vs_oracle']} of the oracle's cheapest point with no more violations"
          + (f" (u={point['utilisation']}, {point['replica_hours']} replica-hours, {point['violation_pct']} %)"
             if point else ""))
    p = f["forecast_pinball"]
    print(f"  -> forecast pinball loss {p['strato']} vs seasonal naive {p['seasonal_naive']} (x{p['ratio']}); "
          f"methods {p['methods_used']}")


def summary(per_load: dict, seconds: float) -> dict:
    ratios = [f["violation_ratio_at_equal_cost"] for f in per_load.values()]
    known = [r for r in ratios if r is not None]
    costs = [f["cost_vs_oracle"] for f in per_load.values() if f["cost_vs_oracle"] is not None]
    pinball = [f["forecast_pinball"]["ratio"] for f in per_load.values()]
    return {"loads": len(per_load), "compared": len(known),
            "geometric_mean_ratio": round(float(np.exp(np.mean(np.log(np.maximum(known, 1e-3))))), 4) if known else None,
            "worst_ratio": max(known) if known else None, "outside_frontier": len(ratios) - len(known),
            "ratio_target_met": bool(known) and len(known) == len(ratios) and max(known) <= 0.8
            and float(np.exp(np.mean(np.log(np.maximum(known, 1e-3))))) <= 0.5,
            "worst_cost_vs_oracle": max(costs) if costs else None,
            "cost_target_met": bool(costs) and len(costs) == len(per_load) and max(costs) <= 1.25,
            "worst_pinball_ratio": max(pinball) if pinball else None, "seconds": round(seconds, 1)}


def plot_frontier(args, payload, loads, results, seeds) -> None:
    """One row per load: Strato's replicas against what the load needs, and the cost/violation plane."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(loads), 2, figsize=(13, 2.6 * len(loads)), squeeze=False)
    for index, load in enumerate(loads):
        world, f = World(args, load), payload["loads"][load.name]
        left, right = axes[index]
        replicas, _ = results[(index, "strato", None, seeds[0])]["series"]
        left.fill_between(np.arange(len(world.rates)), 0, world.rates / world.service.max_rate_per_replica_at_slo(),
                          color="0.85", label="needed at the SLO")
        left.step(np.arange(len(replicas)), replicas, where="post", linewidth=0.8, label="strato")
        left.set_title(load.name, fontsize=9)
        hpa = np.array(f["hpa"])
        right.plot(hpa[:, 0], hpa[:, 1], "o-", markersize=3, label="hpa frontier")
        right.plot(*f["strato"], "r*", markersize=10, label="strato")
        if f["oracle_point"]:
            right.plot(f["oracle_point"]["replica_hours"], f["oracle_point"]["violation_pct"], "ks", label="oracle")
        right.set_xlabel("replica-hours", fontsize=8)
        right.set_ylabel("violation %", fontsize=8)
        if index == 0:
            left.legend(fontsize=7)
            right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------- one stretch, every policy
def one_stretch(args) -> int:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    load = load_catalogue.worldcup(args.trace, "wc98", args.start, args.end, read_trace)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    world = World(args, load)
    print(f"Closed-loop autoscaling on {load.description}; peak needs {args.peak_replicas:g} replicas; policies "
          f"{', '.join(names)}; seeds {seeds}; Strato's settings {settings(args)}.")
    tasks = [(args, load, name, 0.70 if name == "oracle" else None, seed) for name in names for seed in seeds]
    results = run_all(args, tasks)
    payload = {"policies": {}, "seeds": seeds, "settings": settings(args), "replicas_max": world.max_replicas}
    for name in names:
        rows = [r for (_, _, n, _, _), r in zip(tasks, results) if n == name]
        summary_row = {k: round(float(np.mean([r[k] for r in rows])), 4)
                       for k in ("replica_hours", "violation_pct", "actions")}
        payload["policies"][name] = summary_row
        print(f"  {name:12s} replica-hours {summary_row['replica_hours']:8.2f}   SLO violation "
              f"{summary_row['violation_pct']:7.3f} %   actions {summary_row['actions']:.0f}")
    print(json.dumps(payload))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frontier", action="store_true", help="every load: HPA frontier, oracle, Strato (the issue's figures)")
    parser.add_argument("--quick", action="store_true", help="with --frontier: 3 loads, 5 HPA targets, seed 0")
    parser.add_argument("--loads", default="", help="with --frontier: comma-separated load names (default: all)")
    parser.add_argument("--violation-price", type=float, default=DEFAULT_VIOLATION_PRICE,
                        help="Strato's one setting: a violated interval's cost in replica-intervals")
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="CSV with period,count rows (WorldCup98)")
    parser.add_argument("--start", default=DEFAULT_START, help="without --frontier: first period played")
    parser.add_argument("--end", default=DEFAULT_END, help="without --frontier: period to stop before")
    parser.add_argument("--policies", default="strato,hpa,micado,static_peak,oracle",
                        help="without --frontier: strato, hpa, micado, static_peak, oracle (u = 0.7)")
    parser.add_argument("--peak-replicas", type=float, default=20.0, help="replicas a load's peak needs at the SLO")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds per control interval (one row)")
    parser.add_argument("--startup-delay", type=float, default=60.0, help="replica start-up delay, seconds")
    parser.add_argument("--slo", type=float, default=1.0, help="p95 latency SLO, seconds")
    parser.add_argument("--noise", type=float, default=0.05, help="log-normal sigma of measurement noise")
    parser.add_argument("--hpa-target", type=float, default=None, help="the HPA's (and Strato's fallback) target")
    parser.add_argument("--service-curve", metavar="JSON", default="",
                        help=f"a measured latency curve instead of M/M/1 (e.g. {CALIBRATION.relative_to(REPO)})")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, help="comma-separated measurement-noise seeds")
    parser.add_argument("--jobs", type=int, default=2, help="simulations in parallel processes")
    parser.add_argument("--plot", metavar="PNG", default="", help="with --frontier: timelines and frontiers per load")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed last)")
    args = parser.parse_args(argv)
    if args.quick and args.seeds == DEFAULT_SEEDS:
        args.seeds = "0"
    if args.hpa_target is None:
        args.hpa_target = fallback_target(service_of(args), args.slo)
    try:
        return frontier(args) if args.frontier else one_stretch(args)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
