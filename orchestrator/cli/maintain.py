"""`strato maintain NAME`: keep an infrastructure at its declared state (heal, scale requests, scaling policies)."""

import signal
import sys
import threading
import time

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.errors import UsageError
from orchestrator.service import UserError


def parse_interval(text: str) -> float:
    """'10s', '500ms', '2m', '1.5' (seconds) -> seconds."""
    from descriptors.values import scalar_unit
    raw = str(text).strip()
    try:
        seconds = float(raw)
    except ValueError:
        compact = raw.replace(" ", "")
        for unit in ("ms", "us", "ns", "s", "m", "h", "d"):
            if compact.endswith(unit) and compact[: -len(unit)]:
                seconds = scalar_unit(f"{compact[: -len(unit)]} {unit}", "scalar-unit.time")
                break
        else:
            seconds = None
    if seconds is None or not seconds > 0:
        raise UsageError(f"--interval takes a positive duration like 10s, 500ms or 2m, got '{text}'")
    return seconds


def _line(report) -> str:
    r = report
    parts = [f"[{time.strftime('%H:%M:%S', time.localtime(r.started))}] {r.infrastructure}: "
             f"{r.healthy}/{r.instances} healthy, pass {1000 * r.duration:.0f} ms"]
    if r.missing:
        parts.append(f"missing {', '.join(r.missing)}")
    if r.failed:
        parts.append(f"failed {', '.join(r.failed)}")
    for d in r.decisions:
        if "error" in d:
            parts.append(f"policy {d['policy']} on {d['node']} BROKEN: {d['error']}")
        elif d.get("action"):
            parts.append(f"{d['node']} {d['current']} -> {d['desired']} ({d['reason']})")
    for q in r.requests:
        parts.append(f"request {q['kind']} {q.get('value') or q.get('instance') or ''} on {q['node']}: "
                     + ("ok" if q.get("ok") else q.get("error", "refused")))
    for a in r.alerts:
        parts.append(f"{a['event']} {a['alert']} on {a['node']}: {a['value']:.4g}")
    if r.planned:
        parts.append(("would do" if not r.acted else "did") + " "
                     + ", ".join(f"{a['action']} {a['node']}[{a['index']}]" for a in r.planned))
    if r.deferred:
        parts.append(f"deferred: {r.deferred}")
    parts.extend(f"error: {e}" for e in r.errors)
    return "; ".join(parts)


def lease_settings(lease: str, renew_deadline: str, retry: str):
    """The lease options as LeaseSettings (a usage error, exit 64, when they do not fit together)."""
    from orchestrator.leases import LeaseSettings
    try:
        return LeaseSettings(parse_interval(lease), parse_interval(renew_deadline), parse_interval(retry)).check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def maintain_every(state_path, seconds: float, lease: str, renew_deadline: str, retry: str, as_json: bool) -> None:
    """`strato maintain --all`: this process's fair share of every infrastructure's loop, until Ctrl-C/SIGTERM
    (the leases are then handed back)."""
    from orchestrator.fleet import maintain_fleet
    from orchestrator.maintain import MaintainOptions

    settings = lease_settings(lease, renew_deadline, retry)
    store = service.open_store(state_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if as_json:
        emit_json({"ok": True, "maintain": "all", "interval_s": seconds, "lease_s": settings.duration})
        sys.stdout.flush()
    else:
        click.echo(f"maintaining this server's share of every infrastructure every {seconds:g} s; Ctrl-C stops",
                   err=True)
    try:
        maintain_fleet(store, MaintainOptions(interval=seconds, lease=settings), stop)
    except KeyboardInterrupt:
        stop.set()


@click.command("maintain")
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every infrastructure: with other `maintain --all` or `serve --maintain` processes on the same "
                   "state, each takes a fair share of the loops (leases with fencing tokens).")
@click.option("--lease", default="15s", show_default=True, help="With --all: how long a loop's lease lasts.")
@click.option("--renew-deadline", default="10s", show_default=True,
              help="With --all: loops stop by themselves when their leases could not be renewed for this long.")
@click.option("--retry", default="2s", show_default=True,
              help="With --all: how often leases are renewed and free ones looked for.")
@click.option("--interval", default="10s", show_default=True, help="Time between passes (10s, 500ms, 2m).")
@click.option("--once", is_flag=True, help="Run one pass and exit.")
@click.option("--dry-run", is_flag=True, help="Observe, evaluate and print what would be done; change nothing.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Strato's own metrics (Prometheus) on 127.0.0.1:PORT/metrics.")
@click.option("--prometheus", "prometheus_url", envvar="STRATO_PROMETHEUS_URL", metavar="URL",
              help="Evaluate policy metrics as PromQL on this Prometheus (default: scrape instances directly).")
@click.option("--passes", type=click.IntRange(1), default=None, help="Stop after this many passes.")
@click.option("--grace", type=float, default=None,
              help="Seconds an instance may fail its health checks before it is replaced (default 2 intervals; "
                   "a node's health_check.grace_period wins).")
@state_option
@json_option
@handle_errors
def command(name, every, lease, renew_deadline, retry, interval, once, dry_run, metrics_port, prometheus_url, passes,
            grace, state_path, as_json):
    """Keep infrastructure NAME at its declared state, pass after pass.

    \b
    Each pass observes every instance through its driver and its health checks, replaces
    failed or vanished instances, applies `strato scale` requests, keeps each node within its
    min/max and runs the node's scaling policies (target tracking, rules, the optimizer) with
    their cooldowns. Every decision is recorded as an event (`strato status NAME --watch`).
    One loop per infrastructure: a second one refuses, naming the first.

    \b
      strato maintain demo                          # every 10 s until Ctrl-C
      strato maintain demo --once --dry-run --json  # what would one pass do?
      strato maintain demo --interval 2s --metrics-port 9464
      strato maintain --all --state postgresql://db/strato   # a share of every loop
    """
    from orchestrator.maintain import Maintainer, MaintainOptions
    from orchestrator.metrics import LoopMetrics

    seconds = parse_interval(interval)
    if every or name is None:
        if name is not None or not every or once or dry_run or passes:
            raise UsageError("give NAME, or --all (which takes no NAME, --once, --dry-run or --passes)")
        return maintain_every(state_path, seconds, lease, renew_deadline, retry, as_json)
    store = service.open_store(state_path)
    service.require_infra(store, name)
    options = MaintainOptions(interval=seconds, dry_run=dry_run, prometheus_url=prometheus_url,
                              default_grace=grace)
    loop_metrics = LoopMetrics()
    maintainer = Maintainer(store, name, options, loop_metrics=loop_metrics)
    server = None
    if metrics_port is not None:
        try:
            server = loop_metrics.serve(metrics_port)
        except OSError as exc:
            raise UserError(f"cannot serve metrics on 127.0.0.1:{metrics_port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reports = []

    def show(report):
        if as_json:
            if once:
                reports.append(report.to_dict())
            else:
                emit_json(report.to_dict())
                sys.stdout.flush()
        else:
            click.echo(_line(report))
    if not as_json and not once:
        click.echo(f"maintaining {name} every {seconds:g} s" + (" (dry run)" if dry_run else "")
                   + (f"; metrics on http://127.0.0.1:{server.server_port}/metrics" if server else "")
                   + "; Ctrl-C stops", err=True)
    try:
        maintainer.run(stop, passes=1 if once else passes, on_report=show)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
    if once and as_json:
        emit_json(reports[0] if reports else {})
    if once and reports and reports[0]["errors"]:
        sys.exit(1)
