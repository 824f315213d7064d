"""Closed-loop benchmark: Strato's optimizer vs HPA-style target tracking, MiCADO's method and static peak provisioning."""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

# One BLAS thread per process: with --jobs > 1 the worker processes otherwise oversubscribe the
# cores and spin (a 2-job tuning run took > 10 min instead of ~1 min).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optimizer.advisor import TUNED_CAPACITY_PLAN, Advisor, AdvisorConfig  # noqa: E402
from optimizer.calibration import calibration_from_json  # noqa: E402
from optimizer.errors import OptimizerInputError  # noqa: E402
from policies.base import MetricSpec  # noqa: E402
from policies.rule import RulePolicy  # noqa: E402
from optimizer.simulator import (HpaPolicy, MicadoPolicy, ServiceModel, StaticPolicy, StratoPolicy,  # noqa: E402
                                 read_trace, rescale_trace, simulate)

DEFAULT_TRACE = REPO.parent / "shared" / "data" / "worldcup98_requests_per_minute.csv"
# One real ai-inference replica measured by `python benchmarks/calibrate_service.py --out FILE`.
CALIBRATION = REPO / "benchmarks" / "data" / "ai_inference_calibration.json"
HPA_TARGET_MM1 = 0.6
# Default stretch: 1998-06-29 and 06-30, two round-of-16 match days holding the trace's
# 2nd and 4th highest minutes (225k and 215k requests/min) and its busiest day overall.
DEFAULT_START, DEFAULT_END = "1998-06-29 00:00:00", "1998-07-01 00:00:00"
QUICK_START, QUICK_END = "1998-06-25 00:00:00", "1998-06-26 00:00:00"  # first day of the tuning stretch
# Strato's tunable advisor settings are chosen on EARLIER days, never on the evaluation stretch:
#   python benchmarks/optimizer_closed_loop.py --tune [--tune-rows 33,34]
# runs the grid TUNE_GRID on WIDE_TUNE_STRETCHES (rows 0-24 were first run on the narrow stretch
# 06-25..06-26, `--tune-stretches narrow`) with TUNE_SEEDS and reports the setting to keep. The
# comments below are the tuning log, oldest first; the constants hold the settings in force
# (row 34, see the last comment before CAPACITY_HEADROOM_QUANTILE).
TUNE_START, TUNE_END = "1998-06-25 00:00:00", "1998-06-27 00:00:00"
TUNE_SEEDS = "0,1,2"
# The 2-day stretch alone proved too narrow: its best setting (row 23, x0.36 violations there) gave
# x0.86 on the evaluation stretch. Rows from 25 on are chosen on these match days together, each
# stretch rescaled to its own peak like the evaluation stretch (all before the evaluation days).
WIDE_TUNE_STRETCHES = (("1998-06-10 00:00:00", "1998-06-13 00:00:00"), ("1998-06-15 00:00:00", "1998-06-17 00:00:00"),
                       ("1998-06-22 00:00:00", "1998-06-25 00:00:00"), ("1998-06-25 00:00:00", "1998-06-27 00:00:00"))
