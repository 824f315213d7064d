"""The loads of the closed-loop frontier benchmark: WorldCup98 stretches and generated shapes, with their history.

Every load is (history, evaluation): requests per row, one row = one control interval, and one
"day" = DAY_ROWS rows (a trace minute per row). A seasonal load is played after HISTORY_DAYS (or
WEEKLY_HISTORY_DAYS) days of history that the policy gets up front, as `strato optimizer history
import` gives a live one; the others start cold. Only the shape matters: the benchmark rescales
every load so that its evaluation peak needs a fixed number of replicas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

DAY_ROWS = 1440
HISTORY_DAYS = 7
WEEKLY_HISTORY_DAYS = 14
LOAD_SEED = 1998  # the generated loads are the same on every run
WC_STRETCHES = (("wc98_06-29", "1998-06-29 00:00:00", "1998-07-01 00:00:00"),
                ("wc98_07-03", "1998-07-03 00:00:00", "1998-07-05 00:00:00"),
                ("wc98_07-12", "1998-07-12 00:00:00", "1998-07-14 00:00:00"))
SYNTHETIC = ("diurnal", "flash_crowd", "step", "weekly", "random_walk", "sawtooth", "bursty", "drifting_diurnal")


@dataclass(frozen=True)
class Load:
    name: str
    description: str
    history: np.ndarray      # rows before the evaluation (may be empty)
    evaluation: np.ndarray

    @property
    def history_days(self) -> float:
        return round(len(self.history) / DAY_ROWS, 2)


def _noisy(shape: np.ndarray, rng, sigma: float = 0.05) -> np.ndarray:
    return np.clip(shape * np.exp(rng.normal(0, sigma, len(shape))), 1e-3, None) * 1000.0


def _diurnal_shape(t: np.ndarray, amplitude: np.ndarray | float = 1.0) -> np.ndarray:
    """A night trough and an afternoon peak with a secondary bump; amplitude scales the day's swing."""
    phase = 2 * math.pi * t / DAY_ROWS
    return 0.55 + amplitude * (-0.45 * np.cos(phase) + 0.08 * np.sin(2 * phase + 0.7))


