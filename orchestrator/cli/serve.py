"""`strato serve`: run the REST API (loopback by default)."""

import click

from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.service import UserError


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=int)
@state_option
@json_option
@handle_errors
def command(host, port, state_path, as_json):
    """Serve the REST API (OpenAPI docs at /docs) over the same state as the CLI.

    With --json, one line {"ok": true, "url": ..., "docs": ...} is printed on stdout before serving
    (the server's own log goes to stderr), so a script can read where to connect.
    """
    try:
        import uvicorn
        from orchestrator.api import create_app
    except ImportError:
        raise UserError("the REST API needs FastAPI and uvicorn: pip install 'strato[api]'") from None
    app = create_app(state_path)
    if as_json:
        url = f"http://{host}:{port}"
        emit_json({"ok": True, "url": url, "docs": f"{url}/docs", "state": state_path})
    uvicorn.run(app, host=host, port=port, log_level="warning" if as_json else "info")
