"""Tests of the latency-curve calibration: the M/M/1 fit, its input checks, JSON, and one real measurement."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from optimizer.calibration import (SHAPE_UTILISATIONS, calibration_from_json, fit_service_curve,
                                   save_calibration)
from optimizer.errors import OptimizerInputError

K = -math.log(0.05)
REPO = Path(__file__).resolve().parents[2]


def mm1_points(mu, rates, overhead=0.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [(r, (overhead + K / (mu - r)) * math.exp(rng.normal(0, noise)) if noise else overhead + K / (mu - r), r)
            for r in rates]


def test_recovers_mu_of_an_exact_mm1_curve_and_its_shape_matches_mm1():
    cal = fit_service_curve(mm1_points(50.0, np.linspace(5, 45, 9)), mean_service_s=1 / 50, saturation_req_per_s=50)
    assert cal.mu_req_per_s == pytest.approx(50.0, rel=1e-3)
    assert cal.overhead_s == pytest.approx(0.0, abs=1e-4)
    assert cal.fit_max_rel_error < 1e-3
    assert set(cal.mm1_shape_rel_error) == set(SHAPE_UTILISATIONS)
    for u, err in cal.mm1_shape_rel_error.items():
        assert err == pytest.approx(0.0, abs=1e-3), u
    assert cal.p95(25.0) == pytest.approx(K / 25.0, rel=1e-3)


def test_recovers_mu_within_a_few_percent_with_noise():
    cal = fit_service_curve(mm1_points(80.0, np.linspace(8, 72, 9), noise=0.03, seed=1), overhead=False)
    assert cal.mu_req_per_s == pytest.approx(80.0, rel=0.03)
    assert cal.overhead_s == 0.0
    assert 0 < cal.fit_median_rel_error <= cal.fit_max_rel_error < 0.15


def test_fits_a_constant_overhead_term():
    cal = fit_service_curve(mm1_points(200.0, np.linspace(20, 180, 8), overhead=0.004))
    assert cal.mu_req_per_s == pytest.approx(200.0, rel=0.02)
    assert cal.overhead_s == pytest.approx(0.004, rel=0.05)
    without = fit_service_curve(mm1_points(200.0, np.linspace(20, 180, 8), overhead=0.004), overhead=False)
    assert without.fit_max_rel_error > cal.fit_max_rel_error + 0.05


def test_saturated_points_are_reported_but_left_out_of_the_fit():
    points = mm1_points(100.0, [10, 30, 50, 70, 90]) + [(120.0, 2.5, 98.0), (150.0, 4.0, 99.0)]
    cal = fit_service_curve(points)
    assert cal.mu_req_per_s == pytest.approx(100.0, rel=0.01)
    assert [p.used for p in cal.points] == [True] * 5 + [False, False]
    assert cal.saturation_req_per_s == 99.0
    assert cal.fit_max_rel_error < 0.01  # the saturated points do not count
    # offered at or above an explicit saturation is also out
    cal = fit_service_curve(points[:5], saturation_req_per_s=80.0)
    assert [p.used for p in cal.points] == [True, True, True, True, False]
    assert cal.mm1_shape_rel_error[0.9] is None  # 0.9 x 80 is beyond the points used


def test_dimensionless_shape_sees_a_flatter_curve_as_mm1_pessimistic():
    # deterministic-ish service: p95 barely above the mean until high load
    service, sat = 0.01, 100.0
    points = [(r, service * (1.2 + 0.5 * (r / sat) / (1 - r / sat)), r) for r in (10, 30, 50, 70, 90)]
    cal = fit_service_curve(points, mean_service_s=service, saturation_req_per_s=sat)
    assert all(e > 0 for e in cal.mm1_shape_rel_error.values())
    assert cal.points[0].p95_over_service == pytest.approx(1.2 + 0.5 / 9)
    assert cal.points[0].mm1_p95_over_service == pytest.approx(K / 0.9)


@pytest.mark.parametrize("points, message", [
    (mm1_points(50.0, [10, 20]), "only 2 of 2 points"),
    (mm1_points(50.0, [10, 20]) + [(60.0, 3.0, 30.0)], "at least 3"),
    ([], "no calibration points"),
    (mm1_points(50.0, [10, 20, 30]) + [(40.0, float("nan"), 40.0)], "NaN"),
    (mm1_points(50.0, [10, 20, 30]) + [(40.0, 0.0, 40.0)], "must be positive"),
    (mm1_points(50.0, [10, 20, 30]) + [(40.0, -1.0, 40.0)], "must be positive"),
    (mm1_points(50.0, [10, 20, 30]) + [(40.0, 0.1)], "must be (offered_rate"),
    (mm1_points(50.0, [10, 20, 30]) + [(0.0, 0.1, 0.0)], "offered rate must be positive"),
])
def test_bad_points_raise_a_clear_error(points, message):
    with pytest.raises(OptimizerInputError) as err:
        fit_service_curve(points)
    assert message in str(err.value)


def test_bad_options_raise_a_clear_error():
    points = mm1_points(50.0, [10, 20, 30])
    with pytest.raises(OptimizerInputError, match="mean service time"):
        fit_service_curve(points, mean_service_s=0.0)
    with pytest.raises(OptimizerInputError, match="saturation"):
        fit_service_curve(points, saturation_req_per_s=float("nan"))
    with pytest.raises(OptimizerInputError, match="quantile"):
        fit_service_curve(points, quantile=1.0)


def test_json_round_trip(tmp_path):
    points = mm1_points(100.0, [10, 30, 50, 70, 90], overhead=0.002) + [(120.0, 2.5, 98.0)]
    cal = fit_service_curve(points, mean_service_s=0.012, saturation_req_per_s=99.0)
    path = save_calibration(cal, tmp_path / "cal.json")
    json.loads(path.read_text())  # standard JSON (no Infinity)
    back = calibration_from_json(path)
    assert back.mu_req_per_s == pytest.approx(cal.mu_req_per_s)
    assert back.overhead_s == pytest.approx(cal.overhead_s)
    assert back.mm1_shape_rel_error == pytest.approx(cal.mm1_shape_rel_error)
    assert [p.used for p in back.points] == [p.used for p in cal.points]
    assert back.points[-1].p95_s == 2.5
    assert back.p95(40.0) == pytest.approx(cal.p95(40.0))


@pytest.mark.parametrize("text, message", [
    ("{not json", "not a calibration JSON file"),
    ("[1, 2]", "one JSON object"),
    ('{"mu_req_per_s": "fast"}', "'mu_req_per_s' must be a finite number"),
])
def test_garbled_or_missing_file_raises_a_clear_error(tmp_path, text, message):
    with pytest.raises(OptimizerInputError, match="no such calibration file"):
        calibration_from_json(tmp_path / "missing.json")
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(OptimizerInputError) as err:
        calibration_from_json(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_garbled_points_raise_a_clear_error(tmp_path):
    cal = fit_service_curve(mm1_points(50.0, [10, 20, 30]))
    data = cal.to_dict()
    del data["points"][0]["p95_s"]
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(OptimizerInputError, match="garbled calibration points"):
        calibration_from_json(path)


@pytest.mark.slow
@pytest.mark.e2e
def test_real_replica_low_rate_measurement(tmp_path, monkeypatch):
    """Train the ai-inference example, start one replica, measure ~3 s of open-loop load at 20 req/s."""
    pytest.importorskip("sklearn", reason="the ai-inference example needs scikit-learn (pip install '.[test]')")
    pytest.importorskip("prometheus_client", reason="the ai-inference example needs prometheus-client")
    spec = importlib.util.spec_from_file_location("calibrate_service", REPO / "benchmarks" / "calibrate_service.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "calibrate_service", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    model = bench.train_model(tmp_path)
    assert model.is_file()
    with bench.Replica(model, tmp_path / "serve.log", health_timeout_s=30) as replica:
        bench.warm_up(replica, 20)
        step = bench.open_loop(replica, 20.0, 3.0, workers=8, timeout_s=5.0)
        pid = replica.proc.pid
    assert replica.proc.poll() is not None, f"replica {pid} still running after stop()"
    row = step.row()
    assert row["n"] == 60 and row["errors"] == 0
    assert row["p95_s"] > 0 and row["p50_s"] <= row["p95_s"] <= row["p99_s"]
    assert row["achieved"] == pytest.approx(20.0, rel=0.25)
    assert row["generator_rate"] == pytest.approx(20.0, rel=0.25)