def _split(series: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
    return series[:days * DAY_ROWS], series[days * DAY_ROWS:]


def diurnal(rng) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange((HISTORY_DAYS + 1) * DAY_ROWS)
    return _split(_noisy(_diurnal_shape(t), rng), HISTORY_DAYS)


def drifting_diurnal(rng) -> tuple[np.ndarray, np.ndarray]:
    """The diurnal shape whose swing drifts from day to day (a random walk of +-15 % a day)."""
    days = HISTORY_DAYS + 1
    amplitude = np.exp(np.cumsum(rng.normal(0, 0.15, days)))
    amplitude = np.clip(amplitude / amplitude.mean(), 0.4, 1.2)
    t = np.arange(days * DAY_ROWS)
    return _split(_noisy(_diurnal_shape(t, np.repeat(amplitude, DAY_ROWS)), rng), HISTORY_DAYS)


def flash_crowd(rng) -> tuple[np.ndarray, np.ndarray]:
    """A quiet diurnal base hit, on the evaluation day, by three crowds: 2-4 row surges decaying over ~30 rows."""
    days = HISTORY_DAYS + 1
    t = np.arange(days * DAY_ROWS)
    shape = 0.25 - 0.12 * np.cos(2 * math.pi * t / DAY_ROWS)
    base = HISTORY_DAYS * DAY_ROWS
    for start, height in ((300, 0.9), (780, 0.6), (1100, 0.75)):
        ramp = rng.integers(2, 5)
        at = t - base - start
        rise = np.clip(at / ramp, 0, 1)
        decay = np.exp(-np.clip(at - ramp, 0, None) / rng.uniform(20, 40))
        shape = shape + height * np.where(at >= 0, rise * decay, 0.0)
    return _split(_noisy(shape, rng), HISTORY_DAYS)


def weekly(rng) -> tuple[np.ndarray, np.ndarray]:
    """Weekdays busy, weekends at under half with a later peak, a slow noise on top; the evaluation day is a Monday."""
    days = WEEKLY_HISTORY_DAYS + 1
    t = np.arange(days * DAY_ROWS)
    weekday = (t // DAY_ROWS) % 7 < 5
    weekend = 0.25 - 0.12 * np.cos(2 * math.pi * (t - 120) / DAY_ROWS)
    slow = np.exp(np.convolve(rng.normal(0, 0.02, len(t)), np.ones(60) / 60 ** 0.5, mode="same"))
    return _split(_noisy(np.where(weekday, _diurnal_shape(t), weekend) * slow, rng), WEEKLY_HISTORY_DAYS)


def step(rng) -> tuple[np.ndarray, np.ndarray]:
    """Abrupt level changes held for hours (a batch job, a failover, a launch)."""
    t = np.arange(DAY_ROWS)
    levels = np.array((0.15, 0.7, 0.35, 1.0, 0.5, 0.1, 0.8, 0.3))
    return np.array([]), _noisy(levels[np.minimum(t * len(levels) // DAY_ROWS, len(levels) - 1)], rng)


def random_walk(rng) -> tuple[np.ndarray, np.ndarray]:
    """A log random walk (2 % a row), kept within a 20x range."""
    steps = rng.normal(0, 0.02, DAY_ROWS)
    level = np.log(0.4) + np.cumsum(steps)
    level = np.clip(level, np.log(0.05), np.log(1.0))
    return np.array([]), _noisy(np.exp(level), rng, 0.03)


def sawtooth(rng) -> tuple[np.ndarray, np.ndarray]:
    """Batch work: the load climbs for 100-160 rows, then drops at once to the base."""
    rows, out = 0, []
    while rows < DAY_ROWS:
        length = int(rng.integers(100, 161))
        out.append(np.linspace(0.1, rng.uniform(0.7, 1.0), length))
        rows += length
    return np.array([]), _noisy(np.concatenate(out)[:DAY_ROWS], rng)


def bursty(rng) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed on/off bursts: Pareto (shape 1.5) heights and durations over a low base."""
    shape, row = np.full(DAY_ROWS, 0.15), 0
    while row < DAY_ROWS:
        row += int(rng.exponential(60))                         # quiet gap
        length = int(min(240, 5 * (1 + rng.pareto(1.5))))
        height = min(1.0, 0.15 * (1 + rng.pareto(1.5)))
        shape[row:row + length] += height
        row += length
    return np.array([]), _noisy(shape, rng)


GENERATORS = {"diurnal": diurnal, "flash_crowd": flash_crowd, "step": step, "weekly": weekly,
              "random_walk": random_walk, "sawtooth": sawtooth, "bursty": bursty, "drifting_diurnal": drifting_diurnal}


def synthetic(kind: str) -> Load:
    history, evaluation = GENERATORS[kind](np.random.default_rng(LOAD_SEED))
    days = len(history) // DAY_ROWS
    return Load(kind, f"synthetic {kind.replace('_', ' ')} ({len(evaluation)} rows"
                      + (f", after {days} days of history)" if days else ", no history)"), history, evaluation)


def worldcup(trace, name: str, start: str, end: str, read_trace) -> Load:
    """A WorldCup98 stretch with the HISTORY_DAYS days before it as history."""
    first = (datetime.fromisoformat(start) - timedelta(days=HISTORY_DAYS)).isoformat(sep=" ")
    _, history = read_trace(trace, first, start)
    _, evaluation = read_trace(trace, start, end)
    return Load(name, f"WorldCup98 {start[:10]}..{end[:10]} ({len(evaluation)} rows, after {HISTORY_DAYS} days of "
                      "history)", history, evaluation)
