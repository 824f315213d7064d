"""`strato import INFRA.yaml -o OUT.yaml`: convert an Occopus infrastructure description into a Strato descriptor."""

import os
import sys

import click

from descriptors.diagnostics import DescriptorError
from descriptors.loader import load_template_text
from descriptors.occopus import default_node_definitions, dump_descriptor, import_occopus
from orchestrator.cli.common import diagnostic_line, emit_json, handle_errors, json_option


@click.command("import")
@click.argument("infra", metavar="INFRA.yaml", type=click.Path(dir_okay=False))
@click.option("--node-definitions", "-n", "node_defs", metavar="FILE", type=click.Path(dir_okay=False),
              help="Occopus node definitions (default: nodes/node_definitions.yaml beside INFRA.yaml).")
@click.option("--output", "-o", "output", metavar="OUT.yaml", type=click.Path(dir_okay=False),
              help="Where to write the Strato descriptor (default: stdout).")
@json_option
@handle_errors
def command(infra, node_defs, output, as_json):
    """Convert an Occopus infrastructure (nodes, scaling, variables, dependencies) and its node
    definitions (ec2/nova/docker resources, cloud-init, health checks) into a Strato descriptor.

    Every alternative implementation of a node type is kept, in order, as the `implementations`
    of a strato.nodes.VM. Features Strato does not carry over are reported as warnings. The
    result is validated before it is written. Exit 0 on success, 1 on errors.
    """
    node_defs = node_defs or default_node_definitions(infra)
    document, warnings = import_occopus(infra, node_defs)
    text = dump_descriptor(document)
    target = output or "<stdout>"
    if output:
        # validate where it will live, so relative paths resolve as they will for `strato build`
        target = os.path.abspath(output)
    try:
        template = load_template_text(text, target)
        warnings = warnings + template.warnings
    except DescriptorError as exc:
        exc.diagnostics.insert(0, type(exc.diagnostics[0])(
            "IMPORT_RESULT_INVALID", "the converted descriptor does not validate (a bug or an unsupported "
            "combination); nothing was written", exc.diagnostics[0].position))
        raise
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    if as_json:
        emit_json({"ok": True, "output": output, "nodes": len(template.node_templates),
                   "warnings": [w.to_dict() for w in warnings],
                   **({} if output else {"descriptor": document})})
    else:
        for w in warnings:
            click.echo(diagnostic_line(w.to_dict()), err=True)
        if output:
            click.echo(f"wrote {output} ({len(template.node_templates)} node templates, {len(warnings)} warnings)",
                       err=True)
        else:
            click.echo(text, nl=False)
    sys.exit(0)
