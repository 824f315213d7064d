"""Placement policies and the cost model (no emulator), plus SageMaker in-place scaling and the inference policy on moto."""

from __future__ import annotations

import textwrap

import boto3
import pytest

from orchestrator import cost
from orchestrator.placement import choose
from drivers.base import DriverError

from helpers import functions, endpoints, ok, status, strato

IMPLS = [
    {"driver": "ec2", "properties": {"instance_type": "g4dn.xlarge"}, "region": "us-east-1"},
    {"driver": "openstack", "properties": {"flavor": "m1.large"}, "cost_per_hour": 0.05, "region": "ORD"},
    {"driver": "ec2", "properties": {"instance_type": "t3.micro"}, "region": "eu-west-1"},
]


def test_order_policy_keeps_declared_order_and_merges_properties():
    choice = choose("n", {"implementations": IMPLS, "ports": [22]})
    assert [c.label for c in choice.ordered] == ["0:ec2", "1:openstack", "2:ec2"]
    assert choice.ordered[0].properties == {"instance_type": "g4dn.xlarge", "ports": [22], "region": "us-east-1"}
    assert choice.ordered[0].cost_per_hour == 0.526 and choice.ordered[0].gpu == 1


def test_cost_policy_orders_by_hourly_price():
    choice = choose("n", {"implementations": IMPLS, "placement": {"policy": "cost"}})
    assert [c.label for c in choice.ordered] == ["2:ec2", "1:openstack", "0:ec2"]


def test_constraints_exclude_with_reasons():
    choice = choose("n", {"implementations": IMPLS, "placement": {"gpu": True}})
    assert [c.label for c in choice.ordered] == ["0:ec2"]
    assert {e["implementation"] for e in choice.excluded} == {"1:openstack", "2:ec2"}
    choice = choose("n", {"implementations": IMPLS, "placement": {"max_price": 0.1, "region": "ORD"}})
    assert [c.label for c in choice.ordered] == ["1:openstack"]
    with pytest.raises(DriverError, match="node 'n': no implementation satisfies"):
        choose("n", {"implementations": IMPLS, "placement": {"region": "mars-1"}})
    with pytest.raises(DriverError, match="unknown placement policy"):
        choose("n", {"implementations": IMPLS, "placement": {"policy": "vibes"}})


def test_crossover_is_computed_from_the_tables():
    rates = cost.prices()["lambda"]["us-east-1"]
    endpoint = cost.prices()["sagemaker"]["us-east-1"]["ml.m5.large"] * cost.HOURS_PER_MONTH
    per_request = 0.2 * 1.0 * rates["gb_second"] + rates["request"]
    assert cost.crossover_requests(200, 1024, "ml.m5.large", region="us-east-1") == pytest.approx(
        endpoint / per_request)
    below = cost.inference_estimates(1e5, 200, 1024, "ml.m5.large", region="us-east-1")
    above = cost.inference_estimates(1e8, 200, 1024, "ml.m5.large", region="us-east-1")
    assert below["cheaper"] == "lambda" and above["cheaper"] == "sagemaker"
    # longer or bigger invocations make serverless dear sooner
    assert cost.crossover_requests(400, 1024, "ml.m5.large") < cost.crossover_requests(200, 1024, "ml.m5.large")


def test_inference_policy_chooses_by_monthly_cost_and_reports_both():
    impls = [{"driver": "sagemaker", "properties": {"instance_type": "ml.m5.large", "image": "x"}},
             {"driver": "lambda", "properties": {"memory_mb": 1024, "code": "lambda"}}]
    low = choose("inf", {"implementations": impls,
                         "placement": {"policy": "inference", "requests_per_month": 100000, "duration_ms": 200}})
    high = choose("inf", {"implementations": impls,
                          "placement": {"policy": "inference", "requests_per_second": 50, "duration_ms": 200}})
    assert low.ordered[0].driver == "lambda" and high.ordered[0].driver == "sagemaker"
    assert set(low.estimates) >= {"0:sagemaker", "1:lambda", "crossover_requests_per_month"}
    assert low.estimates["1:lambda"] < low.estimates["0:sagemaker"]


INFERENCE = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    rps: {type: float, default: 0.05}
    endpoint_instances: {type: integer, default: 1}
  node_templates:
    model:
      type: strato.nodes.cloud.InferenceService
      properties:
        placement: {policy: inference, requests_per_second: {get_input: rps}, duration_ms: 120}
        implementations:
          - driver: sagemaker
            properties: {image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1", instance_type: ml.m5.large}
          - driver: lambda
            properties: {code: handler.py, handler: handler.handler, memory_mb: 512}
    endpoint:
      type: strato.nodes.aws.SageMakerEndpoint
      properties:
        image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"
        instance_count: {get_input: endpoint_instances}
"""


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_inference_node_and_endpoint_scaling_in_place_on_moto(cloud_env, tmp_path):
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    path = tmp_path / "service.yaml"
    path.write_text(textwrap.dedent(INFERENCE))
    ok(strato("build", str(path), "--name", "infer"))
    recs = {r["node"]: r for r in status("infer")["instances"]}
    assert recs["model"]["handle"]["backend"] == "lambda"
    placed = recs["model"]["attributes"]["placement"]
    assert placed["estimates"]["1:lambda"] < placed["estimates"]["0:sagemaker"]
    assert len(functions("infer")) == 1 and len(endpoints("infer")) == 1
    name = endpoints("infer")[0]
    ok(strato("build", str(path), "--name", "infer", "--input", "endpoint_instances=3"))
    sm = boto3.client("sagemaker")
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant.get("DesiredInstanceCount", variant.get("CurrentInstanceCount")) == 3
    assert endpoints("infer") == [name]  # the same endpoint, changed in place
    ok(strato("destroy", "infer", "--yes"))
    assert endpoints("infer") == [] and functions("infer") == []
    assert sm.list_models()["Models"] == [] or not [m for m in sm.list_models()["Models"]
                                                    if m["ModelName"].startswith("strato-infer-")]
