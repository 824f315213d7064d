"""End to end: the hybrid-ai example builds on moto + Mimic, scales its EC2 node 2 -> 4 -> 1, and destroys to nothing."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest

from helpers import EXAMPLE, ec2_instances, endpoints, functions, nova_servers, ok, status, strato

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_hybrid_example_builds_scales_and_destroys(cloud_env):
    name = "hyb"
    ok(strato("build", EXAMPLE, "--name", name))
    gpu = ec2_instances(name, "gpu_worker")
    assert len(gpu) == 2
    for inst in gpu:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["strato:infra"] == name and tags["strato:key"].startswith(f"{name}/gpu_worker/")
        assert inst["InstanceType"] == "g4dn.xlarge"
    assert len(ec2_instances(name)) == 2            # the CPU workers went to Nova, not EC2
    servers = nova_servers(name)
    assert len(servers) == 2 and all(s.metadata["strato_key"].startswith(f"{name}/cpu_worker/") for s in servers)
    assert len(endpoints(name)) == 1 and len(functions(name)) == 1

    infra = status(name)
    by_node = {}
    for inst in infra["instances"]:
        by_node.setdefault(inst["node"], []).append(inst)
    assert {i["handle"]["backend"] for i in by_node["cpu_worker"]} == {"openstack"}
    assert by_node["cpu_worker"][0]["attributes"]["placement"]["refused"] == []
    # the local collector received the cloud ids/addresses as inputs (asked on loopback only)
    url = infra["outputs"]["collector"]
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "/inventory", timeout=5) as resp:
        inventory = json.load(resp)
    assert sorted(inventory["gpu_worker_ids"]) == sorted(i["InstanceId"] for i in gpu)
    assert inventory["cpu_worker_backends"] == ["openstack", "openstack"]
    assert inventory["endpoint_name"] == endpoints(name)[0]
    assert inventory["function_name"] == functions(name)[0]

    # cost: per node and total, from the price tables
    cost = json.loads(ok(strato("cost", name, "--json")).stdout) if "cost" in strato("--help").stdout else None
    if cost is not None:
        assert {n["node"] for n in cost["nodes"]} >= {"gpu_worker", "endpoint", "cpu_worker"}
        assert cost["usd_per_hour"] > 0

    for count in (4, 1):
        ok(strato("scale", name, "gpu_worker", str(count)))
        ok(strato("build", EXAMPLE, "--name", name))
        assert len(ec2_instances(name, "gpu_worker")) == count
    assert len(nova_servers(name)) == 2

    ok(strato("destroy", name, "--yes"))
    assert ec2_instances(name) == []
    assert nova_servers(name) == []
    assert endpoints(name) == [] and functions(name) == []
    groups = boto3.client("ec2").describe_security_groups()["SecurityGroups"]
    assert not [g for g in groups if g["GroupName"].startswith(f"strato-{name}-")]
    roles = boto3.client("iam").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith(f"strato-{name}-")]
