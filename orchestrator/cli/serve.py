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


def start_maintain_thread(state_path, interval: float, app=None):
    """Run the maintain loop over every infrastructure of the state store on a daemon thread.

    Strato's own metrics join the API's /metrics, behind the same read token. Returns (stop event, thread)."""
    from orchestrator.maintain import MaintainOptions, maintain_all
    from orchestrator.metrics import LoopMetrics
    from orchestrator.state import StateStore

    loop_metrics = LoopMetrics()
    if app is not None and loop_metrics.registry is not None:
        app.state.ctx.extra_registries.append(loop_metrics.registry)
    stop = threading.Event()
    thread = threading.Thread(target=maintain_all, args=(StateStore(state_path), MaintainOptions(interval=interval),
                                                         stop, loop_metrics), name="strato-maintain", daemon=True)
    thread.start()
    return stop, thread


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
@state_option
@json_option
@handle_errors
def command(host, port, insecure_no_auth, allow_local_processes, max_body_mb, max_nodes, max_instances,
            validation_timeout, workers, run_maintain, maintain_interval, state_path, as_json):
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
    """
    try:
        import uvicorn
        from orchestrator.api import ApiSettings, create_app
    except ImportError:
        raise UserError("the REST API needs FastAPI and uvicorn: pip install 'strato[api]'") from None
    if insecure_no_auth and not is_loopback(host):
        raise UserError(f"--insecure-no-auth is refused on {host}: anyone who reaches it could run builds. "
                        "Bind to 127.0.0.1, or keep token authentication")
    settings = ApiSettings(auth=not insecure_no_auth, allow_local_processes=allow_local_processes,
                           max_body_bytes=int(max_body_mb * 2 ** 20), max_nodes=max_nodes,
                           max_instances=max_instances, validation_timeout=validation_timeout, workers=workers)
    try:
        app = create_app(state_path, settings)
    except ValueError as exc:  # a token that is too short
        raise UserError(str(exc)) from None
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
    stop = None
    if run_maintain:
        from orchestrator.cli.maintain import parse_interval
        stop, _thread = start_maintain_thread(state_path, parse_interval(maintain_interval), app)
    if as_json:
        from orchestrator.statedb import redact
        url = f"http://{host}:{port}"
        shown_state = redact(state_path) if state_path else state_path
        emit_json({"ok": True, "url": url, "docs": f"{url}/docs", "state": shown_state,
                   **({"maintain": True, "metrics": f"{url}/metrics"} if run_maintain else {})})
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning" if as_json else "info")
    finally:
        if stop is not None:
            stop.set()
