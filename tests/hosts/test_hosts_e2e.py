"""End to end through the CLI on sshd servers on loopback: a two-host pool configured by Ansible, pool exhaustion,
kill -9 of a build mid-playbook then a rebuild (no host allocated twice), the onprem-hosts example, and
playbook operations on a local process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from tests.conftest import REPO
from tests.hosts.conftest import write_playbook

pytestmark = pytest.mark.e2e


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


def write_inventory(path, servers, **labels) -> str:
    with open(path, "w") as fh:
        json.dump({"hosts": [s.host_entry(**labels) for s in servers]}, fh)
    return str(path)


POOL_DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    inventory: {type: string}
    count: {type: integer, default: 2}
    delay: {type: integer, default: 0}
  node_templates:
    workers:
      type: strato.nodes.ssh.Host
      properties:
        inventory: {get_input: inventory}
        require: {gpu: 1}
      capabilities:
        scalable: {properties: {default_instances: {get_input: count}}}
      interfaces:
        Standard:
          configure:
            implementation: configure.yaml
            inputs: {delay: {get_input: delay}, marker: MARKER}
  outputs:
    hosts_configured:
      value: {get_attribute: [workers, configured_as]}
"""

CONFIGURE = """\
    - name: note the start
      ansible.builtin.shell: echo started >> {{ marker }}-{{ inventory_hostname }}
    - name: slow step
      ansible.builtin.command: sleep {{ delay }}
      when: delay | int > 0
    - ansible.builtin.set_stats: {data: {configured_as: "{{ inventory_hostname }}"}}
"""


def claims(home) -> list[tuple]:
    with sqlite3.connect(os.path.join(home, "state.db")) as db:
        return db.execute("SELECT host, key, ready FROM host_claims ORDER BY host").fetchall()


def setup_pool(tmp_path, ssh_servers, count=2):
    servers = ssh_servers(count)
    inventory = write_inventory(tmp_path / "pool.yaml", servers, gpu=1)
    write_playbook(tmp_path, "configure.yaml", CONFIGURE)
    path = tmp_path / "pool-service.yaml"
    path.write_text(POOL_DESCRIPTOR.replace("MARKER", str(tmp_path / "marker")))
    return servers, inventory, str(path)


