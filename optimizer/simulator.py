"""Closed-loop simulator of a replicated service driven by a request-rate trace, and the policies it compares."""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path

import numpy as np

from optimizer.advisor import Advisor, AdvisorConfig
from optimizer.errors import OptimizerInputError
from optimizer.micado import MICADO_TRAINING_SAMPLES_REQUIRED, MicadoModel
from optimizer.samples import SampleSet
from optimizer.targettracking import TargetTracker, TargetTrackingConfig

METRICS = ("request_rate", "cpu_utilization")


@dataclass(frozen=True)
class ServiceModel:
    """Assumptions of the simulated service (printed by the benchmark).

    Each ready replica is an M/M/1 server: the sojourn time is exponential with rate mu - lambda,
    so its q-quantile is -ln(1 - q) / (mu - lambda). Above `max_utilization` the excess
    requests queue up (a fluid backlog drained at the spare capacity) and add backlog/capacity
    seconds of waiting. New replicas serve only after `startup_delay_s`.
    """

    service_rate: float = 10.0  # requests/s one replica serves (100 ms mean service time)
    latency_quantile: float = 0.95
    slo_s: float = 1.0
    startup_delay_s: float = 60.0
    interval_s: float = 15.0
    noise: float = 0.05  # log-normal sigma of every measurement
    max_utilization: float = 0.97
    timeout_s: float = 30.0
    # A measured shape instead of M/M/1: (utilisation, latency quantile / mean service time) points,
    # e.g. from optimizer.calibration (a real replica measured by benchmarks/calibrate_service.py).
    # Interpolated on a log scale; beyond the last point it grows like M/M/1's 1 / (1 - u).
    curve: tuple[tuple[float, float], ...] = ()

    @cached_property
    def _curve_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The curve's utilisations and log values, built once (latency() runs every simulated interval)."""
        return np.array([u for u, _ in self.curve]), np.log([v for _, v in self.curve])

    def _in_service_times(self, utilisation: float) -> float:
        if not self.curve:
            return -math.log(1 - self.latency_quantile) / (1 - utilisation)
        us, log_values = self._curve_arrays
        if utilisation <= us[0]:
            return float(math.exp(log_values[0]))
        if utilisation >= us[-1]:
            return float(math.exp(log_values[-1])) * (1 - us[-1]) / max(1 - utilisation, 1e-9)
        return float(np.exp(np.interp(utilisation, us, log_values)))

    def latency(self, rate: float, ready: int, backlog: float) -> float:
        if ready <= 0:
            return self.timeout_s
        per_replica = min(rate / ready, self.max_utilization * self.service_rate)
        queueing = self._in_service_times(per_replica / self.service_rate) / self.service_rate
        return min(self.timeout_s, queueing + backlog / (ready * self.service_rate))

    def max_rate_per_replica_at_slo(self) -> float:
        if not self.curve:
            return self.service_rate + math.log(1 - self.latency_quantile) / self.slo_s
        low, high = 0.0, self.max_utilization  # the latency grows with utilisation: bisect
        for _ in range(60):
            mid = (low + high) / 2
            if self._in_service_times(mid) / self.service_rate <= self.slo_s:
                low = mid
            else:
                high = mid
        return low * self.service_rate

    @staticmethod
    def curve_from_calibration(calibration) -> tuple[tuple[float, float], ...]:
        """The measured (utilisation, p95 / service time) points a calibration kept in its fit, in order."""
        points = sorted((p.utilisation, p.p95_over_service) for p in calibration.points
                        if p.used and p.utilisation > 0 and p.p95_over_service > 0)
        if len(points) < 3:
            raise OptimizerInputError("the calibration has fewer than 3 usable points for a latency curve")
        return tuple(points)


