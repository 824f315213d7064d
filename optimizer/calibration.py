"""Calibration of the simulator's latency-vs-load curve against measurements of one real replica.

The closed-loop simulator (optimizer.simulator.ServiceModel) treats every replica as an M/M/1
server: p95 latency = -ln(1 - 0.95) / (mu - rate). `fit_service_curve` fits that curve (plus an
optional constant overhead c: latency = c + -ln(0.05) / (mu - rate)) to points measured on ONE
replica, and compares the measured shape with M/M/1 in the simulator's own units: latency divided
by the mean service time at low load, against utilisation = rate / saturation throughput.
In those units M/M/1 says p95 / s = -ln(0.05) / (1 - u) whatever mu is, so the relative error at
u = 0.3 ... 0.9 says how far the simulator's shape is from the real service's.

Pure functions; the only I/O is reading and writing the result as JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from optimizer.errors import OptimizerInputError

SHAPE_UTILISATIONS = (0.3, 0.5, 0.7, 0.9)
KEEPING_UP = 0.9  # a point counts as below saturation while achieved >= this x offered


@dataclass(frozen=True)
class CalibrationPoint:
    offered_req_per_s: float
    p95_s: float
    achieved_req_per_s: float
    used: bool  # below saturation, so part of the fit
    fitted_p95_s: float
    rel_error: float  # (fitted - measured) / measured
    utilisation: float  # achieved / saturation
    p95_over_service: float  # measured p95 / mean service time at low load
    mm1_p95_over_service: float  # what M/M/1 says at that utilisation


@dataclass(frozen=True)
class ServiceCalibration:
    mu_req_per_s: float
    overhead_s: float
    quantile: float
    saturation_req_per_s: float
    mean_service_s: float
    fit_median_rel_error: float
    fit_max_rel_error: float
    mm1_shape_rel_error: dict[float, float | None]  # utilisation -> (M/M/1 - measured) / measured
    points: list[CalibrationPoint] = field(default_factory=list)

    def p95(self, rate: float) -> float:
        """The fitted curve's p95 latency (s) at `rate` requests/s (inf at or above mu)."""
        if rate >= self.mu_req_per_s:
            return math.inf
        return self.overhead_s - math.log(1 - self.quantile) / (self.mu_req_per_s - rate)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mm1_shape_rel_error"] = {f"{u:g}": e for u, e in self.mm1_shape_rel_error.items()}
        for point in data["points"]:  # JSON has no infinity: a point at or past mu is written as null
            point.update({k: None for k, v in point.items() if isinstance(v, float) and not math.isfinite(v)})
        return data


def _as_points(points: Iterable[Sequence[float]]) -> np.ndarray:
    rows = []
    for i, point in enumerate(points):
        try:
            offered, latency, achieved = (float(v) for v in point)
        except (TypeError, ValueError):
            raise OptimizerInputError(f"point {i} must be (offered_rate, p95_latency_s, achieved_rate), "
                                      f"got {point!r}") from None
        if not all(math.isfinite(v) for v in (offered, latency, achieved)):
            raise OptimizerInputError(f"point {i} has a NaN or infinite value: {point!r}")
        if latency <= 0:
            raise OptimizerInputError(f"point {i}: p95 latency must be positive, got {latency!r}")
        if offered <= 0 or achieved < 0:
            raise OptimizerInputError(f"point {i}: offered rate must be positive and achieved rate "
                                      f"non-negative, got {point!r}")
        rows.append((offered, latency, achieved))
    return np.array(rows, dtype=float).reshape(-1, 3)


def _fit(rates: np.ndarray, latency: np.ndarray, k: float, overhead: bool) -> tuple[float, float]:
    """Least squares on log latency: mu = max(rate) + exp(u) keeps mu above every rate; 0 <= c <= min latency."""
    from scipy.optimize import least_squares

    top, floor = float(rates.max()), float(latency.min())

    def model(x):
        return (x[1] if overhead else 0.0) + k / (top + np.exp(x[0]) - rates)

    def residual(x):
        return np.log(model(x)) - np.log(latency)

    guess = max(float(np.median(rates + k / latency)) - top, 1e-6 * max(top, 1.0))
    best = None
    for spare in (guess, 10 * guess, 0.1 * guess):
        for c0 in ((0.0, 0.3 * floor, 0.8 * floor) if overhead else (None,)):
            if overhead:
                x0, bounds = np.array([math.log(spare), c0]), ([-40.0, 0.0], [40.0, floor])
            else:
                x0, bounds = np.array([math.log(spare)]), ([-40.0], [40.0])
            result = least_squares(residual, x0, bounds=bounds, x_scale="jac")
            if best is None or result.cost < best.cost:
                best = result
    mu = top + math.exp(float(best.x[0]))
    return mu, (float(best.x[1]) if overhead else 0.0)


