"""`strato events NAME`: the journal of an infrastructure (builds, heals, scaling, rollouts, drift, retraining)."""

import fnmatch
import json
import time

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option


def _line(event: dict) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["ts"]))
    detail = json.dumps(event["detail"], sort_keys=True, default=str) if event["detail"] else ""
    return f"{stamp}  {event['kind']:<22} {event['key'] or '-'}  {detail}"


@click.command("events")
@click.argument("name")
@click.option("--kind", "kinds", multiple=True, metavar="PATTERN",
              help="Only events whose kind matches (repeatable; shell patterns, e.g. 'rollout_*').")
@click.option("--node", default=None, help="Only events of this node's instances (or naming it in their detail).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100000),
              help="Look at the last N events of the journal.")
@state_option
@json_option
@handle_errors
def command(name, kinds, node, limit, state_path, as_json):
    """Print the journal of NAME, oldest first: what Strato did and why.

    \b
    Why did this model change?
      strato events ml --kind 'model_*' --kind 'retrain_*' --kind 'rollout_*' --kind alias_moved
    What did the autoscaler decide?
      strato events demo --kind scaled --kind 'hold*' --node server --json
    """
    store = service.open_store(state_path)
    service.require_infra(store, name)
    shown = [e for e in store.events(name, limit=limit)
             if (not kinds or any(fnmatch.fnmatchcase(e["kind"], k) for k in kinds))
             and (node is None or _names(e, node))]
    if as_json:
        emit_json({"infrastructure": name, "events": shown})
        return
    for event in shown:
        click.echo(_line(event))


def _names(event: dict, node: str) -> bool:
    key = event.get("key") or ""
    detail = event.get("detail") or {}
    return f"/{node}/" in key or key.startswith(f"{node}/") or detail.get("node") == node
