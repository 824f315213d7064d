"""Drift of a model's inputs and predictions against its training reference (policies/drift.py), seeded."""
from __future__ import annotations

import json

import numpy as np
import pytest

from descriptors.checks import validate_value
from descriptors.schema import Schema
from descriptors.types import builtin_registry
from policies.drift import (DEFAULT_ALPHA, DEFAULT_K, DEFAULT_MIN_WINDOW, DEFAULT_THRESHOLDS, DEFAULT_WINDOW,
                            ConsecutiveAlarm, DriftConfig, DriftDetector, Reference, accuracy, parse_monitoring)

COLOURS = ("red", "green", "blue", "grey")
MIX = (0.5, 0.3, 0.15, 0.05)
SHIFTED_MIX = (0.3, 0.3, 0.3, 0.1)


def rows(rng, n, shift=0.0, mix=MIX, colours=COLOURS):
    """n requests: x ~ N(shift, 1), y ~ Exp(1), z ~ U(0, 10), colour by mix; prediction from x and z."""
    x, y, z = rng.normal(shift, 1.0, n), rng.exponential(1.0, n), rng.uniform(0, 10, n)
    colour = rng.choice(colours, n, p=mix)
    score = x + 0.3 * (z - 5)
    pred = np.where(score < -0.7, "setosa", np.where(score < 0.7, "versicolor", "virginica"))
    return [{"x": float(a), "y": float(b), "z": float(c), "colour": str(d), "prediction": str(p)}
            for a, b, c, d, p in zip(x, y, z, colour, pred)]


def detector(n_reference, seed=0, **config):
    rng = np.random.default_rng(seed)
    return DriftDetector(Reference.from_rows(rows(rng, n_reference)), DriftConfig(**config)), rng


def false_alarm_rate(det, rng, windows, size=DEFAULT_WINDOW):
    return sum(det.window(rows(rng, size)).drifted for _ in range(windows)) / windows


# -- the reference -----------------------------------------------------------------------------------------------

def test_reference_guesses_column_kinds_and_leaves_out_identifiers():
    rng = np.random.default_rng(1)
    data = [{"age": float(rng.normal(40, 10)), "children": int(rng.integers(0, 4)), "member": bool(rng.integers(2)),
             "city": str(rng.choice(["a", "b"])), "request_id": f"req-{i}", "income": int(rng.integers(0, 10**6)),
             "prediction": float(rng.normal())} for i in range(300)]
    ref = Reference.from_rows(data, ignore=("income",))
    kinds = {name: c.kind for name, c in ref.columns.items()}
    assert kinds == {"age": "numeric", "children": "categorical", "member": "categorical", "city": "categorical"}
    assert ref.prediction.kind == "numeric" and ref.skipped == ["request_id"]
    forced = Reference.from_rows(data, categorical=("age",), numeric=("children",), ignore=("request_id",))
    assert forced.columns["age"].kind == "categorical" and forced.columns["children"].kind == "numeric"
    with pytest.raises(ValueError, match="both categorical and numeric"):
        Reference.from_rows(data, categorical=("age",), numeric=("age",))
    with pytest.raises(ValueError, match="no rows"):
        Reference.from_rows([])


def test_reference_keeps_a_bounded_seeded_sample():
    rng = np.random.default_rng(2)
    data = [{"x": float(v)} for v in rng.normal(size=25_000)]
    one, two = Reference.from_rows(data, seed=7), Reference.from_rows(data, seed=7)
    assert one.columns["x"].n == 10_000 and np.array_equal(one.columns["x"].sample, two.columns["x"].sample)


def test_csv_text_and_json_numbers_are_the_same_values(tmp_path):
    rng = np.random.default_rng(3)
    reference = rows(rng, 600)
    path = tmp_path / "reference.csv"
    lines = ["x,y,z,colour,level,prediction"] + [f"{r['x']},{r['y']},{r['z']},{r['colour']},{i % 3},{r['prediction']}"
                                                  for i, r in enumerate(reference)]
    path.write_text("\n".join(lines) + "\n")
    ref = Reference.from_csv(str(path))
    assert ref.columns["x"].kind == "numeric" and ref.columns["level"].kind == "categorical"
    window = [dict(r, level=i % 3) for i, r in enumerate(rows(rng, 200))]  # JSON: level is an int, not '1'
    result = DriftDetector(ref).window(window)
    assert result.features["level"].statistic is not None and not result.features["level"].drifted