def _interp_log(x: np.ndarray, y: np.ndarray, at: float) -> float | None:
    """Measured y at `at` by linear interpolation of log y; None outside the measured range."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) == 0 or at < x[0] - 0.02 or at > x[-1] + 0.02:
        return None
    return float(np.exp(np.interp(at, x, np.log(y))))


def fit_service_curve(points: Iterable[Sequence[float]], *, mean_service_s: float | None = None,
                      saturation_req_per_s: float | None = None, overhead: bool = True,
                      quantile: float = 0.95) -> ServiceCalibration:
    """Fit p95 = c + -ln(1 - quantile) / (mu - rate) to (offered_rate, p95_s, achieved_rate) points of ONE replica.

    Points where the replica did not keep up (achieved < 90 % of offered) or, when `saturation_req_per_s`
    is given, whose offered rate is at or above it are reported but left out of the fit; `rate` is the
    achieved rate.
    `saturation_req_per_s` defaults to the largest achieved rate; `mean_service_s` (the measured mean
    response time at low load) defaults to 1 / saturation, which is what it is for a true M/M/1 server.
    """
    data = _as_points(points)
    if not 0 < quantile < 1:
        raise OptimizerInputError(f"quantile must be between 0 and 1, got {quantile!r}")
    if len(data) == 0:
        raise OptimizerInputError("no calibration points: measure at least 3 offered rates below saturation")
    saturation = float(saturation_req_per_s) if saturation_req_per_s is not None else float(data[:, 2].max())
    if not math.isfinite(saturation) or saturation <= 0:
        raise OptimizerInputError(f"saturation throughput must be a positive number, got {saturation!r}")
    service = float(mean_service_s) if mean_service_s is not None else 1.0 / saturation
    if not math.isfinite(service) or service <= 0:
        raise OptimizerInputError(f"mean service time must be a positive number, got {mean_service_s!r}")
    offered, latency, achieved = data.T
    used = achieved >= KEEPING_UP * offered
    if saturation_req_per_s is not None:  # a measured saturation: offered loads at or beyond it are out too
        used &= offered < saturation
    if used.sum() < 3:
        limit = "" if saturation_req_per_s is None else f", offered < {saturation:.4g}/s"
        raise OptimizerInputError(f"only {int(used.sum())} of {len(data)} points are below saturation "
                                  f"(achieved >= {KEEPING_UP:.0%} of offered{limit}); the fit needs at least 3")
    k = -math.log(1 - quantile)
    mu, c = _fit(achieved[used], latency[used], k, overhead)
    fitted = np.where(achieved < mu, c + k / np.maximum(mu - achieved, 1e-300), math.inf)
    rel = (fitted - latency) / latency
    utilisation = achieved / saturation
    dimensionless = latency / service
    mm1 = np.where(utilisation < 1, k / np.maximum(1 - utilisation, 1e-300), math.inf)
    shape: dict[float, float | None] = {}
    for u in SHAPE_UTILISATIONS:
        measured = _interp_log(utilisation[used], dimensionless[used], u)
        shape[u] = None if measured is None else (k / (1 - u) - measured) / measured
    rows = [CalibrationPoint(float(o), float(lat), float(a), bool(ok), float(f), float(r), float(u), float(d), float(m))
            for o, lat, a, ok, f, r, u, d, m in zip(offered, latency, achieved, used, fitted, rel, utilisation,
                                                     dimensionless, mm1)]
    used_errors = np.abs(rel[used])
    return ServiceCalibration(mu, c, quantile, saturation, service, float(np.median(used_errors)),
                              float(used_errors.max()), shape, rows)


def save_calibration(calibration: ServiceCalibration, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")
    return path


def _number(data: dict, key: str, path: Path) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptimizerInputError(f"{path}: calibration field {key!r} must be a finite number, got {value!r}")
    return float(value)


def calibration_from_json(path: str | Path) -> ServiceCalibration:
    """Read a calibration written by `save_calibration` (or `calibrate_service.py --out`)."""
    path = Path(path)
    if not path.is_file():
        raise OptimizerInputError(f"no such calibration file: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptimizerInputError(f"{path}: not a calibration JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise OptimizerInputError(f"{path}: a calibration file holds one JSON object")
    numbers = {key: _number(data, key, path) for key in
               ("mu_req_per_s", "overhead_s", "quantile", "saturation_req_per_s", "mean_service_s",
                "fit_median_rel_error", "fit_max_rel_error")}
    shape_in = data.get("mm1_shape_rel_error")
    points_in = data.get("points", [])
    if not isinstance(shape_in, dict) or not isinstance(points_in, list):
        raise OptimizerInputError(f"{path}: calibration needs an mm1_shape_rel_error object and a points list")
    try:
        shape = {float(u): (None if e is None else float(e)) for u, e in shape_in.items()}
        names = CalibrationPoint.__dataclass_fields__
        points = [CalibrationPoint(**{name: (bool(p[name]) if name == "used" else
                                                   math.inf if p[name] is None else float(p[name])) for name in names})
                  for p in points_in]
    except (TypeError, ValueError, KeyError) as exc:
        raise OptimizerInputError(f"{path}: garbled calibration points or shape errors ({exc!r})") from None
    return ServiceCalibration(**numbers, mm1_shape_rel_error=shape, points=points)
