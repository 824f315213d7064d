"""`strato serve`: run the REST API and dashboard (loopback by default, bearer tokens always unless told
otherwise), optionally with the maintain loop in the background."""

import ipaddress
import threading

import click

from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.service import UserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_cluster_member(state_path, settings, url: str, interval: float | None, app=None, claim: bool = False):
    """Register this server on the state database, keep its leases and heartbeat, claim operations (app) and,
    with an interval, run its share of the maintain loops on a thread. Returns a function that stops it all
    and hands the leases back (graceful stop)."""
    from orchestrator.fleet import maintain_fleet
    from orchestrator.leases import LeaseKeeper, ServerRegistry
    from orchestrator.maintain import MaintainOptions
    from orchestrator.metrics import LoopMetrics
    from orchestrator.state import StateStore

    store = StateStore(state_path)
    registry = ServerRegistry(store, settings, url=url)
    registry.register()
    keeper = LeaseKeeper(store, registry.id, settings)
    keeper.beats.append(registry.beat)
    if claim:
        app.state.ctx.ops.join_cluster(registry.id, settings, keeper)
    keeper.start()
    stop, thread = threading.Event(), None
    if interval is not None:
        loop_metrics = LoopMetrics()
        if app is not None and loop_metrics.registry is not None:
            app.state.ctx.extra_registries.append(loop_metrics.registry)
        options = MaintainOptions(interval=interval, lease=settings)
        thread = threading.Thread(target=maintain_fleet, args=(store, options, stop, loop_metrics, registry, keeper),
                                  name="strato-maintain", daemon=True)
        thread.start()

    def finish() -> None:
        if stop.is_set():
            return
        stop.set()
        if thread is not None:
            thread.join(30)
        if claim:
            app.state.ctx.ops.leave_cluster()
        keeper.stop()
        registry.deregister()
    return finish


def _announce(app, insecure_no_auth: bool, allow_local_processes: bool, host: str, port: int) -> None:
    """Say on stderr how to authenticate, and warn about what is unsafe."""
    if insecure_no_auth:
        for line in ("WARNING: authentication is OFF (--insecure-no-auth).",
                     f"WARNING: every local user and process that reaches {host}:{port} can build, scale and destroy.",
                     "WARNING: never use this on a shared machine."):
            click.secho(line, fg="red", bold=True, err=True)
    else:
        files = app.state.ctx.tokens.files
        where = ", ".join(f"{scope}: {path}" for scope, path in files.items()) or "from the environment"
        click.echo(f"API tokens ({where}); send 'Authorization: Bearer <token>'", err=True)
    if allow_local_processes:
        click.secho("nodes that run code on this machine are accepted over HTTP: they run as this server's user",
                    fg="yellow", err=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535))
@click.option("--insecure-no-auth", is_flag=True,
              help="Answer without a token. Refused unless --host is a loopback address.")
@click.option("--allow-local-processes", is_flag=True,
              help="Accept descriptors whose nodes run code on this machine as this server's user (local "
                   "processes, containers, Terraform, Ansible playbooks, health_check commands).")
@click.option("--max-body-mb", default=10.0, show_default=True, type=click.FloatRange(0.001, 1024),
              help="Largest request body (413 beyond it).")
@click.option("--max-nodes", default=1000, show_default=True, type=click.IntRange(1, 10 ** 6))
@click.option("--max-instances", default=5000, show_default=True, type=click.IntRange(1, 10 ** 7))
@click.option("--validation-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds a received descriptor may take to check.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Operations (builds, scales, destroys) running at once.")
@click.option("--maintain", "run_maintain", is_flag=True,
              help="Also run the maintain loop for every infrastructure no other loop maintains "
                   "(its metrics join /metrics).")
@click.option("--maintain-interval", default="10s", show_default=True, help="Time between maintain passes.")
@click.option("--cluster/--no-cluster", default=None,
              help="Share the state with other servers: register, claim queued operations, resume those of a dead "
                   "server, take a fair share of the maintain loops [default: on for a postgresql:// state].")
