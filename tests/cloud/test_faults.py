"""Faults against the emulators: invalid image, a refused Nova create (fallback), Mimic stopped mid-build, a crash after create."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import emulators
from drivers.aws.ec2 import client_token
from helpers import REPO, ec2_instances, nova_servers, ok, status, strato

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MIMIC_IMAGE = "Ubuntu 14.04 LTS (Trusty Tahr) (PVHVM)"
MIMIC_FLAVOR = "1GB Standard Instance"


def write(tmp_path, text: str, name: str = "service.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


EC2_ONLY = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        image: {type: string, default: ami-04681a1dbd79675a5}
      node_templates:
        vm:
          type: strato.nodes.aws.EC2Instance
          properties: {image: {get_input: image}, instance_type: t3.micro}
"""


def test_invalid_image_names_node_backend_cause_then_next_build_finishes(cloud_env, tmp_path):
    path = write(tmp_path, EC2_ONLY)
    proc = strato("build", path, "--name", "badimg", "--input", "image=ami-0000dead")
    assert proc.returncode == 1
    assert "node 'vm'" in proc.stderr and "ec2" in proc.stderr and "ami-0000dead" in proc.stderr
    assert "Traceback" not in proc.stderr
    rec = status("badimg")["instances"][0]
    assert rec["status"] == "failed" and "ami-0000dead" in rec["error"]
    assert ec2_instances("badimg") == []
    ok(strato("build", path, "--name", "badimg", "--input", "image=ami-04681a1dbd79675a5"))
    assert len(ec2_instances("badimg")) == 1
    ok(strato("destroy", "badimg", "--yes"))
    assert ec2_instances("badimg") == []


HYBRID = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        nova_failure: {type: string, default: ""}
      node_templates:
        worker:
          type: strato.nodes.cloud.Server
          properties:
            implementations:
              - driver: openstack
                properties:
                  flavor: "%s"
                  image: "%s"
                  metadata: {create_server_failure: {get_input: nova_failure}}
                  wait_timeout: 20
              - driver: ec2
                properties: {image: ami-04681a1dbd79675a5, instance_type: t3.small}
          capabilities:
            scalable: {properties: {default_instances: 2}}
""" % (MIMIC_FLAVOR, MIMIC_IMAGE)


def test_refused_nova_create_falls_back_to_ec2_and_records_why(cloud_env, tmp_path):
    path = write(tmp_path, HYBRID)
    refusal = '{"message": "Quota exceeded for instances", "code": 403}'
    ok(strato("build", path, "--name", "fallback", "--input", f"nova_failure={refusal}"))
    assert nova_servers("fallback") == []
    assert len(ec2_instances("fallback")) == 2
    for inst in status("fallback")["instances"]:
        # the composite placement driver's handle names the backend actually used: delete/observe go there
        assert inst["driver"] == "placement" and inst["handle"]["backend"] == "ec2"
        refused = inst["attributes"]["placement"]["refused"]
        assert refused and refused[0]["implementation"] == "0:openstack"
        assert "Quota exceeded" in refused[0]["error"] and "node 'worker'" in refused[0]["error"]
    ok(strato("destroy", "fallback", "--yes"))
    assert ec2_instances("fallback") == []


def test_mimic_stopped_mid_build_fails_clearly_and_next_build_finishes(cloud_env, tmp_path, monkeypatch):
    own = emulators.start_mimic(str(tmp_path))
    try:
        for k, v in emulators.openstack_environment(own).items():
            monkeypatch.setenv(k, v)
        path = write(tmp_path, f"""
            tosca_definitions_version: tosca_simple_yaml_1_3
            topology_template:
              node_templates:
                nova:
                  type: strato.nodes.openstack.Server
                  properties:
                    flavor: "{MIMIC_FLAVOR}"
                    image: "{MIMIC_IMAGE}"
                    metadata: {{server_building: "30"}}
                    wait_timeout: 60
            """)
        env = dict(os.environ, PYTHONPATH=REPO)
        build = subprocess.Popen([sys.executable, "-m", "orchestrator", "build", path, "--name", "stopped"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        # stop Mimic once the server exists (it stays BUILD for 30 s)
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not nova_servers("stopped"):
            time.sleep(0.2)
        assert nova_servers("stopped"), "the build never reached Nova"
        own.stop()
        out, err = build.communicate(timeout=90)
        assert build.returncode == 1
        assert "node 'nova'" in err and "openstack" in err and "unreachable" in err
        assert "Traceback" not in err
        assert status("stopped")["instances"][0]["status"] == "failed"
    finally:
        own.stop()
    # a fresh OpenStack (the shared Mimic): the next build finishes the job
    for k, v in cloud_env.items():
        monkeypatch.setenv(k, v)
    path2 = path.replace("service.yaml", "service2.yaml")
    with open(path) as src, open(path2, "w") as dst:
        dst.write(src.read().replace('metadata: {server_building: "30"}', "metadata: {}"))
    ok(strato("build", path2, "--name", "stopped"))
    assert len(nova_servers("stopped")) == 1
    ok(strato("destroy", "stopped", "--yes"))
    assert nova_servers("stopped") == []


CRASH_AFTER_CREATE = """
import os, signal, sys
import drivers.aws.ec2 as ec2
real_create = ec2.Ec2Driver.create
def create_then_die(self, spec):
    handle = real_create(self, spec)
    os.kill(os.getpid(), signal.SIGKILL)   # the create call returned; nothing recorded yet
ec2.Ec2Driver.create = create_then_die
from orchestrator.cli import main
main(sys.argv[1:])
"""


def test_crash_after_ec2_create_is_adopted_by_tag_no_duplicate_no_leak(cloud_env, tmp_path):
    path = write(tmp_path, EC2_ONLY)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", CRASH_AFTER_CREATE, "build", path, "--name", "crash"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=90)
    assert proc.returncode == -signal.SIGKILL
    created = ec2_instances("crash")
    assert len(created) == 1
    rec = status("crash")["instances"][0]
    assert rec["status"] == "creating" and rec["handle"] is None  # intent written, result never recorded
    ok(strato("build", path, "--name", "crash"))
    after = ec2_instances("crash")
    assert [i["InstanceId"] for i in after] == [created[0]["InstanceId"]]  # adopted, no duplicate
    assert status("crash")["instances"][0]["handle"]["adopted"] is True
    ok(strato("destroy", "crash", "--yes"))
    assert ec2_instances("crash") == []  # no leak


def test_client_token_is_a_pure_function_of_the_key():
    assert client_token("a/vm/0@x") == client_token("a/vm/0@x")
    assert client_token("a/vm/0@x") != client_token("a/vm/1@x")
    assert client_token("a/vm/0@x", 2) != client_token("a/vm/0@x", 1)
    assert len(client_token("x" * 300)) <= 64
