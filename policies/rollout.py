"""Progressive rollout, pure: the `rollout` block of a model server, the canary-vs-stable analysis and the step machine.

Nothing here talks to a backend or to the state store. The controller (orchestrator/mlops/rollout.py) feeds it
the counters of one analysis window and the clock, and stores the plain-dict state this module hands back, so a
restarted loop resumes a rollout where it was. Missing data is never read as a verdict: a window with fewer than
`min_samples` requests on the canary (or on the stable, for a metric compared with the stable) is INCONCLUSIVE,
which holds the step: it neither promotes nor aborts (only `progress_deadline` ends such a rollout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from descriptors.values import duration_seconds

STRATEGIES = ("canary", "blue_green", "linear")
# metric name -> what it reads from a window's counters
METRICS = {"error_rate": "5xx answers (and failed connections) / requests",
           "latency_mean_ms": "mean response time",
           "latency_p50_ms": "median response time", "latency_p95_ms": "95th percentile response time",
           "latency_p99_ms": "99th percentile response time"}
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
# phases of a rollout; `idle`: no rollout, the stable version serves everything
IDLE, PROGRESSING, BAKING, PROMOTING, ABORTED = "idle", "progressing", "baking", "promoting", "aborted"
DEADLINE_REASON = "no conclusive analysis before the deadline"


class RolloutSpecError(ValueError):
    """What is wrong with a rollout block: (subpath, one sentence) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


@dataclass(frozen=True)
class Step:
    weight: float   # percent of the requests the canary gets
    pause: float    # seconds at this weight (with a passing analysis) before the next step


@dataclass(frozen=True)
class MetricCheck:
    name: str
    max: float | None = None                  # an absolute bound on the canary's value
    max_ratio_to_stable: float | None = None  # canary / stable over the same window


@dataclass(frozen=True)
class Analysis:
    interval: float = 30.0
    min_samples: int = 200
    failure_limit: int = 2
    metrics: tuple[MetricCheck, ...] = (MetricCheck("error_rate", max=0.01),)


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str = "canary"
    steps: tuple[Step, ...] = ()
    analysis: Analysis = field(default_factory=Analysis)
    baking: float = 0.0
    progress_deadline: float = 900.0
    keep_failed: float = 600.0
    webhook: str | None = None

    @classmethod
    def parse(cls, value: Any) -> "RolloutSpec":
        """The block as written (durations as '2m' or seconds); RolloutSpecError lists every problem at once."""
        problems: list[tuple[str, str]] = []
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise RolloutSpecError([("", "must be a mapping (strategy, steps, analysis, ...)")])
        strategy = str(value.get("strategy") or "canary")
        if strategy not in STRATEGIES:
            problems.append(("strategy", f"must be one of {', '.join(STRATEGIES)}, not '{strategy}'"))
        analysis = _analysis(value.get("analysis"), problems)
        steps = _steps(value.get("steps"), strategy, analysis.interval, problems)
        durations = {k: _duration(value, k, d, problems) for k, d in
                     (("baking", 0.0), ("progress_deadline", 900.0), ("keep_failed", 600.0))}
        webhook = value.get("webhook") or None
        if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
            problems.append(("webhook", "must be an http:// or https:// URL"))
        if problems:
            raise RolloutSpecError(problems)
        return cls(strategy, steps, analysis, durations["baking"], durations["progress_deadline"],
                   durations["keep_failed"], webhook)


def _duration(block: dict, key: str, default: float, problems: list, prefix: str = "") -> float:
    try:
        seconds = duration_seconds(block.get(key), default)
    except ValueError as exc:
        problems.append((prefix + key, str(exc)))
        return default
    if seconds < 0:
        problems.append((prefix + key, "must not be negative"))
    return seconds


