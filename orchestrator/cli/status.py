"""`strato status [NAME]`: infrastructures and their instances, as stored and as observed now (`--watch`: live)."""

import sys
import time

import click

from orchestrator import service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.errors import UsageError
from orchestrator.states import InstanceStatus


def _render(data: dict, store, events: int) -> list[str]:
    lines = []
    if not data["infrastructures"]:
        lines.append("no infrastructures")
    for infra in data["infrastructures"]:
        loop = store.lease_holder(infra["name"])
        lines.append(f"{infra['name']}: {infra['status']}  ({infra['descriptor']})"
                     + (f"  maintained by {loop['holder']}" if loop else ""))
        for inst in infra["instances"]:
            attrs = inst["attributes"] or {}
            where = attrs.get("url") or attrs.get("pid") or ""
            line = f"  {inst['node'] + '[' + str(inst['index']) + ']':<28} {inst['status']:<10} {inst['driver']:<8} {where}"
            if inst.get("error"):
                line += f"  error: {inst['error']}"
            lines.append(line)
        lines.extend(_rollout_lines(infra))
        lines.extend(_models(infra.get("models") or {}))
        lines.extend(_hints(infra, loop))
        if events:
            for ev in store.events(infra["name"], limit=events):
                detail = ev["detail"]
                text = detail.get("reason") or detail.get("error") or detail.get("detail") or ""
                node = detail.get("node") or (ev["key"] or "").split("@")[0]
                stamp = time.strftime("%H:%M:%S", time.localtime(ev["ts"]))
                lines.append(f"    {stamp} {ev['kind']:<20} {node:<20} {text}"[:160])
    return lines


def _rollout_lines(infra: dict) -> list[str]:
    """A model server's versions: the stable one, and a rollout's canary, step, weight and last verdict (why)."""
    lines = []
    for r in infra.get("rollouts") or []:
        if r["phase"] == "idle":
            last = r.get("last_rollout") or {}
            ended = f"; last rollout: {last['canary']} {last['outcome']}" if last.get("canary") else ""
            lines.append(f"  model {r['node']}: {r['stable']}{ended}")
            continue
        step = f"step {r['step']}/{r['steps']}, " if r.get("step") else ""
        verdict = f"; last analysis: {r['verdict']}" if r.get("verdict") else ""
        why = f" ({'; '.join(r['why'])})" if r.get("why") else ""
        lines.append(f"  rollout {r['node']}: {r['stable']} -> {r['canary']} {r['phase']}, {step}"
                     f"canary {r['weight']:g} %{verdict}{why}"[:200])
    return lines


def _models(models: dict) -> list[str]:
    """Per monitored model server: its last window's drift per feature, the alarms and the accuracy."""
    lines = []
    for node, m in sorted(models.items()):
        last = m.get("last_window")
        if not last:
            lines.append(f"  monitor {node}: no window closed yet")
            continue
        alarms = ", ".join(f"{name} {'FIRING' if a['firing'] else 'ok'} ({a['run']}/{a['k'] or '-'} in a row)"
                           for name, a in m["alarms"].items())
        accuracy = "-" if last.get("accuracy") is None else f"{last['accuracy']:.3f}"
        lines.append(f"  monitor {node}: {last.get('version') or '?'}  window {last['window']} ({last['rows']} rows)  "
                     f"drifted {'yes' if last.get('drifted') else 'no' if last.get('drifted') is False else '-'}  "
                     f"accuracy {accuracy} ({last.get('labels') or 0} labels)  alarms: {alarms}")
        features = [f"{f}{'*' if v.get('drifted') else ''} {v.get('method')} "
                    + ("-" if v.get("statistic") is None else f"{v['statistic']:.3g}")
                    for f, v in sorted(m.get("features", {}).items())]
        if features:
            lines.append("    drift (* drifted): " + ", ".join(features))
    return lines


