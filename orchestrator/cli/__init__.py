"""The `strato` command line: one module per verb, each a thin wrapper over orchestrator.service."""

from __future__ import annotations

import click

from orchestrator import __version__
from orchestrator.cli.group import EXIT_CODES_HELP, StratoGroup

# Each verb's module is imported only when that verb runs (or --help lists it): the engine, the
# optimizer's numpy/scikit-learn and the cloud SDKs stay unloaded for `strato --version`.
VERBS = {name: f"orchestrator.cli.{module}" for name, module in (
    ("validate", "validate"), ("plan", "plan"), ("build", "build"), ("status", "status"), ("outputs", "outputs"),
    ("destroy", "destroy"), ("graph", "graph"), ("scale", "scale"), ("cost", "cost"), ("import", "import_"),
    ("serve", "serve"), ("state", "state"), ("loadgen", "loadgen"), ("types", "types"))}
VERBS["optimizer"] = "orchestrator.cli.optimizer"   # optimizer.cli's group plus the commands that read state

VERBS["maintain"] = "orchestrator.cli.maintain"
VERBS["models"] = "orchestrator.cli.models"
VERBS["events"] = "orchestrator.cli.events"


@click.group(cls=StratoGroup, lazy=VERBS, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="strato")
@click.option("--state", "state_location", metavar="PATH|URL", default=None,
              help="State database for every verb: an SQLite file or postgresql://... (else $STRATO_STATE_URL, "
                   "else $STRATO_HOME/state.db).")
def main(state_location: str | None = None) -> None:
    """Strato: build and run applications described in TOSCA YAML on local processes and clouds.

    \b
    A first session:
      strato validate examples/ai-inference/service.yaml
      strato plan     examples/ai-inference/service.yaml --name demo
      strato build    examples/ai-inference/service.yaml --name demo
      strato outputs  demo
      strato destroy  demo --yes

    State lives in $STRATO_HOME/state.db (default ~/.strato); --state PATH overrides it, and
    --state postgresql://... (or $STRATO_STATE_URL) keeps it in PostgreSQL (pip install 'strato[postgres]').
    Every verb takes --json: one JSON document on stdout; an error is {"ok": false, "error": {"code", "message"}}.
    """
    from drivers.base import private_umask
    private_umask()
    if state_location:  # each verb's own --state reads $STRATO_STATE, and so does the ssh driver
        import os
        os.environ["STRATO_STATE"] = state_location

