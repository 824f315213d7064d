"""Target tracking (the HPA rule) and reading template policies into policy objects."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from descriptors.loader import load_template_text
from policies import (MetricSpec, Observation, PolicyError, TargetTracker, TargetTrackingConfig,
                      TargetTrackingPolicy, metrics_needed, scaling_policies)

CPU = MetricSpec("cpu", "avg(rate(process_cpu_seconds_total[1m]))")


def obs(now, instances, value, ready=None, **kw):
    return Observation(now=now, node="web", instances=instances, ready=instances if ready is None else ready,
                       metrics={"cpu": value}, **kw)


def test_hpa_formula_tolerance_and_scale_up_limit():
    policy = TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5, max_instances=100))
    assert policy.decide(obs(0, 4, 0.52)).desired == 4  # |0.52/0.5 - 1| <= 0.1
    d = policy.decide(obs(15, 4, 2.0))  # ceil(16) limited to max(2 x 4, 4 + 4) = 8
    assert d.desired == 8 and "scale-up limited to 8" in d.reason and d.policy == "target_tracking"
    assert policy.decide(obs(30, 2, 0.8)).desired == 4  # ceil(3.2) = 4 after a full period


def test_scale_up_limit_counts_scale_ups_within_the_period():
    tracker = TargetTracker(TargetTrackingConfig(0.5, scale_up_period_s=60, max_instances=None))
    assert tracker.desired(0, 4, 5.0) == 8    # period start 4: max(8, 8)
    assert tracker.desired(15, 8, 5.0) == 8   # still the same period: start 4, limit 8
    assert tracker.desired(61, 8, 5.0) == 16  # a new period starts from 8


def test_scale_down_stabilisation_window_and_restore():
    policy = TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5))
    assert policy.decide(obs(0, 10, 0.5)).desired == 10
    held = policy.decide(obs(30, 10, 0.25))
    assert held.desired == 10 and "held at 10" in held.reason
    saved = policy.state()
    fresh = TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5))
    fresh.restore(saved)  # a restarted loop keeps the window
    assert fresh.decide(obs(200, 10, 0.25)).desired == 10
    assert fresh.decide(obs(331, 10, 0.25)).desired == 5
    # without the restored window the scale-down would have been immediate
    assert TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5)).decide(obs(200, 10, 0.25)).desired == 5


def test_overrides_and_bounds():
    cfg = TargetTrackingConfig(1.0, tolerance=0.0, scale_down_stabilization_s=0, scale_up_percent=0,
                               scale_up_instances=1, min_instances=2, max_instances=5)
    policy = TargetTrackingPolicy(CPU, cfg)
    assert policy.decide(obs(0, 3, 3.0)).desired == 4  # +1 per period
    assert policy.decide(obs(15, 3, 0.1)).desired == 2  # no window, bounded by min 2
    assert policy.decide(obs(30, 5, 1.05)).desired == 5 + 1 - 1  # tolerance 0: ceil(5.25) = 6 > max 5
    bounded = policy.decide(obs(45, 3, 0.1, min_instances=3))
    assert bounded.desired == 3  # the observation's min applies too


def test_sum_aggregation_and_unready_instances():
    total = MetricSpec("rps", "sum(rate(http_requests_total[1m]))", "sum")
    policy = TargetTrackingPolicy(total, TargetTrackingConfig(10.0, scale_down_stabilization_s=0))
    o = Observation(now=0, node="web", instances=4, ready=4, metrics={"rps": 80.0})
    assert policy.decide(o).desired == 8  # 20 per instance vs 10
    idle = TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5), unready_as_idle=True)
    assert idle.decide(obs(0, 4, 1.0, ready=2)).desired == 4  # starting ones count as idle: 0.5 per instance


@pytest.mark.parametrize("value", [None, float("nan"), -1.0, "high"])
def test_missing_or_bad_metric_is_a_policy_error(value):
    policy = TargetTrackingPolicy(CPU, TargetTrackingConfig(0.5))
    o = Observation(now=0, node="web", instances=2, ready=2, metrics={} if value is None else {"cpu": value})
    with pytest.raises(PolicyError, match="cpu"):
        policy.decide(o)


@pytest.mark.parametrize("kw, word", [(dict(target_value=0), "target_value"), (dict(target_value=1, tolerance=-1),
                                      "tolerance"), (dict(target_value=1, scale_up_period_s=0), "scale_up_period_s"),
                                      (dict(target_value=1, min_instances=5, max_instances=2), "max_instances")])
def test_bad_settings(kw, word):
    with pytest.raises(PolicyError, match=word):
        TargetTrackingConfig(**kw)


def test_bad_metric_specs():
    with pytest.raises(PolicyError, match="aggregation"):
        MetricSpec("x", "up", "median")
    with pytest.raises(PolicyError, match="quantile"):
        MetricSpec("x", "up", "quantile")
    assert MetricSpec("x", "up", "quantile", 0.95).to_dict()["quantile"] == 0.95


TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    cpu_target: {{type: float, default: 0.6}}
  node_templates:
    web:
      type: strato.nodes.Process
      properties: {{command: [sleep, "1"]}}
    api:
      type: strato.nodes.Process
      properties: {{command: [sleep, "1"]}}
  groups:
    front: {{type: tosca.groups.Root, members: [web, api]}}
  policies:
{policies}
"""


