"""`strato serve`: run the REST API (loopback by default), optionally with the maintain loop in the background."""

import threading

import click

from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.service import UserError


def start_maintain_thread(state_path, interval: float, app=None):
    """Run the maintain loop over every infrastructure of the state store on a daemon thread.

    Strato's own metrics are mounted on the app at /metrics. Returns (stop event, thread)."""
    from orchestrator.maintain import MaintainOptions, maintain_all
    from orchestrator.metrics import LoopMetrics
    from orchestrator.state import StateStore

    loop_metrics = LoopMetrics()
    if app is not None and loop_metrics.registry is not None:
        from prometheus_client import make_asgi_app
        app.mount("/metrics", make_asgi_app(registry=loop_metrics.registry))
    stop = threading.Event()
    thread = threading.Thread(target=maintain_all, args=(StateStore(state_path), MaintainOptions(interval=interval),
                                                         stop, loop_metrics), name="strato-maintain", daemon=True)
    thread.start()
    return stop, thread


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=int)
@click.option("--maintain", "run_maintain", is_flag=True,
              help="Also run the maintain loop for every infrastructure no other loop maintains "
                   "(its metrics at /metrics).")
@click.option("--maintain-interval", default="10s", show_default=True, help="Time between maintain passes.")
@state_option
@json_option
@handle_errors
def command(host, port, run_maintain, maintain_interval, state_path, as_json):
    """Serve the REST API (OpenAPI docs at /docs) over the same state as the CLI.

    With --json, one line {"ok": true, "url": ..., "docs": ...} is printed on stdout before serving
    (the server's own log goes to stderr), so a script can read where to connect.
    With --maintain the maintain loop runs in a background thread for every infrastructure that no
    other loop maintains, and Strato's own metrics are served at /metrics.
    """
    try:
        import uvicorn
        from orchestrator.api import create_app
    except ImportError:
        raise UserError("the REST API needs FastAPI and uvicorn: pip install 'strato[api]'") from None
    app = create_app(state_path)
    stop = None
    if run_maintain:
        from orchestrator.cli.maintain import parse_interval
        stop, _thread = start_maintain_thread(state_path, parse_interval(maintain_interval), app)
    if as_json:
        url = f"http://{host}:{port}"
        emit_json({"ok": True, "url": url, "docs": f"{url}/docs", "state": state_path,
                   **({"maintain": True, "metrics": f"{url}/metrics/"} if run_maintain else {})})
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning" if as_json else "info")
    finally:
        if stop is not None:
            stop.set()
