"""Strato's prediction models: a neural-net ensemble for the target and regressions for metrics after scaling."""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor

from optimizer.errors import OptimizerInputError
from optimizer.features import AFTER_WINDOW, scaling_events, signed_log, target_inputs
from optimizer.samples import SampleSet

MIN_TRAINING_SAMPLES = 30
# Regularisation strengths tried on the time-ordered validation split; the grid is small
# because every extra fit costs training time on the maintain loop's budget.
ALPHA_GRID = (0.01, 0.3, 3.0)
# How much of the model's current error to carry into a prediction (kappa) and how much of
# the model's predicted change to trust (beta); chosen on held-out later samples.
KAPPA_GRID = (0.0, 0.5, 0.8, 0.95, 1.0)
BETA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_EVENTS_FOR_REGRESSION = 5
VALIDATION_FIT_ROWS = 4000
QUEUE_BINS = 20


def median_ape(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.median(np.abs(predicted - actual) / np.abs(actual))) if len(actual) else float("nan")


@dataclass
class TrainingReport:
    n_samples: int
    n_events: int
    alpha: float
    kappa: float
    beta: float
    validation_mape: float  # target from metrics, on the later part of the training data
    validation_after_mape: float  # after-scaling prediction, same held-out part
    residual_log_std: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _NetEnsemble:
    """Several small tanh MLPs whose spread is the model's own uncertainty; forward pass in numpy for speed."""

    def __init__(self, nets: list[MLPRegressor]):
        self.w1 = np.stack([n.coefs_[0] for n in nets])  # (k, d, h)
        self.b1 = np.stack([n.intercepts_[0] for n in nets])[:, None, :]
        self.w2 = np.stack([n.coefs_[1][:, 0] for n in nets])  # (k, h)
        self.b2 = np.array([n.intercepts_[1][0] for n in nets])[:, None]

    def predict_all(self, x: np.ndarray) -> np.ndarray:
        hidden = np.tanh(np.einsum("nd,kdh->knh", x, self.w1) + self.b1)
        return np.einsum("knh,kh->kn", hidden, self.w2) + self.b2  # (k, n)


