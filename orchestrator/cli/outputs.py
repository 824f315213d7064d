"""`strato outputs NAME`: the outputs of a built infrastructure."""

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.service import UserError


@click.command("outputs")
@click.argument("name")
@click.option("--get", "only", metavar="OUTPUT", help="Print only this output's value (handy in shell scripts).")
@state_option
@json_option
@handle_errors
def command(name, only, state_path, as_json):
    """Print the outputs of NAME (e.g. the endpoint URL of a service)."""
    values = service.outputs(service.open_store(state_path), name)
    if only is not None:
        if only not in values:
            raise UserError(f"infrastructure '{name}' has no output '{only}' (outputs: {', '.join(values) or 'none'})")
        values = {only: values[only]}
        if not as_json:
            click.echo("" if values[only] is None else values[only])
            return
    if as_json:
        emit_json(values)
    else:
        for k, v in values.items():
            click.echo(f"{k} = {v}")
