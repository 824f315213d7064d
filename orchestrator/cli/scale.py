"""`strato scale NAME NODE COUNT`: set a node's instance count and apply it."""

import sys

import click

from orchestrator import service
from orchestrator.cli.common import Progress, emit_json, handle_errors, json_option, state_option
from orchestrator.executor import RunOptions
from orchestrator.service import UserError


@click.command("scale")
@click.argument("name")
@click.argument("node")
@click.argument("count", type=click.IntRange(min=0))
@click.option("--force", is_flag=True,
              help="Scale to 0 even though other nodes depend on NODE (they lose what they need and may fail).")
@click.option("--no-apply", is_flag=True, help="Only record the desired count; the next build applies it.")
@click.option("--parallelism", "-p", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--quiet", "-q", is_flag=True)
@state_option
@json_option
@handle_errors
def command(name, node, count, force, no_apply, parallelism, quiet, state_path, as_json):
    """Scale NODE of infrastructure NAME to COUNT instances (using the descriptor it was built from).

    COUNT must lie within the node's min_instances/max_instances and Strato's per-node ceiling
    ($STRATO_MAX_INSTANCES_PER_NODE, default 1000); the error names the bound and where it is set.
    Scaling to 0 a node that others depend on is refused, naming them, unless --force is given.
    """
    store = service.open_store(state_path)
    result = service.scale(store, name, node, count, force=force)
    if not no_apply:
        descriptor = store.get_infra(name).descriptor
        if not descriptor:
            raise UserError(f"'{name}' has no stored descriptor; run strato build first")
        progress = Progress(total=0, verb=f"scale {name}", quiet=quiet or as_json)
        try:
            result["build"] = service.build(descriptor, name, {}, store, RunOptions(parallelism=parallelism),
                                            on_event=progress, holder="strato scale", confined=False)
        finally:
            progress.close()
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{name}: {node} -> {count} instance(s)" + (" (recorded)" if no_apply else ""))
    sys.exit(0 if no_apply or result["build"]["ok"] else 1)
