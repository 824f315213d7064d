"""`strato plan FILE --name NAME`: show what a build would change (+ create, ~ replace, - delete)."""

import os
import sys

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, parse_inputs, state_option
from orchestrator.plan import format_plan


@click.command("plan")
@click.argument("file")
@click.option("--name", "-n", required=True, help="Infrastructure name.")
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Input value (repeatable); a file path is relative to this directory.")
@state_option
@json_option
@handle_errors
def command(file, name, inputs, state_path, as_json):
    """Compare the descriptor with stored (and observed) state and list the actions a build would take.

    Exit 0 when nothing would change, 2 when something would, 1 on error.
    """
    store = service.open_store(state_path)
    the_plan = service.plan(file, name, parse_inputs(inputs), store, confined=False, cwd=os.getcwd())
    if as_json:
        emit_json(the_plan.to_dict())
    else:
        click.echo(format_plan(the_plan))
    sys.exit(2 if the_plan.has_changes else 0)
