"""The scaling advisor the maintain loop calls: model-based advice with target-tracking fallback, exploration and cooldown."""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from optimizer.errors import OptimizerInputError
from optimizer.models import StratoModel, TrainingReport
from optimizer.samples import SampleSet
from optimizer.targettracking import TargetTracker, TargetTrackingConfig


@dataclass(frozen=True)
class AdvisorConfig:
    target_low: float  # the target is fine between these thresholds
    target_high: float
    min_instances: int = 1
    max_instances: int = 10
    max_up: int = 4
    max_down: int = 4
    min_samples: int = 100  # below this, fall back to target tracking
    max_validation_mape: float = 0.5  # above this held-out error, the model is not trusted
    confidence_z: float = 1.0  # scale up against prediction + z ensemble spreads
    cooldown_s: float = 0.0  # no new action this soon after the previous one
    scale_down_stabilization_s: float = 300.0
    # A shorter stabilisation for scale-downs the model is confident about: the cautious
    # (prediction x exp(z x spread)) target at the smaller count is at most
    # confident_fraction x target_high. None keeps the full window for every scale-down.
    confident_scale_down_stabilization_s: float | None = None
    confident_fraction: float = 0.8
    # With hysteresis, the current count is kept while its predicted target is within
    # [target_low, target_high]; without it, the cheapest count that fits is always chosen
    # (the scale-down stabilisation still damps flapping).
    hysteresis: bool = True
    explore: bool = False  # MiCADO-style sweep of the instance count while samples are few
    explore_every: int = 20
    tracking_metric: str | None = None  # the metric target tracking follows, per instance
    tracking_target: float | None = None
    load_metrics: tuple[str, ...] = ()  # metrics proportional to offered load, extrapolated by trend
    forecast_horizon_s: float = 0.0
    forecast_window: int = 8
    # Cautious scale-down: a smaller count must fit (a) by the worse of the anchored and the
    # model-alone prediction, (b) at the highest load of the last `forecast_window` samples
    # (times any forecast growth), against z_down spreads (confidence_z when None), and
    # (c) keep the load per instance below the `overload_quantile` quantile of the loads per
    # instance at which the training samples saw the target above target_high.
    cautious_scale_down: bool = True
    down_confidence_z: float | None = None
    overload_quantile: float = 0.1
    # (d) with unseen_load_factor set, keep the load per instance within that factor of the highest
    # load per instance in the training samples: a young model, trained on a narrow range of loads,
    # must not scale down into loads it has never seen (None = off).
    unseen_load_factor: float | None = None
    # Model-based capacity planning (None = off): provision the fewest instances whose cautious
    # model-alone prediction (prediction x exp(confidence_z x spread)) at the forecast load stays
    # <= capacity_target. The load is forecast over forecast_horizon_s by a robust (Theil-Sen)
    # log-linear trend of the last capacity_trend_window rows (past rows only); capacity_react
    # also takes the latest measurement when it is above the fit. Scale-up is immediate; a
    # scale-down needs the smaller count to fit the highest load of the last capacity_down_window
    # rows x capacity_down_margin, and at least capacity_down_every intervals since the last action.
    capacity_target: float | None = None
    capacity_trend_window: int = 4
    capacity_react: bool = True
    capacity_down_window: int = 8
    capacity_down_margin: float = 1.0
    capacity_down_every: int = 4
    capacity_max_growth: float = 2.0
    # Anti-oscillation for capacity planning (every default is off):
    # - a scale-down must remove at least max(capacity_down_min_step, ceil(capacity_down_min_fraction x
    #   current count)) instances (or reach min_instances), otherwise the count is held;
    # - capacity_down_persist > 0: a scale-down needs a smaller count to have been wanted on each of the
    #   last capacity_down_persist intervals, and goes only to the largest of those wanted counts;
    # - capacity_reversal_window > 0: within that many intervals of a scale-down, a scale-up needs the
    #   measured target above target_high; within that many intervals of a scale-up, no scale-down.
    capacity_down_min_step: int = 1
    capacity_down_min_fraction: float = 0.0
    capacity_down_persist: int = 0
    capacity_reversal_window: int = 0
    # Volatility headroom for the scale-up forecast (None = off): the forecast is raised by the
    # capacity_headroom_quantile quantile (floored at 0) of the load's realised log growth over the
    # forecast horizon, measured on the last capacity_headroom_window rows (past rows only). Quiet
    # hours get little headroom, hours with surges get more.
    capacity_headroom_quantile: float | None = None
    capacity_headroom_window: int = 480
    capacity_explore_factor: float = 1.0
    # Measured-overload guard for capacity planning (None = off): counts whose load per instance would
    # reach the overload_quantile quantile of the training samples' loads per instance at which the
    # measured target exceeded capacity_overload_target are refused, whatever the net predicts.
    capacity_overload_target: float | None = None

    def __post_init__(self):
        if not 0 < self.target_low < self.target_high:
            raise OptimizerInputError("target thresholds must satisfy 0 < low < high")
        if not 1 <= self.min_instances <= self.max_instances:
            raise OptimizerInputError("instance limits must satisfy 1 <= min <= max")


