"""`strato optimizer`: the optimizer's own commands (optimizer.cli) plus those that need the state store's
infrastructures and journal: `history import|show`, and the decision timeline `report --infra X --node N` draws."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

import optimizer.cli as optimizer_cli
from optimizer.errors import OptimizerInputError
from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.errors import UserError
from orchestrator.state import StateError

command = optimizer_cli.optimizer_group


def _timeline(state: str | None, name: str, node: str, limit: int) -> dict:
    """The node's timeline for `strato optimizer report` (its errors as the optimizer's one-line errors)."""
    from orchestrator.optimizer_view import node_timeline
    try:
        store = service.open_store(state)
        try:
            return node_timeline(store, name, node, limit)
        finally:
            store.close()
    except (UserError, StateError) as error:
        raise OptimizerInputError(str(error)) from None


optimizer_cli.state_timeline = _timeline


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(result: dict) -> str:
    if not result["count"]:
        return f"{result['infrastructure']}/{result['node']} {result['metric']}: no rows stored"
    hours = (result["last"] - result["first"]) / 3600
    return (f"{result['infrastructure']}/{result['node']} {result['metric']}: {result['count']} row(s) from "
            f"{_when(result['first'])} to {_when(result['last'])} ({hours:.1f} h)")


@click.group("history")
def history() -> None:
    """The offered load per node that the optimizer forecasts from: import it, look at it.

    \b
      strato optimizer history import demo server --file load.csv
      strato optimizer history import demo server --prometheus http://127.0.0.1:9090 \\
          --query 'sum(rate(http_requests_total{job="server"}[1m]))' --start 2024-05-01 --step 60s
      strato optimizer history show demo server
    """


def _rows(file, prometheus, query, start, end, step) -> tuple[list, str]:
    from optimizer.history import parse_step, parse_time, query_prometheus, read_history_csv
    if bool(file) == bool(prometheus):
        raise click.UsageError("give either --file CSV or --prometheus URL --query PROMQL")
    if file:
        if query or start or end:
            raise click.UsageError("--query, --start and --end go with --prometheus, not --file")
        return read_history_csv(file)
    if not query:
        raise click.UsageError("--prometheus needs --query PROMQL (one series: aggregate it, e.g. sum(rate(...)))")
    try:
        stop = parse_time(end) if end else time.time()
        begin = parse_time(start) if start else stop - 7 * 86400
    except ValueError as error:
        raise click.UsageError(f"--start/--end: {error}") from None
    seconds = parse_step(step)
    rows = query_prometheus(prometheus, query, begin, stop, seconds)
    if not rows:
        raise OptimizerInputError(f"Prometheus has no points for that query between {_when(begin)} and {_when(stop)}")
    return rows, f"Prometheus range query, every {seconds:g} s"


@history.command("import")
@click.argument("name")
@click.argument("node")
@click.option("--file", "file", type=click.Path(dir_okay=False), metavar="CSV",
              help="timestamp,value rows (ISO 8601 time, UTC when it has no zone, or epoch seconds), or a "
                   "period,count trace (counts per period become a rate per second)")
@click.option("--prometheus", metavar="URL", help="a Prometheus server to ask (its /api/v1/query_range)")
@click.option("--query", metavar="PROMQL", help="with --prometheus: the load as one series")
@click.option("--start", metavar="TIME", help="with --prometheus: ISO 8601 or epoch seconds (default: --end - 7 days)")
@click.option("--end", metavar="TIME", help="with --prometheus: ISO 8601 or epoch seconds (default: now)")
@click.option("--step", default="60s", show_default=True, help="with --prometheus: the resolution, e.g. 15s, 1m")
@click.option("--metric", metavar="NAME", help="the metric to keep it under (default: the first input_metrics "
                                              "entry of the node's optimizer policy)")
@state_option
@json_option
@handle_errors
def import_command(name, node, file, prometheus, query, start, end, step, metric, state_path, as_json):
    """Store NODE's offered-load history for its optimizer policy to forecast from.

    Rows already stored (same time) are kept as they are: importing a file again adds nothing. A bad row
    refuses the whole import, naming its line; nothing is written then.
    """
    from orchestrator.optimizer_view import history_metric, import_history
    store = service.open_store(state_path)
    history_metric(store, name, node, metric)   # an unknown infrastructure or node is refused before any read
    rows, how = _rows(file, prometheus, query, start, end, step)
    result = import_history(store, name, node, metric, rows)
    if as_json:
        emit_json({"ok": True, "source": how, **result})
    else:
        click.echo(f"read {result['rows']} row(s) ({how}); {result['added']} new")
        click.echo(_span(result))


@history.command("show")
@click.argument("name")
@click.argument("node")
@click.option("--metric", metavar="NAME", help="which metric (default: the node's optimizer load metric)")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0, 1_000_000),
              help="with --json: the last N rows")
@state_option
@json_option
@handle_errors
def show_command(name, node, metric, limit, state_path, as_json):
    """How much load history NODE has: rows, first and last time (the rows themselves with --json)."""
    from orchestrator.optimizer_view import history_summary
    result = history_summary(service.open_store(state_path), name, node, metric, limit if as_json else 0)
    if as_json:
        emit_json({"ok": True, **result})
    else:
        click.echo(_span(result))


command.add_command(history)
