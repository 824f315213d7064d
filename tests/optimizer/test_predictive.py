"""The predictive optimizer: quantile forecasts, the MPC's trade-off, the capacity view, fallbacks and restarts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.forecast import LEVELS, LoadForecaster, on_grid, pinball_loss
from optimizer.mpc import MpcState, choose, horizon_for
from optimizer.predictive import CapacityView, PredictiveAdvisor, PredictiveConfig, without_outliers
from optimizer.samples import SampleSet
from policies.base import MetricSpec, Observation
from policies.optimizer import OptimizerPolicy, Sample

DAY = 288  # a short "day" keeps the tests quick; the forecaster only knows steps


def seasonal_series(days: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    t = np.arange(days * DAY)
    rng = np.random.default_rng(seed)
    return (0.55 - 0.45 * np.cos(2 * math.pi * t / DAY)) * np.exp(rng.normal(0, noise, len(t))) * 100


def rolling_loss(forecaster: LoadForecaster, values: np.ndarray, step: int) -> float:
    made, actual = [], []
    for i, value in enumerate(values):
        forecast = forecaster.forecast()
        if forecast is not None and i + step - 1 < len(values):
            made.append(forecast.values[step - 1])
            actual.append(values[i + step - 1])
        forecaster.add(value)
    return pinball_loss(np.array(made), np.array(actual)) / float(np.mean(actual))


def test_seasonal_forecast_has_bounded_pinball_loss_and_beats_seasonal_naive():
    series = seasonal_series(5)
    history, evaluation = series[:4 * DAY], series[4 * DAY:]
    ours = LoadForecaster(15, 5, season_steps=(DAY, 7 * DAY))
    ours.extend(history)
    naive = LoadForecaster(15, 5, season_steps=(DAY, 7 * DAY), methods=("seasonal_naive",))
    naive.extend(history)
    loss, naive_loss = rolling_loss(ours, evaluation, 5), rolling_loss(naive, evaluation, 5)
    # 5 % log-normal noise: the pinball loss over the 13 levels, relative to the mean, stays near noise level.
    assert loss < 0.03
    assert loss < naive_loss
    assert ours.best_method() == "daily"


def test_forecast_quantiles_are_ordered_and_cover_the_outcome():
    series = seasonal_series(4, seed=3)
    forecaster = LoadForecaster(15, 3, season_steps=(DAY,))
    forecaster.extend(series[:3 * DAY])
    inside = total = 0
    for value in series[3 * DAY:]:
        forecast = forecaster.forecast()
        assert np.all(np.diff(forecast.values, axis=1) >= 0)
        low, high = np.interp([0.05, 0.95], LEVELS, forecast.values[0])
        inside += low <= value <= high
        total += 1
        forecaster.add(value)
    assert 0.8 <= inside / total <= 0.98   # a 90 % band, from the method's own recent errors


def test_short_history_forecasts_from_the_level_and_says_so():
    forecaster = LoadForecaster(15, 5, season_steps=(DAY, 7 * DAY))
    for value in (10.0, 11.0, 9.0, 10.0):
        forecaster.add(value)
    forecast = forecaster.forecast()
    assert forecast.method == "level" and forecast.history == 4
    assert forecast.quantile(0.5)[0] == pytest.approx(10.0, rel=0.15)
    assert forecast.as_dict()["horizon_s"] == [15.0, 30.0, 45.0, 60.0, 75.0]


def test_history_on_a_coarser_grid_is_spread_over_the_intervals():
    rows = [(0.0, 10.0), (60.0, 20.0), (180.0, 20.0)]
    grid = on_grid(rows, 15.0)
    assert len(grid) == 13 and grid[0] == 10.0 and grid[4] == 20.0 and grid[2] == pytest.approx(15.0)
    assert len(on_grid(rows, 15.0, limit=4)) == 4


# ----------------------------------------------------------------- the MPC
def capacity_of(per_instance_capacity: float):
    """A service that violates exactly when the load per instance exceeds its capacity."""
    def model(loads, counts):
        per = np.asarray(loads) / np.asarray(counts)
        return (per > per_instance_capacity).astype(float), per / per_instance_capacity
    return model


def flat_forecast(low: float, high: float, horizon: int):
    forecaster = LoadForecaster(15, horizon, season_steps=())
    for value in (low, high) * 40:
        forecaster.add(value)
    return forecaster.forecast()


def test_mpc_picks_the_cheaper_count_when_violations_are_cheap_and_the_safer_one_when_they_are_dear():
    forecast = flat_forecast(70.0, 90.0, horizon_for(4))
    state = MpcState(provisioned=8, ready=8, min_instances=1, max_instances=20, max_up=10, max_down=10,
                     startup_steps=4)
    cheap = choose(state, forecast, price=0.5, model=capacity_of(10.0))
    dear = choose(state, forecast, price=500.0, model=capacity_of(10.0))
    assert cheap.instances < dear.instances
    assert dear.instances * 10.0 >= forecast.values.max()       # covers even the upper quantile
    assert cheap.instances * 10.0 < float(np.median(forecast.values))
    chosen = next(c for c in dear.candidates if c["instances"] == dear.instances)
    # The steps before the start-up delay are served by the 8 there are, whatever is chosen now.
    assert chosen["violation_probability"] == min(c["violation_probability"] for c in dear.candidates)
    assert dear.cost == chosen["cost"]


def test_mpc_keeps_step_limits_and_bounds():
    forecast = flat_forecast(300.0, 310.0, horizon_for(2))
    state = MpcState(provisioned=3, ready=3, min_instances=1, max_instances=6, max_up=2, max_down=1,
                     startup_steps=2)
    choice = choose(state, forecast, price=1000.0, model=capacity_of(10.0))
    # Overloaded whatever it does: all the capacity the step limit allows, never fewer.
    assert choice.instances == 5 and {c["instances"] for c in choice.candidates} == {2, 3, 4, 5}
    assert "overload" in choice.reason
    huge = MpcState(provisioned=6, ready=6, min_instances=1, max_instances=6, max_up=2, max_down=2, startup_steps=2)
    assert choose(huge, forecast, price=1.0, model=capacity_of(10.0)).instances == 6


def test_a_pending_instance_is_not_cancelled_and_added_back_on_the_next_step():
    """Both directions are judged by one objective: the same forecast keeps the count in either state."""
    forecast = flat_forecast(95.0, 105.0, horizon_for(4))
    model = capacity_of(10.0)
    starting = MpcState(provisioned=12, ready=11, min_instances=1, max_instances=20, max_up=4, max_down=4,
                        startup_steps=4)
    settled = MpcState(provisioned=12, ready=12, min_instances=1, max_instances=20, max_up=4, max_down=4,
                       startup_steps=4)
    assert choose(starting, forecast, 50.0, model).instances == choose(settled, forecast, 50.0, model).instances


# ----------------------------------------------------------------- the capacity model
def queue_samples(n: int, seed: int = 0, backlog_every: int = 0) -> SampleSet:
    """An M/M/1 replica set (10 req/s each, p95 = 3 / (10 - load)) seen at loads per instance 2..7."""
    rng = np.random.default_rng(seed)
    instances = rng.integers(3, 9, n).astype(float)
    per = rng.uniform(2.0, 7.0, n)
    latency = 3.0 / (10.0 - per) * np.exp(rng.normal(0, 0.05, n))
    if backlog_every:
        latency[::backlog_every] = 30.0   # a backlog: slow whatever the load now
    return SampleSet(np.arange(n) * 15.0, ("request_rate",), (per * instances)[:, None], instances, latency)


def test_the_capacity_view_is_near_the_truth_inside_and_pessimistic_beyond_what_was_seen():
    advisor = PredictiveAdvisor(PredictiveConfig(1.0, "request_rate", 15.0, 60.0, max_instances=20))
    advisor.train(queue_samples(400), per_instance=("request_rate",))
    view = CapacityView(advisor.model, {"request_rate": 50.0}, "request_rate", 1.0)
    counts = np.array([10.0, 10.0, 10.0])
    log_pred, _ = view.predict(np.array([40.0, 60.0, 85.0]), counts)
    truth = 3.0 / (10.0 - np.array([4.0, 6.0, 8.5]))
    assert np.allclose(np.exp(log_pred[:2]), truth[:2], rtol=0.15)
    assert np.exp(log_pred[2]) >= 0.8 * truth[2]            # 8.5 per instance: never trained on, still slow
    probability, _ = view(np.array([40.0, 85.0]), np.array([10.0, 10.0]))
    assert probability[0] < 0.01 and probability[1] > 0.9


def test_backlog_samples_do_not_teach_a_knee_where_there_is_none():
    samples = queue_samples(400, backlog_every=25)
    kept = without_outliers(samples, "request_rate")
    assert len(kept) == len(samples) - 16 and kept.target.max() < 10
    advisor = PredictiveAdvisor(PredictiveConfig(1.0, "request_rate", 15.0, 60.0, max_instances=20))
    advisor.train(samples, per_instance=("request_rate",))
    view = CapacityView(advisor.model, {"request_rate": 50.0}, "request_rate", 1.0)
    probability, _ = view(np.array([50.0]), np.array([10.0]))   # 5 per instance: 0.6 s
    assert probability[0] < 0.01


# ----------------------------------------------------------------- the policy
RATE, LATENCY = MetricSpec("rps", "rps", "sum"), MetricSpec("latency", "latency", "quantile", 0.95)


def config(**overrides) -> PredictiveConfig:
    base = dict(threshold=1.0, load_metric="rps", interval_s=15.0, startup_delay_s=30.0, max_instances=12,
                max_up=4, max_down=4, min_samples=60, tracking_metric="cpu", tracking_target=0.6,
                season_steps=(DAY,))
    base.update(overrides)
    return PredictiveConfig(**base)


def observation(step: int, instances: int, rng, rate: float | None = None) -> Observation:
    rate = rate if rate is not None else 30 + 10 * math.sin(step / 20)
    per = rate / instances
    return Observation(now=step * 15.0, node="web", instances=instances, ready=instances,
                       metrics={"rps": rate, "cpu": min(1.0, per / 10)},
                       target=3.0 / (10.0 - min(per, 9.5)) * math.exp(rng.normal(0, 0.05)))


def test_too_little_history_falls_back_to_tracking_and_says_so():
    policy = OptimizerPolicy(config(), (RATE,), LATENCY, background=False)
    rng = np.random.default_rng(0)
    decision = policy.decide(observation(0, 4, rng))
    assert decision.detail["phase"] == "fallback"
    assert "too little history" in decision.detail["fallback"] or "no trained" in decision.detail["fallback"]
    assert "target tracking on cpu" in decision.reason


def test_the_model_decides_once_trained_and_the_event_detail_explains_it():
    policy = OptimizerPolicy(config(), (RATE,), LATENCY, retrain_every=20, background=False,
                             per_instance=("rps",))
    rng = np.random.default_rng(1)
    instances = 4
    for step in range(120):
        o = observation(step, instances, rng)
        policy.learn(o)
        instances = int(np.clip(policy.decide(o).desired, 3, 8)) if step % 7 == 0 else instances
    d = policy.decide(observation(120, 5, rng))
    assert d.detail["phase"] == "model"
    assert d.detail["forecast"]["quantiles"] == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert len(d.detail["forecast"]["values"]) == horizon_for(2)
    chosen = [c for c in d.detail["candidates"] if c["instances"] == d.detail["chosen"]]
    assert chosen and d.detail["chosen_cost"] == chosen[0]["cost"] and d.detail["startup_s"] == 30.0
    assert all(c["predicted_target"] > 0 for c in d.detail["candidates"])


class MemorySink:
    def __init__(self):
        self.rows: list[Sample] = []

    def add(self, sample):
        self.rows.append(sample)

    def recent(self, limit):
        return self.rows[-limit:]


class MemoryHistory:
    def __init__(self, rows):
        self.rows = rows

    def recent(self, limit):
        return self.rows[-limit:]


def test_policy_state_survives_a_loop_restart():
    sink = MemorySink()
    rng = np.random.default_rng(2)
    first = OptimizerPolicy(config(), (RATE,), LATENCY, sink=sink, retrain_every=20, background=False,
                            per_instance=("rps",))
    for step in range(100):
        first.learn(observation(step, 4 + step % 3, rng))
    before = first.advisor.forecaster.forecast()
    # A new loop: a fresh policy over the same store, and an imported day of older load history.
    imported = [(-15.0 * k, 30.0) for k in range(DAY, 0, -1)]
    again = OptimizerPolicy(config(), (RATE,), LATENCY, sink=sink, retrain_every=20, background=False,
                            per_instance=("rps",), history=MemoryHistory(imported))
    d = again.decide(observation(100, 5, rng))
    assert d.detail["phase"] == "model" and d.detail["samples"] == 100      # retrained at once from the store
    assert len(again.advisor.forecaster) == DAY + 100 + 1     # the history, the stored samples, this pass
    after = again.advisor.forecaster.forecast()
    assert after.quantile(0.5)[0] == pytest.approx(before.quantile(0.5)[0], rel=0.2)


def test_the_operator_setting_is_checked():
    with pytest.raises(Exception, match="violation_price"):
        config(violation_price=0)


def test_the_clairvoyant_policy_meets_the_slo_at_the_utilisation_that_holds_it_and_breaks_it_above():
    from optimizer.simulator import OraclePolicy, ServiceModel, simulate
    service = ServiceModel()
    rates = seasonal_series(1, seed=4) / 100 * 20 * service.max_rate_per_replica_at_slo()
    at_slo = simulate(rates, OraclePolicy(rates, service, 0.7, 40), service, 3, 40)
    cheap = simulate(rates, OraclePolicy(rates, service, 0.8, 40), service, 3, 40)
    assert at_slo.slo_violation_pct < 1.0 < cheap.slo_violation_pct   # M/M/1 p95 = 1 s at u = 0.7
    assert cheap.replica_hours < at_slo.replica_hours
