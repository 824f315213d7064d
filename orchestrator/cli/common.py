"""Shared CLI pieces: options, error reporting (no tracebacks for user mistakes), progress and JSON output."""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable

import click

from descriptors.diagnostics import DescriptorError
from orchestrator.cli.group import EXIT_CODES_HELP, EXIT_ERROR, EXIT_USAGE, emit_json, fail  # noqa: F401 (re-exported)
from orchestrator.errors import UsageError
from orchestrator.jsonsafe import strict_dumps
from orchestrator.service import UserError
from orchestrator.state import StateError

state_option = click.option("--state", "state_path", metavar="PATH|URL", envvar="STRATO_STATE",
                            help="State database: an SQLite file or a postgresql:// URL (default $STRATO_STATE_URL, "
                                 "else $STRATO_HOME/state.db, ~/.strato/state.db).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout, for scripts.")


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--input takes KEY=VALUE, got '{pair}'")
        values[key] = value
    return values


def diagnostic_line(d: dict) -> str:
    """`file:line:col: CODE: message (at path); hint`, with `warning: ` after the position for a warning (as
    compilers write it), so a warning is never read as an error."""
    label = "warning: " if d.get("severity") == "warning" else ""
    where = f"{d['file']}:{d['line']}:{d['col']}" if d.get("line") else d["file"]  # no line: the file itself
    line = f"{where}: {label}{d['code']}: {d['message']}"
    if d.get("path"):
        line += f" (at {d['path']})"
    if d.get("hint"):
        line += f"; {d['hint']}"
    return line


def shown(value: Any) -> str:
    """An output value as a script reads it: text as is, a list, mapping or number as JSON, never a Python repr."""
    if value is None:
        return ""
    return value if isinstance(value, str) else strict_dumps(value)


def handle_errors(fn: Callable) -> Callable:
    """Turn user mistakes into `file:line:col: CODE: message` lines or `error: ...` and exit 1 (64 for wrong usage)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = kwargs.get("as_json", False)
        try:
            return fn(*args, **kwargs)
        except DescriptorError as exc:
            diags = [d.to_dict() for d in exc.diagnostics]
            first = next((d for d in exc.diagnostics if d.severity == "error"), exc.diagnostics[0])
            fail(first.code, first.format(), as_json, lines=[diagnostic_line(d) for d in diags], diagnostics=diags)
        except (UserError, StateError) as exc:
            fail(getattr(exc, "code", None) or type(exc).__name__.upper(), str(exc), as_json,
                 exit_code=EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR)
        except KeyboardInterrupt:
            fail("INTERRUPTED", "interrupted; state is saved, run the same command again to resume", as_json,
                 exit_code=130)

    return wrapper


class Progress:
    """Build/destroy progress: a Rich live view on a terminal, plain timestamped lines otherwise."""

    LABELS = {"create_started": "creating", "replace_started": "replacing", "delete_started": "deleting",
              "ready": "ready", "deleted": "deleted", "failed": "FAILED", "skipped": "skipped",
              "delete_failed": "DELETE FAILED"}

    def __init__(self, total: int, verb: str, quiet: bool = False, json_logs: bool = False):
        self.started = time.monotonic()
        self.total, self.done, self.verb, self.quiet, self.json_logs = total, 0, verb, quiet, json_logs
        self.rich = None
        if not quiet and not json_logs and sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, \
                    TextColumn, TimeElapsedColumn
                self.rich = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
                                         console=Console(stderr=True), transient=False)
                self.task = self.rich.add_task(verb, total=max(total, 1), last="")
                self.rich.start()
            except ImportError:
                self.rich = None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "planned":
            self.total = event["changes"]
            if self.rich is not None:
                self.rich.update(self.task, total=max(self.total, 1))
        if kind in ("ready", "deleted", "failed", "delete_failed"):
            self.done += 1
        if self.quiet:
            return
        if self.json_logs:
            click.echo(strict_dumps(event), err=True)
            return
        label = self.LABELS.get(kind)
        if label is None:
            return
        where = event["node"] + (f"[{event['index']}]" if event.get("index") is not None else "")
        extra = ""
        if event.get("error"):
            extra = f": {event['error']}"
        elif event.get("adopted"):
            extra = " (adopted from an interrupted run)"
        elif event.get("because"):
            extra = f" (dependency {event['because']} failed)"
        if self.rich is not None:
            self.rich.update(self.task, completed=min(self.done, self.total), last=f"{where} {label}")
            if kind in ("failed", "delete_failed", "skipped"):
                self.rich.console.print(f"[red]{where} {label}{extra}[/red]")
        else:
            click.echo(f"[{time.monotonic() - self.started:7.2f}s] {where:<24} {label}{extra}", err=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()
