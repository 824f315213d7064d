"""`strato scale NAME NODE --to N | --by ±N | --drop INSTANCE`: a scale request, applied by the maintain loop."""

import sys

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.errors import UsageError


@click.command("scale")
@click.argument("name")
@click.argument("node")
@click.argument("count", type=click.IntRange(min=0), required=False)
@click.option("--to", "to", type=click.IntRange(min=0), help="Scale to exactly N instances.")
@click.option("--by", "by", type=int, help="Add (+N) or remove (-N) instances.")
@click.option("--drop", "drop", metavar="INSTANCE",
              help="Remove this instance (its key, NODE[i] or i) and lower the count by one.")
@click.option("--force", is_flag=True,
              help="Scale to 0 even though other nodes depend on NODE (they lose what they need and may fail).")
@click.option("--no-apply", is_flag=True, help="Only record it; a maintain loop or the next build applies it.")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="With a maintain loop running: seconds to wait for it to apply the request.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@state_option
@json_option
@handle_errors
def command(name, node, count, to, by, drop, force, no_apply, wait, quiet, state_path, as_json):
    """Scale NODE of infrastructure NAME (Occopus's scaleto / scaleup / scaledown).

    \b
      strato scale demo server --to 4       # exactly 4 replicas (also: strato scale demo server 4)
      strato scale demo server --by +2      # two more
      strato scale demo server --drop server[0]

    The request is recorded in state. A running `strato maintain` applies it on its next pass
    (this command waits up to --wait seconds for that); without one, this command applies it.
    The resulting count must lie within the node's min_instances/max_instances and Strato's
    per-node ceiling ($STRATO_MAX_INSTANCES_PER_NODE, default 1000); the error names the bound and
    where it is set. Scaling to 0 a node that others depend on is refused, naming them, unless
    --force is given.
    """
    from orchestrator import scaling
    from orchestrator.maintain import request_scale
    from orchestrator.stored import stored_template

    given = [x for x in (count, to, by, drop) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of COUNT, --to N, --by ±N or --drop INSTANCE")
    kind, value, instance = (("to", count if count is not None else to, None) if (count is not None or to is not None)
                             else ("by", by, None) if by is not None else ("drop", None, drop))
    store = service.open_store(state_path)
    infra = service.require_infra(store, name)
    template = stored_template(infra)   # read once: the count, the checks and the pass all use it
    current = scaling.desired_count(infra, node, template) or 0
    after = value if kind == "to" else current + (value if kind == "by" else -1)
    what = {"to": f"to {value}", "by": f"by {value:+d}" if value is not None else "", "drop": f"--drop {instance}"}[kind]
    scaling.check_scale(store, name, node, after, force, source=f"strato scale {name} {node} {what}",
                        template=template)
    if no_apply and kind == "to":  # the desired count itself: the next build or maintain pass applies it
        result = {**scaling.set_desired(store, name, node, value, force=force, template=template),
                  "request": None, "applied": False}
    elif no_apply:
        request = scaling.record_request(store, name, node, kind, value, instance)
        result = {"infrastructure": name, "node": node, "request": request, "applied": False}
    else:
        result = request_scale(store, name, node, kind, value, instance, wait=wait, template=template)
    outcome = result.get("result") or {}
    if as_json:
        emit_json(result)
    elif not quiet or (result["applied"] and not outcome.get("ok")):
        if no_apply:
            click.echo(f"{name}: {node} {what} recorded" + (f" (request {result['request']})" if result['request'] else ""))
        elif not result["applied"]:
            click.echo(f"{name}: {node} {what} recorded; {result['applied_by']} has not applied it yet")
        elif outcome.get("ok"):
            click.echo(f"{name}: {node} -> {outcome.get('desired', '?')} instance(s) (applied by {result['applied_by']})")
        else:
            click.echo(f"error: {outcome.get('error', 'refused')}", err=True)
    if not no_apply and result["applied"] and not outcome.get("ok"):
        sys.exit(1)
    deferred = (result.get("pass") or {}).get("deferred")
    if deferred:
        if not as_json:
            click.echo(f"error: recorded, but not carried out now: {deferred}", err=True)
        sys.exit(1)
    errors = (result.get("pass") or {}).get("errors")
    if errors:
        if not as_json:
            for e in errors:
                click.echo(f"error: {e}", err=True)
        sys.exit(1)