# -- each method: a clear shift is seen, unchanged data is not ---------------------------------------------------

@pytest.mark.parametrize("reference,methods", [
    (500, {}),                                                     # auto: ks + chi2
    (3000, {}),                                                    # auto: wasserstein + jensenshannon
    (3000, {"numeric": "psi", "categorical": "chi2"}),
    (500, {"numeric": "wasserstein", "categorical": "jensenshannon"}),
])
def test_each_method_detects_a_clear_shift_and_rarely_flags_unchanged_data(reference, methods):
    det, rng = detector(reference, seed=reference, method_defaults=methods)
    numeric_shift = det.window(rows(rng, DEFAULT_WINDOW, shift=1.0))
    assert "x" in numeric_shift.drifted_columns and numeric_shift.drifted
    assert "y" not in numeric_shift.drifted_columns and "z" not in numeric_shift.drifted_columns
    assert det.window(rows(rng, DEFAULT_WINDOW, mix=SHIFTED_MIX)).drifted_columns == ["colour"]
    # alpha = 0.01 per window over 5 columns; a generous bound over 300 seeded windows, not a single draw
    assert false_alarm_rate(det, rng, 300) <= 0.03


def test_the_prediction_distribution_is_tested_too():
    det, rng = detector(500, seed=4)
    result = det.window(rows(rng, DEFAULT_WINDOW, shift=1.5))
    assert result.prediction.method == "chi2" and result.prediction.drifted
    assert "prediction" in result.drifted_columns


def test_small_windows_are_judged_by_the_noise_floor_of_their_size():
    """A fixed distance cut-off flags most 50-row windows; the noise floor keeps them quiet."""
    det, rng = detector(3000, seed=5, method_defaults={"numeric": "psi"})
    assert false_alarm_rate(det, rng, 300, size=DEFAULT_MIN_WINDOW) <= 0.03
    bare, rng = detector(3000, seed=5, method_defaults={"numeric": "psi"}, noise_floor=False)
    assert false_alarm_rate(bare, rng, 100, size=DEFAULT_MIN_WINDOW) > 0.3
    result = det.window(rows(rng, DEFAULT_MIN_WINDOW))
    assert result.features["x"].noise_floor > result.features["x"].threshold


# -- categories the reference never saw --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["chi2", "jensenshannon"])
def test_unseen_categories_alarm_only_when_common(method):
    det, rng = detector(2000, seed=6, method_defaults={"categorical": method})
    stray = rows(rng, DEFAULT_WINDOW)
    stray[0]["colour"] = "ultraviolet"
    assert not det.window(stray).features["colour"].drifted
    common = rows(rng, DEFAULT_WINDOW, colours=("red", "green", "blue", "ultraviolet"), mix=(0.4, 0.2, 0.1, 0.3))
    assert det.window(common).features["colour"].drifted


# -- too few rows ------------------------------------------------------------------------------------------------

def test_a_window_below_min_window_is_too_small_never_drifted():
    det, rng = detector(500, seed=7)
    result = det.window(rows(rng, DEFAULT_MIN_WINDOW - 1, shift=5.0))
    assert result.too_small and not result.drifted and result.verdict() is None
    assert result.to_dict()["too_small"] is True
    sparse = rows(rng, DEFAULT_WINDOW, shift=5.0)
    for r in sparse[10:]:
        del r["x"]  # most rows lack x: x is skipped, the other columns are tested
    result = det.window(sparse)
    assert result.features["x"].too_small and not result.features["x"].drifted and result.features["x"].n == 10
    assert not result.too_small and result.features["y"].statistic is not None
    assert det.window([{"other": 1}] * 100).too_small  # nothing testable at all


# -- overrides and configuration errors --------------------------------------------------------------------------

def test_per_feature_overrides_pick_the_method_and_threshold():
    det, rng = detector(500, seed=8, overrides={"x": {"method": "psi", "threshold": 5.0},
                                                "y": {"method": "wasserstein"},
                                                "prediction": {"method": "jensenshannon", "threshold": 0.9}})
    result = det.window(rows(rng, DEFAULT_WINDOW, shift=1.0))
    x, y = result.features["x"], result.features["y"]
    assert (x.method, x.threshold, x.drifted) == ("psi", 5.0, False)  # a 1-std shift is below PSI 5
    assert (y.method, y.threshold) == ("wasserstein", DEFAULT_THRESHOLDS["wasserstein"])
    assert result.features["z"].method == "ks" and result.features["z"].threshold == pytest.approx(DEFAULT_ALPHA / 5)
    assert (result.prediction.method, result.prediction.drifted) == ("jensenshannon", False)


