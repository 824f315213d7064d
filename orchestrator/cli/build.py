"""`strato build FILE --name NAME`: create/update an infrastructure; resumable after a crash or failure."""

import os
import sys

import click

from orchestrator import service
from orchestrator.cli.common import (Progress, emit_json, handle_errors, json_option, parse_inputs, shown,
                                     state_option)
from orchestrator.executor import RunOptions


def done_summary(done: dict[str, int]) -> str:
    """What the run did (not what was planned): '1 created, 0 replaced, 0 deleted, 0 unchanged, 2 failed'."""
    created = f"{done['create']} created" + (f" ({done['adopted']} adopted)" if done.get("adopted") else "")
    parts = [created, f"{done['replace']} replaced", f"{done['delete']} deleted", f"{done['noop']} unchanged"]
    parts += [f"{done[k]} {label}" for k, label in (("failed", "failed"), ("skipped", "not started"),
                                                     ("unknown", "not observed")) if done.get(k)]
    return ", ".join(parts)


@click.command("build")
@click.argument("file")
@click.option("--name", "-n", required=True, help="Infrastructure name (one state entry per name).")
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE",
              help="Input value (repeatable); inputs of the previous build are reused unless given again. "
                   "A file path a backend reads (e.g. an SSH pool's inventory) is relative to this directory.")
@click.option("--parallelism", "-p", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="At most this many driver operations at once.")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds per driver operation.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 20),
              help="Extra attempts for errors a backend marks retryable (with exponential backoff).")
@click.option("--json-logs", is_flag=True, help="Progress as JSON lines on stderr.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@state_option
@json_option
@handle_errors
def command(file, name, inputs, parallelism, timeout, retries, json_logs, quiet, state_path, as_json):
    """Build what FILE describes under NAME: each node starts as soon as its own dependencies are ready.

    Running it again converges: finished instances are kept, interrupted ones are adopted or
    recreated, failed ones retried. A second concurrent build of the same NAME is refused.
    """
    store = service.open_store(state_path)
    progress = Progress(total=0, verb=f"build {name}", quiet=quiet or as_json, json_logs=json_logs)
    try:
        report = service.build(file, name, parse_inputs(inputs), store,
                               RunOptions(parallelism=parallelism, timeout=timeout, retries=retries),
                               on_event=progress, confined=False, cwd=os.getcwd())
    finally:
        progress.close()
    if as_json:
        emit_json(report)
    else:
        click.echo(f"{'Built' if report['ok'] else 'Build FAILED for'} '{name}' in {report['duration_s']:.2f} s "
                   f"({done_summary(report['done'])})")
        for f in report["failures"]:
            where = f["node"] + (f"[{f['index']}]" if f.get("index") is not None else "")
            click.echo(f"  {where}: {f['action']} failed: {f['error']}", err=True)
        for n, o in report["nodes"].items():
            if o["status"] == "skipped":
                click.echo(f"  {n}: {o['error']}", err=True)
        for k, v in report["outputs"].items():
            click.echo(f"  {k} = {shown(v)}")
        if not report["ok"]:
            click.echo(f"Fix the cause and run `strato build {file} --name {name}` again to resume, "
                       f"or `strato destroy {name}` to clean up.", err=True)
    sys.exit(0 if report["ok"] else 1)
