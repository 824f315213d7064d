"""The optimizer policy: samples stored through a sink (the state DB), retrained off the decision path, fallback said."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from descriptors.loader import load_template_text
from optimizer.predictive import PredictiveConfig
from optimizer.samples import LoadHistoryStore, SampleStore
from policies import MetricSpec, Observation, PolicyError, scaling_policies
from policies.optimizer import OptimizerPolicy, StoreSink

RATE = MetricSpec("rps", "sum(rate(http_requests_total[1m]))", "sum")
LATENCY = MetricSpec("p95", "histogram_quantile(0.95, ...)")


def config(**kw):
    base = dict(threshold=0.5, load_metric="rps", interval_s=15.0, startup_delay_s=30.0, min_instances=1,
                max_instances=10, min_samples=60, tracking_metric="cpu", tracking_target=0.6)
    base.update(kw)
    return PredictiveConfig(**base)


def service_observation(step: int, instances: int, rng) -> Observation:
    """A replicated M/M/1-like service: latency grows as the load per instance nears 10 req/s."""
    rate = 30 + 20 * math.sin(step / 15)
    per = min(rate / instances, 9.5)
    latency = 0.1 / (1 - per / 10) * math.exp(rng.normal(0, 0.03))
    return Observation(now=15.0 * step, node="web", instances=instances, ready=instances,
                       metrics={"rps": rate, "cpu": per / 10}, target=latency)


def test_learns_retrains_in_background_and_the_reason_says_who_decided(tmp_path):
    sink = StoreSink(tmp_path / "state.db", "demo", "web", ("rps",))
    policy = OptimizerPolicy(config(), (RATE,), LATENCY, sink=sink, retrain_every=30, background=True)
    assert [m.name for m in policy.metrics_needed()] == ["rps", "p95"] and policy.needs_target()
    rng = np.random.default_rng(0)
    instances, reasons = 4, []
    for step in range(120):
        o = service_observation(step, instances, rng)
        decision = policy.decide(o)
        policy.learn(o)
        reasons.append(decision.reason)
        instances = max(1, min(10, decision.desired + (step % 7 == 0) - (step % 11 == 0)))  # vary the count
        if step in (59, 89):
            policy.wait_for_training()
    assert reasons[0].startswith("optimizer, fallback (target tracking): no trained capacity model yet")
    assert any(r.startswith("optimizer, model:") for r in reasons[90:]), reasons[90:]
    policy.wait_for_training()  # nothing left running after the test
    assert policy.train_seconds and policy.last_error is None
    with SampleStore(tmp_path / "state.db") as store:
        stored = store.load("demo", "web")
    assert len(stored) == 120 and stored.metric_names == ("rps",)
    # a restarted loop takes the stored samples back and keeps counting
    again = OptimizerPolicy(config(), (RATE,), LATENCY, sink=sink, retrain_every=30)
    again.restore(policy.state())
    d = again.decide(service_observation(121, 4, rng))
    assert d.detail["samples"] == 120 and len(again.training_set()) == 120


def test_no_target_falls_back_or_is_a_policy_error():
    policy = OptimizerPolicy(config(), (RATE,), LATENCY)
    o = Observation(now=0, node="web", instances=4, ready=4, metrics={"rps": 10.0, "cpu": 0.9})
    d = policy.decide(o)
    assert d.desired == 6 and "no measured target" in d.reason
    policy.learn(o)
    assert policy.training_set().timestamps.size == 0  # nothing to learn without a target
    bare = OptimizerPolicy(config(tracking_metric=None, tracking_target=None), (RATE,), LATENCY)
    with pytest.raises(PolicyError, match="no measured target"):
        bare.decide(o)


def test_broken_sink_does_not_stop_learning():
    class Broken:
        def add(self, sample):
            raise OSError("disk full")

        def recent(self, limit):
            raise OSError("unreadable")

    policy = OptimizerPolicy(config(), (RATE,), LATENCY, sink=Broken())
    o = Observation(now=0, node="web", instances=4, ready=4, metrics={"rps": 10.0, "cpu": 0.5}, target=0.3)
    policy.learn(o)
    assert len(policy.training_set()) == 1 and "disk full" in policy.last_error


def test_optimizer_policy_from_a_template(tmp_path):
    text = textwrap.dedent("""
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Process
              properties: {command: [sleep, "1"]}
          policies:
            - optimize:
                type: strato.policies.Optimizer
                targets: [web]
                properties:
                  min_instances: 1
                  max_instances: 8
                  target_metric: "histogram_quantile(0.95, sum(rate(latency_bucket[1m])) by (le))"
                  target_value: 0.5
                  input_metrics: ["sum(rate(requests_total[1m]))"]
                  metric: cpu
                  target: 0.6
                  training_samples_required: 50
                  max_step: 2
        """)
    t = load_template_text(text, "o.yaml")
    policy = scaling_policies(t, infrastructure="demo", state_path=tmp_path / "s.db")["web"][0]
    assert isinstance(policy, OptimizerPolicy) and policy.source == "optimize"
    assert policy.advisor.config.max_up == 2 and policy.advisor.config.min_samples == 50
    assert {m.name for m in policy.metrics_needed()} == {"sum(rate(requests_total[1m]))", "target", "cpu"}
    o = Observation(now=1, node="web", instances=2, ready=2, metrics={"sum(rate(requests_total[1m]))": 5.0,
                                                                     "cpu": 0.3, "target": 0.2})
    policy.learn(o)
    assert "fallback" in policy.decide(o).reason
    with SampleStore(tmp_path / "s.db") as store:
        assert len(store.load("demo", "web")) == 1
    # The loop restarts: the policy built again from the template takes back the imported history and every
    # pass's load from the state DB (the forecaster continues), and the stored samples.
    with LoadHistoryStore(tmp_path / "s.db") as store:
        store.add("demo", "web", "sum(rate(requests_total[1m]))", [(1 - 15.0 * k, 4.0) for k in range(96, 0, -1)])
    again = scaling_policies(t, infrastructure="demo", state_path=tmp_path / "s.db")["web"][0]
    later = Observation(now=16, node="web", instances=2, ready=2, metrics=dict(o.metrics))
    decision = again.decide(later)
    step = again.advisor.config.interval_s             # the policy's period: history is spread on its grid
    expected = int(96 * 15.0 // step) + 1 + 1          # the history and the first pass, then this pass
    assert len(again.advisor.forecaster) == expected and decision.detail["forecast"]["history"] == expected
    assert decision.detail["forecast"]["values"][0][2] == pytest.approx(4.0, rel=0.3)
    bad = load_template_text(text.replace("max_instances: 8", "max_instances: 8\n          startup_delay: -5 s"),
                             "o.yaml")
    with pytest.raises(PolicyError, match="optimize.*startup_delay must be"):
        scaling_policies(bad)
