"""The optimizer policy: Strato's ML advisor picks the count; it learns from every pass and falls back to target tracking.

Each `learn(observation)` keeps one sample (model input metrics, ready instances, measured
target) in memory and hands it to a pluggable sink (the state DB's SampleStore live); every
`retrain_every` samples it retrains on the last `window` ones, in a background thread off the
decision path (or inline when `background=False`, as the deterministic simulator wants).
`decide` applies the advisor's advice; the reason says whether the model or the target-tracking
fallback decided. numpy and scikit-learn are imported here only, never by `policies/__init__`.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from optimizer.errors import OptimizerInputError
from optimizer.forecast import on_grid
from optimizer.predictive import DEFAULT_VIOLATION_PRICE, PredictiveAdvisor, PredictiveConfig
from optimizer.samples import SampleSet, SampleStore, StoreLoadHistory
from policies.base import MetricSpec, Observation, PolicyError, ScalingDecision, ScalingPolicy


@dataclass(frozen=True)
class Sample:
    timestamp: float
    metrics: tuple[float, ...]  # in the policy's input metric order
    instances: float            # ready instances: the ones that served the load
    target: float


DEFAULT_INTERVAL_S = 15.0   # the loop's default interval: the policy's `period` when it sets none
HISTORY_LIMIT = 5 * 7 * 24 * 240   # load values the forecaster takes back at a start (5 weeks at 15 s)


class SampleSink(Protocol):
    """Where samples go so that they outlive the process (and come back after a restart)."""

    def add(self, sample: Sample) -> None: ...

    def recent(self, limit: int) -> list[Sample]: ...


class StoreSink:
    """Samples of one (infrastructure, node) in the state DB (an open one, or a path), through SampleStore."""

    def __init__(self, path, infrastructure: str, node: str, metric_names: tuple[str, ...],
                 target_name: str = "target"):
        self.path, self.infrastructure, self.node = path, infrastructure, node
        self.metric_names, self.target_name = tuple(metric_names), target_name
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        rows = SampleSet(np.array([sample.timestamp]), self.metric_names, np.array([sample.metrics], float),
                         np.array([sample.instances], float), np.array([sample.target], float), self.target_name)
        with self._lock, SampleStore(self.path) as store:
            store.add(self.infrastructure, self.node, rows)

    def recent(self, limit: int) -> list[Sample]:
        with self._lock, SampleStore(self.path) as store:
            try:
                stored = store.load(self.infrastructure, self.node)
            except OptimizerInputError:
                return []
        if stored.metric_names != self.metric_names:
            return []  # another metric set was stored before: start afresh rather than mix
        stored = stored.slice(slice(-limit, None))
        return [Sample(float(t), tuple(float(v) for v in m), float(w), float(y))
                for t, m, w, y in zip(stored.timestamps, stored.metrics, stored.instances, stored.target)]


class LoadHistory(Protocol):
    """Where a node's offered-load history lives (e.g. imported from Prometheus): (timestamp, value) rows."""

    def recent(self, limit: int) -> list[tuple[float, float]]: ...