def _fit_net(x, y, hidden, alpha, seed, max_iter):
    net = MLPRegressor(hidden_layer_sizes=(hidden,), activation="tanh", solver="lbfgs", alpha=alpha,
                       max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return net.fit(x, y)


@dataclass(frozen=True)
class QueueFit:
    """The regression beside the net: 1 / target is linear in the load per instance, as for a queue
    (M/M/1: p95 = -ln(0.05) / (mu - load)), so the fitted line says where the latency's knee lies
    even from samples below it. None when the samples show no slowdown with load."""

    intercept: float
    slope: float    # > 0: 1 / target falls as the load per instance rises

    @staticmethod
    def fit(load: np.ndarray, target: np.ndarray) -> "QueueFit | None":
        """A line through the median 1 / target of each load bin (robust to a backlog's slow samples)."""
        ok = np.isfinite(load) & np.isfinite(target) & (target > 0)
        if ok.sum() < MIN_TRAINING_SAMPLES or np.ptp(load[ok]) == 0:
            return None
        load, inverse = load[ok], 1.0 / target[ok]
        edges = np.unique(np.quantile(load, np.linspace(0, 1, QUEUE_BINS + 1)))
        which = np.clip(np.searchsorted(edges, load, side="right") - 1, 0, len(edges) - 2)
        xs, ys, ws = [], [], []
        for b in np.unique(which):
            inside = which == b
            xs.append(np.median(load[inside]))
            ys.append(np.median(inverse[inside]))
            ws.append(math.sqrt(inside.sum()))
        if len(xs) < 3:
            return None
        slope, intercept = np.polyfit(xs, ys, 1, w=ws)
        return QueueFit(float(intercept), float(-slope)) if slope < 0 else None

    def log_predict(self, load: np.ndarray) -> np.ndarray:
        inverse = self.intercept - self.slope * np.asarray(load, float)
        return -np.log(np.clip(inverse, 1e-3 * max(self.intercept, 1e-9), None))


class StratoModel:
    """Target = f(log metrics, log instances) by an MLP ensemble on a log scale, plus log-space metric regressions.

    Improvements over MiCADO's method, each kept because the held-out data supported it:
    the target spans three decades so it is modelled as log(target); inputs are log metrics
    and log instance count, so load per instance is linear in them; an ensemble gives an
    uncertainty; alpha is chosen on later samples than it was fitted on; and an after-scaling
    prediction is anchored on the measured target (kappa, beta chosen on held-out data).
    """

    def __init__(self, hidden: int = 8, n_nets: int = 3, seed: int = 0, max_iter: int = 200,
                 validation_fraction: float = 0.25, per_instance: tuple[str, ...] = (),
                 alpha_grid: tuple[float, ...] | None = None):
        # per_instance names totals shared out over the instances (e.g. a request rate): the
        # net sees them divided by W, and scaling leaves the total itself unchanged.
        self.hidden, self.n_nets, self.seed, self.max_iter = hidden, n_nets, seed, max_iter
        self.per_instance = tuple(per_instance)
        self.validation_fraction = validation_fraction
        # A caller retraining often may pass a one-value grid (e.g. the alpha its last full
        # training chose) to skip the search; kappa and beta are still validated every time.
        self.alpha_grid = tuple(alpha_grid) if alpha_grid else ALPHA_GRID
        self.report: TrainingReport | None = None

    # ----- training -----
    def fit(self, samples: SampleSet) -> "StratoModel":
        started = time.perf_counter()
        if len(samples) < MIN_TRAINING_SAMPLES:
            raise OptimizerInputError(f"too few samples to train: {len(samples)} (need at least {MIN_TRAINING_SAMPLES})")
        if np.ptp(samples.target) == 0:
            raise OptimizerInputError(f"the target {samples.target_name!r} never varies in the training samples; "
                                      "there is nothing to learn")
        notes = []
        self.metric_names = samples.metric_names
        unknown = [m for m in self.per_instance if m not in samples.metric_names]
        if unknown:
            raise OptimizerInputError(f"per-instance metric(s) not in the samples: {', '.join(unknown)}")
        self.shared = np.array([samples.metric_names.index(m) for m in self.per_instance], dtype=int)
        self.used = np.flatnonzero(np.ptp(samples.metrics, axis=0) > 0)
        dropped = [samples.metric_names[j] for j in range(len(samples.metric_names)) if j not in self.used]
        if dropped:
            notes.append(f"constant metrics ignored: {', '.join(dropped)}")
        n = len(samples)
        n_fit = max(MIN_TRAINING_SAMPLES // 2, int(n * (1 - self.validation_fraction)))
        early, late = samples.slice(slice(0, n_fit)), samples.slice(slice(n_fit, None))

        # Choose alpha on the later quarter, fitting one net per alpha on (at most the most
        # recent VALIDATION_FIT_ROWS of) the earlier part: this keeps retraining within budget.
        self._set_scaling(early)
        recent = early.slice(slice(max(0, len(early) - VALIDATION_FIT_ROWS), None))
        x_early, y_early = self._inputs(recent.metrics, recent.instances), self._scaled_log(recent.target)
        x_late, log_late = self._inputs(late.metrics, late.instances), np.log(late.target)
        scores, nets = {}, {}
        for alpha in self.alpha_grid:
            nets[alpha] = _fit_net(x_early, y_early, self.hidden, alpha, self.seed, self.max_iter)
            scores[alpha] = float(np.median(np.abs(nets[alpha].predict(x_late) * self.y_std + self.y_mean - log_late)))
        self.alpha = min(scores, key=scores.get)

        # Anchoring parameters, chosen with the early-part net of that alpha.
        self.ensemble = _NetEnsemble([nets[self.alpha]])
        self._fit_regressions(early)
        kappa_beta, validation_after = self._choose_anchoring(samples, n_fit)
        self.kappa, self.beta = kappa_beta
        log_pred_late = self._log_predict(late.metrics, late.instances).mean(axis=0)
        validation_mape = median_ape(np.exp(log_pred_late), late.target)

        # Final fit on everything.
        self._set_scaling(samples)
        self._fit_parts(samples)
        residual = np.log(samples.target) - self._log_predict(samples.metrics, samples.instances).mean(axis=0)
        # What was measured, kept for the advisor's guard against scaling down into a load per
        # instance at which the target has already been seen too high (past samples only).
        if self.shared.size:
            self._seen_load = self._per_instance(samples.metrics, samples.instances)[:, self.shared[0]].copy()
            self._seen_target = np.asarray(samples.target, float).copy()
            self.queue = QueueFit.fit(self._seen_load, self._seen_target)
        self.report = TrainingReport(
            n_samples=n, n_events=int(len(self.events_before)), alpha=self.alpha, kappa=self.kappa, beta=self.beta,
            validation_mape=validation_mape, validation_after_mape=validation_after,
            residual_log_std=float(np.std(log_late - log_pred_late)) if len(late) else float(np.std(residual)),
            seconds=time.perf_counter() - started, notes=notes + list(samples.notes))
        return self

    def _per_instance(self, metrics: np.ndarray, instances: np.ndarray) -> np.ndarray:
        metrics = np.array(np.atleast_2d(metrics), dtype=float)
        if self.shared.size:
            metrics[:, self.shared] /= np.asarray(instances, float).reshape(-1, 1)
        return metrics

    def _set_scaling(self, samples: SampleSet) -> None:
        raw = target_inputs(self._per_instance(samples.metrics, samples.instances)[:, self.used], samples.instances)
        self.x_mean, self.x_std = raw.mean(axis=0), raw.std(axis=0)
        self.x_std[self.x_std == 0] = 1.0
        log_y = np.log(samples.target)
        self.y_mean, self.y_std = float(log_y.mean()), float(log_y.std() or 1.0)

    def _inputs(self, metrics: np.ndarray, instances: np.ndarray) -> np.ndarray:
        instances = np.broadcast_to(np.asarray(instances, float), (np.atleast_2d(metrics).shape[0],))
        per_instance = self._per_instance(metrics, instances)
        return (target_inputs(per_instance[:, self.used], instances) - self.x_mean) / self.x_std

    def _scaled_log(self, target: np.ndarray) -> np.ndarray:
        return (np.log(target) - self.y_mean) / self.y_std

    def _fit_parts(self, samples: SampleSet) -> None:
        x, y = self._inputs(samples.metrics, samples.instances), self._scaled_log(samples.target)
        self.ensemble = _NetEnsemble([_fit_net(x, y, self.hidden, self.alpha, self.seed + k, self.max_iter)
                                      for k in range(self.n_nets)])
        self._fit_regressions(samples)

    def _fit_regressions(self, samples: SampleSet) -> None:
        events = scaling_events(samples)
        self.events_before = events.before
        self.regressions: list[Ridge | None] = []
        for j in range(samples.metrics.shape[1]):
            if len(events.before) < MIN_EVENTS_FOR_REGRESSION or j not in self.used or j in self.shared:
                self.regressions.append(None)
                continue
            features = self._regression_inputs(samples.metrics[events.before, j], samples.instances[events.before],
                                               events.delta)
            self.regressions.append(Ridge(alpha=1.0).fit(features, signed_log(events.after_metrics[:, j])))

    @staticmethod
    def _regression_inputs(metric, instances, delta):
        # MiCADO's terms m, m*W/(W+dW), m*dW/(W+dW), moved to a log scale: a metric that is
        # shared out over instances moves with log(W/(W+dW)), a total one does not.
        log_m = signed_log(metric)
        log_ratio = np.log(instances / (instances + delta))
        return np.column_stack([log_m, log_ratio, log_m * log_ratio])

    def _choose_anchoring(self, samples: SampleSet, n_fit: int) -> tuple[tuple[float, float], float]:
        """Pick kappa and beta on held-out later samples (real scaling events if enough, else every sample)."""
        late_events = scaling_events(samples.slice(slice(n_fit - 1, None)))
        offset = n_fit - 1
        if len(late_events.before) >= 10:
            before = late_events.before + offset
            delta, actual = late_events.delta, late_events.after_target
        else:
            before = np.arange(n_fit - 1, len(samples) - AFTER_WINDOW)
            delta = samples.instances[before + 1] - samples.instances[before]
            actual = np.array([samples.target[i + 1:i + 1 + AFTER_WINDOW].mean() for i in before])
        if len(before) == 0:
            return (1.0, 0.0), float("nan")
        now_log, after_log, _ = self._log_parts(samples.metrics[before], samples.instances[before], delta)
        observed = np.log(samples.target[before])
        best, best_err = (1.0, 0.0), np.inf
        for kappa in KAPPA_GRID:
            for beta in BETA_GRID:
                pred = self._anchor(observed, now_log, after_log, kappa, beta)
                err = float(np.median(np.abs(np.exp(pred) - actual) / actual))
                if err < best_err - 1e-12:
                    best, best_err = (kappa, beta), err
        return best, best_err

    @staticmethod
    def _anchor(observed_log, now_log, after_log, kappa, beta):
        # kappa = 1, beta = 0 is "nothing changes"; kappa = 0, beta = 1 trusts the model alone.
        level = after_log * (1 - kappa) + kappa * (observed_log + beta * (after_log - now_log))
        return level

    # ----- prediction -----
    def overload_load(self, threshold: float, quantile: float = 0.1) -> float:
        """A low quantile of the per-instance load (first per-instance metric) of the training samples whose
        target exceeded `threshold`: the load per instance at which the service has been seen too slow.
        Infinite when there is no per-instance metric or no such sample."""
        loads, targets = getattr(self, "_seen_load", None), getattr(self, "_seen_target", None)
        if loads is None:
            return math.inf
        above = loads[targets > threshold]
        return float(np.quantile(above, quantile)) if above.size else math.inf

    def beyond_seen_load(self, metrics: np.ndarray, instances, factor: float) -> np.ndarray:
        """For each candidate count: would the load per instance exceed factor x the highest trained on?"""
        counts = np.atleast_1d(np.asarray(instances, float))
        loads = getattr(self, "_seen_load", None)
        if loads is None or not loads.size:
            return np.zeros(counts.shape, bool)
        return self.per_instance_load(metrics, counts) > float(loads.max()) * factor

    def reaches_overload(self, metrics: np.ndarray, instances, threshold: float, quantile: float) -> np.ndarray:
        """For each candidate count: would the load per instance reach `overload_load(threshold, quantile)`?"""
        counts = np.atleast_1d(np.asarray(instances, float))
        limit = self.overload_load(threshold, quantile)
        if not math.isfinite(limit):
            return np.zeros(counts.shape, bool)
        return self.per_instance_load(metrics, counts) >= limit

    def per_instance_load(self, metrics: np.ndarray, instances) -> np.ndarray:
        """The first per-instance metric divided by each candidate instance count (inf without one)."""
        counts = np.atleast_1d(np.asarray(instances, float))
        if not self.shared.size:
            return np.full(counts.shape, math.inf)
        return float(np.ravel(metrics)[self.shared[0]]) / counts

    def _log_predict(self, metrics: np.ndarray, instances: np.ndarray) -> np.ndarray:
        instances = np.broadcast_to(np.asarray(instances, float), (np.atleast_2d(metrics).shape[0],))
        return self.ensemble.predict_all(self._inputs(metrics, instances)) * self.y_std + self.y_mean

    def log_predict_queue(self, per_instance_load: np.ndarray) -> np.ndarray | None:
        """log(target) by the queue regression at these loads per instance (None without one)."""
        queue = getattr(self, "queue", None)
        return None if queue is None else queue.log_predict(per_instance_load)

    def seen_load_range(self) -> tuple[float, float]:
        """The lowest and highest load per instance (first shared metric) trained on; (0, inf) without one."""
        loads = getattr(self, "_seen_load", None)
        if loads is None or not loads.size:
            return 0.0, math.inf
        return float(loads.min()), float(loads.max())

    def log_predict_target(self, metrics: np.ndarray, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log(target) from metrics per row: (ensemble mean, ensemble spread)."""
        all_logs = self._log_predict(metrics, instances)
        return all_logs.mean(axis=0), all_logs.std(axis=0)

    def predict_target(self, metrics: np.ndarray, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target from metrics: (prediction, log-scale ensemble spread)."""
        all_logs = self._log_predict(metrics, instances)
        return np.exp(all_logs.mean(axis=0)), all_logs.std(axis=0)

    def predict_metrics_after(self, metrics: np.ndarray, instances: np.ndarray, delta: np.ndarray) -> np.ndarray:
        metrics = np.atleast_2d(np.asarray(metrics, float))
        instances = np.broadcast_to(np.asarray(instances, float), (len(metrics),))
        delta = np.broadcast_to(np.asarray(delta, float), (len(metrics),))
        out = metrics.copy()
        for j, reg in enumerate(self.regressions):
            if reg is None:
                continue
            features = self._regression_inputs(metrics[:, j], instances, delta)
            log_value = features @ reg.coef_ + reg.intercept_
            predicted = np.sign(log_value) * np.expm1(np.abs(log_value))
            out[:, j] = np.where(delta == 0, metrics[:, j], predicted)
        return out

    def _log_parts(self, metrics, instances, delta):
        metrics = np.atleast_2d(np.asarray(metrics, float))
        instances = np.broadcast_to(np.asarray(instances, float), (len(metrics),))
        delta = np.broadcast_to(np.asarray(delta, float), (len(metrics),))
        after_metrics = self.predict_metrics_after(metrics, instances, delta)
        both = self._log_predict(np.vstack([metrics, after_metrics]), np.concatenate([instances, instances + delta]))
        now_all, after_all = both[:, :len(metrics)], both[:, len(metrics):]
        return now_all.mean(axis=0), after_all.mean(axis=0), after_all.std(axis=0)

    def predict_after_scaling(self, metrics: np.ndarray, instances, delta, current_target=None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Target after changing the instance count by delta: (prediction, log-scale ensemble spread)."""
        now_log, after_log, spread = self._log_parts(metrics, instances, delta)
        if current_target is None:
            return np.exp(after_log), spread
        observed = np.log(np.broadcast_to(np.asarray(current_target, float), now_log.shape))
        return np.exp(self._anchor(observed, now_log, after_log, self.kappa, self.beta)), spread