@click.option("--lease", default="15s", show_default=True, help="How long a loop's lease lasts without renewal.")
@click.option("--renew-deadline", default="10s", show_default=True,
              help="A server that could not renew its leases for this long stops those loops itself.")
@click.option("--retry", default="2s", show_default=True,
              help="How often leases are renewed, free ones looked for and operations claimed.")
@state_option
@json_option
@handle_errors
def command(host, port, insecure_no_auth, allow_local_processes, max_body_mb, max_nodes, max_instances,
            validation_timeout, workers, run_maintain, maintain_interval, cluster, lease, renew_deadline, retry,
            state_path, as_json):
    """Serve the REST API under /v1 (OpenAPI at /docs) and the dashboard at /, over the CLI's state.

    \b
    Every request needs 'Authorization: Bearer TOKEN'. Tokens are generated on first start:
      $STRATO_HOME/api-token        write scope (build, scale, destroy)
      $STRATO_HOME/api-token.read   read scope (look only)
    or set STRATO_API_TOKEN / STRATO_API_READ_TOKEN. Open http://HOST:PORT/ and paste a token.

    With --json, one line {"ok": true, "url": ..., "docs": ...} is printed on stdout before serving
    (the server's own log goes to stderr), so a script can read where to connect.
    With --maintain the maintain loop runs in a background thread for every infrastructure that no
    other loop maintains, and Strato's own metrics are served at /metrics.

    \b
    Several servers on one PostgreSQL (--state postgresql://... or STRATO_STATE_URL):
      strato serve --maintain --port 8470 --state postgresql://strato@db/strato
      strato serve --maintain --port 8471 --state postgresql://strato@db/strato
    each takes a fair share of the loops (leases with fencing tokens), any of them runs a queued
    operation, and what a stopped or dead server held is taken over within one lease.
    `strato status --servers` shows who holds what.
    """
    try:
        import uvicorn
        from orchestrator.api import ApiSettings, create_app
    except ImportError:
        raise UserError("the REST API needs FastAPI and uvicorn: pip install 'strato[api]'") from None
    if insecure_no_auth and not is_loopback(host):
        raise UserError(f"--insecure-no-auth is refused on {host}: anyone who reaches it could run builds. "
                        "Bind to 127.0.0.1, or keep token authentication")
    from orchestrator.cli.maintain import lease_settings, parse_interval
    from orchestrator.statedb import default_location, is_url
    settings_lease = lease_settings(lease, renew_deadline, retry)
    interval = parse_interval(maintain_interval) if run_maintain else None
    clustered = cluster if cluster is not None else is_url(state_path or default_location())
    settings = ApiSettings(auth=not insecure_no_auth, allow_local_processes=allow_local_processes,
                           max_body_bytes=int(max_body_mb * 2 ** 20), max_nodes=max_nodes,
                           max_instances=max_instances, validation_timeout=validation_timeout, workers=workers,
                           cluster=clustered)
    try:
        app = create_app(state_path, settings)
    except ValueError as exc:  # a token that is too short
        raise UserError(str(exc)) from None
    _announce(app, insecure_no_auth, allow_local_processes, host, port)
    finish = None
    if clustered or run_maintain:
        finish = start_cluster_member(state_path, settings_lease, f"http://{host}:{port}", interval,
                                      app, claim=clustered)
        app.state.ctx.on_stop.append(finish)   # uvicorn ends the process right after a SIGTERM's shutdown
    if as_json:
        from orchestrator.statedb import redact
        url = f"http://{host}:{port}"
        shown_state = redact(state_path) if state_path else state_path
        emit_json({"ok": True, "url": url, "docs": f"{url}/docs", "state": shown_state,
                   **({"maintain": True, "metrics": f"{url}/metrics"} if run_maintain else {})})
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning" if as_json else "info")
    finally:
        if finish is not None:   # SIGTERM/SIGINT end uvicorn first: the loops stop and hand their leases back
            finish()
