"""Prediction benchmark on MiCADO's recorded session: held-out errors of Strato, MiCADO's method and "nothing changes"."""
from __future__ import annotations

import argparse
import math
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from optimizer.errors import OptimizerInputError  # noqa: E402
from optimizer.features import AFTER_WINDOW, scaling_events  # noqa: E402
from optimizer.models import median_ape  # noqa: E402
from optimizer.evaluate import evaluate, split_fraction  # noqa: E402
from optimizer.samples import read_csv  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "micado_optimizer_session.csv"


def _recent_distinct(target: np.ndarray, i: int, k: int) -> np.ndarray:
    """The last k distinct consecutive values up to row i (a sticky metric repeats its last value)."""
    values, j = [target[i]], i
    while len(values) < k and j > 0:
        j -= 1
        if target[j] != values[-1]:
            values.append(target[j])
    return np.array(values)


def persistence_check(samples, n_train: int) -> dict:
    """Median APE of simple level estimators for (b)'s actual value, on training and on held-out events.

    If "the last value" beats every smoothed level on the training events, a validated anchoring
    on the measured target (kappa 1, beta 0) is the right choice, not a failure to fit.
    """
    events = scaling_events(samples)
    target = samples.target
    train = events.before + AFTER_WINDOW < n_train
    test = events.before >= n_train - 1
    estimators = {
        "last_value": lambda i: target[i],
        "median_last_5": lambda i: float(np.median(target[max(0, i - 4):i + 1])),
        "mean_last_2_distinct": lambda i: float(_recent_distinct(target, i, 2).mean()),
        "median_last_3_distinct": lambda i: float(np.median(_recent_distinct(target, i, 3))),
        "last_value_10pct_towards_median_3_distinct":
            lambda i: target[i] + 0.1 * (float(np.median(_recent_distinct(target, i, 3))) - target[i]),
    }
    out = {}
    for name, estimate in estimators.items():
        predicted = np.array([estimate(i) for i in events.before])
        out[name] = {part: median_ape(predicted[mask], events.after_target[mask])
                     for part, mask in (("train_events", train), ("test_events", test))}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-fraction", type=float, default=0.7, help="first fraction of rows (time order) trains")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        samples = read_csv(args.data)
        cut = split_fraction(samples, args.train_fraction)
        result = evaluate(samples, cut, seed=args.seed)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Data: {args.data} ({len(samples)} rows); trained on the first {result['n_train']} rows "
          f"(up to timestamp {cut:.0f}), tested on the {result['n_test']} later rows, "
          f"{result['n_test_events']} of them scaling events.")
    print("(a) target from the same sample's metrics; (b) mean target over the 4 samples after an instance-count "
          "change, from the sample before it and the change.")
    print("All errors are on held-out later rows. MAPE here = median absolute percentage error.")
    for name in ("strato", "micado", "no_change"):
        for part in ("target", "after_scaling"):
            s = result[name][part]
            print(f"  {name:10s} {'(a)' if part == 'target' else '(b)'} {part:14s} MAPE {s['mape']:9.4f}   "
                  f"Spearman {s['spearman']:.3f}")
    print(f"  MiCADO's own 'reliability' (in-sample correlation, not an accuracy): "
          f"{result['micado']['in_sample_reliability']:.3f}")
    t = result["strato_training"]
    print(f"  Strato's choices on time-ordered validation: alpha {t['alpha']}, kappa {t['kappa']}, beta {t['beta']} "
          f"(kappa=1, beta=0 means 'anchor on the measured target, no model change')")
    sb, mb, nb = (result[k]["after_scaling"]["mape"] for k in ("strato", "micado", "no_change"))
    tie = math.isclose(sb, nb, rel_tol=1e-9)
    verdict = "NOT better (a tie: validation chose to anchor on the measured target)" if tie else \
        ("better" if sb < nb else "NOT better")
    print(f"  (b) Strato vs MiCADO: {'better' if sb < mb else 'NOT better'}; vs nothing changes: {verdict} "
          f"({sb:.5f} vs {nb:.5f})")
    check = persistence_check(samples, result["n_train"])
    print("  How predictable is (b) at all? Median APE of simple level estimators (no model):")
    for name, parts in check.items():
        print(f"    {name:44s} training events {parts['train_events']:.5f}   held-out events {parts['test_events']:.5f}")
    best_train = min(check, key=lambda k: check[k]["train_events"])
    best_test = min(check, key=lambda k: check[k]["test_events"])
    print(f"    best on the training events: {best_train} ({check[best_train]['train_events']:.5f} vs last value "
          f"{check['last_value']['train_events']:.5f}); best on the held-out events: {best_test}. The latency "
          "behaves like a sticky random walk: smoothing its level gains little or nothing, so a model's predicted "
          "change must beat the measured value itself")
    summary = {k: result[k] for k in ("strato", "micado", "no_change", "n_train", "n_test", "n_test_events")}
    summary["micado"] = {k: v for k, v in summary["micado"].items() if k != "in_sample_reliability"}
    summary["persistence_check"] = check
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
