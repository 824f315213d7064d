"""The web dashboard at /: a static vanilla-JS page (no build step) that talks to /v1 with the user's token."""

from __future__ import annotations

import html
import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from orchestrator.api.security import READ, TOKEN_ENV, TOKEN_FILE, WRITE, Tokens

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TOKEN_HINT = "<!-- token-hint -->"  # index.html's place for where this server's tokens are


def token_hint(tokens: Tokens | None) -> str:
    """Where this server's tokens are, told as the user on the server would find them: `~/.strato/api-token` for
    the default home, else `$STRATO_HOME/...` (the page never shows a server path beyond that), or the variable."""
    if tokens is None:
        return ""
    parts = []
    for scope, what in ((WRITE, "to change things"), (READ, "to look")):
        path = tokens.files.get(scope)
        if path is None:
            parts.append(f"the value of <code>${TOKEN_ENV[scope]}</code> the server was started with ({what})")
            continue
        default = os.path.join(os.path.expanduser("~"), ".strato", TOKEN_FILE[scope])
        shown = f"~/.strato/{TOKEN_FILE[scope]}" if path == default else f"$STRATO_HOME/{TOKEN_FILE[scope]}"
        parts.append(f"the file <code>{html.escape(shown)}</code> on the server ({what})")
    return ("Paste an API token: " + ", or ".join(parts) + ". <code>strato serve</code> printed where they are "
            "when it started.")


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    tokens = app.state.ctx.tokens

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as fh:
            page = fh.read().replace(TOKEN_HINT, token_hint(tokens))
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})