def _analysis(block: Any, problems: list) -> Analysis:
    if block is None:
        return Analysis()
    if not isinstance(block, dict):
        problems.append(("analysis", "must be a mapping (interval, min_samples, failure_limit, metrics)"))
        return Analysis()
    interval = _duration(block, "interval", 30.0, problems, "analysis.")
    if interval <= 0:
        problems.append(("analysis.interval", "must be longer than 0 s"))
    counts = {}
    for key, default, low in (("min_samples", 200, 1), ("failure_limit", 2, 1)):
        raw = block.get(key, default)
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < low:
            problems.append((f"analysis.{key}", f"must be a whole number of at least {low}"))
            raw = default
        counts[key] = raw
    metrics = _metrics(block.get("metrics"), problems)
    return Analysis(interval or 30.0, counts["min_samples"], counts["failure_limit"], metrics)


def _metrics(raw: Any, problems: list) -> tuple[MetricCheck, ...]:
    if raw is None:
        return Analysis().metrics
    if not isinstance(raw, list) or not raw:
        problems.append(("analysis.metrics", "must be a non-empty list of {name, max | max_ratio_to_stable}"))
        return Analysis().metrics
    checks = []
    for i, item in enumerate(raw):
        path = f"analysis.metrics[{i}]"
        if not isinstance(item, dict):
            problems.append((path, "must be a mapping {name, max | max_ratio_to_stable}"))
            continue
        name = item.get("name")
        if name not in METRICS:
            problems.append((f"{path}.name", f"must be one of {', '.join(METRICS)}, not {name!r}"))
            continue
        bounds = {k: item.get(k) for k in ("max", "max_ratio_to_stable") if item.get(k) is not None}
        if len(bounds) != 1 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                       for v in bounds.values()):
            problems.append((path, "needs exactly one of max or max_ratio_to_stable, a number of at least 0"))
            continue
        checks.append(MetricCheck(str(name), **{k: float(v) for k, v in bounds.items()}))
    return tuple(checks)


def _steps(raw: Any, strategy: str, interval: float, problems: list) -> tuple[Step, ...]:
    """The canary's weights; blue_green has one step at 0 (analysis on a preview) before its switch; linear
    without steps: 25/50/75, each paused for two analysis intervals."""
    if strategy == "blue_green":
        pause = _duration(raw[0], "pause", 2 * interval, problems, "steps[0].") if isinstance(raw, list) and raw \
            and isinstance(raw[0], dict) else 2 * interval
        return (Step(0.0, pause),)
    if raw is None:
        if strategy == "linear":
            return tuple(Step(w, 2 * interval) for w in (25.0, 50.0, 75.0))
        return (Step(10.0, 2 * interval), Step(50.0, 2 * interval))
    if not isinstance(raw, list) or not raw:
        problems.append(("steps", "must be a non-empty list of {weight, pause}"))
        return ()
    steps: list[Step] = []
    for i, item in enumerate(raw):
        path = f"steps[{i}]"
        weight = item.get("weight") if isinstance(item, dict) else None
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight <= 100:
            problems.append((f"{path}.weight", "must be a percentage above 0 and at most 100"))
            continue
        if steps and weight < steps[-1].weight:
            problems.append((f"{path}.weight", f"must not be below the previous step's {steps[-1].weight:g}"))
        steps.append(Step(float(weight), _duration(item, "pause", 2 * interval, problems, f"{path}.")))
    if strategy == "linear" and steps:   # equal steps up to the last weight given
        count, top = len(steps), steps[-1].weight
        steps = [Step(round(top * (i + 1) / count, 3), s.pause) for i, s in enumerate(steps)]
    return tuple(steps)


# -- analysis ---------------------------------------------------------------------------------------------------
@dataclass
class WindowStats:
    """One track's (canary or stable) counters over one analysis window."""

    requests: int = 0
    errors: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)   # metric name -> value (None-free)

    def value(self, name: str) -> float | None:
        if name == "error_rate":
            return self.errors / self.requests if self.requests else None
        return self.latency_ms.get(name)


