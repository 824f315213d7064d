"""The top-level `strato` group: verbs imported only when called, one error shape, unambiguous exit codes.

Kept free of the engine's imports so that `strato --version` starts at once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# Exit codes, following Terraform's -detailed-exitcode; a usage mistake has its own code (BSD's EX_USAGE).
EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_USAGE = 0, 1, 2, 64
EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 error or invalid input; 2 `plan` found changes or `status --check` found "
                   "unhealthy instances; 64 wrong usage (unknown option, missing argument, options that exclude "
                   "each other).")


def emit_json(data: Any) -> None:
    """One strict JSON document on stdout (NaN or infinity, e.g. from a metric, read null)."""
    from orchestrator.jsonsafe import strict_dumps
    click.echo(strict_dumps(data))


def error_document(code: str, message: str, **extra: Any) -> dict:
    """The one shape of every error under --json: {"ok": false, "error": {"code", "message", ...}}."""
    return {"ok": False, "error": {"code": code, "message": message, **extra}}


def wants_json(args: list[str] | None = None) -> bool:
    args = sys.argv[1:] if args is None else args
    return "--json" in args


def fail(code: str, message: str, as_json: bool, exit_code: int = EXIT_ERROR, lines: list[str] | None = None,
         **extra: Any) -> None:
    """Report an error (JSON on stdout under --json, one line per problem on stderr) and exit."""
    if as_json:
        emit_json(error_document(code, message, **extra))
    for line in lines if lines is not None else [f"error: {message}"]:
        click.echo(line, err=True)
    sys.exit(exit_code)


class StratoGroup(click.Group):
    """The top-level group: usage mistakes exit 64 (not 2, which means "changes found"), JSON under --json.

    Verbs named in `lazy` ({name: "module:attribute"}) are imported only when used or listed by --help.
    """

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name: str):
        if name not in self.commands and name in self.lazy:
            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr or "command"), name)
        return super().get_command(ctx, name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if not wants_json(argv):
                exc.show()
            fail("USAGE", exc.format_message(), wants_json(argv), EXIT_USAGE, lines=[] if not wants_json(argv)
                 else [f"error: {exc.format_message()}"])
        except click.ClickException as exc:
            fail("ERROR", exc.format_message(), wants_json(argv), exc.exit_code or EXIT_ERROR)
        except click.Abort:
            fail("ABORTED", "aborted", wants_json(argv))
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)
