"""`strato graph`: dot, JSON and PNG views of the dependency graph."""

import json
import os

from tests.conftest import REPO

EXAMPLE = os.path.join(REPO, "examples", "ai-inference", "service.yaml")


def test_graph_json_and_dot(strato):
    data = json.loads(strato("graph", EXAMPLE, "--json").stdout)
    assert {"from": "server", "to": "trainer", "kind": "dependency"} in data["edges"]
    assert {n["name"]: n["instances"] for n in data["nodes"]} == {"trainer": 1, "server": 2}
    dot = strato("graph", EXAMPLE).stdout
    assert dot.startswith("digraph strato {") and '"server" -> "trainer"' in dot


def test_graph_png(strato, tmp_path):
    out = tmp_path / "g.png"
    proc = strato("graph", EXAMPLE, "--format", "png", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = strato("graph", EXAMPLE, "--format", "png")
    assert refused.returncode == 64 and "--output" in refused.stderr  # wrong usage