def test_two_host_pool_configured_then_exhausted_then_destroyed(tmp_path, ssh_servers, strato, strato_home):
    servers, inventory, path = setup_pool(tmp_path, ssh_servers)
    name = unique("pool")
    built = strato("build", path, "--name", name, "-i", f"inventory={inventory}", "--json", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    outputs = json.loads(strato("outputs", name, "--json", check=True).stdout)
    configured = outputs.get("outputs", outputs)["hosts_configured"]
    assert sorted(configured) == sorted(f"127.0.0.1_{s.port}" for s in servers)  # set_stats from each host
    assert len({c[0] for c in claims(strato_home)}) == 2
    # A second infrastructure wanting a host: the pool is exhausted, said in one line, exit 1.
    other = strato("build", path, "--name", unique("pool2"), "-i", f"inventory={inventory}", "-i", "count=1",
                   timeout=300)
    assert other.returncode == 1 and "exhausted" in other.stdout + other.stderr
    assert "Traceback" not in other.stderr
    destroyed = strato("destroy", name, "--yes", "--json", timeout=300)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert [c for c in claims(strato_home) if c[1].startswith(name + "/")] == []


def test_kill_9_mid_playbook_then_rebuild_allocates_no_host_twice(tmp_path, ssh_servers, strato, strato_home):
    servers, inventory, path = setup_pool(tmp_path, ssh_servers)
    name = unique("crash")
    env = {**os.environ, "STRATO_HOME": str(strato_home), "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "build", path, "--name", name, "-i",
                             f"inventory={inventory}", "-i", "delay=6", "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        markers = []
        while time.monotonic() < deadline and len(markers) < 2:  # both hosts are inside the playbook
            markers = [f for f in os.listdir(tmp_path) if f.startswith("marker-")]
            time.sleep(0.2)
        assert len(markers) == 2, "the playbook never started on both hosts"
        time.sleep(0.5)  # inside the slow step
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = claims(strato_home)
    assert len(before) == 2 and not any(ready for _, _, ready in before)  # claimed, never finished
    rebuilt = strato("build", path, "--name", name, "-i", f"inventory={inventory}", "--json", timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    after = claims(strato_home)
    assert len(after) == 2 and all(ready for _, _, ready in after)
    assert len({host for host, _, _ in after}) == 2 and len({key for _, key, _ in after}) == 2  # one host per instance
    for marker in markers:  # the configuration ran again, to completion, on each host
        assert open(tmp_path / marker).read().count("started") >= 2
    assert strato("destroy", name, "--yes", timeout=300).returncode == 0
    assert claims(strato_home) == []


def test_onprem_example_builds_serves_and_destroys(tmp_path, ssh_servers, strato, strato_home):
    servers = ssh_servers(1)
    inventory = write_inventory(tmp_path / "hosts.yaml", servers, gpu=2)
    example = os.path.join(REPO, "examples", "onprem-hosts", "service.yaml")
    name = unique("onprem")
    built = strato("build", example, "--name", name, "-i", f"inventory={inventory}", "-i", "epochs=3", "--json",
                   timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        outputs = json.loads(strato("outputs", name, "--json", check=True).stdout)
        outputs = outputs.get("outputs", outputs)
        assert outputs["trained_on"] == f"127.0.0.1_{servers[0].port}"
        req = urllib.request.Request(outputs["endpoint"], method="POST",
                                     data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["predictions"] == [0, 2]
        assert os.path.isdir(f"/var/tmp/strato-onprem-trainer/127.0.0.1_{servers[0].port}")
    finally:
        destroyed = strato("destroy", name, "--yes", timeout=300)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not os.path.exists(f"/var/tmp/strato-onprem-trainer/127.0.0.1_{servers[0].port}")  # delete playbook ran
    assert claims(strato_home) == []


def test_playbook_operations_on_a_local_process(tmp_path, strato):
    write_playbook(tmp_path, "configure.yaml",
                   "    - ansible.builtin.copy: {dest: '{{ out }}', content: '{{ greeting }}'}\n"
                   "    - ansible.builtin.set_stats: {data: {greeting_file: '{{ out }}'}}\n")
    write_playbook(tmp_path, "delete.yaml", "    - ansible.builtin.file: {path: '{{ out }}', state: absent}\n")
    out = tmp_path / "greeting.txt"
    (tmp_path / "svc.yaml").write_text(f"""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    base:
      type: strato.nodes.Job
      properties: {{command: ["{{python}}", "-c", "print('base')"]}}
    app:
      type: strato.nodes.Process
      properties: {{command: ["{{python}}", "-c", "import time; time.sleep(600)"]}}
      requirements: [{{dependency: base}}]
      interfaces:
        Standard:
          configure:
            implementation: configure.yaml
            inputs: {{out: {out}, greeting: {{concat: ["hello from ", {{get_attribute: [base, host]}}]}}}}
          delete: {{implementation: delete.yaml, inputs: {{out: {out}}}}}
  outputs:
    file: {{value: {{get_attribute: [app, greeting_file]}}}}
""")
    name = unique("local-ansible")
    built = strato("build", str(tmp_path / "svc.yaml"), "--name", name, "--json", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert out.read_text() == "hello from 127.0.0.1"  # a function-resolved input became an extra var
    outputs = json.loads(strato("outputs", name, "--json", check=True).stdout)
    assert outputs.get("outputs", outputs)["file"] == str(out)
    assert strato("destroy", name, "--yes", timeout=300).returncode == 0
    assert not out.exists()
