"""Offered-load forecasts as quantiles: seasonal and short-term methods, the best chosen online by pinball loss.

A node's load (request rate, or whatever metric its policy names) is kept as one value per control
interval. Every interval each method forecasts the next `horizon` values on a log scale; when a
value arrives, the forecasts made for it become residuals, per method and per step ahead. The
quantiles of a forecast are its point forecast plus the empirical quantiles of that method's recent
residuals at that step, so they are as wide as the method has recently been wrong and need no
setting. The method used is the one with the lowest recent pinball loss.

Methods (each only once the history covers what it needs):
- `level`: the mean of the last few values (the short-term fallback while history is short);
- `last`: the latest value (what a load that jumps is best forecast by);
- `trend`: a least-squares log-linear trend of the recent values;
- `daily`, `weekly`: a seasonal profile (the median of the same phase in past cycles, smoothed
  over neighbouring steps), shifted to the current level measured over the recent steps;
- `seasonal_naive`: the value one season ago (the reference the benchmark compares against).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Quantile levels of every forecast, and the probability mass each one stands for when a
# forecast is used as a discrete distribution (midpoints between levels; the tails to 0 and 1).
LEVELS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
_EDGES = np.concatenate([[0.0], (np.array(LEVELS[:-1]) + np.array(LEVELS[1:])) / 2, [1.0]])
LEVEL_WEIGHTS = np.diff(_EDGES)
DAY_S, WEEK_S = 86400.0, 7 * 86400.0
RESIDUAL_WINDOW = 240        # residuals kept per method and step ahead (the quantiles' memory)
MIN_RESIDUALS = 20           # below this, a method's quantiles come from the level method's spread
LEVEL_STEPS = 3              # values averaged into the current level (damps measurement noise)
TREND_STEPS = 8
SEASON_CYCLES = 4            # past cycles in a seasonal profile (at most)
MIN_CYCLES = 2               # ... and at least
SMOOTH_HALF = 2              # a seasonal profile is smoothed over 2 x SMOOTH_HALF + 1 steps
OFFSET_STEPS = 8             # steps over which a seasonal profile is shifted to the current level
BACKTEST_STEPS = RESIDUAL_WINDOW + 64  # history replayed through the methods when history is given at once
FLOOR = 1e-6


@dataclass(frozen=True)
class Forecast:
    """Quantiles of the load 1..horizon steps ahead: values[h - 1, k] is quantile LEVELS[k] at step h."""

    method: str
    interval_s: float
    values: np.ndarray       # (horizon, len(LEVELS))
    history: int             # values the forecast was made from

    @property
    def horizon(self) -> int:
        return int(self.values.shape[0])

    def quantile(self, level: float) -> np.ndarray:
        """The forecast at one level per step (interpolated between the kept levels)."""
        return np.array([np.interp(level, LEVELS, row) for row in self.values])

    def as_dict(self, levels: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)) -> dict:
        """JSON-safe: the method, the step times and the chosen levels per step (for events and plots)."""
        return {"method": self.method, "history": self.history, "quantiles": list(levels),
                "horizon_s": [round(self.interval_s * (h + 1), 3) for h in range(self.horizon)],
                "values": [[round(float(v), 6) for v in np.interp(levels, LEVELS, row)] for row in self.values]}


def pinball_loss(quantiles: np.ndarray, actual: np.ndarray, levels=LEVELS) -> float:
    """Mean pinball (quantile) loss of quantile forecasts (n, len(levels)) against the actual values (n,)."""
    quantiles, actual = np.asarray(quantiles, float), np.asarray(actual, float)[:, None]
    tau = np.asarray(levels, float)[None, :]
    error = actual - quantiles
    return float(np.mean(np.maximum(tau * error, (tau - 1) * error)))


def on_grid(rows, interval_s: float, limit: int | None = None) -> np.ndarray:
    """Time-stamped values (any spacing, gaps) as one value per interval up to the last one: what the forecaster
    keeps. Gaps are bridged linearly; at most `limit` values (the most recent)."""
    rows = sorted((float(t), float(v)) for t, v in rows if math.isfinite(float(v)))
    if not rows:
        return np.array([])
    times, values = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    first = times[0] if limit is None else max(times[0], times[-1] - (limit - 1) * interval_s)
    grid = np.arange(times[-1], first - 1e-9, -interval_s)[::-1]
    return np.interp(grid, times, values)


def season_steps_for(interval_s: float) -> tuple[int, ...]:
    """The daily and weekly seasons in control intervals (the loop's calendar)."""
    return (int(round(DAY_S / interval_s)), int(round(WEEK_S / interval_s)))


class _Residuals:
    """The last RESIDUAL_WINDOW log errors of one method, per step ahead (a ring per step)."""

    def __init__(self, horizon: int, judged_from: int = 1):
        self.judged = slice(min(max(1, judged_from), horizon) - 1, horizon)
        self.errors = np.zeros((horizon, RESIDUAL_WINDOW))
        self.count = np.zeros(horizon, int)

    def add(self, step: int, error: float) -> None:
        self.errors[step, self.count[step] % RESIDUAL_WINDOW] = error
        self.count[step] += 1

    def _recent(self) -> np.ndarray | None:
        """(horizon, m) the last errors of every step, m the same for all (None while too few)."""
        m = min(int(self.count.min()), RESIDUAL_WINDOW)
        return None if m < MIN_RESIDUALS else self.errors[:, :m]

    def offsets(self) -> np.ndarray | None:
        """(horizon, len(LEVELS)) error quantiles, or None while any step has too few errors."""
        recent = self._recent()
        return None if recent is None else np.quantile(recent, LEVELS, axis=1).T

    def loss(self) -> float:
        """The pinball loss, over the judged steps ahead, of the quantile forecasts this method makes (its point plus
        its own error quantiles): the spread of its errors, not their bias, which the quantiles already correct."""
        recent = self._recent()
        if recent is None:
            return math.inf
        judged = recent[self.judged]
        offsets = np.quantile(judged, LEVELS, axis=1).T                     # (steps, levels)
        error = judged[:, :, None] - offsets[:, None, :]
        tau = np.asarray(LEVELS)[None, None, :]
        return float(np.mean(np.maximum(tau * error, (tau - 1) * error)))


class LoadForecaster:
    """Quantile forecasts of one load series, one value per control interval; see the module's doc."""

    def __init__(self, interval_s: float, horizon: int, season_steps: tuple[int, ...] | None = None,
                 methods: tuple[str, ...] | None = None, judged_from: int = 1):
        # judged_from: the first step ahead whose errors choose the method (the scaling decision acts from the
        # start-up delay on, so that is where the forecast must be good).
        self.interval_s, self.horizon = float(interval_s), max(1, int(horizon))
        seasons = season_steps_for(interval_s) if season_steps is None else tuple(int(s) for s in season_steps)
        self.seasons = {name: steps for name, steps in zip(("daily", "weekly"), seasons) if steps > self.horizon}
        self.methods = tuple(methods or ("level", "last", "trend", *self.seasons))
        self._log = np.zeros(1024)
        self._n = 0
        self._pending: dict[int, dict[str, np.ndarray]] = {}  # step index -> forecasts made at it
        self._residuals = {m: _Residuals(self.horizon, judged_from) for m in self.methods}
        self._cached: tuple[int, str | None, Forecast | None] | None = None
        self._surprised_until = -1   # step index until which the latest value is the forecast
        self._surprised_at = -1      # step index of the last surprise

    def __len__(self) -> int:
        return self._n


    # ----- history -----
    def extend(self, values) -> None:
        """Append past values, oldest first (history given at once: only the last stretch is backtested)."""
        values = np.asarray(values, float)
        quiet = max(0, len(values) - BACKTEST_STEPS)
        for value in values[:quiet]:
            self._append(value)
        for value in values[quiet:]:
            self.add(value)

    def add(self, value: float) -> None:
        """The latest value: score the forecasts made for it, then forecast from it."""
        self._append(value)
        t = self._n - 1
        self._check_surprise(t)
        for step in range(1, self.horizon + 1):
            made = self._pending.get(t - step)
            if made is not None:
                for method, points in made.items():
                    self._residuals[method].add(step - 1, self._log[t] - points[step - 1])
        self._pending.pop(t - self.horizon, None)
        self._pending[t] = {m: p for m in self.methods if (p := self._point(m)) is not None}

    def _check_surprise(self, t: int) -> None:
        """A one-step error beyond every one of the usual method's recent errors is a change of regime (a surge, a
        drop): for the next horizon the latest value is the forecast instead."""
        made = self._pending.get(t - 1)
        usual = self._long_best(t - 1)
        if made is None or usual not in made:
            return
        recent = self._residuals[usual]._recent()
        if recent is None:
            return
        low, high = recent[0].min(), recent[0].max()
        error = self._log[t] - made[usual][0]
        if not low <= error <= high:
            self._surprised_until, self._surprised_at = t + self.horizon, t

    def _append(self, value: float) -> None:
        if self._n == len(self._log):
            self._log = np.concatenate([self._log, np.zeros(len(self._log))])
        self._log[self._n] = math.log(max(float(value), FLOOR)) if math.isfinite(value) else (
            self._log[self._n - 1] if self._n else math.log(FLOOR))
        self._n += 1

    # ----- methods: log-scale point forecasts for steps 1..horizon, None while history is too short -----
    def _point(self, method: str) -> np.ndarray | None:
        n, y, steps = self._n, self._log, np.arange(1, self.horizon + 1)
        if n == 0:
            return None
        # After a change of regime (a surprise), the short-term methods look only at the values since.
        since = n - 1 - self._surprised_at if self._surprised_at >= 0 else n
        if method == "level":
            return np.full(self.horizon, y[max(0, n - min(LEVEL_STEPS, max(1, since))):n].mean())
        if method == "last":
            return np.full(self.horizon, y[n - 1])
        if method == "trend":
            width = min(TREND_STEPS, since)
            if n < TREND_STEPS or width < 3:
                return None if n < TREND_STEPS else np.full(self.horizon, y[n - 1])
            recent = y[n - width:n]
            slope, intercept = np.polyfit(np.arange(width, dtype=float), recent, 1)
            return intercept + slope * (width - 1 + steps)
        if method == "seasonal_naive":
            period = min(self.seasons.values(), default=None)
            if period is None or n < period:
                return np.full(self.horizon, y[n - 1])  # without a season: the last value
            return y[n - period + steps - 1]
        return self._seasonal(self.seasons.get(method))

    def _seasonal(self, period: int | None) -> np.ndarray | None:
        n, y = self._n, self._log
        # A profile needs MIN_CYCLES past cycles: from one it would be a copy of that cycle's noise.
        if period is None or n < MIN_CYCLES * period + OFFSET_STEPS + SMOOTH_HALF:
            return None
        cycles = min(SEASON_CYCLES, (n - OFFSET_STEPS - SMOOTH_HALF) // period)
        # Each cycle's values from OFFSET_STEPS back to horizon ahead (shifted back by whole cycles),
        # smoothed over neighbouring steps; the profile is their median over the cycles.
        first, last = n - OFFSET_STEPS, n + self.horizon
        kernel = np.ones(2 * SMOOTH_HALF + 1) / (2 * SMOOTH_HALF + 1)
        rows = []
        for k in range(1, cycles + 1):
            lo, hi = first - k * period - SMOOTH_HALF, last - k * period + SMOOTH_HALF
            rows.append(np.convolve(y[lo:hi], kernel, mode="valid"))
        profile = np.median(np.array(rows), axis=0)
        offset = float(np.mean(y[first:n] - profile[:OFFSET_STEPS]))
        return profile[OFFSET_STEPS:] + offset

    # ----- forecasts -----
    def _usable(self, at: int | None = None) -> list[str]:
        made = self._pending.get(self._n - 1 if at is None else at, {})
        return [m for m in self.methods if m in made]

    def _long_best(self, at: int | None = None) -> str | None:
        scored = {m: self._residuals[m].loss() for m in self._usable(at)}
        finite = {m: s for m, s in scored.items() if math.isfinite(s)}
        return min(finite, key=finite.get) if finite else None

    def best_method(self) -> str:
        """The method with the lowest error over the residual window; for a horizon after a surprise, the latest
        value (the level method until others have a record of MIN_RESIDUALS)."""
        usable = self._usable()
        if self._n - 1 <= self._surprised_until and "last" in usable:
            return "last"
        return self._long_best() or (usable[0] if usable else self.methods[0])

    def forecast(self, method: str | None = None) -> Forecast | None:
        """Quantiles of the next `horizon` values (None before the first value)."""
        if self._n == 0:
            return None
        if self._cached is not None and self._cached[:2] == (self._n, method):
            return self._cached[2]
        made = self._forecast(method)
        self._cached = (self._n, method, made)
        return made

    def _forecast(self, method: str | None) -> Forecast | None:
        method = method or self.best_method()
        point = self._pending.get(self._n - 1, {}).get(method)
        if point is None:
            return None
        offsets = self._residuals[method].offsets()
        if offsets is None:
            offsets = self._cold_offsets()
        values = np.exp(point[:, None] + offsets)
        return Forecast(method, self.interval_s, np.maximum.accumulate(values, axis=1), self._n)

    def _cold_offsets(self) -> np.ndarray:
        """While a method has too few errors: the spread of the history's own changes over h steps."""
        n, y = self._n, self._log[:self._n]
        out = np.zeros((self.horizon, len(LEVELS)))
        for h in range(1, self.horizon + 1):
            changes = y[h:] - y[:-h] if n > h + 2 else np.array([-0.5, 0.0, 0.5]) * math.sqrt(h)
            out[h - 1] = np.quantile(changes, LEVELS)
        return out
