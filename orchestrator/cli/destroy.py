"""`strato destroy NAME`: delete every instance (dependents first) and forget the infrastructure."""

import sys

import click

from orchestrator import service
from orchestrator.cli.common import Progress, emit_json, handle_errors, json_option, state_option
from orchestrator.executor import RunOptions
from orchestrator.errors import UsageError


@click.command("destroy")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--parallelism", "-p", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds per driver operation.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@state_option
@json_option
@handle_errors
def command(name, yes, parallelism, timeout, quiet, state_path, as_json):
    """Delete all instances of NAME. A failed destroy can simply be run again."""
    store = service.open_store(state_path)
    service.require_infra(store, name)  # the 'no infrastructure' error names the known ones
    count = len(store.instances(name))
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("destroy needs --yes when not run from a terminal")
        click.confirm(f"Destroy '{name}' and its {count} instance(s)?", abort=True)
    progress = Progress(total=count, verb=f"destroy {name}", quiet=quiet or as_json)
    try:
        report = service.destroy(store, name, RunOptions(parallelism=parallelism, timeout=timeout), progress)
    finally:
        progress.close()
    if as_json:
        emit_json(report)
    else:
        if report["ok"]:
            click.echo(f"Destroyed '{name}' ({count} instance(s)) in {report['duration_s']:.2f} s")
        for f in report["failures"]:
            click.echo(f"  {f['node']}[{f['index']}]: delete failed: {f['error']}", err=True)
        if not report["ok"]:
            click.echo(f"Destroy of '{name}' is incomplete; run `strato destroy {name}` again.", err=True)
    sys.exit(0 if report["ok"] else 1)
