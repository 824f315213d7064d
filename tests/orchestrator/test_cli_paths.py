"""CLI paths and messages a new user meets: `-i inventory=FILE` is relative to the shell's directory like every
CLI path, validate labels a warning `warning:`, and `strato validate examples/*/*.yaml` checks only descriptors."""

import glob
import os
import re
import subprocess
import sys
import textwrap

from tests.conftest import REPO

POOL = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      inputs:
        inventory: {type: string, default: hosts.yaml}
      node_templates:
        box:
          type: strato.nodes.ssh.Host
          properties:
            inventory: {get_input: inventory}
    """)


def run(args, cwd, home):
    env = dict(os.environ, STRATO_HOME=str(home), PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_an_input_naming_a_file_is_relative_to_the_current_directory(tmp_path, strato_home):
    (tmp_path / "desc").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "desc" / "pool.yaml").write_text(POOL)
    (tmp_path / "desc" / "hosts.yaml").write_text("hosts: [{address: 127.0.0.1, port: 1}]\n")  # the default's file
    (tmp_path / "work" / "mine.yaml").write_text("hosts: []\n")
    built = run(["build", "../desc/pool.yaml", "--name", "cwd", "-i", "inventory=mine.yaml"], tmp_path / "work",
                strato_home)
    # the file in the current directory was read (an empty pool), not desc/mine.yaml (which does not exist)
    assert built.returncode == 1 and "the host pool is empty" in built.stderr, built.stderr
    assert "cannot read the host inventory" not in built.stderr
    # the descriptor's own default stays relative to the descriptor: its one host is tried
    default = run(["plan", "desc/pool.yaml", "--name", "cwd2"], tmp_path, strato_home)
    assert default.returncode == 2, default.stdout + default.stderr
    again = run(["build", "desc/pool.yaml", "--name", "cwd2", "--timeout", "5", "--retries", "0"], tmp_path,
                strato_home)
    assert "cannot read the host inventory" not in again.stderr and "pool is empty" not in again.stderr


def test_validate_labels_warnings(strato, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            a: {type: strato.nodes.Noop}
          workflows:
            deploy: {steps: {}}
        """))
    result = strato("validate", str(path))
    assert result.returncode == 0
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: warning: WORKFLOWS_NOT_EXECUTED: ", result.stderr), result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("strato.nodes.Noop", "strato.nodes.Nope"))
    failed = strato("plan", str(bad), "--name", "w")
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert any(": warning: WORKFLOWS_NOT_EXECUTED: " in line for line in lines), failed.stderr
    assert any(": warning: " not in line and "NODE_TYPE_UNKNOWN" in line for line in lines), failed.stderr


def test_validate_every_example_yaml_passes():
    """The README's habit `strato validate examples/*/*.yaml`: no example holds a YAML file that is not a descriptor."""
    files = sorted(glob.glob(os.path.join(REPO, "examples", "*", "*.yaml")))
    assert files
    result = subprocess.run([sys.executable, "-m", "orchestrator", "validate", *files], capture_output=True,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert result.returncode == 0, result.stderr


def first_line(path: str) -> str:
    with open(path) as fh:
        return fh.readline()


def test_onprem_examples_default_to_what_the_env_scripts_provide():
    """No Docker Hub image and no documentation address by default: the onprem examples name the image
    tests/env/podman.sh builds and the loopback sshd tests/env/sshd.sh starts, and say so in their first line."""
    import yaml
    with open(os.path.join(REPO, "tests", "env", "podman.sh")) as fh:
        image = re.search(r'IMAGE="\$\{STRATO_TEST_IMAGE:-([^}]+)\}"', fh.read()).group(1)
    ai = os.path.join(REPO, "examples", "onprem-ai", "service.yaml")
    with open(ai) as fh:
        assert yaml.safe_load(fh)["topology_template"]["inputs"]["base_image"]["default"] == image
    assert first_line(ai).startswith("# Run first: tests/env/podman.sh start")
    hosts = os.path.join(REPO, "examples", "onprem-hosts", "service.yaml")
    command = re.match(r"# Run first: tests/env/sshd.sh start (\S+) (\d+) .*-i inventory=", first_line(hosts))
    assert command, first_line(hosts)
    with open(hosts) as fh:
        default = yaml.safe_load(fh)["topology_template"]["inputs"]["inventory"]["default"]
    with open(os.path.join(os.path.dirname(hosts), default)) as fh:
        pool = yaml.safe_load(fh)["hosts"]
    assert [(h["address"], h["port"], h["key_file"]) for h in pool] == \
        [("127.0.0.1", int(command.group(2)), f"{command.group(1)}/user_key")]
    assert first_line(os.path.join(REPO, "examples", "onprem-ai", "kubernetes.yaml")).startswith("# Run with ")
