"""Host pools and passthrough: Strato's wall time against the tool run by hand on the same machines, in one run.

(a) Ansible: one `strato build` of a node with 10 instances, each claiming one of 10 loopback sshd
    hosts and configured by a playbook, vs one `ansible-playbook` of the same playbook over the same
    10 hosts with the same settings (target: <= 1.2x).
(b) Terraform: 20 `terraform_data` + local-exec instances (one working directory each, init + apply),
    vs one `terraform init` + `apply` of the same 20 resources in one directory (the ratio is reported).

Usage: python benchmarks/hosts.py [--hosts 10] [--terraform 20] [--repeat 2]
Each figure is the best of --repeat runs. Prints figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers import playbooks  # noqa: E402
from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402
from tests.env import sshd  # noqa: E402

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: working directory
      ansible.builtin.file: {path: "{{ base }}/{{ inventory_hostname }}", state: directory}
    - name: configuration file
      ansible.builtin.copy: {dest: "{{ base }}/{{ inventory_hostname }}/app.conf", content: "workers={{ workers }}\\n"}
    - name: check the interpreter
      ansible.builtin.command: "{{ ansible_python_interpreter }} -c 'import sys; print(sys.version_info[0])'"
      register: py
    - ansible.builtin.set_stats: {data: {python_major: "{{ py.stdout }}"}}
"""


def ansible_descriptor(count: int, playbook: str, inventory: str, base: str) -> str:
    return f"""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    workers:
      type: strato.nodes.ssh.Host
      properties: {{inventory: {inventory}}}
      capabilities:
        scalable: {{properties: {{default_instances: {count}}}}}
      interfaces:
        Standard:
          configure:
            implementation: {playbook}
            inputs: {{base: {base}, workers: 4}}
"""


def time_strato(descriptor_text: str, workdir: str, name: str) -> float:
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as fh:
        fh.write(descriptor_text)
    home = os.path.join(workdir, f"home-{name}")
    os.makedirs(home, exist_ok=True)
    store = StateStore(os.path.join(home, "state.db"))
    try:
        started = time.perf_counter()
        report = service.build(path, name, {}, store, RunOptions(parallelism=32, timeout=600))
        wall = time.perf_counter() - started
        if not report["ok"]:
            raise SystemExit(f"benchmark build {name} failed: {report['failures'][:2]}")
        destroyed = service.destroy(store, name, RunOptions(parallelism=32))
        if not destroyed["ok"]:
            raise SystemExit(f"benchmark destroy {name} failed: {destroyed['failures'][:2]}")
    finally:
        store.close()
    return wall


