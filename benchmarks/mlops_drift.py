"""Drift benchmark (issue 20's detection_delay_windows and false_alarms_per_1000_windows) on seeded synthetic streams.

    python benchmarks/mlops_drift.py [--seed 0]    # a table, then one JSON line

A served model's requests: four numeric features (normal x1, log-normal x2, uniform x3, gamma x4), one
categorical (colour, four values) and the model's prediction (three classes, a fixed rule on x1, x3, x4). The
reference is a training sample of the same distribution; windows have the monitoring default of 200 rows and an
alert needs k = 3 drifted windows in a row (policies/drift.py's defaults throughout).

- abrupt: from window W on, x1's mean moves by 1 standard deviation (numeric), or the colour mix changes from
  50/30/15/5 % to 30/30/30/10 % (categorical);
- gradual: the same changes reached linearly over 20 windows (the first shifted window carries 1/20 of it);
- no drift: 1000 windows per seed, several seeds.

detection_delay_windows = the index of the alerting window minus the index of the first shifted window, so an
alert as early as possible (the first k shifted windows all drifted) is k - 1 = 2. The headline figures take the
median over seeds and the slower of the numeric and categorical change. Three configurations: a large
reference (2000 rows: wasserstein + jensenshannon by default), a small one (300 rows: ks + chi2) and the large
one with psi + chi2, so that every method has figures of its own (per_method: alerts counted on that method's
columns only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from policies.drift import (DEFAULT_ALPHA, DEFAULT_K, DEFAULT_WINDOW, ConsecutiveAlarm, DriftConfig,  # noqa: E402
                            DriftDetector, Reference)

COLOURS = ("red", "green", "blue", "grey")
MIX = np.array([0.5, 0.3, 0.15, 0.05])
SHIFTED_MIX = np.array([0.3, 0.3, 0.3, 0.1])
FIRST_SHIFTED = 10
AFTER_SHIFT = 40
RAMP = 20
NO_DRIFT_WINDOWS = 1000
NO_DRIFT_SEEDS = 3
DRIFT_SEEDS = 5
NUMERIC = ("x1", "x2", "x3", "x4")
CONFIGS = {"large_auto": (2000, {}), "small_auto": (300, {}),
           "large_psi_chi2": (2000, {"numeric": "psi", "categorical": "chi2"})}


def requests(rng, n: int, shift: float = 0.0, mix=MIX) -> list[dict]:
    """n requests of the stream, x1's mean moved by `shift` standard deviations, colours drawn with `mix`."""
    x1, x2 = rng.normal(shift, 1.0, n), rng.lognormal(0.0, 0.5, n)
    x3, x4 = rng.uniform(0.0, 10.0, n), rng.gamma(2.0, 1.0, n)
    colour = rng.choice(COLOURS, n, p=mix / mix.sum())
    score = x1 + 0.3 * (x3 - 5.0) + 0.2 * (x4 - 2.0)
    prediction = np.where(score < -0.8, "setosa", np.where(score < 0.8, "versicolor", "virginica"))
    return [{"x1": float(a), "x2": float(b), "x3": float(c), "x4": float(d), "colour": str(e), "prediction": str(p)}
            for a, b, c, d, e, p in zip(x1, x2, x3, x4, colour, prediction)]


def _progress(window: int, kind: str) -> float:
    """How much of the change window `window` carries: 0 before FIRST_SHIFTED, then all (abrupt) or a ramp."""
    if window < FIRST_SHIFTED:
        return 0.0
    return 1.0 if kind == "abrupt" else min(1.0, (window - FIRST_SHIFTED + 1) / RAMP)


def _shifted_window(rng, window: int, kind: str, change: str) -> list[dict]:
    share = _progress(window, kind)
    if change == "numeric":
        return requests(rng, DEFAULT_WINDOW, shift=share)
    return requests(rng, DEFAULT_WINDOW, mix=(1 - share) * MIX + share * SHIFTED_MIX)


def _groups(detector: DriftDetector) -> dict[str, list[str]]:
    """Columns per method (features only), plus `all`: the detector's real verdict."""
    groups: dict[str, list[str]] = {}
    for name in detector.reference.columns:
        groups.setdefault(detector.methods[name], []).append(name)
    return groups


def _verdicts(detector: DriftDetector, rows: list[dict], groups: dict[str, list[str]]) -> dict[str, bool]:
    result = detector.window(rows)
    found = {method: any(result.features[c].drifted for c in cols) for method, cols in groups.items()}
    found["all"] = result.drifted
    return found


def _detector(config: str, seed: int) -> tuple[DriftDetector, np.random.Generator]:
    size, methods = CONFIGS[config]
    rng = np.random.default_rng(seed)
    reference = Reference.from_rows(requests(rng, size), seed=seed)
    return DriftDetector(reference, DriftConfig(method_defaults=methods, seed=seed)), rng


def delays(config: str, kind: str, change: str, seed: int) -> dict[str, int | None]:
    """Per method group and overall: windows from the first shifted window to the alert (None: no alert)."""
    detector, rng = _detector(config, seed)
    groups = _groups(detector)
    alarms = {g: ConsecutiveAlarm(DEFAULT_K) for g in list(groups) + ["all"]}
    found: dict[str, int | None] = {g: None for g in alarms}
    for window in range(FIRST_SHIFTED + AFTER_SHIFT):
        verdicts = _verdicts(detector, _shifted_window(rng, window, kind, change), groups)
        for group, alarm in alarms.items():
            if alarm.update(verdicts[group]) and window >= FIRST_SHIFTED and found[group] is None:
                found[group] = window - FIRST_SHIFTED
    return found