@dataclass
class Verdict:
    status: str                                       # pass | fail | inconclusive
    reasons: list[str] = field(default_factory=list)  # why it failed, or why there is no verdict
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": self.status, "reasons": list(self.reasons), "values": dict(self.values)}


def analyze(analysis: Analysis, canary: WindowStats, stable: WindowStats, compare: bool = True) -> Verdict:
    """The canary against its bounds and against the stable over the same window.

    compare=False: the stable gets no traffic (the canary at 100 %), so ratio metrics are not judged."""
    values: dict[str, Any] = {"canary_requests": canary.requests, "stable_requests": stable.requests}
    if canary.requests < analysis.min_samples:
        return Verdict(INCONCLUSIVE, [f"the canary answered {canary.requests} request(s), fewer than min_samples "
                                      f"{analysis.min_samples}"], values)
    failed, missing = [], []
    for check in analysis.metrics:
        mine = canary.value(check.name)
        values[f"canary_{check.name}"] = mine
        if check.max is not None:
            if mine is None:
                missing.append(f"no {check.name} for the canary")
            elif mine > check.max:
                failed.append(f"{check.name} {_fmt(mine)} is above its max {_fmt(check.max)}")
            continue
        if not compare:
            continue
        theirs = stable.value(check.name)
        values[f"stable_{check.name}"] = theirs
        if stable.requests < analysis.min_samples or theirs is None or mine is None:
            missing.append(f"{check.name}: too little data to compare with the stable "
                           f"({stable.requests} stable request(s))")
            continue
        ratio = _ratio(mine, theirs)
        values[f"ratio_{check.name}"] = ratio
        if ratio > check.max_ratio_to_stable:
            failed.append(f"{check.name} {_fmt(mine)} is {_fmt(ratio)}x the stable's {_fmt(theirs)}, above "
                          f"{_fmt(check.max_ratio_to_stable)}x")
    if failed:
        return Verdict(FAIL, failed, values)
    if missing:
        return Verdict(INCONCLUSIVE, missing, values)
    return Verdict(PASS, [], values)


def _ratio(mine: float, theirs: float) -> float:
    if theirs > 0:
        return mine / theirs
    return 1.0 if mine <= 0 else math.inf


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


# -- the step machine ---------------------------------------------------------------------------------------------
def canary_weight(spec: RolloutSpec, state: dict) -> float:
    """The canary's share of requests (percent) in this state."""
    phase = state.get("phase", IDLE)
    if phase in (BAKING, PROMOTING):
        return 100.0
    if phase != PROGRESSING or not spec.steps:
        return 0.0
    return spec.steps[min(int(state.get("step", 0)), len(spec.steps) - 1)].weight


def canary_replicas(spec: RolloutSpec, state: dict, stable_count: int) -> int:
    """Canary instances: in proportion to its weight (at least 1 while it runs); blue_green: a full copy."""
    phase = state.get("phase", IDLE)
    if phase == IDLE:
        return 0
    if phase == ABORTED:
        return int(state.get("kept", 0))
    if spec.strategy == "blue_green" or phase in (BAKING, PROMOTING):
        return max(1, stable_count)
    return max(1, math.ceil(stable_count * canary_weight(spec, state) / 100.0))


def start(state: dict, canary: dict, now: float) -> dict:
    """A new rollout of `canary` (a model version's dict) over whatever state was there; the stable stays."""
    return {**state, "phase": PROGRESSING, "canary": canary, "step": 0, "started": now, "step_started": now,
            "window_started": None, "baseline": None, "windows": [], "failures": 0, "passes_in_step": 0,
            "last_verdict": None, "reasons": [], "aborted_at": None}