class OptimizerPolicy(ScalingPolicy):
    """Advice from `optimizer.predictive.PredictiveAdvisor` (forecast + capacity model + MPC) as a ScalingPolicy."""

    name = "optimizer"

    def __init__(self, config: PredictiveConfig | PredictiveAdvisor, inputs: tuple[MetricSpec, ...],
                 target: MetricSpec | None = None, *,
                 sink: SampleSink | None = None, retrain_every: int = 40, window: int = 2000,
                 background: bool = True, seed: int = 0, per_instance: tuple[str, ...] | None = None,
                 reselect_alpha_every: int = 1, extra_metrics: tuple[MetricSpec, ...] = (), node: str = "",
                 history: LoadHistory | None = None):
        if not inputs:
            raise PolicyError("the optimizer policy needs at least one input metric")
        if retrain_every < 1 or window < 10:
            raise PolicyError("the optimizer policy needs retrain_every >= 1 and a window of >= 10 samples")
        self.advisor = config if isinstance(config, PredictiveAdvisor) else PredictiveAdvisor(config)
        config = self.advisor.config
        self.inputs, self.target, self.extra_metrics = tuple(inputs), target, tuple(extra_metrics)
        self.input_names = tuple(m.name for m in self.inputs)
        # The inputs proportional to the offered load are shared out over the instances by the model.
        self.per_instance = self.input_names[:1] if per_instance is None else tuple(per_instance)
        self.sink, self.retrain_every, self.window = sink, int(retrain_every), int(window)
        self.history = history
        self.background, self.seed = background, seed
        self.reselect_alpha_every = max(1, reselect_alpha_every)
        self.min_instances, self.max_instances = config.min_instances, config.max_instances
        self.node = node
        self._samples: deque[Sample] = deque(maxlen=self.window)
        self._n = 0  # samples seen (the advisor's min_samples counts these, not the window)
        self._retrains = 0
        self._alpha: float | None = None
        self._training: threading.Thread | None = None
        self._warm = sink is None and history is None
        self.train_seconds: deque[float] = deque(maxlen=10000)
        self.advice_seconds: deque[float] = deque(maxlen=100000)
        self.phases: dict[str, int] = {}
        self.last_error: str | None = None  # the last retraining's failure, if any (reported, not raised)

    # ----- what the loop must collect -----
    def metrics_needed(self) -> list[MetricSpec]:
        out = list(self.inputs) + [m for m in self.extra_metrics if m not in self.inputs]
        if self.target is not None and self.target not in out:
            out.append(self.target)
        return out

    def needs_target(self) -> bool:
        return True

    def _target_of(self, o: Observation) -> float | None:
        value = o.target
        if value is None and self.target is not None:
            value = o.metrics.get(self.target.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            return None
        return float(value)

    # ----- learning, off the decision path -----
    def _warm_start(self) -> None:
        """After a restart, take the stored samples back from the sink and the load history (once): the
        forecaster continues where it was, and a model is retrained at once when there are enough samples."""
        if self._warm:
            return
        self._warm = True
        stored, rows = [], []
        try:
            stored = self.sink.recent(self.window) if self.sink is not None else []
            rows = self.history.recent(HISTORY_LIMIT) if self.history is not None else []
        except Exception as error:  # noqa: BLE001 - an unreadable store must not stop the loop
            self.last_error = f"could not read stored samples or history: {error}"
        self._samples.extend(stored)
        self._n = max(self._n, len(stored))
        loads = dict(rows)   # every pass's load (imported or live), and the samples' where a pass's is missing
        for sample in stored:
            loads.setdefault(sample.timestamp, sample.metrics[0])
        loads = list(loads.items())
        interval = self.advisor.config.interval_s
        self.advisor.load_history(on_grid(loads, interval, HISTORY_LIMIT))
        if loads:
            self.advisor.mark_seen(max(ts for ts, _ in loads))
        if self._n >= self.advisor.config.min_samples:
            self._retrain()

    def learn(self, observation: Observation) -> None:
        self._warm_start()
        self.advisor.observe(observation.now, observation.metrics)
        self._keep_load(observation)
        target = self._target_of(observation)
        values = [observation.metrics.get(name) for name in self.input_names]
        if target is None or any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return  # nothing measurable this pass (e.g. no traffic yet): no sample
        if self._samples and observation.now <= self._samples[-1].timestamp:
            return  # the same pass offered twice
        sample = Sample(float(observation.now), tuple(float(v) for v in values), float(max(observation.ready, 1)),
                        target)
        self._samples.append(sample)
        self._n += 1
        if self.sink is not None:
            try:
                self.sink.add(sample)
            except Exception as error:  # noqa: BLE001 - storage trouble is reported, the loop goes on
                self.last_error = f"could not store the sample: {error}"
        if self._n >= self.advisor.config.min_samples and self._n % self.retrain_every == 0:
            self._retrain()

    def _keep_load(self, observation: Observation) -> None:
        """This pass's offered load into the history store (the forecaster's memory across restarts)."""
        value = observation.metrics.get(self.input_names[0])
        if self.history is None or not hasattr(self.history, "add") or not isinstance(value, (int, float)):
            return
        try:
            self.history.add(float(observation.now), float(value))
        except Exception as error:  # noqa: BLE001 - storage trouble is reported, the loop goes on
            self.last_error = f"could not store the load history: {error}"

    def training_set(self) -> SampleSet:
        rows = list(self._samples)
        return SampleSet(np.array([s.timestamp for s in rows], float), self.input_names,
                         np.array([s.metrics for s in rows], float).reshape(len(rows), len(self.input_names)),
                         np.array([s.instances for s in rows], float), np.array([s.target for s in rows], float),
                         self.target.name if self.target is not None else "target", "instances")

    def _retrain(self) -> None:
        if self._training is not None and self._training.is_alive():
            return  # the previous retraining is still running: skip this one
        samples = self.training_set()
        reuse = self._alpha is not None and self._retrains % self.reselect_alpha_every != 0
        grid = (self._alpha,) if reuse else None
        if self.background:
            self._training = threading.Thread(target=self._train, args=(samples, grid), daemon=True,
                                              name=f"strato-optimizer-{self.node or 'train'}")
            self._training.start()
        else:
            self._train(samples, grid)

    def _train(self, samples: SampleSet, grid) -> None:
        started = time.perf_counter()
        try:
            report = self.advisor.train(samples, seed=self.seed, per_instance=self.per_instance, alpha_grid=grid)
            self._alpha = report.alpha
            self._retrains += 1
            self.last_error = None
        except OptimizerInputError as error:
            self.last_error = str(error)  # e.g. a target that never varied yet: keep falling back
        except Exception as error:  # noqa: BLE001 - a failed retraining keeps the previous model
            self.last_error = f"{type(error).__name__}: {error}"
        self.train_seconds.append(time.perf_counter() - started)

    def wait_for_training(self, timeout_s: float = 60.0) -> None:
        """Let a running background retraining finish (tests, shutdown)."""
        if self._training is not None:
            self._training.join(timeout_s)

    # ----- deciding -----
    def decide(self, observation: Observation) -> ScalingDecision:
        self._warm_start()
        o = observation
        target = self._target_of(o)
        started = time.perf_counter()
        try:
            advice = self.advisor.advise(o.now, dict(o.metrics), o.instances, target, n_samples=self._n,
                                         ready=o.ready)
        except OptimizerInputError as error:
            raise PolicyError(f"the optimizer could not advise: {error}") from None
        if target is None and advice.phase == "fallback" and self.advisor.tracker is None:
            raise PolicyError("the optimizer policy has no measured target this pass and no target-tracking "
                              "fallback metric to use instead")
        self.advice_seconds.append(time.perf_counter() - started)
        self.phases[advice.phase] = self.phases.get(advice.phase, 0) + 1
        final = self.bounded(advice.instances, o)
        who = "model" if advice.phase == "model" else f"{advice.phase} (target tracking)"
        why = advice.reason if target is not None or advice.phase == "model" else f"no measured target; {advice.reason}"
        return ScalingDecision(final, f"optimizer, {who}: {why} -> {final}", self.name,
                               detail={"phase": advice.phase, "predicted_target": advice.predicted_target,
                                       "target": target, "samples": self._n, "training_error": self.last_error,
                                       **advice.detail})

    # ----- restart -----
    def state(self) -> dict:
        return {"samples_seen": self._n, "alpha": self._alpha, "retrains": self._retrains}

    def restore(self, state: dict) -> None:
        state = state or {}
        self._n = max(self._n, int(state.get("samples_seen") or 0))
        self._alpha = state.get("alpha")
        self._retrains = int(state.get("retrains") or 0)


def optimizer_policy_from_settings(settings, node: str, *, sample_sink: SampleSink | None = None,
                                   state_path=None, infrastructure: str = "", background: bool = True
                                   ) -> OptimizerPolicy:
    """An OptimizerPolicy from a strato.policies.Optimizer template policy (policies.factory.PolicySettings).

    Samples go to `sample_sink`, or to the state DB `state_path` (an open one, as the engine hands it, or a path)
    when `infrastructure` is given."""
    low, high = settings.bounds()
    if high is None:
        raise settings.error("the optimizer needs max_instances")
    target_value = settings.number("target_value", low=0)
    if target_value is None or target_value <= 0:
        raise settings.error("target_value must be a positive number (the target metric's upper threshold)")
    target = MetricSpec("target", settings.text("target_metric", required=True))
    raw_inputs = settings.get("input_metrics") or []
    if not isinstance(raw_inputs, list) or not all(isinstance(q, str) and q.strip() for q in raw_inputs):
        raise settings.error("input_metrics must be a list of queries")
    if not raw_inputs:
        raise settings.error("the optimizer needs input_metrics (e.g. the request rate)")
    inputs = tuple(MetricSpec(q, q, "sum") for q in raw_inputs)
    fallback = settings.metric("") if settings.get("metric") is not None else None
    tracking_target = settings.number("target", None, low=0)
    if (fallback is None) != (tracking_target is None):
        raise settings.error("the target-tracking fallback needs both 'metric' and 'target'")
    step = settings.number("max_step", 1, low=1, integer=True)
    try:
        config = PredictiveConfig(
            threshold=target_value, load_metric=inputs[0].name,
            interval_s=settings.seconds("period", None) or DEFAULT_INTERVAL_S,
            startup_delay_s=settings.seconds("startup_delay", 30.0),
            violation_price=settings.number("violation_price", DEFAULT_VIOLATION_PRICE, low=0),
            min_instances=max(1, low), max_instances=high, max_up=step, max_down=step,
            min_samples=settings.number("training_samples_required", 300, low=10, integer=True),
            scale_down_stabilization_s=settings.seconds("scale_down_stabilization", 300.0),
            tracking_metric=fallback.name if fallback else None, tracking_target=tracking_target)
    except OptimizerInputError as error:
        raise settings.error(str(error)) from None
    history = None
    if sample_sink is None and infrastructure:
        sample_sink = StoreSink(state_path, infrastructure, node, tuple(m.name for m in inputs))
        history = StoreLoadHistory(state_path, infrastructure, node, inputs[0].name)
    return OptimizerPolicy(config, inputs, target, sink=sample_sink,
                           retrain_every=settings.number("retrain_every", 40, low=1, integer=True),
                           window=settings.number("train_window", 2000, low=10, integer=True), background=background,
                           extra_metrics=(fallback,) if fallback else (), node=node, history=history)