# Capacity-plan settings of the older threshold advisor, chosen on earlier days of the WorldCup98 trace (the
# tuning log is in the git history of benchmarks/optimizer_closed_loop.py, before its predictive rewrite). Only
# the offline `strato optimizer advise` uses them now; the optimizer policy is optimizer.predictive's.
TUNED_CAPACITY_PLAN = dict(capacity_trend_window=6, capacity_react=False, capacity_down_window=1,
                           capacity_down_margin=1.0, capacity_down_every=4, capacity_down_persist=8,
                           capacity_headroom_quantile=0.5, capacity_explore_factor=1.25, unseen_load_factor=1.25)


def candidate(count, predicted, upper, refused: str) -> dict:
    """One candidate count: its predicted target and cautious upper bound; a count a guard refused (an infinite
    bound) says why in `refused`."""
    entry = dict(instances=int(count), predicted_target=float(predicted), upper=float(upper))
    if not (math.isfinite(entry["upper"]) and math.isfinite(entry["predicted_target"])):
        entry["refused"] = refused
    return entry


def finite_or_null(value):
    """JSON has no NaN or infinity: in a document they read null (a refused candidate says why beside it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_null(v) for v in value]
    return value


@dataclass(frozen=True)
class ScalingAdvice:
    instances: int
    delta: int
    phase: str  # "model", "fallback", "exploration", "cooldown"
    reason: str
    predicted_target: float | None = None
    uncertainty: float | None = None  # log-scale spread: the target is likely within x exp(+-uncertainty)
    candidates: list[dict] = field(default_factory=list)
    detail: dict = field(default_factory=dict)  # what an event shows of the decision (forecast, costs)

    def as_dict(self) -> dict:
        """A JSON-ready document: an infinite upper bound (a refused count) reads null beside its `refused` reason."""
        return finite_or_null(asdict(self))


class Advisor:
    """Keeps the current model and recent observations; `advise` never trains (retrain with `train`)."""

    def __init__(self, config: AdvisorConfig, model: StratoModel | None = None):
        self.config = config
        self.model = model
        self._lock = threading.Lock()
        self._last_action_time = -math.inf
        self._recent_loads: deque[tuple[float, np.ndarray]] = deque(maxlen=max(2, config.forecast_window))
        self._down_recommendations: deque[tuple[float, int]] = deque()
        self._explore_count = 0
        self._explore_direction = 1
        self._capacity_loads: deque[tuple[float, dict[str, float]]] = deque(
            maxlen=max(2, config.capacity_trend_window, config.capacity_down_window))
        self._capacity_last_action = -math.inf
        self._capacity_last_delta = 0
        self._capacity_wanted: deque[int] = deque(maxlen=max(1, config.capacity_down_persist))
        self._headroom_logs: dict[str, deque[float]] = {}
        self.tracker = None
        if config.tracking_metric is not None and config.tracking_target is not None:
            self.tracker = TargetTracker(TargetTrackingConfig(
                config.tracking_target, min_instances=config.min_instances, max_instances=config.max_instances,
                scale_down_stabilization_s=config.scale_down_stabilization_s))

    # ----- training, off the advice path -----
    def train(self, samples: SampleSet, **model_options) -> TrainingReport:
        """Fit a new model and swap it in; meant for the maintain loop's background work, not per advice."""
        model = StratoModel(**model_options).fit(samples)
        with self._lock:
            self.model = model
        return model.report

    def train_in_background(self, samples: SampleSet, **model_options) -> threading.Thread:
        thread = threading.Thread(target=self.train, args=(samples,), kwargs=model_options, daemon=True)
        thread.start()
        return thread

    # ----- advice -----
    def _model_problem(self, n_samples: int | None) -> str | None:
        model = self.model
        if model is None or model.report is None:
            return "no trained model yet"
        report = model.report
        if n_samples is not None and n_samples < self.config.min_samples:
            return f"too few samples ({n_samples} < {self.config.min_samples})"
        if report.n_samples < self.config.min_samples:
            return f"model trained on too few samples ({report.n_samples} < {self.config.min_samples})"
        if not math.isfinite(report.validation_mape) or report.validation_mape > self.config.max_validation_mape:
            return (f"validated error too high (median APE {report.validation_mape:.2f} > "
                    f"{self.config.max_validation_mape:.2f})")
        return None

    def _record_loads(self, now: float, metrics: dict[str, float]) -> None:
        """Keep the sample's load metrics: the trend forecast's window and, for capacity planning, its history."""
        cfg = self.config
        loads = {m: float(metrics[m]) for m in cfg.load_metrics if m in metrics}
        if not loads:
            return
        self._recent_loads.append((now, loads))
        if cfg.capacity_target is None:
            return
        self._capacity_loads.append((now, loads))
        for name, value in loads.items():
            self._headroom_logs.setdefault(name, deque(maxlen=cfg.capacity_headroom_window + 64)).append(
                math.log(max(value, 1e-9)))

    def _load_growth(self, values: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
        """Growth factor per model input: load metrics extrapolated from their recent log-linear trend."""
        cfg = self.config
        factor = np.ones(len(names))
        if cfg.forecast_horizon_s <= 0 or len(self._recent_loads) < 3:
            return factor
        for j, name in enumerate(names):
            if name not in cfg.load_metrics or name not in values:
                continue
            points = [(t, v[name]) for t, v in self._recent_loads if name in v]
            if len(points) < 3:
                continue
            times = np.array([t for t, _ in points]) - points[-1][0]
            slope = np.polyfit(times, np.log(np.maximum([v for _, v in points], 1e-9)), 1)[0]
            # Only growth is extrapolated: a falling load is left to the scale-down stabilisation.
            factor[j] = math.exp(min(max(slope * cfg.forecast_horizon_s, 0.0), math.log(2.0)))
        return factor

    def observe(self, now: float, metrics: dict[str, float]) -> None:
        """Record a past sample's load metrics (trend, recent peak, headroom) without advising on it.

        For an advisor started on stored history, e.g. `strato optimizer advise` on a CSV: the load
        history the forecasts need is replayed, no action is taken or remembered."""
        self._record_loads(now, metrics)

    def advise(self, now: float, metrics: dict[str, float], instances: int, target: float,
               n_samples: int | None = None) -> ScalingAdvice:
        """Advise an instance count from the latest sample (metrics by name, current count and target)."""
        cfg = self.config
        if not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
            raise OptimizerInputError(f"the current target must be a positive number (got {target})")
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise OptimizerInputError(f"metric(s) {', '.join(bad)} are not finite numbers in this sample")
        with self._lock:
            model = self.model
        names = model.metric_names if model is not None else tuple(metrics)
        self._record_loads(now, metrics)
        growth = self._load_growth(metrics, names)
        self._last_metrics = metrics
        if now - self._last_action_time < cfg.cooldown_s:
            return ScalingAdvice(instances, 0, "cooldown",
                                 f"cooldown: last action {now - self._last_action_time:.0f} s ago")
        problem = self._model_problem(n_samples)
        if problem is None:
            missing = [m for m in model.metric_names if m not in metrics]
            if missing:
                problem = f"the sample lacks metric(s) the model was trained on: {', '.join(missing)}"
        if problem is not None:
            advice = self._fallback(now, metrics, instances, problem, n_samples)
        else:
            vector = np.array([metrics[m] for m in model.metric_names], dtype=float)
            peak = self._peak_vector(model.metric_names, metrics) * growth
            advice = None
            if cfg.capacity_target is not None:
                advice = self._capacity_advice(model, now, vector, instances, target)
            if advice is None:
                advice = self._model_advice(model, now, vector * growth, instances, target, growth, peak)
        if advice.delta != 0:
            self._last_action_time = now
        return advice

    # ----- model-based capacity planning -----
    def _capacity_forecasts(self, names, vector: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray]:
        """(load forecast for scale-up, recent peak for scale-down) per model input, from past rows only."""
        cfg = self.config
        up, peak = vector.copy(), vector.copy()
        rows = list(self._capacity_loads)
        for j, name in enumerate(names):
            points = [(t, v[name]) for t, v in rows if name in v]
            if not points:
                continue
            values = np.array([v for _, v in points], float)
            # The recent peak of 3-row medians: one noisy measurement does not hold instances.
            recent = values[-(cfg.capacity_down_window + 2):]
            smooth = [np.median(recent[i:i + 3]) for i in range(max(1, len(recent) - 2))]
            peak[j] = max(float(np.median(values[-3:])), max(smooth))
            trend = points[-cfg.capacity_trend_window:]
            if len(trend) < 3 or cfg.forecast_horizon_s <= 0:
                continue
            t = np.array([p[0] for p in trend], float) - trend[-1][0]
            y = np.log(np.maximum([p[1] for p in trend], 1e-9))
            i, k = np.triu_indices(len(t), 1)
            dt = t[k] - t[i]
            ok = dt > 0
            slope = float(np.median((y[k] - y[i])[ok] / dt[ok])) if ok.any() else 0.0
            level = float(np.median(y - slope * t))  # the robust fit's value now (t = 0)
            growth = min(max(slope, 0.0) * cfg.forecast_horizon_s, math.log(cfg.capacity_max_growth))
            forecast = math.exp(level + growth)
            up[j] = max(forecast, vector[j]) if cfg.capacity_react else forecast
            if cfg.capacity_headroom_quantile is not None and interval > 0:
                up[j] *= math.exp(self._headroom(name, interval))
        return up, peak

    def _headroom(self, name: str, interval: float) -> float:
        """Log headroom: a quantile of the load's realised growth over the forecast horizon, recent rows only."""
        cfg = self.config
        logs = self._headroom_logs.get(name, ())
        steps = max(1, int(round(cfg.forecast_horizon_s / interval)))
        if len(logs) <= steps + 8:
            return 0.0
        series = np.fromiter(logs, float)
        growth = series[steps:] - series[:-steps]
        return max(0.0, float(np.quantile(growth[-cfg.capacity_headroom_window:], cfg.capacity_headroom_quantile)))

    def _fewest_fitting(self, model, vector, instances, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cautious model-alone prediction at every candidate count, with loads beyond what training saw refused."""
        cfg = self.config
        rows = np.repeat(vector[None, :], len(counts), 0)
        predicted, spread = model.predict_after_scaling(rows, instances, counts - instances)
        cautious = predicted * np.exp(cfg.confidence_z * spread)
        # The net cannot be trusted far beyond the loads per instance it was trained on; a little
        # beyond (capacity_explore_factor) lets the learned range grow step by step.
        refused = model.beyond_seen_load(vector, counts, cfg.capacity_explore_factor)
        if cfg.capacity_overload_target is not None:
            refused |= model.reaches_overload(vector, counts, cfg.capacity_overload_target, cfg.overload_quantile)
        cautious = np.where(refused, np.inf, cautious)
        return cautious <= cfg.capacity_target, predicted, cautious

    def _capacity_advice(self, model, now, vector, instances, target) -> ScalingAdvice | None:
        """Fewest instances the learned model says keep the forecast load under capacity_target; None = not usable."""
        cfg = self.config
        names = model.metric_names
        if not any(n in cfg.load_metrics for n in names) or not model.shared.size:
            return None
        interval = 0.0
        if len(self._capacity_loads) >= 2:
            interval = self._capacity_loads[-1][0] - self._capacity_loads[-2][0]
        up_vector, peak_vector = self._capacity_forecasts(names, vector, interval)
        counts = np.arange(cfg.min_instances, cfg.max_instances + 1)
        fits_up, predicted, cautious = self._fewest_fitting(model, up_vector, instances, counts)
        if not fits_up.any() or not predicted[-1] < predicted[0]:
            return None  # nothing fits, or no lever in the count: the regular advice decides
        need_up = int(counts[np.flatnonzero(fits_up)[0]])
        since = (now - self._capacity_last_action) / interval if interval > 0 else math.inf
        reversal = cfg.capacity_reversal_window > 0 and since < cfg.capacity_reversal_window
        new, why = instances, "model capacity plan: the current count fits the forecast load"
        wanted = instances
        if need_up > instances:
            wanted = need_up
            if reversal and self._capacity_last_delta < 0 and target <= cfg.target_high:
                why = (f"model capacity plan: scale-up to {need_up} held ({since:.0f} interval(s) after a "
                       f"scale-down, measured target {target:.3g} <= {cfg.target_high:g})")
            else:
                new = min(need_up, instances + cfg.max_up)
                why = (f"model capacity plan: forecast load {float(up_vector[model.shared[0]]):.3g} needs "
                       f"{need_up} instance(s) for a cautious target <= {cfg.capacity_target:g}")
        elif need_up < instances:
            fits_down, _, _ = self._fewest_fitting(model, peak_vector * cfg.capacity_down_margin, instances, counts)
            need_down = int(counts[np.flatnonzero(fits_down)[0]]) if fits_down.any() else instances
            wanted = max(need_up, need_down)
        self._capacity_wanted.append(wanted)
        if need_up < instances:
            if cfg.capacity_down_persist > 0:
                recent = list(self._capacity_wanted)
                wanted = max(recent) if len(recent) >= cfg.capacity_down_persist else instances
            step = max(cfg.capacity_down_min_step, math.ceil(cfg.capacity_down_min_fraction * instances))
            step = max(1, min(step, instances - cfg.min_instances))
            if wanted < instances and since >= cfg.capacity_down_every and instances - wanted < step:
                why = (f"model capacity plan: scale-down to {wanted} held (removes fewer than {step} "
                       f"instance(s))")
            elif wanted < instances and reversal and self._capacity_last_delta > 0:
                why = (f"model capacity plan: scale-down to {wanted} held ({since:.0f} interval(s) after a "
                       f"scale-up)")
            elif wanted < instances and since >= cfg.capacity_down_every:
                new = max(wanted, instances - cfg.max_down)
                why = (f"model capacity plan: {wanted} instance(s) fit the recent peak load "
                       f"{float(peak_vector[model.shared[0]]):.3g} x {cfg.capacity_down_margin:g}")
            elif wanted < instances:
                why = f"model capacity plan: scale-down to {wanted} held (last action {since:.0f} intervals ago)"
            else:
                why = "model capacity plan: the recent peak load needs the current count"
        overload = max(cfg.target_high, cfg.capacity_target * math.exp(2.0 * model.report.residual_log_std))
        if target > overload and new <= instances:
            # Measured overload the plan does not see (e.g. a backlog), beyond what the model's own
            # residual noise explains: never scale down into it,
            # and let the anchored advice add instances if it wants more.
            anchored = self._model_advice(model, now, vector, instances, target, np.ones(len(names)))
            if anchored.instances > new:
                self._capacity_last_action = now
                self._capacity_last_delta = anchored.instances - instances
                return anchored
            new = instances
            why += f"; measured target above {overload:.3g}: no scale-down"
        if new != instances:
            self._capacity_last_action = now
            self._capacity_last_delta = new - instances
        index = int(np.flatnonzero(counts == new)[0]) if new in counts else None
        candidates = [candidate(c, p, u, "the capacity plan does not trust the model at this count's load per "
                                         "instance (beyond what it was trained on, or where overload was measured)")
                      for c, p, u in zip(counts, predicted, cautious)]
        return ScalingAdvice(new, new - instances, "model", why,
                             float(predicted[index]) if index is not None else None, None, candidates)

    def _peak_vector(self, names, metrics: dict[str, float]) -> np.ndarray:
        """The sample's metrics with each load metric at its highest value of the recent window (past rows only)."""
        vector = np.array([metrics[m] for m in names], dtype=float)
        for j, name in enumerate(names):
            seen = [v[name] for _, v in self._recent_loads if name in v]
            if seen:
                vector[j] = max(vector[j], max(seen))
        return vector

    def _fallback(self, now, metrics, instances, problem, n_samples) -> ScalingAdvice:
        cfg = self.config
        if cfg.explore and n_samples is not None and n_samples < cfg.min_samples:
            self._explore_count += 1
            if self._explore_count % cfg.explore_every == 0:
                if instances >= cfg.max_instances:
                    self._explore_direction = -1
                elif instances <= cfg.min_instances:
                    self._explore_direction = 1
                new = int(np.clip(instances + self._explore_direction, cfg.min_instances, cfg.max_instances))
                return ScalingAdvice(new, new - instances, "exploration", f"exploring instance counts: {problem}")
            return ScalingAdvice(instances, 0, "exploration", f"exploring instance counts: {problem}")
        if self.tracker is None:
            return ScalingAdvice(instances, 0, "fallback", f"{problem}; no target tracking configured, keeping "
                                                           f"{instances} instance(s)")
        if cfg.tracking_metric not in metrics:
            return ScalingAdvice(instances, 0, "fallback", f"{problem}; tracking metric {cfg.tracking_metric!r} "
                                                           "is not in the sample")
        value = float(metrics[cfg.tracking_metric])
        new = self.tracker.desired(now, instances, value)
        return ScalingAdvice(new, new - instances, "fallback",
                             f"{problem}; target tracking on {cfg.tracking_metric} "
                             f"({value:.3g} vs target {cfg.tracking_target:.3g})")

    def _model_advice(self, model, now, vector, instances, target, growth, peak=None) -> ScalingAdvice:
        cfg = self.config
        low_w = max(cfg.min_instances, instances - cfg.max_down)
        high_w = min(cfg.max_instances, instances + cfg.max_up)
        counts = np.arange(low_w, high_w + 1)
        if counts.size == 0:
            counts = np.array([int(np.clip(instances, cfg.min_instances, cfg.max_instances))])
        deltas = counts - instances
        # The measured target anchors the prediction; when load is forecast to grow, the
        # anchor moves with the model's predicted effect of that growth.
        predicted, spread = model.predict_after_scaling(np.repeat(vector[None, :], len(counts), 0), instances,
                                                        deltas, target)
        cautious = predicted * np.exp(cfg.confidence_z * spread)
        fits = cautious <= cfg.target_high
        current = int(np.flatnonzero(counts == instances)[0]) if instances in counts else None
        grew = bool(np.any(growth > 1.0))
        candidates = [candidate(c, p, u, "the model's prediction at this count is not finite")
                      for c, p, u in zip(counts, predicted, cautious)]
        outside = not (cfg.target_low <= target <= cfg.target_high)
        if outside and len(counts) > 1 and predicted.max() < 1.05 * predicted.min():
            # The measured target is off but the model sees no lever in the instance count
            # (e.g. the samples never varied it): it cannot advise, so track the target instead.
            return self._fallback(now, self._last_metrics, instances,
                                  "the model predicts no effect of the instance count", None)
        if target > cfg.target_high and len(counts) > 1 and cautious[-1] >= cautious[current if current is not None else 0]:
            # Measured overload, yet the model says more instances would not help: it has
            # learnt a confounded relation (e.g. W only ever grew with load). Do not trust it.
            return self._fallback(now, self._last_metrics, instances,
                                  "the model predicts more instances would not lower the measured target", None)
        guard_note = ""
        down = counts < instances
        if cfg.cautious_scale_down and down.any():
            peak = vector if peak is None else peak
            rows = np.repeat(peak[None, :], int(down.sum()), 0)
            alone, spread_alone = model.predict_after_scaling(rows, instances, deltas[down])
            anchored, _ = model.predict_after_scaling(rows, instances, deltas[down], target)
            worst = np.maximum(np.maximum(predicted[down], alone), anchored)
            z_down = cfg.confidence_z if cfg.down_confidence_z is None else cfg.down_confidence_z
            strict = worst * np.exp(z_down * np.maximum(spread[down], spread_alone))
            limit = model.overload_load(cfg.target_high, cfg.overload_quantile)
            over = model.reaches_overload(peak, counts[down], cfg.target_high, cfg.overload_quantile)
            if cfg.unseen_load_factor is not None:
                unseen = model.beyond_seen_load(peak, counts[down], cfg.unseen_load_factor)
                strict = np.where(unseen, np.inf, strict)
                if unseen.any():
                    guard_note += (f"; counts <= {int(counts[down][unseen].max())} refused: load per instance beyond "
                                   f"{cfg.unseen_load_factor:g} x the highest trained on")
            strict = np.where(over, np.inf, strict)
            cautious = cautious.copy()
            cautious[down] = np.maximum(cautious[down], strict)
            fits = cautious <= cfg.target_high
            refusals = np.where(over, "load per instance would reach the level where the target was seen above "
                                      f"{cfg.target_high:g}", "load per instance beyond what the model was trained on")
            for c, s, why_refused in zip(counts[down], strict, refusals):
                candidates[int(c) - int(counts[0])].update(candidate(c, predicted[int(c) - int(counts[0])], s,
                                                                     str(why_refused)))
            if over.any():
                guard_note += (f"; counts <= {int(counts[down][over].max())} refused: load per instance would "
                               f"reach {limit:.3g}, where the target was seen above {cfg.target_high:g}")
        if cfg.hysteresis and current is not None and fits[current] and predicted[current] >= cfg.target_low:
            choice, why = current, "predicted target within thresholds at the current count"
        elif fits.any():
            choice = int(np.flatnonzero(fits)[0])  # the cheapest count that fits
            why = "cheapest instance count whose predicted target is within the upper threshold"
        else:
            choice = int(np.argmin(cautious))
            why = "no candidate fits the upper threshold; choosing the one predicted closest to it"
        new = int(counts[choice])
        # Scale-down is stabilised like HPA's: act on the highest recommendation in the window
        # (a shorter window when the model is confident the smaller count keeps the target well under).
        self._down_recommendations.append((now, new))
        while self._down_recommendations and self._down_recommendations[0][0] < now - cfg.scale_down_stabilization_s:
            self._down_recommendations.popleft()
        if new < instances:
            window = cfg.scale_down_stabilization_s
            if (cfg.confident_scale_down_stabilization_s is not None
                    and cautious[choice] <= cfg.confident_fraction * cfg.target_high):
                window = min(window, cfg.confident_scale_down_stabilization_s)
            stabilised = min(instances, max(r for t, r in self._down_recommendations if t >= now - window))
            if stabilised != new:
                why += f"; scale-down held at {stabilised} by the {window:.0f} s stabilisation"
                new = stabilised
        index = int(np.flatnonzero(counts == new)[0])
        why += guard_note
        if grew:
            why += f" (load forecast to grow x{float(growth.max()):.2f} over {cfg.forecast_horizon_s:.0f} s)"
        return ScalingAdvice(new, new - instances, "model", why, float(predicted[index]), float(spread[index]),
                             candidates)
