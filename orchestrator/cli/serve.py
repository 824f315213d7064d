"""`strato serve`: run the REST API (loopback by default)."""

import click

from orchestrator.cli.common import handle_errors, state_option
from orchestrator.service import UserError


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=int)
@state_option
@handle_errors
def command(host, port, state_path):
    """Serve the REST API (OpenAPI docs at /docs) over the same state as the CLI."""
    try:
        import uvicorn
        from orchestrator.api import create_app
    except ImportError:
        raise UserError("the REST API needs FastAPI and uvicorn: pip install 'strato[api]'") from None
    uvicorn.run(create_app(state_path), host=host, port=port, log_level="info")
