"""Closed-loop simulator of a replicated service driven by a request-rate trace, and the policies it compares."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path

import numpy as np

from optimizer.errors import OptimizerInputError
from optimizer.predictive import PredictiveAdvisor
from optimizer.micado import MICADO_TRAINING_SAMPLES_REQUIRED, MicadoModel
from optimizer.samples import SampleSet
from policies.base import MetricSpec, Observation, ScalingDecision, ScalingPolicy
from policies.optimizer import OptimizerPolicy
from policies.target_tracking import TargetTrackingConfig, TargetTrackingPolicy

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
# The simulator drives the same policy objects as the live maintain loop (policies/): target
# tracking and the optimizer policy through Observation / decide / learn. Only the baselines
# that never run live (static provisioning, MiCADO's published method) are defined here.
@dataclass
class History:
    """What a controller has seen so far: one row per past control interval (no future rows)."""

    times: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    instances: list = field(default_factory=list)
    target: list = field(default_factory=list)

    def add(self, observation: Observation):
        self.times.append(observation.now)
        self.metrics.append([observation.metrics[m] for m in METRICS])
        self.instances.append(observation.ready)
        self.target.append(observation.target)

    def samples(self, last: int | None = None, metrics: tuple[str, ...] = METRICS) -> SampleSet:
        rows = slice(-last, None) if last else slice(None)
        columns = [METRICS.index(m) for m in metrics]
        values = np.array(self.metrics[rows], float).reshape(-1, len(METRICS))[:, columns]
        return SampleSet(np.array(self.times[rows], float), tuple(metrics), values,
                         np.array(self.instances[rows], float), np.array(self.target[rows], float),
                         "latency", "instances")


class StaticPolicy(ScalingPolicy):
    name = "static_peak"

    def __init__(self, replicas: int):
        self.replicas = replicas

    def decide(self, observation):
        return ScalingDecision(self.replicas, f"static: {self.replicas} replicas", self.name)


class HpaPolicy(TargetTrackingPolicy):
    """The HPA on CPU utilisation: policies.target_tracking with starting replicas counted as idle."""

    name = "hpa"

    def __init__(self, target_utilization: float, max_replicas: int):
        # Unready replicas count as idle on scale-up, as the HPA does: W * avg = ready * util.
        super().__init__(MetricSpec("cpu_utilization", "cpu_utilization", "mean"),
                         TargetTrackingConfig(target_utilization, max_instances=max_replicas), unready_as_idle=True,
                         label=self.name)


class StratoPolicy(OptimizerPolicy):
    """policies.optimizer.OptimizerPolicy as the simulator runs it: retrained inline (deterministic)."""

    name = "strato"

    def __init__(self, advisor: PredictiveAdvisor, retrain_every: int, window: int, seed: int = 0,
                 metrics: tuple[str, ...] = ("request_rate",), per_instance: tuple[str, ...] = ("request_rate",),
                 reselect_alpha_every: int = 1):
        # CPU utilisation saturates at 100 % exactly when it matters, hiding how overloaded the
        # service is; the arrival rate does not, so by default the model sees only it (and W).
        # Cheaper retraining: the regularisation is searched only every `reselect_alpha_every`
        # retrainings and reused in between (kappa and beta are re-validated every time).
        super().__init__(advisor, tuple(MetricSpec(m, m, "sum") for m in metrics),
                         MetricSpec("latency", "latency", "quantile", 0.95),
                         retrain_every=retrain_every, window=window, background=False, seed=seed,
                         per_instance=per_instance, reselect_alpha_every=reselect_alpha_every)


class OraclePolicy(ScalingPolicy):
    """The clairvoyant limit: knows the coming load and provisions, one start-up delay ahead, what the
    coming peak needs at utilisation `utilisation` (of the replicas' service rate)."""

    name = "oracle"

    def __init__(self, rates: np.ndarray, service: "ServiceModel", utilisation: float, max_replicas: int):
        self.rates, self.service, self.utilisation, self.max_replicas = rates, service, utilisation, max_replicas
        self.ahead = max(1, math.ceil(service.startup_delay_s / service.interval_s - 1e-9))

    def decide(self, observation):
        step = int(round(observation.now / self.service.interval_s))
        # A scale-up made now serves from step + ahead; a scale-down acts from the next step and cannot be
        # undone before step + 1 + ahead: provision for the peak of steps step + 1 .. step + ahead.
        window = self.rates[step + 1:step + 1 + self.ahead]
        peak = float(window.max()) if window.size else float(self.rates[-1])
        need = math.ceil(peak / (self.utilisation * self.service.service_rate) - 1e-9)
        return ScalingDecision(int(np.clip(need, 1, self.max_replicas)), f"oracle at u={self.utilisation:g}", self.name)


class MicadoPolicy(ScalingPolicy):
    name = "micado"

    def __init__(self, low, high, max_replicas, fallback: HpaPolicy, retrain_every: int, max_delta: int = 6):
        self.low, self.high, self.max_replicas = low, high, max_replicas
        self.fallback, self.retrain_every, self.max_delta = fallback, retrain_every, max_delta
        self.model: MicadoModel | None = None
        self.history = History()

    def learn(self, observation):
        self.history.add(observation)
        n = len(self.history.times)
        if n >= MICADO_TRAINING_SAMPLES_REQUIRED and n % self.retrain_every == 0:
            self.model = MicadoModel().fit(self.history.samples())

    def decide(self, observation):
        if self.model is None:
            decision = self.fallback.decide(observation)
            return ScalingDecision(decision.desired, f"micado, fallback: {decision.reason}", self.name)
        w = observation.instances
        delta, _ = self.model.advise(np.array([observation.metrics[m] for m in METRICS]), w, observation.target,
                                     self.low, self.high, 1, self.max_replicas, self.max_delta, self.max_delta)
        return ScalingDecision(w + delta, f"micado model: {delta:+d}", self.name)


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


def simulate(rates: np.ndarray, policy: ScalingPolicy, service: ServiceModel, initial_replicas: int,
             max_replicas: int, seed: int = 0) -> RunResult:
    """Play `rates` (requests/s, one per control interval) through the service under `policy`.

    Each interval the policy gets one Observation, as from the live loop: `learn` first (the
    interval's sample, retraining inline when the policy does), then `decide`."""
    rng = np.random.default_rng(seed)  # same noise sequence for every policy
    noise = rng.normal(0.0, service.noise, size=(len(rates), 3))
    pending: list[float] = []  # ready times of starting replicas
    ready = initial_replicas
    backlog = 0.0
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
        observation = Observation(
            now=now, node="service", instances=provisioned, ready=max(ready, 1),
            metrics={"request_rate": max(rate, 1e-3) * math.exp(noise[step, 0]),
                     "cpu_utilization": (min(1.0, rate / max(capacity, 1e-9)) * math.exp(noise[step, 1])
                                         if ready else 1.0)},
            target=latency * math.exp(noise[step, 2]), min_instances=1, max_instances=max_replicas)
        policy.learn(observation)
        desired = int(np.clip(policy.decide(observation).desired, 1, max_replicas))
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
