"""The REST API (FastAPI): versioned routes over the same service functions as the CLI, secure by default."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from drivers.base import private_umask
from orchestrator import __version__, service
from orchestrator.api import errors
from orchestrator.api.context import ApiContext, ApiSettings
from orchestrator.api.paths import HideServerPaths, path_rewriter
from orchestrator.api.security import Tokens, load_tokens
from orchestrator.state import strato_home

log = logging.getLogger("strato.api")
__all__ = ["ApiContext", "ApiSettings", "create_app"]


def create_app(state_path: str | None = None, settings: ApiSettings | None = None,
               tokens: Tokens | None = None) -> FastAPI:
    """The ASGI app; tokens default to $STRATO_API_TOKEN or the 0600 files under $STRATO_HOME."""
    private_umask()
    settings = settings or ApiSettings()
    if settings.auth and tokens is None:
        tokens = load_tokens(strato_home())
    ctx = ApiContext(service.open_store(state_path), settings, tokens if settings.auth else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for stop in ctx.on_stop:   # e.g. a cluster member hands its leases back before uvicorn ends the process
            stop()
        ctx.ops.shutdown()

    app = FastAPI(title="Strato", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Validate, build, inspect, scale and destroy TOSCA-described infrastructures. "
                              "Send `Authorization: Bearer <token>`; mutating calls answer 202 with an operation.")
    app.state.ctx = ctx
    errors.install(app)

    @app.exception_handler(Exception)
    async def _bug(request, exc):  # a Strato bug: one line in the log, the same JSON shape for the client
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return errors.error_response(500, "INTERNAL", f"internal error ({type(exc).__name__}); see the server log")

    from orchestrator.api import dashboard, docs, metrics, v1
    from orchestrator.api.routing import READ_TOKEN
    registry = metrics.install(app, ctx)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HideServerPaths, rewrite=path_rewriter(ctx.store.home, ctx.store.path))
    v1.install(app)
    dashboard.install(app)
    docs.install(app)

    @app.get("/healthz", tags=["operational"], summary="Liveness (no token needed)")
    async def healthz() -> dict:
        return {"ok": True, "version": __version__}

    @app.get("/metrics", tags=["operational"], summary="Prometheus metrics", response_class=Response,
             dependencies=[READ_TOKEN])
    def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        body = b"".join(generate_latest(r) for r in [registry, *ctx.extra_registries])
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


class BodyLimit:
    """413 for a request body over the limit, whether it declares its length or streams it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return await self._refuse(send, 400, "BAD_REQUEST", "Content-Length is not a number")
                if int(value) > self.max_bytes:
                    return await self._refuse(send, 413, "TOO_LARGE", self._message())
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, self._message())
            return message

        return await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(send, status: int, code: str, message: str) -> None:
        body = json.dumps(errors.error_body(status, code, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
