"""`strato events`: the journal filtered by kind and node, as text and JSON; an unknown name is refused."""

import json
import os
import subprocess
import sys

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    a: {type: strato.nodes.Noop}
    b: {type: strato.nodes.Noop}
"""


def _strato(home, *args):
    env = dict(os.environ, STRATO_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_events_filtered_by_kind_and_node(tmp_path):
    (tmp_path / "d.yaml").write_text(DESCRIPTOR)
    assert _strato(tmp_path, "build", str(tmp_path / "d.yaml"), "--name", "evtest").returncode == 0
    everything = json.loads(_strato(tmp_path, "events", "evtest", "--json").stdout)["events"]
    kinds = [e["kind"] for e in everything]
    assert kinds[0] == "build_started" and kinds[-1] == "build_finished" and kinds.count("ready") == 2
    only_a = json.loads(_strato(tmp_path, "events", "evtest", "--kind", "rea*", "--node", "a", "--json").stdout)
    assert [e["kind"] for e in only_a["events"]] == ["ready"] and "/a/" in only_a["events"][0]["key"]
    text = _strato(tmp_path, "events", "evtest", "--kind", "build_*").stdout.splitlines()
    assert len(text) == 2 and "build_started" in text[0] and "build_finished" in text[1]


def test_events_of_unknown_infrastructure_is_one_line_error(tmp_path):
    done = _strato(tmp_path, "events", "nosuch")
    assert done.returncode == 1 and "no infrastructure named 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr
