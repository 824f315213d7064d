"""`strato graph FILE`: the dependency graph as Graphviz dot, JSON or a PNG picture."""

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option
from orchestrator.service import UserError


@click.command("graph")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["dot", "json", "png"]), default="dot", show_default=True)
@click.option("--output", "-o", metavar="PATH", help="Write to PATH (required for png).")
@json_option
@handle_errors
def command(file, fmt, output, as_json):
    """Print the dependency graph of FILE (an edge a -> b means a needs b)."""
    if as_json:
        fmt = "json"
    if fmt == "png" and not output:
        raise UserError("--format png needs --output FILE.png")
    data = service.graph(file, fmt, confined=False)
    if output:
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(output, mode) as fh:
            if isinstance(data, dict):
                import json
                json.dump(data, fh, indent=2)
            else:
                fh.write(data)
        click.echo(f"wrote {output}")
    elif fmt == "json":
        emit_json(data)
    else:
        click.echo(data, nl=False)