def ansible_floor(servers, playbook: str, base: str, workdir: str) -> float:
    inventory = {"all": {"hosts": {f"h{i}": {**playbooks.Target(f"h{i}", "ssh", s.address, s.port, s.user, s.key,
                                                                  sshd.PYTHON).host_vars()}
                                   for i, s in enumerate(servers)}}}
    inv_path = os.path.join(workdir, "floor-inventory.json")
    with open(inv_path, "w") as fh:
        json.dump(inventory, fh)
    exe = shutil.which("ansible-playbook") or os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = {**os.environ, **playbooks.ENVIRONMENT,  # the same settings, its own connections (as Strato's runs)
           "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="strato-cp-floor-")}
    started = time.perf_counter()
    proc = subprocess.run([exe, "-i", inv_path, playbook, "-e", json.dumps({"base": base + "-floor", "workers": 4})],
                          capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ansible-playbook failed: {proc.stdout[-800:]}{proc.stderr[-400:]}")
    return wall


def terraform_resource(i: int, out_dir: str) -> dict:
    return {"input": f"item-{i}", "provisioner": {"local-exec": {"command": f"echo {i} > {out_dir}/tf-{i}.txt"}}}


def terraform_descriptor(count: int, out_dir: str) -> str:
    # One node per resource, each with its own variables and working directory: 20 separate configurations.
    config = {"variable": {"i": {"type": "number"}},
              "resource": {"terraform_data": {"item": {
                  "input": "item-${var.i}",
                  "provisioner": {"local-exec": {"command": f"echo ${{var.i}} > {out_dir}/tf-${{var.i}}.txt"}}}}},
              "output": {"value": {"value": "${terraform_data.item.output}"}}}
    nodes = "\n".join(f"    tf{i}:\n      type: strato.nodes.terraform.Configuration\n"
                      f"      properties: {{configuration: {json.dumps(config)}, variables: {{i: {i}}}}}"
                      for i in range(count))
    return f"tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n  node_templates:\n{nodes}\n"


def terraform_floor(count: int, workdir: str, out_dir: str) -> float:
    tf_dir = tempfile.mkdtemp(prefix="tf-floor-", dir=workdir)
    config = {"resource": {"terraform_data": {f"item{i}": terraform_resource(i, out_dir) for i in range(count)}},
              "output": {f"value{i}": {"value": f"${{terraform_data.item{i}.output}}"} for i in range(count)}}
    with open(os.path.join(tf_dir, "main.tf.json"), "w") as fh:
        json.dump(config, fh)
    exe = shutil.which("terraform")
    started = time.perf_counter()
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
        proc = subprocess.run([exe, *args], cwd=tf_dir, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"terraform {args[0]} failed: {proc.stderr[-600:]}")
    wall = time.perf_counter() - started
    subprocess.run([exe, "destroy", "-auto-approve", "-input=false", "-no-color"], cwd=tf_dir, capture_output=True,
                   timeout=600)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--terraform", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="strato-bench-hosts-")
    result: dict = {"hosts": args.hosts, "terraform_instances": args.terraform, "repeat": args.repeat}
    servers = []
    try:
        servers = sshd.start_many(os.path.join(workdir, "sshd"), args.hosts)
        playbook = os.path.join(workdir, "configure.yaml")
        with open(playbook, "w") as fh:
            fh.write(PLAYBOOK)
        inventory = os.path.join(workdir, "pool.yaml")
        with open(inventory, "w") as fh:
            json.dump({"hosts": [s.host_entry() for s in servers]}, fh)
        base = os.path.join(workdir, "configured")
        strato_runs, floor_runs = [], []
        for r in range(args.repeat):  # interleaved, so both see the same machine load
            floor_runs.append(ansible_floor(servers, playbook, base, workdir))
            strato_runs.append(time_strato(ansible_descriptor(args.hosts, playbook, inventory, base), workdir,
                                           f"ansible{r}"))
        result["ansible_10_s"] = round(min(strato_runs), 3)
        result["ansible_floor_s"] = round(min(floor_runs), 3)
        result["ansible_ratio"] = round(result["ansible_10_s"] / result["ansible_floor_s"], 3)
        result["ansible_target_met"] = result["ansible_ratio"] <= 1.2
        print(f"Ansible over {args.hosts} loopback SSH hosts: strato build {result['ansible_10_s']:.2f} s, "
              f"one ansible-playbook {result['ansible_floor_s']:.2f} s, ratio {result['ansible_ratio']:.2f} "
              f"(target <= 1.2; runs strato {[round(x, 2) for x in strato_runs]}, "
              f"floor {[round(x, 2) for x in floor_runs]})")
    finally:
        for s in servers:
            s.stop()
    if shutil.which("terraform"):
        out_dir = os.path.join(workdir, "tf-out")
        os.makedirs(out_dir)
        strato_runs, floor_runs = [], []
        for r in range(args.repeat):
            floor_runs.append(terraform_floor(args.terraform, workdir, out_dir))
            strato_runs.append(time_strato(terraform_descriptor(args.terraform, out_dir), workdir, f"tf{r}"))
        result["terraform_20_s"] = round(min(strato_runs), 3)
        result["terraform_floor_s"] = round(min(floor_runs), 3)
        result["terraform_ratio"] = round(result["terraform_20_s"] / result["terraform_floor_s"], 3)
        print(f"Terraform, {args.terraform} terraform_data instances: strato build {result['terraform_20_s']:.2f} s "
              f"(one working directory each), one terraform init+apply {result['terraform_floor_s']:.2f} s, "
              f"ratio {result['terraform_ratio']:.2f} (runs strato {[round(x, 2) for x in strato_runs]}, "
              f"floor {[round(x, 2) for x in floor_runs]})")
    else:
        result["terraform_20_s"] = result["terraform_floor_s"] = None
        result["terraform_skipped"] = "terraform is not installed"
        print("Terraform: skipped, the terraform binary is not installed")
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
