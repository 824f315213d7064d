"""A faithful re-implementation of MiCADO's optimizer (micado-scale/component-optimizer), used as a baseline.

The method, as published: an MLP (one hidden layer of 4 tanh units, lbfgs, alpha 0.01) maps
the system metrics, min-max scaled to [-1, 1], to the target, also scaled to [-1, 1]; one
linear regression per metric, trained only on samples where the instance count W changed by
dW, uses m, m*W/(W+dW) and m*dW/(W+dW) to predict the metric in the next sample. Together
they predict the target for each candidate dW; the smallest action that brings the target
within its thresholds is advised. It waits for 300 samples and reports "reliability" as
in-sample correlation.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import MinMaxScaler

from optimizer.errors import OptimizerInputError
from optimizer.features import scaling_events
from optimizer.samples import SampleSet

MICADO_TRAINING_SAMPLES_REQUIRED = 300


def micado_regression_inputs(metric: np.ndarray, instances: np.ndarray, delta: np.ndarray) -> np.ndarray:
    new = instances + delta
    return np.column_stack([metric, metric * instances / new, metric * delta / new])


class MicadoModel:
    """MiCADO's neural net + per-metric linear regressions."""

    def __init__(self, random_state: int = 0):
        self.random_state = random_state
        self.reliability: float | None = None  # MiCADO's in-sample correlation, for display only

    def fit(self, samples: SampleSet) -> "MicadoModel":
        if len(samples) < 2:
            raise OptimizerInputError("MiCADO's method needs at least 2 samples")
        self.metric_names = samples.metric_names
        self.x_scaler = MinMaxScaler((-1, 1)).fit(samples.metrics)
        self.y_scaler = MinMaxScaler((-1, 1)).fit(samples.target.reshape(-1, 1))
        self.net = MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs", alpha=0.01,
                                max_iter=200, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.net.fit(self.x_scaler.transform(samples.metrics),
                         self.y_scaler.transform(samples.target.reshape(-1, 1)).ravel())
        fitted = self.predict_target(samples.metrics)
        self.reliability = float(np.corrcoef(fitted, samples.target)[0, 1]) if np.ptp(samples.target) else 0.0
        events = scaling_events(samples, window=1)
        self.regressions = []
        for j in range(len(self.metric_names)):
            if len(events.before) >= 2:
                x = micado_regression_inputs(samples.metrics[events.before, j], samples.instances[events.before],
                                             events.delta)
                self.regressions.append(LinearRegression().fit(x, events.next_metrics[:, j]))
            else:
                self.regressions.append(None)
        return self

    def predict_target(self, metrics: np.ndarray) -> np.ndarray:
        scaled = self.net.predict(self.x_scaler.transform(np.atleast_2d(metrics)))
        return self.y_scaler.inverse_transform(scaled.reshape(-1, 1)).ravel()

    def predict_metrics_after(self, metrics: np.ndarray, instances: np.ndarray, delta: np.ndarray) -> np.ndarray:
        metrics = np.atleast_2d(metrics)
        instances = np.broadcast_to(np.asarray(instances, float), (len(metrics),))
        delta = np.broadcast_to(np.asarray(delta, float), (len(metrics),))
        out = metrics.copy()
        for j, reg in enumerate(self.regressions):
            if reg is not None:
                out[:, j] = reg.predict(micado_regression_inputs(metrics[:, j], instances, delta))
        return out

    def predict_after_scaling(self, metrics: np.ndarray, instances: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return self.predict_target(self.predict_metrics_after(metrics, instances, delta))

    def advise(self, metrics: np.ndarray, instances: int, current_target: float, low: float, high: float,
               min_instances: int, max_instances: int, max_up: int, max_down: int) -> tuple[int, float]:
        """Return (delta, predicted target): the smallest action predicted within [low, high]."""
        if low <= current_target <= high:
            return 0, float(current_target)
        deltas = np.array([d for d in range(-max_down, max_up + 1)
                           if min_instances <= instances + d <= max_instances])
        predicted = self.predict_after_scaling(np.repeat(np.atleast_2d(metrics), len(deltas), 0), instances, deltas)
        inside = (predicted >= low) & (predicted <= high)
        if inside.any():
            order = np.argsort(np.abs(deltas[inside]), kind="stable")
            best = np.flatnonzero(inside)[order[0]]
        else:
            # Nothing fits: go as far as allowed in the direction that helps.
            best = int(np.argmax(deltas)) if current_target > high else int(np.argmin(deltas))
        return int(deltas[best]), float(predicted[best])
