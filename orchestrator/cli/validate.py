"""`strato validate FILE...`: check descriptors and report every problem with its position."""

import sys

import click

from orchestrator import service
from orchestrator.cli.common import diagnostic_line, emit_json, handle_errors, json_option


@click.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@json_option
@handle_errors
def command(files, as_json):
    """Check descriptors: syntax, types, properties, requirements, functions and dependency cycles.

    Every problem is printed as `file:line:col: CODE: message (at path)`, a warning as
    `file:line:col: warning: CODE: ...` (it does not make the file invalid); all problems of a file
    in one run. A file without topology_template is checked as a type library. Imports may
    name any file you can read (`../common/types.yaml`), relative to the importing file or
    the root descriptor's directory. Exit 0 when every file is valid, 1 otherwise.
    """
    results = service.validate(list(files), confined=False)
    ok = all(r["ok"] for r in results)
    if as_json:
        doc = {"ok": ok, "files": results}
        first = next((d for r in results for d in r["diagnostics"] if d.get("severity") == "error"), None)
        if first is not None:  # the same "error" member every verb's --json failure has
            doc["error"] = {"code": first["code"], "message": f"{first['file']}:{first['line']}:{first['col']}: "
                                                              f"{first['code']}: {first['message']}"}
        emit_json(doc)
    else:
        for r in results:
            for d in r["diagnostics"]:
                click.echo(diagnostic_line(d), err=True)
            if r["ok"] and r.get("library"):
                click.echo(f"{r['file']}: valid type library (no topology_template, so nothing to build)")
            elif r["ok"]:
                click.echo(f"{r['file']}: valid ({r.get('nodes', 0)} node templates)")
    sys.exit(0 if ok else 1)
