"""`strato status [NAME]`: infrastructures and their instances, as stored and as observed now."""

import sys

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option


@click.command("status")
@click.argument("name", required=False)
@click.option("--no-refresh", is_flag=True, help="Show stored state without asking the backends.")
@click.option("--check", is_flag=True,
              help="For scripts: exit 2 unless every instance is observed healthy (0 when all are).")
@state_option
@json_option
@handle_errors
def command(name, no_refresh, check, state_path, as_json):
    """Show infrastructures (all, or NAME) with each instance's status and attributes.

    An infrastructure whose build finished but some of whose instances are gone or failed is
    shown as `degraded`, with the missing instances listed; `strato build` again recreates them.
    """
    data = service.status(service.open_store(state_path), name, refresh=not no_refresh)
    healthy = all(i["healthy"] for i in data["infrastructures"])
    code = 2 if check and not healthy else 0
    if as_json:
        emit_json(data)
        sys.exit(code)
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
        if infra["missing"]:
            gone = ", ".join(f"{m['node']}[{m['index']}] ({m['status']})" for m in infra["missing"])
            click.echo(f"  not healthy: {gone}; run `strato build` again to recreate them")
    sys.exit(code)