def record_window(spec: RolloutSpec, state: dict, verdict: Verdict, now: float) -> dict:
    """A finished window's verdict: counted, and the rollout aborted after failure_limit failed in a row."""
    state = dict(state)
    state["windows"] = (list(state.get("windows") or []) + [{"at": now, "status": verdict.status}])[-20:]
    state["last_verdict"] = {**verdict.to_dict(), "at": now}
    if verdict.status == FAIL:
        state["failures"] = int(state.get("failures", 0)) + 1
        if state["failures"] >= spec.analysis.failure_limit:
            return abort(state, verdict.reasons, now)
    elif verdict.status == PASS:
        state["failures"] = 0
        state["passes_in_step"] = int(state.get("passes_in_step", 0)) + 1
    return state


def settle(state: dict, outcome: str, now: float) -> dict:
    """Back to idle after a rollout (promoted, retired after an abort): the stable pin, the versions that failed,
    and a line about how the last rollout ended; its windows and counters are dropped."""
    canary = state.get("canary") or {}
    last = {"canary": canary.get("ref"), "outcome": outcome, "at": now, "reasons": list(state.get("reasons") or []),
            "verdict": (state.get("last_verdict") or {}).get("status")}
    return {"phase": IDLE, "stable": state.get("stable"), "canary": None, "failed": list(state.get("failed") or []),
            "last_rollout": last}


def abort(state: dict, reasons: list[str], now: float) -> dict:
    return {**state, "phase": ABORTED, "reasons": list(reasons), "aborted_at": now}


def advance(spec: RolloutSpec, state: dict, now: float) -> dict:
    """Move on when the current step's pause is over with a passing analysis; abort past progress_deadline.

    A step moves on only with at least one passing window in it and the last window passing: inconclusive
    windows hold it. After the last step: baking at 100 % (when `baking` is set), then promotion."""
    phase = state.get("phase")
    if phase not in (PROGRESSING, BAKING):
        return state
    if now - float(state["started"]) > spec.progress_deadline:
        last = (state.get("last_verdict") or {}).get("status")
        why = DEADLINE_REASON if last != PASS else "the rollout did not finish before its progress_deadline"
        return abort(state, [why], now)
    last = (state.get("last_verdict") or {})
    passed = int(state.get("passes_in_step", 0)) > 0 and last.get("status") == PASS \
        and float(last.get("at", 0)) >= float(state["step_started"])
    if spec.strategy == "blue_green" and phase == PROGRESSING:
        # no traffic at weight 0: the full copy must be ready (and no window of a preview may have failed)
        passed = bool(state.get("canary_ready")) and last.get("status") != FAIL
    pause = spec.baking if phase == BAKING else spec.steps[int(state["step"])].pause if spec.steps else 0.0
    if now - float(state["step_started"]) < pause or not (passed or (phase == BAKING and spec.baking == 0)):
        return state
    moved = {**state, "step_started": now, "passes_in_step": 0}
    if phase == PROGRESSING and int(state["step"]) + 1 < len(spec.steps):
        return {**moved, "step": int(state["step"]) + 1}
    if phase == PROGRESSING and spec.baking > 0:
        return {**moved, "phase": BAKING}
    return {**moved, "phase": PROMOTING}


def describe(state: dict) -> dict:
    """A rollout's state as status shows it: versions, phase, step, weight, the last verdict and why."""
    stable, canary = state.get("stable") or {}, state.get("canary") or {}
    last = state.get("last_verdict") or {}
    phase = state.get("phase", IDLE)
    out = {"phase": phase, "stable": stable.get("ref"), "canary": canary.get("ref"),
           "step": int(state.get("step", 0)) + 1 if phase == PROGRESSING else None, "steps": state.get("steps"),
           "weight": state.get("weight", 0.0) if phase != IDLE else 0.0, "verdict": last.get("status"),
           "why": list(last.get("reasons") or []) if phase != ABORTED else list(state.get("reasons") or [])}
    if phase == IDLE and state.get("last_rollout"):
        out["last_rollout"] = state["last_rollout"]
    return out
