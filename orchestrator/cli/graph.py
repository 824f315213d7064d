"""`strato graph FILE`: the dependency graph as Graphviz dot, JSON or a PNG picture."""

import json

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option
from orchestrator.errors import UsageError


@click.command("graph")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["dot", "json", "png"]), default=None,
              help="dot (default), json (default with --json) or png (needs --output).")
@click.option("--output", "-o", metavar="PATH", help="Write to PATH (required for png).")
@json_option
@handle_errors
def command(file, fmt, output, as_json):
    """Print the dependency graph of FILE (an edge a -> b means a needs b).

    With --output, the graph is written to PATH in --format and, under --json, stdout gets
    {"ok": true, "output": PATH, "format": ...}; without it, --json prints the graph as JSON.
    """
    fmt = fmt or ("json" if as_json else "dot")
    if fmt == "png" and not output:
        raise UsageError("--format png needs --output FILE.png")
    data = service.graph(file, fmt, confined=False)
    if output:
        if isinstance(data, bytes):
            with open(output, "wb") as fh:
                fh.write(data)
        else:
            with open(output, "w", encoding="utf-8") as fh:
                if isinstance(data, dict):
                    json.dump(data, fh, indent=2)
                else:
                    fh.write(data)
        if as_json:
            emit_json({"ok": True, "output": output, "format": fmt})
        else:
            click.echo(f"wrote {output}")
    elif fmt == "json":
        emit_json(data)
    elif as_json:
        emit_json({"ok": True, "format": fmt, "graph": data})
    else:
        click.echo(data, nl=False)