def read_trace(path: str | Path, start: str | None = None, end: str | None = None) -> tuple[list[str], np.ndarray]:
    """Read a `period,count` CSV, optionally keeping only rows with start <= period < end (ISO text)."""
    path = Path(path)
    if not path.is_file():
        raise OptimizerInputError(f"no such trace file: {path}")
    periods, counts = [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"period", "count"} <= set(reader.fieldnames):
            raise OptimizerInputError(f"{path}: a trace needs the columns period,count")
        for row in reader:
            if (start and row["period"] < start) or (end and row["period"] >= end):
                continue
            try:
                value = float(row["count"])
            except ValueError:
                raise OptimizerInputError(f"{path}: count {row['count']!r} at {row['period']} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise OptimizerInputError(f"{path}: count at {row['period']} must be a non-negative number")
            periods.append(row["period"])
            counts.append(value)
    if len(counts) < 10:
        raise OptimizerInputError(f"{path}: fewer than 10 trace rows in the chosen stretch")
    return periods, np.array(counts)


def rescale_trace(counts: np.ndarray, service: ServiceModel, peak_replicas: float) -> np.ndarray:
    """Requests/s per interval such that the trace's peak needs `peak_replicas` at the SLO."""
    return counts / counts.max() * peak_replicas * service.max_rate_per_replica_at_slo()


# ----------------------------------------------------------------- policies
class Policy:
    name = "policy"

    def decide(self, now: float, observation: dict, history: "History") -> int:
        raise NotImplementedError

    def maybe_retrain(self, history: "History") -> None:
        """Retraining happens between control intervals, never inside `decide`."""


@dataclass
class History:
    """What a controller has seen so far: one row per past control interval (no future rows)."""

    times: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    instances: list = field(default_factory=list)
    target: list = field(default_factory=list)

    def add(self, now, observation):
        self.times.append(now)
        self.metrics.append([observation[m] for m in METRICS])
        self.instances.append(observation["ready"])
        self.target.append(observation["latency"])

    def samples(self, last: int | None = None, metrics: tuple[str, ...] = METRICS) -> SampleSet:
        rows = slice(-last, None) if last else slice(None)
        columns = [METRICS.index(m) for m in metrics]
        values = np.array(self.metrics[rows], float).reshape(-1, len(METRICS))[:, columns]
        return SampleSet(np.array(self.times[rows], float), tuple(metrics), values,
                         np.array(self.instances[rows], float), np.array(self.target[rows], float),
                         "latency", "instances")


class StaticPolicy(Policy):
    name = "static_peak"

    def __init__(self, replicas: int):
        self.replicas = replicas

    def decide(self, now, observation, history):
        return self.replicas


class HpaPolicy(Policy):
    name = "hpa"

    def __init__(self, target_utilization: float, max_replicas: int):
        self.tracker = TargetTracker(TargetTrackingConfig(target_utilization, max_instances=max_replicas))

    def decide(self, now, observation, history):
        # Unready replicas count as idle on scale-up, as the HPA does: W * avg = ready * util.
        w = observation["replicas"]
        busy = observation["cpu_utilization"] * observation["ready"] / max(w, 1)
        return self.tracker.desired(now, w, busy)


class StratoPolicy(Policy):
    name = "strato"

    def __init__(self, advisor: Advisor, retrain_every: int, window: int, seed: int = 0,
                 metrics: tuple[str, ...] = ("request_rate",), per_instance: tuple[str, ...] = ("request_rate",),
                 reselect_alpha_every: int = 1):
        # CPU utilisation saturates at 100 % exactly when it matters, hiding how overloaded the
        # service is; the arrival rate does not, so by default the model sees only it (and W).
        self.advisor, self.retrain_every, self.window, self.seed = advisor, retrain_every, window, seed
        self.metrics, self.per_instance = metrics, per_instance
        self.train_seconds: list[float] = []
        self.advice_seconds: list[float] = []
        self.phases: dict[str, int] = {}
        # Cheaper retraining: the regularisation is searched only every `reselect_alpha_every`
        # retrainings and reused in between (kappa and beta are re-validated every time).
        self.reselect_alpha_every = max(1, reselect_alpha_every)
        self._retrains = 0
        self._alpha: float | None = None

    def maybe_retrain(self, history):
        n = len(history.times)
        if n >= self.advisor.config.min_samples and n % self.retrain_every == 0:
            started = time.perf_counter()
            reuse = self._alpha is not None and self._retrains % self.reselect_alpha_every != 0
            try:
                report = self.advisor.train(history.samples(self.window, self.metrics), seed=self.seed,
                                            per_instance=self.per_instance,
                                            alpha_grid=(self._alpha,) if reuse else None)
                self._alpha = report.alpha
                self._retrains += 1
            except OptimizerInputError:
                pass  # e.g. a target that never varied yet: keep falling back
            self.train_seconds.append(time.perf_counter() - started)

    def decide(self, now, observation, history):
        started = time.perf_counter()
        seen = {m: observation[m] for m in METRICS}  # the tracking fallback may need CPU
        advice = self.advisor.advise(now, seen, observation["replicas"],
                                     observation["latency"], n_samples=len(history.times))
        self.advice_seconds.append(time.perf_counter() - started)
        self.phases[advice.phase] = self.phases.get(advice.phase, 0) + 1
        return advice.instances


class MicadoPolicy(Policy):
    name = "micado"

    def __init__(self, low, high, max_replicas, fallback: HpaPolicy, retrain_every: int, max_delta: int = 6):
        self.low, self.high, self.max_replicas = low, high, max_replicas
        self.fallback, self.retrain_every, self.max_delta = fallback, retrain_every, max_delta
        self.model: MicadoModel | None = None

    def maybe_retrain(self, history):
        n = len(history.times)
        if n >= MICADO_TRAINING_SAMPLES_REQUIRED and n % self.retrain_every == 0:
            self.model = MicadoModel().fit(history.samples())

    def decide(self, now, observation, history):
        if self.model is None:
            return self.fallback.decide(now, observation, history)
        w = observation["replicas"]
        delta, _ = self.model.advise(np.array([observation[m] for m in METRICS]), w, observation["latency"],
                                     self.low, self.high, 1, self.max_replicas, self.max_delta, self.max_delta)
        return w + delta


# ----------------------------------------------------------------- simulation
@dataclass
class RunResult:
    policy: str
    slo_violation_pct: float
    replica_hours: float
    actions: int
    replicas: np.ndarray
    latency: np.ndarray

    def summary(self) -> dict:
        return {"slo_violation_pct": round(self.slo_violation_pct, 3), "replica_hours": round(self.replica_hours, 2),
                "actions": self.actions}


def simulate(rates: np.ndarray, policy: Policy, service: ServiceModel, initial_replicas: int,
             max_replicas: int, seed: int = 0) -> RunResult:
    """Play `rates` (requests/s, one per control interval) through the service under `policy`."""
    rng = np.random.default_rng(seed)  # same noise sequence for every policy
    noise = rng.normal(0.0, service.noise, size=(len(rates), 3))
    pending: list[float] = []  # ready times of starting replicas
    ready = initial_replicas
    backlog = 0.0
    history = History()
    replicas_log, latency_log = np.zeros(len(rates), int), np.zeros(len(rates))
    actions, violations, replica_seconds = 0, 0, 0.0
    dt = service.interval_s
    for step, rate in enumerate(rates):
        now = step * dt
        started = [t for t in pending if t <= now]
        ready += len(started)
        pending = [t for t in pending if t > now]
        capacity = ready * service.service_rate
        # Requests beyond what the replicas can serve at max utilisation wait in the backlog.
        backlog = max(0.0, backlog + (rate - service.max_utilization * capacity) * dt)
        latency = service.latency(rate, ready, backlog)
        violations += latency > service.slo_s
        provisioned = ready + len(pending)
        replica_seconds += provisioned * dt
        replicas_log[step], latency_log[step] = provisioned, latency
        observation = {
            "request_rate": max(rate, 1e-3) * math.exp(noise[step, 0]),
            "cpu_utilization": min(1.0, rate / max(capacity, 1e-9)) * math.exp(noise[step, 1]) if ready else 1.0,
            "latency": latency * math.exp(noise[step, 2]),
            "ready": max(ready, 1), "replicas": provisioned,
        }
        history.add(now, observation)
        policy.maybe_retrain(history)
        desired = int(np.clip(policy.decide(now, observation, history), 1, max_replicas))
        if desired != provisioned:
            actions += 1
        if desired > provisioned:
            pending += [now + service.startup_delay_s] * (desired - provisioned)
        elif desired < provisioned:
            remove = provisioned - desired
            # Starting replicas are cancelled first, the youngest first.
            cancel = min(remove, len(pending))
            pending = sorted(pending)[:len(pending) - cancel]
            ready -= remove - cancel
    hours = replica_seconds / 3600.0
    return RunResult(policy.name, 100.0 * violations / len(rates), hours, actions, replicas_log, latency_log)


def parse_period(text: str) -> datetime:
    return datetime.fromisoformat(text)
