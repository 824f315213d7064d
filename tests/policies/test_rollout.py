"""policies/rollout.py: the rollout block, the canary-vs-stable analysis and the step machine (pure, no backend)."""

import pytest

from policies import rollout as ro
from policies.rollout import (FAIL, INCONCLUSIVE, PASS, Analysis, MetricCheck, RolloutSpec, RolloutSpecError,
                              WindowStats, analyze)

BLOCK = {"strategy": "canary", "steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "5m"}],
         "analysis": {"interval": "30s", "min_samples": 200, "failure_limit": 2,
                      "metrics": [{"name": "error_rate", "max": 0.01},
                                  {"name": "latency_p95_ms", "max_ratio_to_stable": 1.2}]},
         "baking": "5m", "progress_deadline": "15m"}


def test_the_issue_block_parses_with_its_durations():
    spec = RolloutSpec.parse(BLOCK)
    assert spec.steps == (ro.Step(10, 120), ro.Step(50, 300))
    assert spec.analysis.interval == 30 and spec.analysis.min_samples == 200
    assert spec.analysis.metrics[1] == MetricCheck("latency_p95_ms", max_ratio_to_stable=1.2)
    assert (spec.baking, spec.progress_deadline, spec.keep_failed) == (300, 900, 600)


def test_every_problem_is_listed_at_once():
    with pytest.raises(RolloutSpecError) as err:
        RolloutSpec.parse({"strategy": "rainbow", "steps": [{"weight": 150}],
                           "analysis": {"min_samples": 0, "metrics": [{"name": "error_rate"},
                                                                      {"name": "accuracy", "max": 1}]},
                           "baking": "soon", "webhook": "ftp://x"})
    paths = [p for p, _ in err.value.problems]
    assert paths == ["strategy", "analysis.min_samples", "analysis.metrics[0]", "analysis.metrics[1].name",
                     "steps[0].weight", "baking", "webhook"]


def test_weights_must_not_go_down_and_linear_makes_equal_steps():
    with pytest.raises(RolloutSpecError, match="below the previous"):
        RolloutSpec.parse({"steps": [{"weight": 50}, {"weight": 10}]})
    linear = RolloutSpec.parse({"strategy": "linear", "steps": [{"weight": 1}, {"weight": 1}, {"weight": 1},
                                                                {"weight": 80}]})
    assert [s.weight for s in linear.steps] == [20, 40, 60, 80]
    assert [s.weight for s in RolloutSpec.parse({"strategy": "blue_green"}).steps] == [0]


def test_below_min_samples_is_inconclusive_never_pass_or_fail():
    analysis = Analysis(min_samples=100)
    awful = WindowStats(requests=99, errors=99)
    verdict = analyze(analysis, awful, WindowStats(requests=1000))
    assert verdict.status == INCONCLUSIVE and "fewer than min_samples" in verdict.reasons[0]


def test_ratio_metric_needs_samples_on_the_stable_too():
    analysis = Analysis(min_samples=10, metrics=(MetricCheck("latency_p95_ms", max_ratio_to_stable=1.2),))
    canary = WindowStats(requests=50, latency_ms={"latency_p95_ms": 100})
    assert analyze(analysis, canary, WindowStats(requests=3, latency_ms={"latency_p95_ms": 10})).status == INCONCLUSIVE
    slow = analyze(analysis, canary, WindowStats(requests=50, latency_ms={"latency_p95_ms": 50}))
    assert slow.status == FAIL and "2x the stable" in slow.reasons[0]
    fine = analyze(analysis, canary, WindowStats(requests=50, latency_ms={"latency_p95_ms": 90}))
    assert fine.status == PASS
    assert analyze(analysis, canary, WindowStats(), compare=False).status == PASS   # at 100 %: nothing to compare


def test_error_rate_over_its_max_fails():
    verdict = analyze(Analysis(min_samples=10), WindowStats(requests=100, errors=5), WindowStats(requests=100))
    assert verdict.status == FAIL and verdict.values["canary_error_rate"] == 0.05


def window(spec, state, status, now):
    return ro.record_window(spec, state, ro.Verdict(status, [f"{status} window"]), now)


def test_steps_move_on_only_after_their_pause_with_a_passing_window():
    spec = RolloutSpec.parse({"steps": [{"weight": 10, "pause": 10}, {"weight": 50, "pause": 10}],
                              "analysis": {"interval": 5}})
    state = ro.start({"stable": {"ref": "iris:1"}}, {"ref": "iris:2"}, now=0)
    assert ro.canary_weight(spec, state) == 10 and ro.canary_replicas(spec, state, 4) == 1
    state = window(spec, state, INCONCLUSIVE, 5)
    assert ro.advance(spec, state, 11)["step"] == 0            # inconclusive holds the step
    state = window(spec, state, PASS, 12)
    state = ro.advance(spec, state, 12)
    assert state["step"] == 1 and ro.canary_weight(spec, state) == 50 and ro.canary_replicas(spec, state, 4) == 2
    state = ro.advance(spec, window(spec, state, PASS, 23), 23)
    assert state["phase"] == ro.PROMOTING and ro.canary_weight(spec, state) == 100


def test_failure_limit_consecutive_failures_abort_and_a_pass_resets_the_count():
    spec = RolloutSpec.parse({"analysis": {"failure_limit": 2}})
    state = ro.start({}, {"ref": "iris:2"}, 0)
    state = window(spec, window(spec, state, FAIL, 1), PASS, 2)
    assert state["phase"] == ro.PROGRESSING and state["failures"] == 0
    state = window(spec, window(spec, state, FAIL, 3), FAIL, 4)
    assert state["phase"] == ro.ABORTED and state["reasons"] == ["fail window"] and state["aborted_at"] == 4
    assert ro.canary_weight(spec, state) == 0


def test_an_inconclusive_rollout_is_aborted_at_its_deadline_never_promoted():
    spec = RolloutSpec.parse({"steps": [{"weight": 10, "pause": 1}], "progress_deadline": 60})
    state = ro.start({}, {"ref": "iris:2"}, 0)
    for t in range(1, 60):
        state = ro.advance(spec, window(spec, state, INCONCLUSIVE, t), t)
        assert state["phase"] == ro.PROGRESSING
    state = ro.advance(spec, state, 61)
    assert state["phase"] == ro.ABORTED and state["reasons"] == [ro.DEADLINE_REASON]


def test_baking_holds_full_weight_before_promotion():
    spec = RolloutSpec.parse({"steps": [{"weight": 20, "pause": 0}], "baking": 30})
    state = ro.advance(spec, window(spec, ro.start({}, {"ref": "m:2"}, 0), PASS, 1), 1)
    assert state["phase"] == ro.BAKING and ro.canary_weight(spec, state) == 100
    assert ro.advance(spec, window(spec, state, PASS, 20), 20)["phase"] == ro.BAKING
    assert ro.advance(spec, window(spec, state, PASS, 32), 32)["phase"] == ro.PROMOTING


def test_blue_green_switches_when_its_full_copy_is_ready():
    spec = RolloutSpec.parse({"strategy": "blue_green", "steps": [{"weight": 100, "pause": 5}]})
    state = ro.start({}, {"ref": "m:2"}, 0)
    assert ro.canary_weight(spec, state) == 0 and ro.canary_replicas(spec, state, 3) == 3
    assert ro.advance(spec, state, 10)["phase"] == ro.PROGRESSING
    assert ro.advance(spec, {**state, "canary_ready": True}, 10)["phase"] == ro.PROMOTING