TUNE_COMMAND = "python benchmarks/optimizer_closed_loop.py --tune"
DEFAULT_SEEDS = "0,1,2"
CONFIDENCE_Z = 1.0
CONFIDENT_STABILIZATION_S = 60.0
CONFIDENT_FRACTION = 0.8
OVERLOAD_QUANTILE = 0.1
# Strato's lower threshold x SLO (MiCADO keeps --low-fraction). On the tuning stretch the first
# four grid rows (lower threshold 0.5) scored 1.078 / 1.102 / 1.143 / 1.082 on seeds 0-2; the
# fifth (0.65) scored 1.052 on seeds 0-1 (violations x0.52, replica-hours x1.052), so it is kept.
# No setting met the target on the tuning stretch.
STRATO_LOW_FRACTION = 0.65
# Model-based capacity planning (0 = off; see AdvisorConfig.capacity_target). Tuning stretch,
# `--tune --seeds 0,1 --tune-rows 4,5,6,7,8,9` (score = max(violations/0.5, replica-hours)):
#   row 4 (no capacity planning)           x0.52 / x1.052  score 1.052
#   row 5 (0.85, trend 6, margin 1.05)     x0.47 / x0.999  score 0.999
#   row 6 (0.85, trend 4 + latest, 1.05)   x0.28 / x1.060  score 1.060
#   row 7 (0.90, trend 6, margin 1.10)     x0.42 / x0.978  score 0.978
#   row 8 (0.80, trend 6, margin 1.00)     x0.43 / x1.023  score 1.023
#   row 9 (0.85, trend 6, margin 1.00)     x0.83 / x0.987  score 1.667
# then rows 5 and 7 on seeds 0,1,2 (`--tune --tune-rows 5,7`): row 5 x0.43 / x1.005 (score 1.005),
# row 7 x0.62 / x0.982 (score 1.239). Row 5 is kept: better than row 4 on the tuning stretch,
# though not quite meeting the target there (replica-hours x1.005 on three seeds). The one
# evaluation run with these settings (06-29..06-30, seeds 0-2) gave x0.63 / x1.004, NOT met
# (met on seed 0 only), with 241 actions vs HPA's 78.
CAPACITY_FRACTION = 0.85
CAPACITY_TREND_WINDOW = TUNED_CAPACITY_PLAN["capacity_trend_window"]
CAPACITY_REACT = int(TUNED_CAPACITY_PLAN["capacity_react"])
CAPACITY_DOWN_WINDOW = TUNED_CAPACITY_PLAN["capacity_down_window"]
CAPACITY_DOWN_MARGIN = TUNED_CAPACITY_PLAN["capacity_down_margin"]
CAPACITY_DOWN_EVERY = TUNED_CAPACITY_PLAN["capacity_down_every"]
# Anti-oscillation for capacity planning (1 / 0 / 0 / 0 = off; see AdvisorConfig). Tuning stretch,
# seeds 0,1,2, `--tune --tune-rows 5,10,11,12,13` (row 5 = the capacity settings above, no guard):
#   row 5  (no anti-oscillation)                               x0.43 / x1.005  score 1.005
#   row 10 (min step 2, reversal 8)                            x0.35 / x1.075  score 1.075
#   row 11 (every 12, step 2, fraction 0.1, persist 4, rev 12) x0.36 / x1.129  score 1.129
#   row 12 (window 12, every 16, step 2, persist 8, rev 16)    x0.35 / x1.171  score 1.171
#   row 13 (reversal window 8 only)                            x0.46 / x0.984  score 0.984 (met on 2/3 seeds)
# Row 13 is kept: the only row beating row 5 there (minimum steps and persistence hold replicas too long).
# The one evaluation run with it (06-29..06-30, seeds 0-2): x0.72 / x0.987, 211 actions vs HPA's 78 (was
# x0.63 / x1.004, 241 actions): fewer actions and replica-hours met, violations target NOT met (met on seed 0 only).
CAPACITY_DOWN_MIN_STEP = 1
CAPACITY_DOWN_MIN_FRACTION = 0.0
CAPACITY_DOWN_PERSIST = TUNED_CAPACITY_PLAN["capacity_down_persist"]
CAPACITY_REVERSAL_WINDOW = 0
# Volatility headroom, bounded exploration and the measured-overload guard (session 3). The model
# was found optimistic near the knee (errors in the noisy rate flatten the learnt curve; nothing is
# learnt beyond the loads seen, so at low load the old planner over-provisioned). Tuning stretch,
# seeds 0,1,2, `--tune --tune-rows 14,...,24` (all rows: trend 6, react 1, down window 1, margin 1.0,
# persistence 8, no reversal guard, exploration x1.25):
#   row 14 (fraction 0.9,  headroom q 0.5, no overload guard)   x0.57 / x0.954  score 1.143
#   row 15 (0.9,  q 0.6, no guard)                               x0.48 / x0.971  score 0.971
#   row 16 (0.85, q 0.6, no guard)                               x0.32 / x0.996  score 0.996
#   row 17 (0.9,  q 0.5, overload guard at the SLO, quantile 0.1) x0.38 / x0.973  score 0.973
#   row 18 (0.9,  q 0.6, guard)                                  x0.33 / x0.993  score 0.993
#   row 19 (0.95, q 0.5, guard)                                  x0.51 / x0.970  score 1.024
#   row 20 (0.95, q 0.6, guard)                                  x0.43 / x0.994  score 0.994
#   row 21 (row 17 with persistence 12)                          x0.36 / x1.006  score 1.006
#   row 22 (row 17 with persistence 16)                          x0.32 / x1.033  score 1.033
#   row 23 (row 17 with a scale-down >= 4 intervals after an action) x0.36 / x0.986  met on 3/3 seeds
#   row 24 (row 17 with >= 8 intervals)                          x0.29 / x1.022  score 1.022
# Row 23 was kept; its one evaluation run (06-29..06-30, seeds 0-2) gave x0.86 / x0.989: NOT met, and
# worse than row 13 there. The 2-day tuning stretch was too narrow, so tuning moved to
# WIDE_TUNE_STRETCHES (`--tune`, default), pooled over 4 stretches x 3 seeds:
#   row 13 (the previous default)                                     x0.82 / x0.979  score 1.638
#   row 17                                                            x0.61 / x0.986  score 1.217
#   row 23                                                            x0.66 / x0.992  score 1.319
#   row 25 (row 23, headroom q 0.6)                                   x0.50 / x1.008  score 1.008
#   row 26 (row 23, q 0.7)                                            x0.41 / x1.027  score 1.027
#   row 27 (row 23, fraction 0.85)                                    x0.43 / x1.001  score 1.001
#   row 28 (fraction 0.85, q 0.6)                                     x0.45 / x1.017  score 1.017
#   row 29 (row 27, no reaction to the latest load)                   x0.50 / x0.997  score 0.997
#   row 30 (row 27, persistence 6, every 2)                           x0.63 / x0.976  score 1.268
#   row 31 (row 27, headroom window 240)                              x0.42 / x1.001  score 1.001
#   row 32 (row 27, trend window 4)                                   x0.35 / x1.079  score 1.079
# The runs showed a young model (first ~100 quiet samples) scaling 3 -> 1 replica into a 30 s backlog
# through the regular advice; unseen_load_factor 1.25 refuses such counts:
#   row 33 (row 27 + unseen-load guard)                               x0.34 / x0.995  met on 8/12 runs
#   row 34 (row 29 + unseen-load guard)                               x0.41 / x0.991  met on 7/12 runs
#   row 35 (row 33, fraction 0.9)                                     x0.53 / x0.990  score 1.051
# Row 34 is kept (lowest score; rows 33 and 34 both meet the target on the tuning stretches).
CAPACITY_HEADROOM_QUANTILE = TUNED_CAPACITY_PLAN["capacity_headroom_quantile"]
CAPACITY_HEADROOM_WINDOW = 480
CAPACITY_EXPLORE_FACTOR = TUNED_CAPACITY_PLAN["capacity_explore_factor"]
CAPACITY_OVERLOAD_FRACTION = 1.0
UNSEEN_LOAD_FACTOR = TUNED_CAPACITY_PLAN["unseen_load_factor"]
# What a grid row leaves unset: capacity planning and every later option off, so that a row means
# the same as when it was run whatever the current defaults are.
TUNE_ROW_BASE = dict(capacity_fraction=0.0, capacity_down_min_step=1, capacity_down_min_fraction=0.0,
                     capacity_down_persist=0, capacity_reversal_window=0, capacity_headroom_quantile=None,
                     capacity_explore_factor=1.0, capacity_overload_fraction=0.0, unseen_load_factor=None)
_HEADROOM_ROW = dict(capacity_trend_window=6, capacity_react=1, capacity_down_window=1, capacity_down_margin=1.0,
                     capacity_reversal_window=0, capacity_explore_factor=1.25)
_ROW27 = dict(_HEADROOM_ROW, capacity_fraction=0.85, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0,
              capacity_down_persist=8, capacity_down_every=4)
TUNE_GRID = [  # (confident stabilisation s, confident fraction, overload quantile, lower threshold x SLO)
    (60.0, 0.8, 0.1, 0.5), (120.0, 0.8, 0.1, 0.5), (300.0, 0.8, 0.1, 0.5), (60.0, 0.8, 0.25, 0.5),
    (60.0, 0.8, 0.1, 0.65),
    # Model-based capacity planning rows (the same base settings plus capacity_* overrides).
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.05, capacity_down_every=8)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=4, capacity_react=1,
                                capacity_down_window=8, capacity_down_margin=1.05, capacity_down_every=8)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.1, capacity_down_every=8)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.8, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.0, capacity_down_every=8)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.0, capacity_down_every=8)),
    # Anti-oscillation rows (row 5's capacity settings plus capacity_down_* / reversal overrides).
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.05, capacity_down_every=8,
                                capacity_down_min_step=2, capacity_reversal_window=8)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.05, capacity_down_every=12,
                                capacity_down_min_step=2, capacity_down_min_fraction=0.1, capacity_down_persist=4,
                                capacity_reversal_window=12)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=12, capacity_down_margin=1.05, capacity_down_every=16,
                                capacity_down_min_step=2, capacity_down_persist=8, capacity_reversal_window=16)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_trend_window=6, capacity_react=0,
                                capacity_down_window=8, capacity_down_margin=1.05, capacity_down_every=8,
                                capacity_reversal_window=8)),
    # Headroom / exploration / overload-guard rows (see the comment at CAPACITY_HEADROOM_QUANTILE).
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.6, capacity_overload_fraction=0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_headroom_quantile=0.6, capacity_overload_fraction=0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.6, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.95, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.95, capacity_headroom_quantile=0.6, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=12, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=16, capacity_down_every=0, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=4, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=8, **_HEADROOM_ROW)),
    # Rows chosen on WIDE_TUNE_STRETCHES (row 23 plus more headroom or a lower capacity fraction).
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.6, capacity_overload_fraction=1.0,
                                capacity_down_persist=8, capacity_down_every=4, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.9, capacity_headroom_quantile=0.7, capacity_overload_fraction=1.0,
                                capacity_down_persist=8, capacity_down_every=4, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_headroom_quantile=0.5, capacity_overload_fraction=1.0,
                                capacity_down_persist=8, capacity_down_every=4, **_HEADROOM_ROW)),
    (60.0, 0.8, 0.1, 0.65, dict(capacity_fraction=0.85, capacity_headroom_quantile=0.6,
                                capacity_overload_fraction=1.0, capacity_down_persist=8, capacity_down_every=4,
                                **_HEADROOM_ROW)),
    # Row 27 variations: no reaction to the latest (noisy) load, faster scale-down, a shorter headroom
    # window, a shorter trend window.
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_react=0)),
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_down_persist=6, capacity_down_every=2)),
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_headroom_window=240)),
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_trend_window=4)),
    # Rows 27 and 29 with the regular advice kept within 1.25 x the loads per replica trained on (a
    # young model trained on the first quiet hours scaled 3 -> 1 replica into a 30 s backlog).
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, unseen_load_factor=1.25)),
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_react=0, unseen_load_factor=1.25)),
    (60.0, 0.8, 0.1, 0.65, dict(_ROW27, capacity_fraction=0.9, unseen_load_factor=1.25)),
]


