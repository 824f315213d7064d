"""The `strato` command line: one module per verb, each a thin wrapper over orchestrator.service."""

from __future__ import annotations

import click

from orchestrator import __version__
from orchestrator.cli import (build, cost, destroy, graph, import_, maintain, outputs, plan, scale, serve, status,
                              validate)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="strato")
def main() -> None:
    """Strato: build and run applications described in TOSCA YAML on local processes and clouds.

    \b
    A first session:
      strato validate examples/ai-inference/service.yaml
      strato plan     examples/ai-inference/service.yaml --name demo
      strato build    examples/ai-inference/service.yaml --name demo
      strato outputs  demo
      strato destroy  demo --yes

    State lives in $STRATO_HOME/state.db (default ~/.strato); --state PATH overrides it.
    Exit codes: 0 ok, 1 failure or invalid input, 2 `plan` found changes.
    """


for module in (validate, plan, build, status, outputs, destroy, graph, scale, maintain, cost, import_, serve):
    main.add_command(module.command)

try:  # the optimizer's verbs, when its package is present
    from optimizer.cli import optimizer_group
    main.add_command(optimizer_group, name="optimizer")
except ImportError:  # pragma: no cover
    pass