def template(policies: str):
    return load_template_text(TEMPLATE.format(policies=textwrap.indent(textwrap.dedent(policies), "    ")),
                              "t.yaml")


def test_template_policies_become_policy_objects():
    t = template("""
        - scale_front:
            type: strato.policies.Scaling
            targets: [front]
            properties:
              min_instances: 2
              max_instances: 9
              metric: "avg(rate(process_cpu_seconds_total[1m]))"
              target: {get_input: cpu_target}
              scale_down_stabilization: 2 m
              period: 10 s
              cooldown: 1 m
        - place: {type: strato.policies.Placement, targets: [web], properties: {regions: [local]}}
        """)
    built = scaling_policies(t, {"cpu_target": 0.7})
    assert set(built) == {"web", "api"}
    policy = built["web"][0]
    assert isinstance(policy, TargetTrackingPolicy)
    assert policy.config.target_value == 0.7 and policy.config.scale_down_stabilization_s == 120
    assert (policy.min_instances, policy.max_instances, policy.period_s, policy.cooldown_s) == (2, 9, 10, 60)
    assert policy.source == "scale_front" and policy.node == "web"
    assert policy.config.tolerance == 0.1 and policy.config.scale_up_instances == 4  # the profile's defaults
    needed = metrics_needed(built)
    assert needed["api"] == [MetricSpec("avg(rate(process_cpu_seconds_total[1m]))",
                                        "avg(rate(process_cpu_seconds_total[1m]))", "mean")]
    assert scaling_policies(t)["web"][0].config.target_value == 0.6  # the input's default


def test_bad_policy_settings_name_the_policy_and_position():
    t = template("""
        - scale_web:
            type: strato.policies.Scaling
            targets: [web]
            properties: {metric: "up"}
        """)
    with pytest.raises(PolicyError, match=r"t\.yaml:\d+:\d+: policy 'scale_web': .*'target'"):
        scaling_policies(t)
    t = template("""
        - scale_web:
            type: strato.policies.Scaling
            targets: [web]
            properties: {metric: up, target: 1, aggregation: quantile}
        """)
    with pytest.raises(PolicyError, match="scale_web.*quantile"):
        scaling_policies(t)


def test_policies_package_stays_light():
    code = ("import sys, orchestrator.cli, orchestrator.loadgen, policies, policies.factory, policies.rule; "
            "heavy = [m for m in ('numpy', 'sklearn', 'asteval') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
