"""`strato state check|backup|migrate`: inspect the state file for damage, copy it safely, move it to PostgreSQL."""

import sys

import click

from orchestrator import state
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option


def sqlite_only(path: str, verb: str) -> str:
    if state.is_url(path):
        from orchestrator.errors import UsageError
        raise UsageError(f"state {verb} works on an SQLite state file; for PostgreSQL use its own tools "
                         "(pg_dump, pg_amcheck)")
    return path


@click.group("state")
def command() -> None:
    """Look after the state file ($STRATO_HOME/state.db): check it for damage, back it up, move it to PostgreSQL.

    Neither check nor backup writes to the state file, so both are safe on a damaged one.
    """


@command.command("check")
@state_option
@json_option
@handle_errors
def check(state_path, as_json):
    """SQLite's integrity check plus a JSON check of every stored value; exit 1 when anything is wrong."""
    path = sqlite_only(state_path or state.default_state_path(), "check")
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
    path = sqlite_only(state_path or state.default_state_path(), "backup")
    target = state.backup(path, output)
    if as_json:
        emit_json({"ok": True, "state": path, "backup": target})
    else:
        click.echo(f"wrote {target}")


@command.command("migrate")
@click.option("--to", "target", required=True, metavar="URL",
              help="The PostgreSQL database to copy into: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB.")
@click.option("--force", is_flag=True, help="Replace the target's state even when it already holds infrastructures.")
@click.option("--verify-only", is_flag=True, help="Copy nothing: only compare the two stores, table by table.")
@state_option
@json_option
@handle_errors
def migrate(target, force, verify_only, state_path, as_json):
    """Copy the SQLite state (every table) into PostgreSQL, then verify both hold the same rows.

    \b
    Stop `strato serve`/`maintain` on the SQLite state first, then:
      strato state migrate --to postgresql://strato@db.example/strato
      export STRATO_STATE_URL=postgresql://strato@db.example/strato
    Exit 0 when every table matches (row counts and contents), 1 when anything differs or the target
    already holds infrastructures (without --force).
    """
    from orchestrator.errors import UsageError
    from orchestrator.state_copy import migrate as run
    from orchestrator.statedb import is_url
    path = state_path or state.default_state_path()
    if not is_url(target):
        raise UsageError(f"--to takes a postgresql:// URL, got '{target}'")
    if is_url(path):
        raise UsageError("state migrate copies an SQLite state: --state (or $STRATO_STATE) must name a file")

    def progress(table, done, total):
        if not as_json:
            click.echo(f"copying {table}: {done}/{total} rows", err=True)
    result = run(path, target, force=force, verify_only=verify_only, progress=progress)
    if as_json:
        emit_json(result)
    else:
        for t in result["tables"]:
            if t["problem"]:
                click.echo(f"  {t['table']}: DIFFERS: {t['problem']}", err=True)
        tables = len(result["tables"])
        if result["ok"]:
            click.echo(f"verified: all {tables} tables match ({sum(t['source_rows'] for t in result['tables'])} rows, "
                       f"counts and contents) between {path} and {result['target']}")
        else:
            click.echo(f"error: VERIFY_FAILED: {sum(1 for t in result['tables'] if t['problem'])} of {tables} tables "
                       "differ between the source and the target", err=True)
    sys.exit(0 if result["ok"] else 1)
