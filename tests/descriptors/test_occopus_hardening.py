"""`strato import` on broken or hostile Occopus files: a diagnostic, never a traceback, a hang or a leaked file."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "occopus", "hello-cloud")


@pytest.fixture()
def infra(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "hello")
    return tmp_path / "hello"


def run_import(infra, tmp_path):
    out = tmp_path / "out.yaml"
    result = CliRunner().invoke(main, ["import", str(infra / "infra-hello.yaml"), "-o", str(out), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result, out


def codes(result):
    return {d["code"] for d in json.loads(result.stdout)["error"]["diagnostics"] if d["severity"] == "error"}


def set_template_url(infra, url):
    defs = infra / "nodes" / "node_definitions.yaml"
    defs.write_text(defs.read_text().replace("url: file://cloud_init_app.yaml", f"url: {url}"))


def test_dependencies_not_a_list(infra, tmp_path):
    path = infra / "infra-hello.yaml"
    path.write_text(path.read_text().replace("dependencies:\n  - connection: [ *APP, *DB ]", "dependencies: 7"))
    result, out = run_import(infra, tmp_path)
    assert result.exit_code == 1 and codes(result) == {"OCCOPUS_BAD_DEPENDENCY"} and not out.exists()


def test_dependency_cycle_is_diagnosed(infra, tmp_path):
    path = infra / "infra-hello.yaml"
    path.write_text(path.read_text() + "  - connection: [ *DB, *APP ]\n")
    result, out = run_import(infra, tmp_path)
    assert result.exit_code == 1 and codes(result) == {"OCCOPUS_DEPENDENCY_CYCLE"} and not out.exists()
    assert "app -> db -> app" in result.output or "db -> app -> db" in result.output


@pytest.mark.parametrize("url", ["file:///dev/zero", "file:///etc/passwd", "file://../../../../../../etc/hostname"])
def test_template_outside_the_infrastructure_is_refused(infra, tmp_path, url):
    set_template_url(infra, url)
    result, out = run_import(infra, tmp_path)
    assert result.exit_code == 1 and "OCCOPUS_CONTEXT_OUTSIDE" in codes(result) and not out.exists()


def test_symlink_fifo_and_huge_template_inside_are_refused(infra, tmp_path):
    nodes = infra / "nodes"
    os.symlink("/etc/passwd", nodes / "link.yaml")
    set_template_url(infra, "file://link.yaml")
    result, _ = run_import(infra, tmp_path)
    assert "OCCOPUS_CONTEXT_OUTSIDE" in codes(result)
    os.mkfifo(nodes / "pipe.yaml")  # reading it would block forever
    defs = nodes / "node_definitions.yaml"
    defs.write_text(defs.read_text().replace("file://link.yaml", "file://pipe.yaml"))
    result, _ = run_import(infra, tmp_path)
    assert "OCCOPUS_CONTEXT_NOT_FOUND" in codes(result)
    (nodes / "big.yaml").write_bytes(b"#" * (2 * 1024 * 1024))
    defs.write_text(defs.read_text().replace("file://pipe.yaml", "file://big.yaml"))
    result, _ = run_import(infra, tmp_path)
    assert "OCCOPUS_CONTEXT_TOO_BIG" in codes(result)


@pytest.fixture(params=["docker installed", "docker missing"])
def docker(request, monkeypatch):
    """Both worlds: a docker driver registered (a stand-in: only its name matters to import and validate) or not."""
    from drivers import providers
    monkeypatch.setattr(providers, "entry_points", lambda group: [])
    table = providers._table()
    table.pop("docker", None)
    if request.param == "docker installed":
        table["docker"] = "drivers.noop:NoopDriver"
    monkeypatch.setattr(providers, "_table", lambda: table)
    return request.param == "docker installed"


def test_vm_with_a_docker_alternative_imports_with_it_only_when_docker_is_installed(infra, tmp_path, docker):
    defs = infra / "nodes" / "node_definitions.yaml"
    text = defs.read_text()
    alternative = text[text.index("'node_def:db_node':") + len("'node_def:db_node':\n"):]
    defs.write_text(text.replace("'node_def:db_node':", alternative + "'node_def:db_node':", 1))
    result, out = run_import(infra, tmp_path)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    dropped = any(w["code"] == "OCCOPUS_UNSUPPORTED" and "docker driver" in w["message"] for w in doc["warnings"])
    assert dropped is not docker
    assert ("driver: docker" in out.read_text()) is docker
