"""Bad input through the real CLI: `file:line:col: CODE: message` on stderr, exit 1, never a traceback."""

import re
import textwrap

import pytest

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"


def write(tmp_path, text, name="d.yaml"):
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(text).lstrip("\n"))
    return str(path)


def assert_diagnostic(proc, path, code, line=None):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    pattern = re.escape(path) + r":(\d+):(\d+): " + re.escape(code) + ": "
    match = re.search(pattern, proc.stderr)
    assert match, f"no {code} diagnostic in:\n{proc.stderr}"
    if line is not None:
        assert int(match.group(1)) == line, proc.stderr
    return proc.stderr


def test_cycle_is_named_with_positions(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Noop
              requirements: [{dependency: db}]
            db:
              type: strato.nodes.Noop
              requirements:
                - dependency: web
        """)
    err = assert_diagnostic(strato("validate", path), path, "DEPENDENCY_CYCLE")
    assert "web -> db -> web" in err or "db -> web -> db" in err


def test_unknown_requirement_target_has_hint(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Noop
              requirements:
                - dependency: dbb
            db:
              type: strato.nodes.Noop
        """)
    err = assert_diagnostic(strato("validate", path), path, "REQUIREMENT_UNKNOWN_NODE", line=7)
    assert "did you mean 'db'" in err
    assert "topology_template.node_templates.web.requirements[0].dependency" in err


def test_missing_required_input(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          inputs:
            size: {type: integer}
          node_templates:
            a: {type: strato.nodes.Noop}
        """)
    assert_diagnostic(strato("build", path, "--name", "x"), path, "INPUT_MISSING", line=4)


def test_wrong_input_type(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          inputs:
            size: {type: integer, default: 1}
          node_templates:
            a: {type: strato.nodes.Noop}
        """)
    err = assert_diagnostic(strato("plan", path, "--name", "x", "--input", "size=big"), path, "INPUT_TYPE", line=4)
    assert "integer" in err


def test_yaml_syntax_error(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            a: {type: strato.nodes.Noop
        """)
    assert_diagnostic(strato("validate", path), path, "YAML_SYNTAX")


def test_unknown_node_type_has_hint(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            a: {type: strato.nodes.Proces}
        """)
    err = assert_diagnostic(strato("validate", path), path, "NODE_TYPE_UNKNOWN", line=4)
    assert "strato.nodes.Process" in err


def test_file_not_found(strato, tmp_path):
    missing = str(tmp_path / "nope.yaml")
    proc = strato("build", missing, "--name", "x")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{missing}: FILE_NOT_FOUND" in proc.stderr


def test_all_errors_of_a_file_at_once_and_json(strato, tmp_path):
    path = write(tmp_path, """
        topology_template:
          node_templates:
            a: {type: strato.nodes.Nope}
            b:
              type: strato.nodes.Noop
              propertis: {}
              requirements: [{dependency: zzz}]
        """)
    proc = strato("validate", "--json", path)
    assert proc.returncode == 1
    import json
    data = json.loads(proc.stdout)
    codes = {d["code"] for d in data["files"][0]["diagnostics"]}
    assert {"NODE_TYPE_UNKNOWN", "UNKNOWN_KEY", "REQUIREMENT_UNKNOWN_NODE"} <= codes
    unknown = [d for d in data["files"][0]["diagnostics"] if d["code"] == "UNKNOWN_KEY"][0]
    assert "properties" in unknown["hint"] and unknown["line"] == 7


def test_invalid_name_and_unknown_infra_are_refused(strato, tmp_path):
    proc = strato("status", "ghost")
    assert proc.returncode == 1 and "no infrastructure named 'ghost'" in proc.stderr
    proc = strato("destroy", "ghost", "--yes")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    path = write(tmp_path, "topology_template:\n  node_templates:\n    a: {type: strato.nodes.Noop}\n")
    proc = strato("build", path, "--name", "bad name!")
    assert proc.returncode == 1 and "must be" in proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["plan", "--help"], ["graph", "--help"]])
def test_help_teaches(strato, args):
    proc = strato(*args)
    assert proc.returncode == 0 and "Usage" in proc.stdout
