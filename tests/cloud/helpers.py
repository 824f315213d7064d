"""Helpers for the cloud tests: run `strato` with the emulator environment, count tagged resources in moto/Mimic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "hybrid-ai", "service.yaml")


def strato(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess with this process's environment (STRATO_HOME, AWS_*, OS_* set by fixtures)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def ec2_instances(infra: str, node: str | None = None) -> list[dict]:
    """Live (pending/running) EC2 instances tagged with this infrastructure (and node)."""
    filters = [{"Name": "tag:strato:infra", "Values": [infra]},
               {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    if node:
        filters.append({"Name": "tag:strato:node", "Values": [node]})
    reply = boto3.client("ec2").describe_instances(Filters=filters)
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def nova_servers(infra: str) -> list:
    from drivers.providers import get_driver
    from drivers.openstack import settings_for
    conn = get_driver("openstack")._conn(settings_for({}), "test")
    return [s for s in conn.compute.servers(details=True)
            if (s.metadata or {}).get("strato_infra") == infra and s.status not in ("DELETED",)]


def endpoints(infra: str) -> list[str]:
    return [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]
            if e["EndpointName"].startswith(f"strato-{infra}-")]


def functions(infra: str) -> list[str]:
    return [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]
            if f["FunctionName"].startswith(f"strato-{infra}-")]


def status(name: str) -> dict:
    return json.loads(ok(strato("status", name, "--json")).stdout)["infrastructures"][0]