def no_drift(config: str, seed: int) -> dict[str, dict[str, int]]:
    """Per method group and overall, over NO_DRIFT_WINDOWS unchanged windows: flagged windows and alerts."""
    detector, rng = _detector(config, seed)
    groups = _groups(detector)
    alarms = {g: ConsecutiveAlarm(DEFAULT_K) for g in list(groups) + ["all"]}
    counts = {g: {"flagged": 0, "alerts": 0} for g in alarms}
    for _ in range(NO_DRIFT_WINDOWS):
        verdicts = _verdicts(detector, requests(rng, DEFAULT_WINDOW), groups)
        for group, alarm in alarms.items():
            counts[group]["flagged"] += verdicts[group]
            counts[group]["alerts"] += alarm.update(verdicts[group])
    return counts


def _median(values: list[int | None]) -> int | None:
    """The median delay over the (odd number of) seeds; a missed detection counts as slower than any."""
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ranked[len(ranked) // 2] if ranked else None


def _config_figures(config: str, seed: int) -> dict:
    """Delays (abrupt/gradual x numeric/categorical, per method group) and no-drift rates of one configuration."""
    runs = {(kind, change): [delays(config, kind, change, seed + s) for s in range(DRIFT_SEEDS)]
            for kind in ("abrupt", "gradual") for change in ("numeric", "categorical")}
    quiet = [no_drift(config, seed + 1000 + s) for s in range(NO_DRIFT_SEEDS)]
    windows = NO_DRIFT_WINDOWS * NO_DRIFT_SEEDS
    groups = list(quiet[0])
    figures = {"delays": {f"{kind}_{change}": {g: _median([r[g] for r in rs]) for g in groups}
                          for (kind, change), rs in runs.items()},
               "false_alarms_per_1000_windows": {g: 1000 * sum(q[g]["alerts"] for q in quiet) / windows
                                                 for g in groups},
               "flagged_window_rate": {g: sum(q[g]["flagged"] for q in quiet) / windows for g in groups}}
    return figures


def _worst(a, b):
    return None if a is None or b is None else max(a, b)


def _per_method(configs: dict) -> dict:
    """Each method's figures, from the configuration where it is the default for its kind of column."""
    where = {"wasserstein": "large_auto", "jensenshannon": "large_auto", "ks": "small_auto", "chi2": "small_auto",
             "psi": "large_psi_chi2"}
    out = {}
    for method, config in where.items():
        fig = configs[config]
        change = "categorical" if method in ("chi2", "jensenshannon") else "numeric"
        out[method] = {"config": config, "abrupt": fig["delays"][f"abrupt_{change}"][method],
                       "gradual": fig["delays"][f"gradual_{change}"][method],
                       "false_alarms_per_1000_windows": fig["false_alarms_per_1000_windows"][method],
                       "flagged_window_rate": fig["flagged_window_rate"][method]}
    return out


def drift_figures(seed: int = 0) -> dict:
    """The benchmark's figures (JSON-safe); the headline ones from the large reference with the default methods."""
    started = time.monotonic()
    configs = {name: _config_figures(name, seed) for name in CONFIGS}
    head = configs["large_auto"]
    delay = {kind: _worst(head["delays"][f"{kind}_numeric"]["all"], head["delays"][f"{kind}_categorical"]["all"])
             for kind in ("abrupt", "gradual")}
    return {"detection_delay_windows": delay,
            "false_alarms_per_1000_windows": head["false_alarms_per_1000_windows"]["all"],
            "flagged_window_rate": head["flagged_window_rate"]["all"],
            "delay_counted_from": f"the first shifted window; the earliest possible alert is k - 1 = {DEFAULT_K - 1}",
            "k": DEFAULT_K, "window_rows": DEFAULT_WINDOW, "alpha": DEFAULT_ALPHA, "seed": seed,
            "drift_seeds": DRIFT_SEEDS, "no_drift_windows": NO_DRIFT_WINDOWS * NO_DRIFT_SEEDS,
            "reference_rows": {name: size for name, (size, _) in CONFIGS.items()},
            "per_method": _per_method(configs), "configs": configs,
            "elapsed_s": round(time.monotonic() - started, 1)}


def _table(figures: dict) -> str:
    lines = [f"{'method':<14}{'config':<16}{'abrupt':>8}{'gradual':>9}{'alarms/1000':>13}{'flagged':>9}"]
    for method, f in figures["per_method"].items():
        lines.append(f"{method:<14}{f['config']:<16}{_text(f['abrupt']):>8}{_text(f['gradual']):>9}"
                     f"{f['false_alarms_per_1000_windows']:>13.2f}{f['flagged_window_rate']:>9.4f}")
    for name, fig in figures["configs"].items():
        d = fig["delays"]
        lines.append(f"{'all columns':<14}{name:<16}"
                     f"{_text(_worst(d['abrupt_numeric']['all'], d['abrupt_categorical']['all'])):>8}"
                     f"{_text(_worst(d['gradual_numeric']['all'], d['gradual_categorical']['all'])):>9}"
                     f"{fig['false_alarms_per_1000_windows']['all']:>13.2f}{fig['flagged_window_rate']['all']:>9.4f}")
    return "\n".join(lines)


def _text(value) -> str:
    return "missed" if value is None else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the first seed of the streams (default 0)")
    args = parser.parse_args(argv)
    figures = drift_figures(args.seed)
    print(_table(figures))
    print("delays in windows from the first shifted window (median of seeds; minimum k - 1 = "
          f"{DEFAULT_K - 1}); alarms per 1000 no-drift windows; flagged: share of no-drift windows drifted")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