# A MiCADO-style threshold rule on CPU (run by policies.rule in its sandbox, as the live loop runs it):
# not tuned, an example of the rules MiCADO users write; `--policies ...,rule` adds it.
SIMULATED_RULE = """
if m_time_since_node_count_changed >= 60:
    if cpu > 0.8:
        m_node_count = m_node_count + max(1, m_node_count // 4)
    elif cpu < 0.4 and m_node_count > 1:
        m_node_count = m_node_count - 1
"""


def build_policies(args, service: ServiceModel, max_replicas: int, peak_replicas: int):
    hpa = lambda: HpaPolicy(args.hpa_target, max_replicas)  # noqa: E731
    config = AdvisorConfig(
        target_low=args.strato_low_fraction * service.slo_s, target_high=args.high_fraction * service.slo_s,
        min_instances=1, max_instances=max_replicas, max_up=max(4, max_replicas // 4), max_down=4,
        min_samples=args.min_samples, max_validation_mape=0.5,
        scale_down_stabilization_s=300.0, confident_scale_down_stabilization_s=args.confident_stabilization,
        confident_fraction=args.confident_fraction, confidence_z=args.confidence_z,
        overload_quantile=args.overload_quantile, tracking_metric="cpu_utilization", tracking_target=args.hpa_target,
        load_metrics=("request_rate", "cpu_utilization"),
        capacity_target=(args.capacity_fraction * service.slo_s if args.capacity_fraction else None),
        capacity_trend_window=args.capacity_trend_window, capacity_react=bool(args.capacity_react),
        capacity_down_window=args.capacity_down_window, capacity_down_margin=args.capacity_down_margin,
        capacity_down_every=args.capacity_down_every, capacity_down_min_step=args.capacity_down_min_step,
        capacity_down_min_fraction=args.capacity_down_min_fraction, capacity_down_persist=args.capacity_down_persist,
        capacity_reversal_window=args.capacity_reversal_window,
        capacity_headroom_quantile=args.capacity_headroom_quantile,
        capacity_headroom_window=args.capacity_headroom_window,
        capacity_explore_factor=args.capacity_explore_factor,
        unseen_load_factor=args.unseen_load_factor,
        capacity_overload_target=(args.capacity_overload_fraction * service.slo_s
                                  if args.capacity_overload_fraction else None),
        forecast_horizon_s=(service.startup_delay_s + service.interval_s if args.forecast_horizon is None
                            else args.forecast_horizon), forecast_window=8)
    return {
        "strato": lambda: StratoPolicy(Advisor(config), retrain_every=args.retrain_every, window=args.train_window,
                                       reselect_alpha_every=args.reselect_alpha_every),
        "hpa": hpa,
        "micado": lambda: MicadoPolicy(args.low_fraction * service.slo_s, args.high_fraction * service.slo_s,
                                       max_replicas, hpa(), retrain_every=args.retrain_every),
        "static_peak": lambda: StaticPolicy(peak_replicas),
        "rule": lambda: RulePolicy(SIMULATED_RULE, queries={"cpu": MetricSpec("cpu_utilization", "cpu_utilization")},
                                   min_instances=1, max_instances=max_replicas),
    }


def optional_float(text: str) -> float | None:
    """A number, or none/off for an option that is off when unset."""
    return None if text.strip().lower() in ("none", "off", "") else float(text)


def parse_seeds(text: str | None, seed: int | None) -> list[int]:
    if text:
        return [int(x) for x in text.split(",") if x.strip()]
    return [seed]


def service_curve(args) -> tuple:
    if not args.service_curve:
        return ()
    return ServiceModel.curve_from_calibration(calibration_from_json(args.service_curve))


def prepare(args, start, end):
    service = ServiceModel(slo_s=args.slo, startup_delay_s=args.startup_delay, interval_s=args.interval,
                           noise=args.noise, curve=service_curve(args))
    if args.hpa_target is None:
        # HPA's target sits at the same fraction of the SLO's utilisation as 0.6 does under M/M/1 (0.7).
        args.hpa_target = round(HPA_TARGET_MM1 * service.max_rate_per_replica_at_slo()
                                / ServiceModel(slo_s=args.slo).max_rate_per_replica_at_slo(), 3)
    periods, counts = read_trace(args.trace, start, end)
    rates = rescale_trace(counts, service, args.peak_replicas)
    max_replicas = int(math.ceil(args.peak_replicas * 1.5))
    peak_replicas = int(math.ceil(rates.max() / service.max_rate_per_replica_at_slo()))
    initial = max(1, int(math.ceil(rates[0] / (args.hpa_target * service.service_rate))))
    return service, periods, rates, max_replicas, peak_replicas, initial


def run_one(task):
    """One policy on one seed (a separate process may run it): (summary, seconds, detail)."""
    args, name, seed, start, end = task
    service, _, rates, max_replicas, peak_replicas, initial = prepare(args, start, end)
    policy = build_policies(args, service, max_replicas, peak_replicas)[name]()
    started = time.perf_counter()
    first = peak_replicas if isinstance(policy, StaticPolicy) else initial
    result = simulate(rates, policy, service, first, max_replicas, seed=seed)
    elapsed = time.perf_counter() - started
    extra = ""
    if isinstance(policy, StratoPolicy):
        advice_ms = np.array(policy.advice_seconds) * 1000
        train = np.array(policy.train_seconds or [0.0])
        extra = (f"  advice p99 {np.percentile(advice_ms, 99):.2f} ms, retrain mean {train.mean():.2f} s "
                 f"max {train.max():.2f} s, phases {policy.phases}")
    summary = {k: (float(v) if k != "actions" else int(v)) for k, v in result.summary().items()}
    return summary, elapsed, extra, (result.replicas, result.latency)


def run_tasks(args, tasks, start, end):
    jobs = [(args, name, seed, start, end) for name, seed in tasks]
    if args.jobs <= 1 or len(jobs) <= 1:
        return [run_one(job) for job in jobs]
    # Strato's runs are the long ones: start them first, keep the reported order.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][1] != "strato")
    with multiprocessing.get_context("fork").Pool(min(args.jobs, len(jobs))) as pool:
        done = pool.map(run_one, [jobs[i] for i in order], chunksize=1)
    out = [None] * len(jobs)
    for i, r in zip(order, done):
        out[i] = r
    return out


def mean_summary(rows: list[dict]) -> dict:
    return {"slo_violation_pct": round(float(np.mean([r["slo_violation_pct"] for r in rows])), 4),
            "replica_hours": round(float(np.mean([r["replica_hours"] for r in rows])), 3),
            "actions": round(float(np.mean([r["actions"] for r in rows])), 1)}


def ratio(strato: dict, hpa: dict) -> dict:
    v = strato["slo_violation_pct"] / hpa["slo_violation_pct"] if hpa["slo_violation_pct"] else float("inf")
    c = strato["replica_hours"] / hpa["replica_hours"]
    return {"slo_violation": round(v, 4), "replica_hours": round(c, 4), "met": bool(v <= 0.5 and c <= 1.0)}


def tuned_settings(args) -> dict:
    return {"confidence_z": args.confidence_z, "confident_stabilization_s": args.confident_stabilization,
            "confident_fraction": args.confident_fraction, "overload_quantile": args.overload_quantile,
            "strato_low_fraction": args.strato_low_fraction, "capacity_fraction": args.capacity_fraction,
            "capacity_trend_window": args.capacity_trend_window, "capacity_react": args.capacity_react,
            "capacity_down_window": args.capacity_down_window, "capacity_down_margin": args.capacity_down_margin,
            "capacity_down_every": args.capacity_down_every, "capacity_down_min_step": args.capacity_down_min_step,
            "capacity_down_min_fraction": args.capacity_down_min_fraction,
            "capacity_down_persist": args.capacity_down_persist,
            "capacity_reversal_window": args.capacity_reversal_window,
            "capacity_headroom_quantile": args.capacity_headroom_quantile,
            "capacity_headroom_window": args.capacity_headroom_window,
            "capacity_explore_factor": args.capacity_explore_factor,
            "capacity_overload_fraction": args.capacity_overload_fraction,
            "unseen_load_factor": args.unseen_load_factor}


def tune_stretches(args) -> list[tuple[str, str]]:
    return [(TUNE_START, TUNE_END)] if args.tune_stretches == "narrow" else list(WIDE_TUNE_STRETCHES)


def pooled(rows: list[tuple[dict, int]]) -> dict:
    """Violation % over all rows of several runs (weighted by their lengths), summed replica-hours and actions."""
    total = sum(n for _, n in rows)
    return {"slo_violation_pct": round(sum(r["slo_violation_pct"] * n for r, n in rows) / total, 4),
            "replica_hours": round(sum(r["replica_hours"] for r, _ in rows), 3),
            "actions": round(float(sum(r["actions"] for r, _ in rows)), 1)}


def tune(args) -> int:
    """Sweep TUNE_GRID on the tuning stretches only; print every setting's pooled ratios and the one to keep."""
    seeds = parse_seeds(TUNE_SEEDS if args.seeds == DEFAULT_SEEDS else args.seeds, args.seed)
    stretches = tune_stretches(args)
    print(f"Tuning on {', '.join(f'{a[:10]}..{b[:10]}' for a, b in stretches)} (never the evaluation stretch), "
          f"seeds {seeds}; ratios pool every stretch and seed")
    runs = [(stretch, seed) for stretch in stretches for seed in seeds]
    rows_of = {stretch: len(read_trace(args.trace, *stretch)[1]) for stretch in stretches}
    tasks, variants = [(args, "hpa", seed, *stretch) for stretch, seed in runs], []
    rows_wanted = [int(x) for x in args.tune_rows.split(",") if x.strip()] if args.tune_rows else None
    for index, (stab, frac, q, low, *extra) in enumerate(TUNE_GRID):
        if rows_wanted is not None and index not in rows_wanted:
            continue
        variant = argparse.Namespace(**{**vars(args), **TUNE_ROW_BASE})
        for key, value in (extra[0] if extra else {}).items():
            setattr(variant, key, value)
        variant.confident_stabilization, variant.confident_fraction, variant.overload_quantile = stab, frac, q
        variant.strato_low_fraction = low
        variants.append((index, variant))
        tasks += [(variant, "strato", seed, *stretch) for stretch, seed in runs]
    days = sum(rows_of.values()) / 1440
    print(f"{len(variants)} grid row(s) x {len(runs)} runs ({len(stretches)} stretches x {len(seeds)} seeds, "
          f"{days:.0f} trace days per seed): {len(tasks)} simulations, "
          f"roughly {len(variants) * len(seeds) * days * 9 / 60 / max(1, args.jobs) + 0.5:.0f} min with "
          f"{args.jobs} job(s); --tune-rows picks rows", flush=True)
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            done = pool.map(run_one, tasks, chunksize=1)
    else:
        done = [run_one(t) for t in tasks]
    n = len(runs)
    hpa_runs = [(d[0], rows_of[stretch]) for d, (stretch, _) in zip(done[:n], runs)]
    hpa = pooled(hpa_runs)
    rows = []
    for k, (index, variant) in enumerate(variants):
        part = [(d[0], rows_of[stretch]) for d, (stretch, _) in zip(done[n * (k + 1):n * (k + 2)], runs)]
        strato = pooled(part)
        r = ratio(strato, hpa)
        met = sum(ratio(d, h)["met"] for (d, _), (h, _) in zip(part, hpa_runs))
        score = max(r["slo_violation"] / 0.5, r["replica_hours"])
        rows.append((score, index, tuned_settings(variant), r, met, strato["actions"]))
        print(f"row {index}: violations x{r['slo_violation']:.2f}, replica-hours x{r['replica_hours']:.3f}, "
              f"actions {strato['actions']:.0f} (hpa {hpa['actions']:.0f}), met on {met}/{n} runs, "
              f"score {score:.3f}", flush=True)
    best = min(rows, key=lambda row: row[0])
    print(f"keep row {best[1]} (lowest max(violation ratio / 0.5, replica-hours ratio)): {best[2]}")
    print(json.dumps({"tuning_stretches": stretches, "seeds": seeds, "hpa": hpa,
                      "grid": [{"row": r[1], "settings": r[2], "ratios": r[3], "runs_met": r[4], "actions": r[5]}
                               for r in rows],
                      "best_row": best[1], "best": best[2]}))
    return 0


# ----------------------------------------------------------------- --frontier
# WorldCup98 stretches outside every tuning stretch (the evaluation days, the quarter-finals and the
# final), and synthetic loads generated here; one fixed set of settings for all of them.
FRONTIER_WC_STRETCHES = (("wc98_06-29", "1998-06-29 00:00:00", "1998-07-01 00:00:00"),
                         ("wc98_07-03", "1998-07-03 00:00:00", "1998-07-05 00:00:00"),
                         ("wc98_07-12", "1998-07-12 00:00:00", "1998-07-14 00:00:00"))
FRONTIER_SYNTHETIC = ("diurnal", "flash_crowd", "step")
# A fine sweep: the frontier is convex, so a chord between far-apart targets would overstate the
# HPA's violations between them (and flatter Strato).
FRONTIER_HPA_TARGETS = tuple(round(0.3 + 0.05 * k, 2) for k in range(13))  # 0.30, 0.35, ..., 0.90
FRONTIER_QUICK_HPA_TARGETS = (0.4, 0.5, 0.6, 0.7, 0.8)
FRONTIER_LOAD_SEED = 1998  # the synthetic loads are the same on every run


def synthetic_load(kind: str, rows: int = 1440, seed: int = FRONTIER_LOAD_SEED) -> np.ndarray:
    """Requests per row (one row = one control interval) of a generated load: its shape only matters,
    the benchmark rescales every load so its peak needs --peak-replicas."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    if kind == "diurnal":  # one day: a night trough at 10 % and an afternoon peak, with a secondary bump
        shape = 0.55 - 0.45 * np.cos(2 * math.pi * t / rows) + 0.08 * np.sin(4 * math.pi * t / rows + 0.7)
    elif kind == "flash_crowd":  # a quiet diurnal base hit by three crowds: 2-4 min surges that decay over ~30 min
        shape = 0.25 - 0.12 * np.cos(2 * math.pi * t / rows)
        for start, height in ((300, 0.9), (780, 0.6), (1100, 0.75)):
            ramp = rng.integers(2, 5)
            rise = np.clip((t - start) / ramp, 0, 1)
            decay = np.exp(-np.clip(t - start - ramp, 0, None) / rng.uniform(20, 40))
            shape = shape + height * np.where(t >= start, rise * decay, 0.0)
    elif kind == "step":  # abrupt level changes held for hours (a batch job, a failover, a launch)
        levels = (0.15, 0.7, 0.35, 1.0, 0.5, 0.1, 0.8, 0.3)
        shape = np.array(levels, float)[np.minimum(t * len(levels) // rows, len(levels) - 1)]
    else:
        raise OptimizerInputError(f"unknown synthetic load {kind!r}")
    return np.clip(shape * np.exp(rng.normal(0, 0.05, rows)), 1e-3, None) * 1000.0


def frontier_loads(args) -> list[tuple[str, str, np.ndarray]]:
    """(name, description, requests per row) of every load of the frontier run."""
    loads = []
    stretches = FRONTIER_WC_STRETCHES[:1] if args.quick else FRONTIER_WC_STRETCHES
    for name, start, end in stretches:
        if args.quick:
            end = (datetime.fromisoformat(start) + timedelta(days=1)).isoformat(sep=" ")
        _, counts = read_trace(args.trace, start, end)
        loads.append((name, f"WorldCup98 {start[:10]}..{end[:10]} ({len(counts)} rows)", counts))
    for kind in (FRONTIER_SYNTHETIC[2:] if args.quick else FRONTIER_SYNTHETIC):
        loads.append((kind, f"synthetic {kind.replace('_', ' ')} (1440 rows, seed {FRONTIER_LOAD_SEED})",
                      synthetic_load(kind)))
    return loads


def run_frontier_task(task):
    """One policy on one load and seed: (replica_hours, violation_pct, actions)."""
    args, counts, name, hpa_target, seed = task
    variant = argparse.Namespace(**vars(args))
    if hpa_target is not None:
        variant.hpa_target = hpa_target
    service = ServiceModel(slo_s=args.slo, startup_delay_s=args.startup_delay, interval_s=args.interval,
                           noise=args.noise, curve=service_curve(args))
    rates = rescale_trace(counts, service, args.peak_replicas)
    max_replicas = int(math.ceil(args.peak_replicas * 1.5))
    peak_replicas = int(math.ceil(rates.max() / service.max_rate_per_replica_at_slo()))
    initial = max(1, int(math.ceil(rates[0] / (variant.hpa_target * service.service_rate))))
    policy = build_policies(variant, service, max_replicas, peak_replicas)[name]()
    result = simulate(rates, policy, service, initial, max_replicas, seed=seed)
    return result.replica_hours, result.slo_violation_pct, result.actions


def equal_cost_ratio(hpa_points: list[list[float]], strato: list[float]) -> dict:
    """Strato's violations over the HPA's, interpolated on the HPA frontier at Strato's replica-hours.

    The frontier is the HPA points no other HPA point beats on both cost and violations."""
    points = [p for p in sorted(hpa_points)
              if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in hpa_points)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    cost, violations = strato
    inside = xs[0] <= cost <= xs[-1]
    hpa_at_cost = float(np.interp(cost, xs, ys)) if inside else None
    ratio = None
    if hpa_at_cost is not None:
        ratio = round(violations / hpa_at_cost, 4) if hpa_at_cost > 0 else (0.0 if violations == 0 else None)
    return {"hpa_violation_pct_at_equal_cost": None if hpa_at_cost is None else round(hpa_at_cost, 4),
            "violation_ratio_at_equal_cost": ratio, "within_frontier": inside,
            "frontier_replica_hours": [round(xs[0], 3), round(xs[-1], 3)]}


def frontier(args) -> int:
    """Per load: the HPA frontier over its target, Strato's point, and the violation ratio at equal cost."""
    seeds = parse_seeds(args.seeds, args.seed)
    targets = FRONTIER_QUICK_HPA_TARGETS if args.quick else FRONTIER_HPA_TARGETS
    try:
        loads = frontier_loads(args)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.hpa_target is None:  # the strato policy's fallback tracking target: fixed, as everywhere else
        service = ServiceModel(slo_s=args.slo, curve=service_curve(args))
        args.hpa_target = round(HPA_TARGET_MM1 * service.max_rate_per_replica_at_slo()
                                / ServiceModel(slo_s=args.slo).max_rate_per_replica_at_slo(), 3)
    print("Closed-loop frontier benchmark: Strato's optimizer against the HPA's whole cost/violation trade-off")
    print(f"Loads: {'; '.join(f'{n} = {d}' for n, d, _ in loads)}; each rescaled so its peak needs "
          f"{args.peak_replicas:g} replicas at the SLO, each row played as one {args.interval:g} s interval.")
    print(f"HPA frontier: target CPU utilisation {', '.join(f'{t:g}' for t in targets)} (same HPA rules as "
          f"below); Strato: ONE fixed setting for every load (the tuned defaults of this script, tracking "
          f"fallback at {args.hpa_target:g}), never tuned on these loads; seeds {seeds}, figures are seed means.")
    print("Ratio = Strato's SLO-violation % / the HPA's violation % interpolated (linearly, on replica-hours) "
          "on its frontier (the non-dominated HPA points) at Strato's replica-hours; none when Strato's cost lies "
          "outside the frontier.")
    print(flush=True)
    tasks, keys = [], []
    for index, (name, _, counts) in enumerate(loads):
        for seed in seeds:
            tasks.append((args, counts, "strato", None, seed))
            keys.append((index, "strato", None, seed))
            for target in targets:
                tasks.append((args, counts, "hpa", target, seed))
                keys.append((index, "hpa", target, seed))
    started = time.perf_counter()
    if args.jobs > 1:
        order = sorted(range(len(tasks)), key=lambda i: tasks[i][2] != "strato")  # the long runs first
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            done = pool.map(run_frontier_task, [tasks[i] for i in order], chunksize=1)
        results = [None] * len(tasks)
        for i, r in zip(order, done):
            results[i] = r
    else:
        results = [run_frontier_task(t) for t in tasks]
    by_key = dict(zip(keys, results))
    payload = {"frontier": {}, "loads": {}, "seeds": seeds, "hpa_targets": list(targets),
               "settings": tuned_settings(args), "fallback_hpa_target": args.hpa_target}
    for index, (name, description, _) in enumerate(loads):
        mean = lambda policy, target, k: float(np.mean([by_key[(index, policy, target, s)][k]  # noqa: E731
                                                        for s in seeds]))
        hpa = [[round(mean("hpa", t, 0), 3), round(mean("hpa", t, 1), 4)] for t in targets]
        strato = [round(mean("strato", None, 0), 3), round(mean("strato", None, 1), 4)]
        compared = equal_cost_ratio(hpa, strato)
        payload["frontier"][name] = {"hpa": hpa, "strato": strato,
                                     "violation_ratio_at_equal_cost": compared["violation_ratio_at_equal_cost"],
                                     "hpa_violation_pct_at_equal_cost": compared["hpa_violation_pct_at_equal_cost"],
                                     "within_frontier": compared["within_frontier"],
                                     "actions": {"strato": mean("strato", None, 2),
                                                 "hpa": {str(t): mean("hpa", t, 2) for t in targets}}}
        payload["loads"][name] = description
        print(f"{name}: {description}")
        for t, (cost, violations) in zip(targets, hpa):
            print(f"  hpa target {t:.2f}  replica-hours {cost:8.2f}   SLO violation {violations:7.3f} %   "
                  f"actions {mean('hpa', t, 2):6.1f}")
        print(f"  strato            replica-hours {strato[0]:8.2f}   SLO violation {strato[1]:7.3f} %   "
              f"actions {mean('strato', None, 2):6.1f}")
        if compared["within_frontier"]:
            ratio = compared["violation_ratio_at_equal_cost"]
            print(f"  -> at equal replica-hours the HPA frontier violates {compared['hpa_violation_pct_at_equal_cost']:.3f} "
                  f"%: Strato's violations x{ratio if ratio is not None else float('nan'):.2f} of the HPA's "
                  f"({'fewer' if ratio is not None and ratio < 1 else 'NOT fewer'})")
        else:
            lo, hi = compared["frontier_replica_hours"]
            print(f"  -> Strato's replica-hours lie outside the HPA frontier ({lo:.2f}..{hi:.2f}): no ratio at equal "
                  "cost")
        print(flush=True)
    ratios = [v["violation_ratio_at_equal_cost"] for v in payload["frontier"].values()
              if v["violation_ratio_at_equal_cost"] is not None]
    payload["summary"] = {"loads": len(loads), "compared": len(ratios),
                          "strato_better_at_equal_cost": sum(r < 1 for r in ratios),
                          "geometric_mean_ratio": (round(float(np.exp(np.mean(np.log(np.maximum(ratios, 1e-9))))), 4)
                                                   if ratios else None),
                          "seconds": round(time.perf_counter() - started, 1)}
    s = payload["summary"]
    print(f"Summary: Strato below the HPA frontier on {s['strato_better_at_equal_cost']} of {s['compared']} loads "
          f"compared ({s['loads']} loads; geometric mean ratio {s['geometric_mean_ratio']}); {s['seconds']} s.")
    print(json.dumps(payload))
    return 0


def plot_timeline(path, periods, needed, series, slo_s, seed) -> None:
    """Replicas per policy against the replicas the load needs at the SLO, and latency against the SLO."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(needed)) / 60.0  # one trace row = one minute of the trace
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.fill_between(hours, 0, needed, color="0.85", label="replicas the load needs at the SLO")
    for name, (replicas, latency) in series.items():
        if name == "static_peak":
            continue
        top.step(hours, replicas, where="post", linewidth=0.9, label=f"{name} replicas")
        bottom.plot(hours, latency, linewidth=0.7, label=name)
    bottom.axhline(slo_s, color="red", linestyle="--", linewidth=0.8, label="SLO")
    bottom.set_yscale("log")
    top.set_ylabel("replicas")
    bottom.set_ylabel("p95 latency (s)")
    bottom.set_xlabel(f"trace hours from {periods[0]} (each minute played as one control interval)")
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8, ncol=4)
    top.set_title(f"Closed-loop autoscaling, seed {seed}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_service_assumptions(args, service: ServiceModel) -> None:
    """The simulator's latency curve, and how it compares with the measured ai-inference replica."""
    q = f"p{service.latency_quantile * 100:.0f}"
    if service.curve:
        print(f"Simulator assumptions (latency curve MEASURED on a real ai-inference replica: {args.service_curve}):")
        shape = ", ".join(f"{u:.2f}: {v:.1f}" for u, v in service.curve)
        print(f"  {q} latency in mean service times vs utilisation: {shape} (log-interpolated; beyond the last point "
              f"it grows like 1/(1-u)); replicas serve {service.service_rate:g} req/s at 100 % (100 ms per request);")
    else:
        print("Simulator assumptions:")
        print(f"  each ready replica is an M/M/1 server at {service.service_rate:g} req/s (100 ms mean service time);")
        print(f"  target = {q} latency = -ln(1-q)/(mu - lambda per replica);")
        if CALIBRATION.is_file():
            try:
                measured = calibration_from_json(CALIBRATION)
            except OptimizerInputError as error:
                print(f"  (calibration file unreadable: {error})")
            else:
                errors = ", ".join(f"{-e:.0%} at utilisation {u:g}" for u, e in measured.mm1_shape_rel_error.items()
                                   if e is not None)
                print(f"  calibration: one real ai-inference replica ({CALIBRATION.relative_to(REPO)}, measured by "
                      f"benchmarks/calibrate_service.py; saturation {measured.saturation_req_per_s:.0f} req/s, "
                      f"{measured.mean_service_s * 1000:.1f} ms per request at low load) is slower than M/M/1 in "
                      f"service-time units: M/M/1 understates its {q} by {errors}. The default keeps M/M/1 (the "
                      f"settings were tuned on it); --service-curve {CALIBRATION.relative_to(REPO)} plays the "
                      f"measured shape instead.")
    print(f"  above {service.max_utilization:.0%} utilisation excess requests queue (fluid backlog), latency capped "
          f"at {service.timeout_s:g} s;")


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
    parser.add_argument("--hpa-target", type=float, default=None,
                        help=f"HPA target CPU utilisation (default {HPA_TARGET_MM1} with the M/M/1 curve, the same "
                             "fraction of the SLO's utilisation with --service-curve)")
    parser.add_argument("--service-curve", metavar="JSON", default="",
                        help="play a measured latency-vs-utilisation shape instead of M/M/1: a calibration file "
                             f"written by benchmarks/calibrate_service.py --out (e.g. {CALIBRATION.relative_to(REPO)})")
    parser.add_argument("--low-fraction", type=float, default=0.5, help="optimizer lower threshold, x SLO")
    parser.add_argument("--strato-low-fraction", type=float, default=STRATO_LOW_FRACTION,
                        help="Strato's lower threshold, x SLO (chosen on the tuning stretch)")
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
    parser.add_argument("--policies", default="strato,hpa,micado,static_peak",
                        help="comma-separated: strato, hpa, micado, static_peak, rule (a MiCADO-style CPU rule)")
    parser.add_argument("--forecast-horizon", type=float, default=None,
                        help="seconds Strato extrapolates a growing load over (default: start-up delay + interval)")
    parser.add_argument("--quick", action="store_true",
                        help="iteration aid: play only the first day of the TUNING stretch, seed 0, strato and hpa "
                             "only (never iterate on the evaluation stretch)")
    parser.add_argument("--overload-quantile", type=float, default=OVERLOAD_QUANTILE,
                        help="Strato never scales down to a load per replica above this quantile of the loads "
                             "at which it saw the target above its upper threshold")
    parser.add_argument("--capacity-fraction", type=float, default=CAPACITY_FRACTION,
                        help="model-based capacity planning: provision the fewest replicas whose cautious predicted "
                             "latency at the forecast load is <= this x SLO (0 = off)")
    parser.add_argument("--capacity-trend-window", type=int, default=CAPACITY_TREND_WINDOW,
                        help="past rows of the robust load trend (capacity planning)")
    parser.add_argument("--capacity-react", type=int, default=CAPACITY_REACT,
                        help="1 = the scale-up forecast is at least the latest measured load (capacity planning)")
    parser.add_argument("--capacity-down-window", type=int, default=CAPACITY_DOWN_WINDOW,
                        help="a scale-down must fit the highest load of this many past rows (capacity planning)")
    parser.add_argument("--capacity-down-margin", type=float, default=CAPACITY_DOWN_MARGIN,
                        help="... times this margin (capacity planning)")
    parser.add_argument("--capacity-down-every", type=int, default=CAPACITY_DOWN_EVERY,
                        help="intervals between a scale-down and the previous action (capacity planning)")
    parser.add_argument("--capacity-down-min-step", type=int, default=CAPACITY_DOWN_MIN_STEP,
                        help="a scale-down must remove at least this many replicas (capacity planning)")
    parser.add_argument("--capacity-down-min-fraction", type=float, default=CAPACITY_DOWN_MIN_FRACTION,
                        help="... and at least this fraction of the current replicas (capacity planning)")
    parser.add_argument("--capacity-down-persist", type=int, default=CAPACITY_DOWN_PERSIST,
                        help="a scale-down needs a smaller count wanted on each of this many past intervals "
                             "(0 = off; capacity planning)")
    parser.add_argument("--capacity-reversal-window", type=int, default=CAPACITY_REVERSAL_WINDOW,
                        help="no scale-up/down reversal within this many intervals unless the measured latency "
                             "exceeds the upper threshold (0 = off; capacity planning)")
    parser.add_argument("--capacity-headroom-quantile", type=optional_float, default=CAPACITY_HEADROOM_QUANTILE,
                        help="raise the scale-up forecast by this quantile of the load's realised growth over the "
                             "forecast horizon (recent rows; none = off; capacity planning)")
    parser.add_argument("--capacity-headroom-window", type=int, default=CAPACITY_HEADROOM_WINDOW,
                        help="past rows the headroom quantile is taken over (capacity planning)")
    parser.add_argument("--capacity-explore-factor", type=float, default=CAPACITY_EXPLORE_FACTOR,
                        help="counts whose load per replica exceeds this x the highest load per replica in the "
                             "training samples are refused (1 = never beyond what was seen; capacity planning)")
    parser.add_argument("--capacity-overload-fraction", type=float, default=CAPACITY_OVERLOAD_FRACTION,
                        help="refuse counts whose load per replica reaches the --overload-quantile quantile of the "
                             "loads per replica measured with latency above this x SLO (0 = off; capacity planning)")
    parser.add_argument("--unseen-load-factor", type=optional_float, default=UNSEEN_LOAD_FACTOR,
                        help="the regular advice never scales down to a load per replica beyond this x the highest "
                             "one trained on (a young model has seen a narrow range; none = off)")
    parser.add_argument("--tune-stretches", choices=("wide", "narrow"), default="wide",
                        help="with --tune: 'wide' = WIDE_TUNE_STRETCHES (four stretches, 10 June days), 'narrow' = "
                             "06-25..06-26 only (how rows 0-24 were first chosen)")
    parser.add_argument("--tune-rows", default="", help="with --tune: comma-separated TUNE_GRID rows to run")
    parser.add_argument("--seed", type=int, default=0, help="a single seed (used when --seeds is '')")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS,
                        help="comma-separated noise seeds; every policy runs on each, the mean is reported")
    parser.add_argument("--jobs", type=int, default=2, help="simulations run in parallel processes")
    parser.add_argument("--tune", action="store_true",
                        help=f"sweep Strato's settings on the tuning stretch {TUNE_START[:10]}..{TUNE_END[:10]} only")
    parser.add_argument("--plot", metavar="PNG", default="",
                        help="write a scaling timeline of the first seed (replicas and latency per policy; "
                             "needs matplotlib, extra 'plots')")
    parser.add_argument("--frontier", action="store_true",
                        help="per load (WorldCup98 stretches and synthetic diurnal, flash-crowd and step loads), sweep "
                             "the HPA target to draw its replica-hours vs SLO-violation frontier and compare Strato "
                             "at equal replica-hours (--quick: one WorldCup98 day and the step load, 3 targets)")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed last)")
    args = parser.parse_args(argv)
    if args.quick and args.frontier and args.seeds == DEFAULT_SEEDS:
        args.seeds = "0"
    if args.quick and not args.frontier:
        if args.start == DEFAULT_START and args.end == DEFAULT_END:
            args.start, args.end = QUICK_START, QUICK_END
        if args.policies == parser.get_default("policies"):
            args.policies = "strato,hpa"
        if args.seeds == DEFAULT_SEEDS:
            args.seeds = "0"

    if args.tune:
        return tune(args)
    if args.frontier:
        return frontier(args)
    try:
        service, periods, rates, max_replicas, peak_replicas, initial = prepare(args, args.start or None,
                                                                                 args.end or None)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    print("Closed-loop autoscaling benchmark")
    if "worldcup" in Path(args.trace).name.lower():
        print("Trace: 1998 World Cup web site requests per minute (M. Arlitt and T. Jin, "
              "\"1998 World Cup Web Site Access Logs\", Internet Traffic Archive, 1998).")
    print(f"Stretch: {periods[0]} .. {periods[-1]} ({len(rates)} rows), each row played as one "
          f"{service.interval_s:.0f} s control interval ({len(rates) * service.interval_s / 3600:.1f} h simulated)")
    print_service_assumptions(args, service)
    print(f"  SLO: p95 latency <= {service.slo_s:g} s, i.e. <= {service.max_rate_per_replica_at_slo():.2f} "
          f"req/s per replica; trace rescaled so its peak ({rates.max():.1f} req/s) needs {args.peak_replicas:g} replicas;")
    print(f"  new replicas serve after {service.startup_delay_s:g} s and are paid for while starting; "
          f"measurement noise: log-normal sigma {service.noise:g} on rate, CPU and latency; same noise for every policy;")
    print(f"  replicas 1..{max_replicas}; autoscalers start at {initial}.")
    print(f"Policies: hpa = ceil(W*cpu/{args.hpa_target:g}), tolerance 0.1, 15 s sync, 300 s scale-down "
          "stabilisation, scale-up <= max(+100%, +4) per step;")
    cfg_horizon = service.startup_delay_s + service.interval_s if args.forecast_horizon is None else args.forecast_horizon
    print(f"  strato = Strato's advisor (NN ensemble on log request rate per replica and log replicas, regressions for metrics after scaling; "
          f"thresholds [{args.strato_low_fraction:g}, {args.high_fraction:g}] x SLO; trend forecast over {cfg_horizon:g} s; "
          f"target tracking until {args.min_samples} samples; retrained every {args.retrain_every} intervals "
          f"on the last {args.train_window} samples, outside the advice call, regularisation searched every "
          f"{args.reselect_alpha_every} retrainings; counts fit against prediction x exp({args.confidence_z:g} x spread); "
          f"scale-down stabilisation 300 s, or {args.confident_stabilization:g} s when the cautious prediction at "
          f"the smaller count is <= {args.confident_fraction:g} x the upper threshold; a scale-down must fit by the "
          f"worse of the anchored and model-alone prediction at the highest load of the last 8 samples, and keep "
          f"the load per replica below the {args.overload_quantile:g} quantile of loads per replica seen with "
          f"the target above the upper threshold"
          + (f", and never beyond {args.unseen_load_factor:g} x the highest load per replica trained on"
             if args.unseen_load_factor else "") + ");")
    if args.capacity_fraction:
        print(f"           model-based capacity planning: the fewest replicas whose cautious predicted latency at a "
              f"robust-trend load forecast (last {args.capacity_trend_window} rows"
              f"{', or the latest load if higher' if args.capacity_react else ''}) is <= {args.capacity_fraction:g} x SLO; "
              f"scale-up immediate, scale-down only when the smaller count fits the recent peak of the last "
              f"{args.capacity_down_window} rows x {args.capacity_down_margin:g} and >= {args.capacity_down_every} "
              f"intervals after the last action; anti-oscillation: a scale-down removes >= "
              f"max({args.capacity_down_min_step}, {args.capacity_down_min_fraction:g} x replicas), "
              + (f"a smaller count wanted on each of the last {args.capacity_down_persist} intervals, "
                 if args.capacity_down_persist else "no persistence requirement, ")
              + (f"no scale-up/down reversal within {args.capacity_reversal_window} intervals unless the measured "
                 f"latency exceeds the upper threshold;" if args.capacity_reversal_window else "no reversal guard;")
              + (f" forecast raised by the {args.capacity_headroom_quantile:g} quantile of the load's realised growth "
                 f"over the horizon in the last {args.capacity_headroom_window} rows;"
                 if args.capacity_headroom_quantile is not None else " no volatility headroom;")
              + f" counts beyond {args.capacity_explore_factor:g} x the highest load per replica trained on refused;"
              + (f" counts reaching the {args.overload_quantile:g} quantile of the loads per replica measured with "
                 f"latency above {args.capacity_overload_fraction:g} x SLO refused;"
                 if args.capacity_overload_fraction else "")
              + " falls back to the advice above when the model has no lever or nothing fits;")
    else:
        print("           model-based capacity planning off;")
    print(f"  micado = MiCADO's method (thresholds [{args.low_fraction:g}, {args.high_fraction:g}] x SLO; HPA fallback until its 300 samples; retrained every "
          f"{args.retrain_every} intervals);")
    print(f"  static_peak = {peak_replicas} replicas throughout;")
    print("  rule (only with --policies ...,rule) = a MiCADO-style CPU threshold rule (+25 % above 0.8, -1 below 0.4, "
          "60 s apart) run in the rule sandbox.")
    print()

    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [n for n in names if n not in ("strato", "hpa", "micado", "static_peak", "rule")]
    if unknown:
        print(f"error: unknown policy {unknown[0]!r}", file=sys.stderr)
        return 1
    seeds = parse_seeds(args.seeds, args.seed)
    print(f"Seeds (measurement noise): {', '.join(map(str, seeds))}; figures are per seed and their mean.")
    print(f"Strato's tunable settings were chosen on the tuning stretches "
          f"{', '.join(f'{a[:10]}..{b[:10]}' for a, b in WIDE_TUNE_STRETCHES)} (earlier days, not the evaluation "
          f"stretch; every row tried and its figures are in the comments of this script), by `{TUNE_COMMAND}`.")
    print()
    tasks = [(name, seed) for seed in seeds for name in names]
    runs = run_tasks(args, tasks, args.start or None, args.end or None)
    per_seed = {str(seed): {} for seed in seeds}
    for (name, seed), (summary, elapsed, extra, _) in zip(tasks, runs):
        per_seed[str(seed)][name] = summary
        print(f"seed {seed:<3d} {name:12s} SLO violation {summary['slo_violation_pct']:6.3f} %   replica-hours "
              f"{summary['replica_hours']:8.2f}   actions {summary['actions']:5d}   ({elapsed:.1f} s){extra}")
    results = {name: mean_summary([per_seed[str(seed)][name] for seed in seeds]) for name in names}
    payload = {"policies": results, "seeds": seeds, "per_seed": per_seed,
               "tuning": {"stretches": [list(x) for x in WIDE_TUNE_STRETCHES], "settings": tuned_settings(args)}}
    if args.plot:
        first = seeds[0]
        series = {name: detail for (name, seed), (*_, detail) in zip(tasks, runs) if seed == first}
        plot_timeline(args.plot, periods, rates / service.max_rate_per_replica_at_slo(), series, service.slo_s, first)
        print(f"scaling timeline (seed {first}) written to {args.plot}")
    if len(seeds) > 1:
        print()
        for name in names:
            r = results[name]
            print(f"mean     {name:12s} SLO violation {r['slo_violation_pct']:6.3f} %   replica-hours "
                  f"{r['replica_hours']:8.2f}   actions {r['actions']:7.1f}")
    if "strato" in results and "hpa" in results:
        ratios = {str(seed): ratio(per_seed[str(seed)]["strato"], per_seed[str(seed)]["hpa"]) for seed in seeds}
        mean_ratio = ratio(results["strato"], results["hpa"])
        payload["ratios"] = {"mean": mean_ratio, "per_seed": ratios,
                             "seeds_met": sum(r["met"] for r in ratios.values())}
        print()
        for seed in seeds:
            r = ratios[str(seed)]
            print(f"seed {seed:<3d} strato vs hpa: SLO-violation time x{r['slo_violation']:.2f}, replica-hours "
                  f"x{r['replica_hours']:.3f} -> {'met' if r['met'] else 'NOT met'}")
        print(f"mean of {len(seeds)} seed(s): strato vs hpa: SLO-violation time x{mean_ratio['slo_violation']:.2f} "
              f"(target <= 0.5), replica-hours x{mean_ratio['replica_hours']:.3f} (target <= 1.0) -> "
              f"{'met' if mean_ratio['met'] else 'NOT met'}; met on {payload['ratios']['seeds_met']} of "
              f"{len(seeds)} seeds individually")
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
