"""CLI contracts: distinct documented exit codes, one JSON error shape under --json, --json on every verb."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from tests.conftest import REPO

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        a: {type: strato.nodes.Noop}
        b: {type: strato.nodes.Noop, requirements: [{dependency: a}]}
    """)


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(DOC)
    return str(path)


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_usage_error_has_its_own_exit_code_and_json_shape(strato_home):
    assert invoke("plan").exit_code == 64
    assert invoke("build", "--bogus").exit_code == 64
    result = invoke("plan", "--json")
    assert result.exit_code == 64
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["ok"] is False and doc["error"]["code"] == "USAGE" and "FILE" in doc["error"]["message"]
    text = invoke("--help").output
    assert "64" in text and "2 `plan` found changes" in text


def test_plan_changes_is_2_and_errors_under_json_are_one_shape(strato_home, doc, tmp_path):
    assert invoke("plan", doc, "--name", "p1").exit_code == 2
    assert invoke("build", doc, "--name", "p1", "-q").exit_code == 0
    assert invoke("plan", doc, "--name", "p1").exit_code == 0
    missing = json.loads(invoke("status", "nope", "--json").stdout)
    assert missing["ok"] is False and missing["error"]["code"] == "REFUSED" and "nope" in missing["error"]["message"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(DOC.replace("dependency: a", "dependency: zz"))
    result = invoke("plan", str(bad), "--name", "p2", "--json")
    err = json.loads(result.stdout)["error"]
    assert result.exit_code == 1 and err["code"] == "REQUIREMENT_UNKNOWN_NODE" and err["diagnostics"][0]["line"] == 5
    opt = invoke("optimizer", "advise", "--low", "1", "--high", "2", "--json")
    assert opt.exit_code == 64 and json.loads(opt.stdout)["error"]["message"].startswith("give --data")


USAGE_MISTAKES = [
    ("cost",), ("graph", "{doc}", "--format", "png"), ("scale", "x", "server", "--to", "2", "--by", "1"),
    ("scale", "x", "server"), ("loadgen", "http://127.0.0.1:9/"), ("loadgen", "http://127.0.0.1:9/", "--rate", "0"),
    ("loadgen", "http://127.0.0.1:9/", "--rate", "1", "--header", "nocolon"),
    ("plan", "{doc}", "-n", "x", "-i", "novalue"),
    ("build", "{doc}", "-n", "x", "-i", "=v"), ("status", "x", "--check", "--no-refresh"),
    ("maintain", "x", "--interval", "soon"), ("destroy", "x"), ("optimizer", "train", "--model", "{tmp}/m.pkl"),
]


@pytest.mark.parametrize("args", USAGE_MISTAKES, ids=lambda a: " ".join(a))
def test_usage_mistakes_in_a_verb_exit_64_with_one_line(strato_home, doc, tmp_path, args):
    """A verb's own argument checks are usage errors too, like the ones Click makes (not 1, which means failure)."""
    args = [a.format(doc=doc, tmp=tmp_path) for a in args]
    if args[0] == "destroy":  # needs an infrastructure to reach the --yes check
        assert invoke("build", doc, "--name", "x", "-q").exit_code == 0
    result = invoke(*args)
    assert result.exit_code == 64, result.output
    assert "Traceback" not in result.output and "rror: " in result.output
    as_json = invoke(*args, "--json")
    assert as_json.exit_code == 64 and json.loads(as_json.stdout.strip().splitlines()[-1])["error"]["code"] == "USAGE"


def test_graph_png_with_json_writes_a_png(doc, tmp_path):
    pytest.importorskip("matplotlib", reason="PNG output needs matplotlib (pip install '.[test]')")
    out = tmp_path / "g.png"
    result = invoke("graph", doc, "--format", "png", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.stdout) == {"ok": True, "output": str(out), "format": "png"}
    assert json.loads(invoke("graph", doc, "--json").stdout)  # the graph itself when no --output


def test_serve_and_optimizer_report_take_json(strato_home):
    pytest.importorskip("uvicorn", reason="the REST API needs uvicorn (pip install '.[test]')")
    assert "--json" in invoke("optimizer", "report", "--help").output
    from drivers.local import free_port
    port = free_port()
    env = dict(os.environ, STRATO_HOME=str(strato_home), PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert json.loads(line) == {"ok": True, "url": f"http://127.0.0.1:{port}",
                                    "docs": f"http://127.0.0.1:{port}/docs", "state": None}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