@pytest.mark.parametrize("config,message", [
    ({"overrides": {"x": {"method": "kolmogorov"}}}, "features.x: unknown drift method 'kolmogorov'"),
    ({"overrides": {"x": {"method": "ks", "threshold": 1.5}}}, "p-value, between 0 and 1"),
    ({"overrides": {"x": {"method": "psi", "threshold": -1}}}, "must be above 0"),
    ({"overrides": {"x": {"method": "psi", "threshold": "high"}}}, "must be a number"),
    ({"overrides": {"x": {"threshold": 0.2}}}, "a threshold needs its method"),
    ({"overrides": {"x": {"method": "ks", "cutoff": 0.2}}}, "unknown field 'cutoff'"),
    ({"overrides": {"x": 0.2}}, r"give \{method, threshold\}"),
    ({"method_defaults": {"numeric": "chi2"}}, "methods.numeric: unknown drift method 'chi2'"),
    ({"method_defaults": {"text": "chi2"}}, "unknown column kind 'text'"),
    ({"thresholds": {"jensenshannon": 2}}, r"distance in \(0, 1\]"),
    ({"alpha": 0}, "alpha is a per-window false-alarm level"),
    ({"min_window": 1}, "min_window must be an integer of at least 2"),
])
def test_config_errors_say_what_is_wrong(config, message):
    with pytest.raises(ValueError, match=message):
        DriftConfig(**config)


def test_overrides_must_name_a_column_and_fit_its_kind():
    rng = np.random.default_rng(9)
    ref = Reference.from_rows(rows(rng, 300))
    with pytest.raises(ValueError, match="features.colour: psi does not test a categorical column"):
        DriftDetector(ref, DriftConfig(overrides={"colour": {"method": "psi"}}))
    with pytest.raises(ValueError, match="features.colr: no such column"):
        DriftDetector(ref, DriftConfig(overrides={"colr": {"method": "chi2"}}))


def test_window_results_are_json_safe():
    det, rng = detector(3000, seed=10)
    text = json.dumps(det.window(rows(rng, DEFAULT_WINDOW, shift=1.0)).to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["drifted"] and data["features"]["x"]["method"] == "wasserstein"
    assert data["prediction"]["method"] == "jensenshannon" and data["features"]["x"]["noise_floor"] > 0


# -- k consecutive windows ---------------------------------------------------------------------------------------

def test_consecutive_alarm_fires_once_at_k_and_rearms_after_a_quiet_window():
    alarm = ConsecutiveAlarm(3)
    assert [alarm.update(d) for d in (True, True, None, True, True, True)] == [False, False, False, True, False,
                                                                            False]
    assert [alarm.update(d) for d in (False, True, True, True)] == [False, False, False, True]
    assert [alarm.update(d) for d in (True, False, True, True)] == [False, False, False, False]


def test_consecutive_alarm_state_round_trips_mid_run():
    alarm = ConsecutiveAlarm(3)
    alarm.update(True)
    alarm.update(True)
    restored = ConsecutiveAlarm.from_state(json.loads(json.dumps(alarm.to_state())))
    assert restored.to_state() == {"k": 3, "run": 2, "fired": False} and restored.update(True)
    fired = ConsecutiveAlarm.from_state(restored.to_state())
    assert not fired.update(True)  # already fired: no second alert in the same run
    with pytest.raises(ValueError, match="k must be an integer of at least 1"):
        ConsecutiveAlarm(0)


# -- accuracy ----------------------------------------------------------------------------------------------------

def test_accuracy_for_classes_and_mae_for_numbers():
    assert accuracy([("a", "a"), ("b", "a"), (1, "1"), ("c", None)]) == {"kind": "classification", "n": 3,
                                                                           "accuracy": pytest.approx(2 / 3)}
    assert accuracy([(1.0, 1.5), (2.0, 1.0)]) == {"kind": "regression", "n": 2, "mae": pytest.approx(0.75)}
    assert accuracy([]) == {"kind": "classification", "n": 0, "accuracy": None}
    assert accuracy([(3, 3.0)], kind="regression")["mae"] == 0
    with pytest.raises(ValueError, match="kind must be"):
        accuracy([], kind="ranking")


# -- the monitoring block (strato.datatypes.ModelMonitoring) ------------------------------------------------------

def test_monitoring_block_defaults_and_durations():
    spec = parse_monitoring({})
    assert (spec.window_rows, spec.window_seconds, spec.k, spec.drift.min_window) == (DEFAULT_WINDOW, None, DEFAULT_K,
                                                                                       DEFAULT_MIN_WINDOW)
    spec = parse_monitoring({"window": "5 m", "k": 2, "categorical": ["colour"], "ignore": ["id"],
                             "methods": {"numeric": "psi", "thresholds": {"psi": 0.3}, "alpha": 0.05},
                             "features": {"x": {"method": "ks", "threshold": 0.001}}, "accuracy_min": 0.9,
                             "webhook": "http://127.0.0.1:9/hook"})
    assert parse_monitoring({"window": 40}).drift.min_window == 40  # a small window lowers the default minimum
    assert spec.window_rows is None and spec.window_seconds == 300 and spec.k == 2
    assert spec.reference_options() == {"categorical": ("colour",), "numeric": (), "ignore": ("id",)}
    assert spec.drift.method_defaults["numeric"] == "psi" and spec.drift.threshold_for("y", "psi", 5) == 0.3
    assert spec.drift.threshold_for("x", "ks", 5) == 0.001 and spec.drift.alpha == 0.05


@pytest.mark.parametrize("block,message", [
    ({"window": "soon"}, "monitoring.window: give a number of rows"),
    ({"window": 1}, "at least 2 rows"),
    ({"k": 0}, "monitoring.k"),
    ({"window": 40, "min_window": 50}, "monitoring.min_window: 50 is more than the window's 40 rows"),
    ({"accuracy_min": 2}, "monitoring.accuracy_min"),
    ({"webhook": "ftp://x"}, "monitoring.webhook"),
    ({"windows": 10}, "monitoring: unknown field 'windows'"),
    ({"methods": {"numeric": "median"}}, "monitoring.methods.numeric: unknown drift method 'median'"),
    ({"methods": {"thresholds": {"ks": 2}}}, "monitoring.methods.thresholds.ks"),
    ({"methods": {"alpha": 1}}, "monitoring.methods.alpha"),
    ({"features": {"x": {"method": "t-test"}}}, "monitoring.features.x: unknown drift method"),
    ({"categorical": "colour"}, "monitoring.categorical: give a list"),
])
def test_monitoring_block_errors_name_the_field(block, message):
    with pytest.raises(ValueError, match=message):
        parse_monitoring(block)


def test_the_data_type_checks_the_block_and_documents_the_defaults():
    registry = builtin_registry()
    schema = Schema("strato.datatypes.ModelMonitoring")
    assert validate_value({"window": "5 m", "k": 3, "features": {"x": {"method": "psi", "threshold": 0.3}},
                           "methods": {"numeric": "auto", "thresholds": {"ks": 0.001}}}, schema, registry) == []
    problems = dict(validate_value({"k": 0, "features": {"x": {"method": "kolmogorov"}},
                                    "methods": {"categorical": "psi"}, "windw": 3}, schema, registry))
    assert set(problems) == {".k", ".features.x.method", ".methods.categorical", ".windw"}
    monitoring = registry.resolved("strato.datatypes.ModelMonitoring", "data").properties
    thresholds = registry.resolved("strato.datatypes.DriftThresholds", "data").properties
    assert monitoring["window"].default == DEFAULT_WINDOW and monitoring["k"].default == DEFAULT_K
    assert monitoring["min_window"].default == DEFAULT_MIN_WINDOW
    assert {m: thresholds[m].default for m in DEFAULT_THRESHOLDS} == DEFAULT_THRESHOLDS
    methods = registry.resolved("strato.datatypes.DriftMethods", "data").properties
    assert methods["alpha"].default == DEFAULT_ALPHA


def test_the_benchmark_counts_delay_from_the_first_shifted_window():
    """benchmarks/mlops_drift.py: a 1-std jump alerts on the k-th shifted window, a delay of k - 1."""
    from benchmarks.mlops_drift import delays

    assert delays("large_auto", "abrupt", "numeric", seed=0)["all"] == DEFAULT_K - 1
