"""The REST API (FastAPI): versioned routes over the same service functions as the CLI, secure by default."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from drivers.base import private_umask
from orchestrator import __version__, service
from orchestrator.api import errors
from orchestrator.api.intake import BundleStore, shared_pool
from orchestrator.api.operations import Operations
from orchestrator.api.paths import HideServerPaths, path_rewriter
from orchestrator.api.security import Tokens, load_tokens
from orchestrator.state import StateStore, strato_home

log = logging.getLogger("strato.api")


@dataclass
class ApiSettings:
    """What the server accepts; the defaults are the safe ones."""

    auth: bool = True                      # False only with --insecure-no-auth on a loopback bind
    allow_local_processes: bool = False    # nodes that run code on this machine (orchestrator/api/boundary.py)
    max_body_bytes: int = 10 * 2 ** 20
    max_nodes: int = 1000
    max_instances: int = 5000
    validation_timeout: float = 10.0
    workers: int = 4                       # operations running at once (each on its own infrastructure)
    check_processes: int = 2               # worker processes that load and check received descriptors


class ApiContext:
    """Everything a request handler needs: the store, settings, tokens, bundles, operations and checks."""

    def __init__(self, store: StateStore, settings: ApiSettings, tokens: Tokens | None):
        self.store, self.settings, self.tokens = store, settings, tokens
        self.bundles = BundleStore(os.path.join(store.home, "api", "bundles"))
        self.ops = Operations(store, settings.workers)
        self.checks = shared_pool(settings.check_processes)
        self.started = time.time()
        # other Prometheus registries served on the same authenticated /metrics (e.g. the maintain loop's)
        self.extra_registries: list = []
        self._doc_cache: dict[Any, bytes] = {}

    def cached_now(self, key: Any) -> bytes | None:
        """The cached document if nothing changed, without waiting for the database (for the event loop)."""
        stamp = self.store.change_stamp(blocking=False)
        return None if stamp is None else self._doc_cache.get((key, stamp))

    def cached(self, key: Any, build) -> bytes:
        """A JSON document cached until anything is written to the state database."""
        stamp = (key, self.store.change_stamp())
        body = self._doc_cache.get(stamp)
        if body is None:
            body = json.dumps(build(), default=str, separators=(",", ":")).encode()
            if len(self._doc_cache) > 256:
                self._doc_cache.clear()
            self._doc_cache[stamp] = body
        return body


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
        ctx.ops.shutdown()

    app = FastAPI(title="Strato", version=__version__, lifespan=lifespan,
                  description="Validate, build, inspect, scale and destroy TOSCA-described infrastructures. "
                              "Send `Authorization: Bearer <token>`; mutating calls answer 202 with an operation.")
    app.state.ctx = ctx
    errors.install(app)

    @app.exception_handler(Exception)
    async def _bug(request, exc):  # a Strato bug: one line in the log, the same JSON shape for the client
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return errors.error_response(500, "INTERNAL", f"internal error ({type(exc).__name__}); see the server log")

    from orchestrator.api import dashboard, metrics, optimizer_routes, v1
    registry = metrics.install(app, ctx)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HideServerPaths, rewrite=path_rewriter(ctx.store.home, ctx.store.path))
    app.include_router(v1.router(ctx))
    app.include_router(optimizer_routes.router(ctx))
    dashboard.install(app)

    @app.get("/healthz", tags=["operational"], summary="Liveness (no token needed)")
    async def healthz() -> dict:
        return {"ok": True, "version": __version__}

    @app.get("/metrics", tags=["operational"], summary="Prometheus metrics", response_class=Response,
             dependencies=[v1.need(ctx, "read")])
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
