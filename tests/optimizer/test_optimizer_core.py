"""Tests of the optimizer: samples and storage, models, advisor fallbacks, evaluation and CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.advisor import Advisor, AdvisorConfig
from optimizer.cli import optimizer_group
from optimizer.errors import OptimizerInputError
from optimizer.evaluate import evaluate, split_fraction
from optimizer.features import scaling_events
from optimizer.micado import MicadoModel
from optimizer.models import StratoModel
from optimizer.samples import SampleSet, SampleStore, read_csv, write_csv
from optimizer.simulator import HpaPolicy, ServiceModel, StaticPolicy, simulate
from optimizer.targettracking import TargetTracker, TargetTrackingConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MICADO_CSV = SHARED / "micado_optimizer_session.csv"


def synthetic(n=600, seed=0) -> SampleSet:
    """A service whose latency rises with rate per instance; W steps every 20 samples (like MiCADO's sweep)."""
    rng = np.random.default_rng(seed)
    rate = 40 + 25 * np.sin(np.arange(n) / 60) + rng.normal(0, 2, n)
    instances = (4 + (np.arange(n) // 20) % 6).astype(float)
    per = np.minimum(rate / instances / 10, 0.95)
    latency = 0.3 / (1 - per) * np.exp(rng.normal(0, 0.03, n))
    cpu = np.clip(per * np.exp(rng.normal(0, 0.03, n)), 0, 1)
    return SampleSet(1_000_000 + np.arange(n) * 15.0, ("request_rate", "cpu_utilization", "constant"),
                     np.column_stack([rate, cpu, np.ones(n)]), instances, latency, "latency", "instances")


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----- samples -----
def test_csv_round_trip_and_store(tmp_path):
    samples = synthetic(50)
    write_csv(samples, tmp_path / "a.csv")
    back = read_csv(tmp_path / "a.csv")
    assert back.metric_names == samples.metric_names
    np.testing.assert_allclose(back.metrics, samples.metrics)
    assert "constant" in back.notes[0]
    with SampleStore(tmp_path / "state.db") as store:
        assert store.add("infra", "web", back) == 50
        store.add("infra", "web", back.slice(slice(0, 10)))  # same keys: replaced, not duplicated
        loaded = store.load("infra", "web")
        assert len(loaded) == 50 and store.series() == [("infra", "web", 50)]
        np.testing.assert_allclose(loaded.target, samples.target)
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("text, message", [
    ("timestamp,cpu,vm_number,AVG_LAT_05\n1,0.5,1,nan\n", "NaN"),
    ("timestamp,cpu,AVG_LAT_05\n1,0.5,3\n", "missing instance count column"),
    ("timestamp,cpu,vm_number,AVG_LAT_05\n2,0.5,1,3\n1,0.5,1,3\n", "timestamps must increase"),
    ("timestamp,cpu,vm_number,AVG_LAT_05\n1,abc,1,3\n", "is not a number"),
    ("timestamp,cpu,vm_number,AVG_LAT_05\n", "no samples"),
])
def test_bad_csv_gives_clear_message(tmp_path, text, message):
    with pytest.raises(OptimizerInputError, match=message):
        read_csv(write(tmp_path, text))


def test_micado_csv_reads_as_is():
    if not MICADO_CSV.is_file():
        pytest.skip(f"shared data not present at {MICADO_CSV}")
    samples = read_csv(MICADO_CSV)
    assert len(samples) == 3427 and samples.target_name == "AVG_LAT_05" and samples.instance_name == "vm_number"
    assert len(samples.metric_names) == 9
    assert 150 <= len(scaling_events(samples).before) <= 165


# ----- models -----
def test_strato_model_learns_and_predicts_scaling_effect():
    samples = synthetic(800)
    model = StratoModel(seed=0).fit(samples.slice(slice(0, 600)))
    test = samples.slice(slice(600, None))
    predicted, spread = model.predict_target(test.metrics, test.instances)
    assert np.median(np.abs(predicted - test.target) / test.target) < 0.15
    assert model.report.validation_mape < 0.2 and np.all(spread >= 0)
    # More instances for the same load must predict a lower latency.
    row = test.metrics[:1]
    after, _ = model.predict_after_scaling(np.repeat(row, 3, 0), 4, np.array([0, 2, 4]))
    assert after[0] > after[1] > after[2]


def test_model_refuses_constant_target_and_too_few_samples():
    samples = synthetic(100)
    flat = SampleSet(samples.timestamps, samples.metric_names, samples.metrics, samples.instances,
                     np.full(len(samples), 2.0))
    with pytest.raises(OptimizerInputError, match="never varies"):
        StratoModel().fit(flat)
    with pytest.raises(OptimizerInputError, match="too few samples"):
        StratoModel().fit(samples.slice(slice(0, 10)))


def test_micado_model_shape_and_advice():
    samples = synthetic(400)
    model = MicadoModel().fit(samples)
    assert model.net.hidden_layer_sizes == (4,) and model.net.alpha == 0.01
    assert -1 <= model.reliability <= 1
    delta, _ = model.advise(samples.metrics[-1], 4, current_target=0.35, low=0.1, high=10, min_instances=1,
                            max_instances=9, max_up=6, max_down=6)
    assert delta == 0  # within thresholds: no action


# ----- advisor -----
def config(**overrides):
    base = dict(target_low=0.4, target_high=0.8, max_instances=12, min_samples=100,
                tracking_metric="cpu_utilization", tracking_target=0.6, scale_down_stabilization_s=0)
    base.update(overrides)
    return AdvisorConfig(**base)


def test_advisor_falls_back_and_says_so():
    advisor = Advisor(config())
    metrics = {"request_rate": 50.0, "cpu_utilization": 0.9, "constant": 1.0}
    advice = advisor.advise(0.0, metrics, 5, 2.0, n_samples=10)
    assert advice.phase == "fallback" and "no trained model" in advice.reason
    assert advice.instances == math.ceil(5 * 0.9 / 0.6)


def test_advisor_uses_model_chooses_cheapest_and_never_trains():
    samples = synthetic(800)
    advisor = Advisor(config(max_up=6, max_down=6))
    advisor.train(samples)
    model = advisor.model
    metrics = {"request_rate": 60.0, "cpu_utilization": 1.0, "constant": 1.0}  # overloaded at W=5
    advice = advisor.advise(0.0, metrics, 5, 3.0, n_samples=800)
    assert advisor.model is model  # advising did not retrain
    assert advice.phase == "model" and advice.delta > 0 and advice.predicted_target <= 0.8
    assert advice.uncertainty is not None and advice.reason
    fits = [c for c in advice.candidates if c["upper"] <= 0.8]
    assert advice.instances == min(c["instances"] for c in fits)


def test_advisor_falls_back_when_validated_error_is_high():
    samples = synthetic(400)
    advisor = Advisor(config(max_validation_mape=1e-6))
    advisor.train(samples)
    advice = advisor.advise(0.0, {"request_rate": 60.0, "cpu_utilization": 0.9, "constant": 1.0}, 5, 3.0,
                            n_samples=400)
    assert advice.phase == "fallback" and "validated error too high" in advice.reason


def test_advisor_cooldown_and_exploration():
    advisor = Advisor(config(cooldown_s=60))
    first = advisor.advise(0.0, {"cpu_utilization": 0.95}, 4, 2.0, n_samples=0)
    assert first.delta > 0
    assert advisor.advise(30.0, {"cpu_utilization": 0.95}, first.instances, 2.0, n_samples=0).phase == "cooldown"
    explorer = Advisor(config(explore=True, explore_every=3))
    deltas = [explorer.advise(float(t), {"cpu_utilization": 0.5}, 4, 1.0, n_samples=t).delta for t in range(6)]
    assert deltas == [0, 0, 1, 0, 0, 1]


def test_advisor_rejects_nan_metric():
    with pytest.raises(OptimizerInputError, match="not finite"):
        Advisor(config()).advise(0.0, {"cpu_utilization": float("nan")}, 4, 1.0)


# ----- target tracking -----
def test_target_tracking_follows_hpa_rules():
    tracker = TargetTracker(TargetTrackingConfig(0.5, max_instances=100))
    assert tracker.desired(0, 4, 0.52) == 4  # within the 0.1 tolerance
    assert tracker.desired(15, 4, 2.0) == 8  # ceil(16) capped by max(+100 %, +4)
    assert tracker.desired(30, 10, 0.25) == 8  # scale-down held at the window's highest recommendation
    assert tracker.desired(400, 10, 0.25) == 5


# ----- evaluation and simulator -----
def test_evaluate_is_time_ordered():
    samples = synthetic(700)
    cut = split_fraction(samples, 0.7)
    result = evaluate(samples, cut)
    assert result["n_train"] == 490 and result["n_test"] == 210
    assert result["n_test_events"] > 5
    assert result["strato"]["after_scaling"]["mape"] < result["micado"]["after_scaling"]["mape"]
    with pytest.raises(OptimizerInputError, match="later rows"):
        evaluate(samples, float(samples.timestamps[-1]))


def test_simulator_static_vs_hpa():
    service = ServiceModel(noise=0.0)
    rates = np.concatenate([np.full(100, 20.0), np.full(200, 60.0)])
    static = simulate(rates, StaticPolicy(12), service, 12, 30)
    assert static.slo_violation_pct == 0 and static.actions == 0
    assert static.replica_hours == pytest.approx(12 * 300 * 15 / 3600)
    hpa = simulate(rates, HpaPolicy(0.6, 30), service, 4, 30)
    assert 0 < hpa.slo_violation_pct < 10 and hpa.replica_hours < static.replica_hours
    assert service.latency(5.0, 1, 0.0) == pytest.approx(math.log(20) / 5)


# ----- CLI -----
def test_cli_evaluate_json_and_errors(tmp_path):
    samples = synthetic(400)
    write_csv(samples, tmp_path / "s.csv")
    runner = CliRunner()
    cut = str(samples.timestamps[279])
    result = runner.invoke(optimizer_group, ["evaluate", "--data", str(tmp_path / "s.csv"), "--train-until", cut,
                                             "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert set(payload["strato"]) == {"target", "after_scaling"} and set(payload["strato"]["target"]) == {"mape", "spearman"}
    assert payload["n_train"] == 280 and payload["n_test"] == 120
    missing = runner.invoke(optimizer_group, ["evaluate", "--data", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and "no such file" in missing.output and "Traceback" not in missing.output


def test_cli_train_advise_report(tmp_path):
    write_csv(synthetic(400), tmp_path / "s.csv")
    runner = CliRunner()
    model = str(tmp_path / "m.pkl")
    state = str(tmp_path / "state.db")
    trained = runner.invoke(optimizer_group, ["train", "--data", str(tmp_path / "s.csv"), "--model", model,
                                              "--import-csv", "--infra", "i", "--node", "n", "--state", state,
                                              "--json"])
    assert trained.exit_code == 0, trained.output
    advised = runner.invoke(optimizer_group, ["advise", "--infra", "i", "--node", "n", "--state", state,
                                              "--model", model, "--low", "0.4", "--high", "0.8", "--json"])
    assert advised.exit_code == 0, advised.output
    assert json.loads(advised.output)["phase"] in ("model", "fallback")
    report = runner.invoke(optimizer_group, ["report", "--data", str(tmp_path / "s.csv"), "--low", "0.4",
                                             "--high", "0.8", "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "r" / "predicted_vs_actual.png").stat().st_size > 1000
    assert (tmp_path / "r" / "advice_over_time.png").is_file()


def test_confident_scale_down_uses_shorter_stabilisation_and_alpha_grid_is_honoured():
    samples = synthetic(600)
    model = StratoModel(alpha_grid=(0.3,)).fit(samples)
    assert model.report.alpha == 0.3
    held = Advisor(config(max_up=6, max_down=6, scale_down_stabilization_s=300.0), model=model)
    quick = Advisor(config(max_up=6, max_down=6, scale_down_stabilization_s=300.0,
                           confident_scale_down_stabilization_s=0.0, confident_fraction=1.0), model=model)
    busy = {"request_rate": 60.0, "cpu_utilization": 1.0, "constant": 1.0}
    light = {"request_rate": 5.0, "cpu_utilization": 0.1, "constant": 1.0}
    for advisor in (held, quick):
        advisor.advise(0.0, busy, 8, 3.0, n_samples=600)
    a_held = held.advise(30.0, light, 8, 0.05, n_samples=600)
    a_quick = quick.advise(30.0, light, 8, 0.05, n_samples=600)
    assert a_quick.instances < a_held.instances and "stabilisation" in a_held.reason


def test_cautious_scale_down_refuses_loads_seen_too_slow_and_uses_recent_peak():
    samples = synthetic(600)
    model = StratoModel(alpha_grid=(0.3,), per_instance=("request_rate",)).fit(samples)
    limit = model.overload_load(0.8)
    assert math.isfinite(limit) and limit > 0
    assert model.overload_load(1e9) == math.inf
    cautious = Advisor(config(max_up=6, max_down=6, load_metrics=("request_rate",), forecast_window=4),
                       model=model)
    plain = Advisor(config(max_up=6, max_down=6, cautious_scale_down=False), model=model)
    moderate = {"request_rate": 30.0, "cpu_utilization": 0.4, "constant": 1.0}
    a_plain = plain.advise(0.0, moderate, 8, 0.45, n_samples=600)
    a_cautious = cautious.advise(0.0, moderate, 8, 0.45, n_samples=600)
    assert a_cautious.instances >= a_plain.instances
    assert 30.0 / a_cautious.instances < limit  # never scaled into a load per instance seen too slow
    # A recent burst keeps a scale-down at the burst's load, not today's lull.
    burst = {"request_rate": 60.0, "cpu_utilization": 0.8, "constant": 1.0}
    cautious.advise(15.0, burst, a_cautious.instances + 3, 0.45, n_samples=600)
    after = cautious.advise(30.0, moderate, a_cautious.instances + 3, 0.45, n_samples=600)
    assert 60.0 / after.instances < limit


def _capacity_advisor(model, **overrides):
    base = dict(max_up=12, max_down=12, load_metrics=("request_rate",), capacity_target=0.8,
                forecast_horizon_s=75.0, capacity_trend_window=4, capacity_react=False,
                capacity_down_window=8, capacity_down_every=4)
    base.update(overrides)
    return Advisor(config(**base), model=model)


def test_capacity_planning_scales_up_before_a_ramp_overloads_and_holds_through_a_recent_peak():
    samples = synthetic(800)
    model = StratoModel(alpha_grid=(0.3,), per_instance=("request_rate",)).fit(samples)
    # The plan's count comes from the learned model: the fewest instances fitting at the load.
    flat = _capacity_advisor(model)
    w = 6
    for k in range(6):
        advice = flat.advise(15.0 * k, {"request_rate": 30.0, "cpu_utilization": 0.5, "constant": 1.0}, w, 0.5,
                             n_samples=800)
        w = advice.instances
    assert advice.phase == "model" and "capacity plan" in advice.reason
    steady = min(c["instances"] for c in advice.candidates if c["upper"] <= 0.8)
    assert w == steady
    # A ramp (+8 % per interval, past rows only): the forecast over the start-up delay needs more
    # instances than today's load does, so the plan scales up before the ramp reaches them.
    ramp = _capacity_advisor(model)
    rate, w = 30.0, steady
    for k in range(6):
        advice = ramp.advise(15.0 * k, {"request_rate": rate, "cpu_utilization": 0.5, "constant": 1.0}, w, 0.5,
                             n_samples=800)
        rate *= 1.08
    now_only = _capacity_advisor(model, forecast_horizon_s=0.0)
    for k in range(6):
        static = now_only.advise(15.0 * k, {"request_rate": 30.0 * 1.08 ** k, "cpu_utilization": 0.5,
                                            "constant": 1.0}, w, 0.5, n_samples=800)
    assert advice.instances > static.instances >= w
    # After a burst the count is held: the recent peak must still fit before a scale-down.
    held = _capacity_advisor(model)
    busy = {"request_rate": 60.0, "cpu_utilization": 0.9, "constant": 1.0}
    light = {"request_rate": 20.0, "cpu_utilization": 0.3, "constant": 1.0}
    for k in range(3):
        top = held.advise(15.0 * k, busy, 12, 0.6, n_samples=800)
    w = top.instances
    after = held.advise(60.0, light, w, 0.3, n_samples=800)
    assert after.instances == w  # no scale-down during the recent peak
    # Once the peak has left the window (and enough intervals passed), it scales down.
    for k in range(5, 16):
        after = held.advise(15.0 * k, light, after.instances, 0.3, n_samples=800)
    assert after.instances < w


def test_capacity_anti_oscillation_min_step_and_reversal_guard():
    samples = synthetic(800)
    model = StratoModel(alpha_grid=(0.3,), per_instance=("request_rate",)).fit(samples)
    light = {"request_rate": 20.0, "cpu_utilization": 0.3, "constant": 1.0}
    # Find the count the plan settles at for the light load, then start one instance above it:
    # the default removes that one instance, a minimum step of 2 holds the count.
    plain = _capacity_advisor(model)
    w = 12
    for k in range(20):
        w = plain.advise(15.0 * k, light, w, 0.3, n_samples=800).instances
    one_up = {}
    for name, overrides in (("plain", {}), ("step", dict(capacity_down_min_step=2))):
        advisor = _capacity_advisor(model, **overrides)
        advised = [advisor.advise(15.0 * k, light, w + 1, 0.3, n_samples=800) for k in range(12)]
        one_up[name] = (min(a.instances for a in advised), advised[-1])
    assert one_up["plain"][0] == w
    assert one_up["step"][0] == w + 1 and "fewer than 2" in one_up["step"][1].reason
    # Reversal guard: right after a scale-down, a forecast-driven scale-up is held while the measured
    # target is under the upper threshold, but goes ahead once it is above.
    busy = {"request_rate": 60.0, "cpu_utilization": 0.9, "constant": 1.0}
    for guard, target, held in ((0, 0.5, False), (20, 0.5, True), (20, 5.0, False)):
        advisor = _capacity_advisor(model, capacity_reversal_window=guard)
        n = 12
        for k in range(12):
            n = advisor.advise(15.0 * k, light, n, 0.3, n_samples=800).instances
        assert n < 12  # it scaled down
        advice = advisor.advise(15.0 * 12, busy, n, target, n_samples=800)
        assert (advice.instances == n) == held, (guard, target, advice.reason)
        if held:
            assert "held" in advice.reason


def test_capacity_headroom_exploration_and_overload_guard():
    samples = synthetic(800)
    model = StratoModel(alpha_grid=(0.3,), per_instance=("request_rate",)).fit(samples)

    def plan(loads, **overrides):
        advisor = _capacity_advisor(model, capacity_react=True, **overrides)
        for k, rate in enumerate(loads):
            advice = advisor.advise(15.0 * k, {"request_rate": rate, "cpu_utilization": 0.5, "constant": 1.0},
                                    6, 0.5, n_samples=800)
        return advice

    # Volatility headroom: a load that keeps swinging by x1.4 gets more instances than without the
    # headroom; a constant load gets none (its realised growth is 0).
    swinging = [25.0 if k % 2 else 35.0 for k in range(41)]
    assert plan(swinging, capacity_headroom_quantile=0.9).instances > plan(swinging).instances
    constant = [30.0] * 41
    assert plan(constant, capacity_headroom_quantile=0.9).instances == plan(constant).instances

    # Exploration: counts whose load per instance lies beyond the highest one trained on are refused
    # (upper bound inf) unless within capacity_explore_factor of it.
    seen_max = float(model._seen_load.max())
    rate = seen_max * 1.1 * 4  # 4 instances would run at 1.1 x the highest load per instance seen
    def upper_at_4(**overrides):
        advice = plan([rate] * 10, **overrides)
        return next(c["upper"] for c in advice.candidates if c["instances"] == 4)
    assert upper_at_4() == math.inf
    assert math.isfinite(upper_at_4(capacity_explore_factor=1.25))

    # Measured-overload guard: counts reaching the loads per instance at which the measured target
    # was above the given value are refused, whatever the net predicts.
    limit = model.overload_load(0.8, 0.1)
    assert math.isfinite(limit)
    guarded = plan([30.0] * 10, capacity_overload_target=0.8, capacity_explore_factor=10.0)
    for c in guarded.candidates:
        if 30.0 / c["instances"] >= limit:
            assert c["upper"] == math.inf
    assert 30.0 / guarded.instances < limit


def test_regular_advice_never_scales_down_into_unseen_loads():
    # A model trained only on light loads per instance (as a young model is, after the first quiet
    # hours) predicts little harm from piling the load on a few instances; unseen_load_factor refuses it.
    rng = np.random.default_rng(3)
    n = 300
    instances = (6 + (np.arange(n) // 20) % 4).astype(float)
    rate = 20 + rng.normal(0, 1, n)
    latency = 0.2 * (rate / instances) ** 0.6 * np.exp(rng.normal(0, 0.03, n))
    light = SampleSet(1_000_000 + np.arange(n) * 15.0, ("request_rate",), rate[:, None], instances, latency,
                      "latency", "instances")
    model = StratoModel(alpha_grid=(0.3,), per_instance=("request_rate",)).fit(light)
    seen_max = float(model._seen_load.max())
    sample = {"request_rate": 20.0}
    free = Advisor(config(max_down=8, load_metrics=("request_rate",), tracking_metric=None), model=model)
    guarded = Advisor(config(max_down=8, load_metrics=("request_rate",), tracking_metric=None,
                             unseen_load_factor=1.25), model=model)
    a_free = free.advise(0.0, sample, 9, 0.35, n_samples=n)
    a_guarded = guarded.advise(0.0, sample, 9, 0.35, n_samples=n)
    assert 20.0 / a_free.instances > seen_max * 1.25  # the unguarded model piles the load on
    assert 20.0 / a_guarded.instances <= seen_max * 1.25
    assert "highest trained on" in a_guarded.reason


def test_service_model_plays_a_measured_curve():
    mm1 = ServiceModel()
    # Without a curve it is M/M/1: p95 = ln(20) / (mu - lambda), and the SLO capacity solves it.
    assert mm1.latency(5.0, 1, 0.0) == pytest.approx(math.log(20) / 5.0)
    assert mm1.latency(mm1.max_rate_per_replica_at_slo(), 1, 0.0) == pytest.approx(mm1.slo_s)
    # A measured shape (p95 in service times vs utilisation) is log-interpolated and its SLO
    # capacity found by bisection; beyond the last point it keeps growing.
    measured = ServiceModel(curve=((0.1, 2.0), (0.3, 7.0), (0.5, 20.0), (0.7, 60.0)))
    assert measured.latency(3.0, 1, 0.0) == pytest.approx(0.7)
    assert measured.latency(4.0, 1, 0.0) == pytest.approx(math.sqrt(7.0 * 20.0) / 10.0)
    capacity = measured.max_rate_per_replica_at_slo()
    assert 3.0 < capacity < 5.0
    assert measured.latency(capacity, 1, 0.0) == pytest.approx(measured.slo_s, rel=1e-6)
    assert measured.latency(8.0, 1, 0.0) > measured.latency(7.0, 1, 0.0) > measured.latency(6.0, 1, 0.0)
    assert measured.latency(0.5, 1, 0.0) == pytest.approx(0.2)  # below the first point: its value


def test_service_curve_from_a_calibration():
    import dataclasses

    from optimizer.calibration import fit_service_curve
    k = math.log(20)
    points = [(r, k / (200.0 - r) * (1 + r / 100.0), r) for r in (20.0, 60.0, 100.0, 140.0)]
    calibration = fit_service_curve(points, mean_service_s=0.004, saturation_req_per_s=200.0)
    curve = ServiceModel.curve_from_calibration(calibration)
    assert [u for u, _ in curve] == pytest.approx([0.1, 0.3, 0.5, 0.7])
    assert curve[0][1] == pytest.approx(points[0][1] / 0.004)
    with pytest.raises(OptimizerInputError, match="fewer than 3"):
        ServiceModel.curve_from_calibration(dataclasses.replace(calibration, points=calibration.points[:2]))


def test_cli_advise_with_a_capacity_plan(tmp_path):
    write_csv(synthetic(400), tmp_path / "s.csv")
    runner = CliRunner()
    plain, shared = str(tmp_path / "plain.pkl"), str(tmp_path / "shared.pkl")
    for model, extra in ((plain, []), (shared, ["--per-instance", "request_rate"])):
        trained = runner.invoke(optimizer_group, ["train", "--data", str(tmp_path / "s.csv"), "--model", model,
                                                  *extra, "--json"])
        assert trained.exit_code == 0, trained.output
    args = ["advise", "--data", str(tmp_path / "s.csv"), "--low", "0.4", "--high", "0.8", "--max-instances", "12",
            "--capacity-target", "0.7", "--json"]
    advised = runner.invoke(optimizer_group, [*args, "--model", shared])
    assert advised.exit_code == 0, advised.output
    advice = json.loads(advised.output)
    assert advice["phase"] == "model" and "capacity plan" in advice["reason"], advice
    fitting = [c["instances"] for c in advice["candidates"] if c["upper"] is not None and c["upper"] <= 0.7]
    current = int(synthetic(400).instances[-1])
    # The fewest instances that fit, reached at most --max-up (4) at a time.
    assert fitting and advice["instances"] == min(min(fitting), current + 4) != current
    refused = runner.invoke(optimizer_group, [*args, "--model", plain])
    assert refused.exit_code == 1 and "--per-instance" in refused.output and "Traceback" not in refused.output