def _probes(targets: list[tuple]) -> list:
    """The maintain loop's health checks (HTTP, TCP, command) for (instance, health_check) pairs, all at once,
    each within its own time limit (a stopped replica costs one timeout, not one per instance)."""
    from orchestrator.health import probe_all
    from orchestrator.maintain import MaintainOptions
    results = probe_all(targets, MaintainOptions().health_timeout)
    return [results.get(rec.key) for rec, _ in targets]


def _names(entries: list[dict]) -> str:
    return ", ".join(f"{m['node']}[{m['index']}]" for m in entries)


def _hints(infra: dict, loop: dict | None) -> list[str]:
    """One line per kind of instance that is not ready, each saying what happens to it."""
    missing = infra.get("missing") or []
    gone = [m for m in missing if m["status"] not in (InstanceStatus.UNKNOWN, InstanceStatus.UNHEALTHY)]
    unknown = [m for m in missing if m["status"] == InstanceStatus.UNKNOWN]
    unhealthy = [m for m in missing if m["status"] == InstanceStatus.UNHEALTHY]
    lines = []
    if gone:
        advice = ("the maintain loop recreates them" if loop
                  else f"run `strato maintain {infra['name']} --once` (or `strato build`) to recreate them")
        listed = ", ".join(f"{m['node']}[{m['index']}] ({m['status']})" for m in gone)
        lines.append(f"  not healthy: {listed}; {advice}")
    if unknown:
        lines.append(f"  unknown: {_names(unknown)}: their backend did not answer, so they are left as they are "
                     "until it does")
    if unhealthy:
        lines.append(f"  unhealthy: {_names(unhealthy)} fail their health check"
                     + ("; the maintain loop replaces them after their grace period" if loop else ""))
    if infra.get("leaving"):
        lines.append(f"  leaving: {_names(infra['leaving'])} (deleting: the node was scaled down)")
    if infra.get("probe_error"):
        lines.append(f"  {infra['probe_error']}")
    return lines


@click.command("status")
@click.argument("name", required=False)
@click.option("--no-refresh", is_flag=True, help="Show stored state without asking the backends.")
@click.option("--check", is_flag=True,
              help="For scripts: observe every instance and run its node's health_check; exit 2 unless all are "
                   "healthy (0 when they are).")
@click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C (or --count refreshes), with recent events.")
@click.option("--every", default=2.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(1), default=None, help="With --watch: stop after this many refreshes.")
@state_option
@json_option
@handle_errors
def command(name, no_refresh, check, watch, every, count, state_path, as_json):
    """Show infrastructures (all, or NAME) with each instance's status and attributes.

    An infrastructure whose build finished but some of whose instances are gone or failed is
    shown as `degraded`, with the missing instances listed; `strato build` again (or a running
    `strato maintain`) recreates them.

    With --watch the view is redrawn every --every seconds with the latest events (scaling
    decisions, heals, alerts); with --json it prints one JSON document per refresh.
    """
    if check and no_refresh:
        raise UsageError("--check observes every instance now; it cannot be combined with --no-refresh")
    store = service.open_store(state_path)
    shown, code = 0, 0
    try:
        while True:
            # While a maintain loop runs it is the one observing the backends; --watch then only reads state
            # (--check still observes and probes: its exit code is a promise about now).
            looped = watch and not check and name is not None and store.lease_holder(name) is not None
            data = service.status(store, name, refresh=not no_refresh and not looped, probe=_probes if check else None)
            healthy = all(i["healthy"] for i in data["infrastructures"])
            code = 2 if check and not healthy else 0
            if as_json:
                if watch:
                    for infra in data["infrastructures"]:
                        infra["maintained_by"] = store.lease_holder(infra["name"])
                        infra["events"] = store.events(infra["name"], limit=10)
                emit_json(data)
            else:
                lines = _render(data, store, 8 if watch else 0)
                if watch and sys.stdout.isatty():
                    click.clear()
                    lines.insert(0, f"every {every:g} s, Ctrl-C ends  {time.strftime('%H:%M:%S')}")
                click.echo("\n".join(lines))
            shown += 1
            if not watch or (count is not None and shown >= count):
                break
            sys.stdout.flush()
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    sys.exit(code)
