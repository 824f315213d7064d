"""`strato outputs NAME`: the outputs of a built infrastructure (secret ones masked unless asked for)."""

import click

from descriptors.secrets import MASK
from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, shown, state_option
from orchestrator.service import UserError


class SecretOutput(UserError):
    code = "SECRET_OUTPUT"


@click.command("outputs")
@click.argument("name")
@click.option("--get", "only", metavar="OUTPUT", help="Print only this output's value (handy in shell scripts).")
@click.option("--show-secrets", is_flag=True,
              help=f"Print outputs derived from secret inputs in plain instead of {MASK}.")
@state_option
@json_option
@handle_errors
def command(name, only, show_secrets, state_path, as_json):
    """Print the outputs of NAME (e.g. the endpoint URL of a service).

    An output whose value derives from a secret input reads *** (unless the descriptor marks it
    `secret: false`); --show-secrets prints it. `--get` of such an output is refused without
    --show-secrets, so a script never takes the mask for the value.
    """
    store = service.open_store(state_path)
    values = service.reveal_outputs(store, name) if show_secrets else service.outputs(store, name)
    if only is not None:
        if only not in values:
            raise UserError(f"infrastructure '{name}' has no output '{only}' (outputs: {', '.join(values) or 'none'})")
        if values[only] == MASK:
            raise SecretOutput(f"output '{only}' of '{name}' derives from a secret input, so it is not printed; "
                            f"pass --show-secrets to print it")
        values = {only: values[only]}
        if not as_json:
            click.echo(shown(values[only]))
            return
    if as_json:
        emit_json(values)
    else:
        for k, v in values.items():
            click.echo(f"{k} = {shown(v)}")
