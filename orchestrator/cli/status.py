"""`strato status [NAME]`: infrastructures and their instances, as stored and as observed now."""

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option


@click.command("status")
@click.argument("name", required=False)
@click.option("--no-refresh", is_flag=True, help="Show stored state without asking the backends.")
@state_option
@json_option
@handle_errors
def command(name, no_refresh, state_path, as_json):
    """Show infrastructures (all, or NAME) with each instance's status and attributes."""
    data = service.status(service.open_store(state_path), name, refresh=not no_refresh)
    if as_json:
        emit_json(data)
        return
    if not data["infrastructures"]:
        click.echo("no infrastructures")
    for infra in data["infrastructures"]:
        click.echo(f"{infra['name']}: {infra['status']}  ({infra['descriptor']})")
        for inst in infra["instances"]:
            attrs = inst["attributes"] or {}
            where = attrs.get("url") or attrs.get("pid") or ""
            line = f"  {inst['node'] + '[' + str(inst['index']) + ']':<28} {inst['status']:<10} {inst['driver']:<8} {where}"
            if inst.get("error"):
                line += f"  error: {inst['error']}"
            click.echo(line)
