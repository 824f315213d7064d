"""A model server's `model` and `rollout` properties: typed by the profile, checked beyond types with positions."""

import textwrap

import pytest

from descriptors.diagnostics import DescriptorError
from descriptors.loader import load_template

HEAD = """\
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server:
      type: strato.nodes.ai.ModelServer
      properties:
        command: ["{python}", "serve.py"]
        model: iris@champion
        rollout:
"""


def load(tmp_path, block: str):
    path = tmp_path / "service.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(block), " " * 10))
    return load_template(str(path))


def test_a_full_block_loads(tmp_path):
    template = load(tmp_path, """\
        strategy: canary
        steps: [{weight: 10, pause: 2m}, {weight: 50, pause: 5m}]
        analysis:
          interval: 30s
          min_samples: 200
          failure_limit: 2
          metrics: [{name: error_rate, max: 0.01}, {name: latency_p95_ms, max_ratio_to_stable: 1.2}]
        baking: 5m
        progress_deadline: 15m
        keep_failed: 10m
        webhook: http://127.0.0.1:9/hook
        """)
    assert template.node_templates["server"].properties["model"] == "iris@champion"


def test_every_problem_has_a_code_a_position_and_a_path(tmp_path):
    with pytest.raises(DescriptorError) as err:
        load(tmp_path, """\
            steps:
              - {weight: 50, pause: 10s}
              - {weight: 10}
            analysis:
              interval: 10x
              metrics:
                - {name: error_rate}
            """)
    found = {(d.code, d.path.rsplit("rollout.", 1)[1], d.position.line) for d in err.value.diagnostics}
    assert found == {("ROLLOUT_INVALID", "steps[1].weight", 12), ("PROPERTY_TYPE", "analysis.interval", 14),
                     ("ROLLOUT_INVALID", "analysis.metrics[0]", 16)}
