"""`strato state check|backup`: inspect the state file for damage and copy it safely, without opening it for writing."""

import sys

import click

from orchestrator import state
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option


@click.group("state")
def command() -> None:
    """Look after the state file ($STRATO_HOME/state.db): check it for damage, back it up.

    Neither verb writes to the state file, so both are safe on a damaged one.
    """


@command.command("check")
@state_option
@json_option
@handle_errors
def check(state_path, as_json):
    """SQLite's integrity check plus a JSON check of every stored value; exit 1 when anything is wrong."""
    path = state_path or state.default_state_path()
    problems = state.check_file(path)
    if as_json:
        emit_json({"ok": not problems, "state": path, "problems": problems})
    elif problems:
        click.echo(f"{path}: damaged", err=True)
        for p in problems:
            click.echo(f"  {p}", err=True)
        click.echo("Keep a copy with `strato state backup`, then restore an earlier backup or move the file "
                   "away to start with empty state.", err=True)
    else:
        click.echo(f"{path}: ok")
    sys.exit(1 if problems else 0)


@command.command("backup")
@click.option("--output", "-o", metavar="PATH", help="Where to write the copy (default: STATE.backup-DATE-TIME).")
@state_option
@json_option
@handle_errors
def backup(output, state_path, as_json):
    """Copy the state file (consistently, while builds run); a damaged file is copied byte for byte."""
    path = state_path or state.default_state_path()
    target = state.backup(path, output)
    if as_json:
        emit_json({"ok": True, "state": path, "backup": target})
    else:
        click.echo(f"wrote {target}")
