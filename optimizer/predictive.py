"""The predictive advisor: a load forecast, the learnt capacity model and model-predictive control choose the count.

One operator setting, `violation_price`: what one interval over the target costs, in replica-intervals
(the price of running one instance for one interval is 1). Everything else is derived: the horizon
from the start-up delay and the interval, the forecast's spread from its own recent errors, the
capacity model's uncertainty from its ensemble spread and held-out residuals. Until the model has
`min_samples` samples (or when it cannot be trusted) target tracking decides, and says why.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from optimizer.advisor import ScalingAdvice
from optimizer.errors import OptimizerInputError
from optimizer.forecast import Forecast, LoadForecaster
from optimizer.models import StratoModel, TrainingReport
from optimizer.mpc import MpcState, choose, horizon_for
from optimizer.samples import SampleSet
from optimizer.targettracking import TargetTracker, TargetTrackingConfig

DEFAULT_VIOLATION_PRICE = 200.0
MAX_VALIDATION_ERROR = 0.5   # a model whose held-out median relative error is above this is not trusted
OUTLIER_BINS, OUTLIER_MADS = 20, 5.0   # the usual robust-statistics cut: 5 MADs from the median
MAX_STARTUP_STEPS = 58       # the forecast horizon is the start-up delay plus one interval: at most 59 steps
EDGE_STEP = 0.9              # the capacity curve's log-log slope is measured between 0.9 x and 1 x the edge


@dataclass(frozen=True)
class PredictiveConfig:
    threshold: float              # the target's limit (e.g. the p95 latency SLO): above it, an interval violates
    load_metric: str              # the offered load the forecaster follows (a model input, shared by instances)
    interval_s: float             # the control interval
    startup_delay_s: float        # how long a new instance takes to serve
    violation_price: float = DEFAULT_VIOLATION_PRICE
    min_instances: int = 1
    max_instances: int = 10
    max_up: int = 4
    max_down: int = 4
    min_samples: int = 100
    tracking_metric: str | None = None
    tracking_target: float | None = None
    scale_down_stabilization_s: float = 300.0
    season_steps: tuple[int, ...] | None = None   # None: a day and a week of control intervals

    def __post_init__(self):
        if not (self.threshold > 0 and self.interval_s > 0 and self.startup_delay_s >= 0):
            raise OptimizerInputError("the target threshold and the interval must be positive, the start-up delay "
                                      "non-negative")
        if not self.violation_price > 0:
            raise OptimizerInputError("violation_price must be a positive number (replica-intervals per violation)")
        if not 1 <= self.min_instances <= self.max_instances:
            raise OptimizerInputError("instance limits must satisfy 1 <= min <= max")

    @property
    def startup_steps(self) -> int:
        """The start-up delay in intervals, at most MAX_STARTUP_STEPS (a policy period far shorter than the start-up
        delay would otherwise make the forecast horizon, and its memory, unbounded)."""
        return min(MAX_STARTUP_STEPS, max(1, math.ceil(self.startup_delay_s / self.interval_s - 1e-9)))

    def settings(self) -> dict:
        """The operator-facing settings (the benchmark's `settings`)."""
        return {"violation_price": self.violation_price, "min_samples": self.min_samples}


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr
    return ndtr(z)


def without_outliers(samples: SampleSet, load_metric: str) -> SampleSet:
    """The samples whose target is typical of their load per instance.

    A queue that fell behind (a backlog after a surge) stays slow while the load per instance is
    already back to normal: those samples say how the past went, not what this load costs, and would
    teach the capacity model a knee where there is none. Per load bin, a sample is dropped when its
    log target lies more than OUTLIER_MADS robust deviations (MAD) from the bin's median."""
    if load_metric not in samples.metric_names or len(samples) < 4 * OUTLIER_BINS:
        return samples
    per = samples.metric(load_metric) / np.maximum(samples.instances, 1)
    log_target = np.log(samples.target)
    edges = np.unique(np.quantile(per, np.linspace(0, 1, OUTLIER_BINS + 1)))
    which = np.clip(np.searchsorted(edges, per, side="right") - 1, 0, max(len(edges) - 2, 0))
    keep = np.ones(len(samples), bool)
    for b in np.unique(which):
        inside = which == b
        median = np.median(log_target[inside])
        mad = 1.4826 * np.median(np.abs(log_target[inside] - median))
        keep[inside] = np.abs(log_target[inside] - median) <= OUTLIER_MADS * max(mad, 0.01)
    return samples if keep.all() else samples.slice(keep)


class CapacityView:
    """The trained model as the MPC needs it: P(target > threshold) for a total load on n instances.

    Only the load metric (and the other inputs shared by instances, in proportion) varies with the
    forecast; the rest stay at their measured values. Beyond the highest load per instance the model
    was trained on, nothing was learnt, and a net's flat tail must not be read as spare capacity: the
    prediction there is the more pessimistic of (a) the model's own log-log slope at that edge and
    (b) a single queue, latency = base / (1 - load / capacity), whose base is the model's latency at
    the lowest load trained on and whose capacity is inferred from how far the latency has risen by
    the edge. Neither needs a setting."""

    def __init__(self, model: StratoModel, metrics: dict[str, float], load_metric: str, threshold: float):
        self.model, self.threshold = model, threshold
        names = model.metric_names
        self.vector = np.array([float(metrics[m]) for m in names])
        self.load_index = names.index(load_metric)
        self.scaled = np.zeros(len(names), bool)
        self.scaled[list(model.shared)] = True
        self.scaled[self.load_index] = True
        self.noise = float(model.report.residual_log_std if model.report else 0.0)
        self.low, self.edge = model.seen_load_range()

    def _rows(self, loads: np.ndarray) -> np.ndarray:
        ratio = loads / max(self.vector[self.load_index], 1e-9)
        rows = np.repeat(self.vector[None, :], len(loads), 0)
        rows[:, self.scaled] *= ratio[:, None]
        return rows

    def predict(self, loads: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log predicted target, log spread) per (total load, count)."""
        loads, counts = np.asarray(loads, float), np.asarray(counts, float)
        per = loads / counts
        beyond = per > self.edge if math.isfinite(self.edge) else np.zeros(per.shape, bool)
        capped = np.where(beyond, self.edge * counts, loads)
        log_pred, spread = self.model.log_predict_target(self._rows(capped), counts)
        if beyond.any():
            log_pred = log_pred.copy()
            log_pred[beyond] = self._extrapolate(log_pred[beyond], per[beyond], counts[beyond])
        # Beyond what was seen, the uncertainty grows with the distance: one log unit of the target per log
        # unit of load per instance (scale-free), so a count a little beyond is explored, a far one is not.
        unseen = np.log(np.maximum(per / self.edge, 1.0)) if math.isfinite(self.edge) else np.zeros(per.shape)
        queue = self.model.log_predict_queue(per)
        if queue is None:
            return log_pred, np.sqrt(spread ** 2 + unseen ** 2)
        # Two model families: their mean is the prediction, their disagreement part of the uncertainty.
        return (log_pred + queue) / 2, np.sqrt(spread ** 2 + ((log_pred - queue) / 2) ** 2 + unseen ** 2)

    def _extrapolate(self, at_edge: np.ndarray, per: np.ndarray, counts: np.ndarray) -> np.ndarray:
        inner, _ = self.model.log_predict_target(self._rows(EDGE_STEP * self.edge * counts), counts)
        slope = np.maximum((at_edge - inner) / -math.log(EDGE_STEP), 0.0)
        by_slope = at_edge + slope * np.log(per / self.edge)
        base, _ = self.model.log_predict_target(self._rows(max(self.low, 1e-3 * self.edge) * counts), counts)
        rise = np.clip(np.exp(base - at_edge), 0.0, 1.0 - 1e-6)   # base / latency at the edge
        capacity = self.edge / (1.0 - rise)
        free = np.clip(1.0 - per / capacity, 1e-6, None)
        by_queue = base - np.log(free)
        return np.maximum(by_slope, by_queue)

    def __call__(self, loads: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_pred, spread = self.predict(loads, counts)
        sigma = np.sqrt(spread ** 2 + self.noise ** 2) + 1e-9
        return _normal_cdf((log_pred - math.log(self.threshold)) / sigma), np.exp(log_pred)

class PredictiveAdvisor:
    """Keeps the load forecaster and the current capacity model; `advise` never trains (`train` does)."""

    def __init__(self, config: PredictiveConfig):
        self.config = config
        self.model: StratoModel | None = None
        self._lock = threading.Lock()
        self.forecaster = LoadForecaster(config.interval_s, horizon_for(config.startup_steps), config.season_steps,
                                         judged_from=config.startup_steps)
        self._last_seen: float | None = None
        self.tracker = None
        if config.tracking_metric is not None and config.tracking_target is not None:
            self.tracker = TargetTracker(TargetTrackingConfig(
                config.tracking_target, min_instances=config.min_instances, max_instances=config.max_instances,
                scale_down_stabilization_s=config.scale_down_stabilization_s))

    # ----- history and training, off the advice path -----
    def load_history(self, values) -> None:
        """Past loads, one per interval, oldest first (imported history, or the store's after a restart)."""
        self.forecaster.extend(values)

    def mark_seen(self, timestamp: float) -> None:
        """Loads up to `timestamp` are in the history already (a restart replayed them)."""
        self._last_seen = max(self._last_seen or -math.inf, float(timestamp))

    def observe(self, now: float, metrics: dict[str, float]) -> None:
        """This interval's load, once per interval (learn and decide may both offer it)."""
        value = metrics.get(self.config.load_metric)
        if value is None or (self._last_seen is not None and now <= self._last_seen):
            return
        if isinstance(value, (int, float)) and math.isfinite(value):
            self._last_seen = now
            self.forecaster.add(float(value))

    def train(self, samples: SampleSet, **model_options) -> TrainingReport:
        model = StratoModel(**model_options).fit(without_outliers(samples, self.config.load_metric))
        with self._lock:
            self.model = model
        return model.report

    # ----- advice -----
    def _model_problem(self, n_samples: int | None, metrics: dict) -> str | None:
        model = self.model
        if model is None or model.report is None:
            return "no trained capacity model yet"
        if n_samples is not None and n_samples < self.config.min_samples:
            return f"too little history (fewer than {self.config.min_samples} samples)"
        if not math.isfinite(model.report.validation_mape) or model.report.validation_mape > MAX_VALIDATION_ERROR:
            return f"the capacity model's held-out error is too high (median {model.report.validation_mape:.2f})"
        missing = [m for m in model.metric_names if m not in metrics]
        if missing or self.config.load_metric not in model.metric_names:
            return f"the sample lacks metric(s) the model was trained on: {', '.join(missing or [self.config.load_metric])}"
        return None

    def advise(self, now: float, metrics: dict[str, float], instances: int, target: float | None = None,
               n_samples: int | None = None, ready: int | None = None) -> ScalingAdvice:
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise OptimizerInputError(f"metric(s) {', '.join(bad)} are not finite numbers in this sample")
        self.observe(now, metrics)
        with self._lock:
            model = self.model
        problem = self._model_problem(n_samples, metrics)
        forecast = self.forecaster.forecast()
        if problem is None and forecast is None:
            problem = f"no load forecast yet ({self.config.load_metric} not measured)"
        if problem is not None:
            return self._fallback(now, metrics, instances, problem, forecast)
        cfg = self.config
        state = MpcState(instances, instances if ready is None else int(ready), cfg.min_instances, cfg.max_instances,
                         cfg.max_up, cfg.max_down, cfg.startup_steps)
        view = CapacityView(model, metrics, cfg.load_metric, cfg.threshold)
        picked = choose(state, forecast, cfg.violation_price, view)
        chosen = next(c for c in picked.candidates if c["instances"] == picked.instances)
        detail = {"forecast": forecast.as_dict(), "candidates": picked.candidates, "chosen": picked.instances,
                  "chosen_cost": picked.cost, "violation_price": cfg.violation_price, "startup_s": cfg.startup_delay_s}
        return ScalingAdvice(picked.instances, picked.instances - instances, "model", picked.reason,
                             predicted_target=chosen["predicted_target"], candidates=picked.candidates, detail=detail)

    def _fallback(self, now, metrics, instances, problem: str, forecast: Forecast | None) -> ScalingAdvice:
        cfg = self.config
        detail = {"fallback": problem, "forecast": forecast.as_dict() if forecast else None,
                  "startup_s": cfg.startup_delay_s}
        if self.tracker is None or cfg.tracking_metric not in metrics:
            what = ("no target tracking configured" if self.tracker is None
                    else f"tracking metric {cfg.tracking_metric!r} is not in the sample")
            return ScalingAdvice(instances, 0, "fallback", f"{problem}; {what}, keeping {instances} instance(s)",
                                 detail=detail)
        value = float(metrics[cfg.tracking_metric])
        new = self.tracker.desired(now, instances, value)
        return ScalingAdvice(new, new - instances, "fallback",
                             f"{problem}; target tracking on {cfg.tracking_metric} ({value:.3g} vs target "
                             f"{cfg.tracking_target:.3g})", detail=detail)
