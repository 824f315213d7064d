"""Routes over operations: list them, read one, and follow an infrastructure's journal as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from orchestrator import service
from orchestrator.api.errors import ApiError, error_body
from orchestrator.api.routing import ERRORS, READ_TOKEN, Ctx
from orchestrator.api.security import scrub
from orchestrator.state import StateStore

MAX_EVENT_ID = 2 ** 63 - 1  # SQLite's largest integer
KEEP_ALIVE_SECONDS = 15
STREAM_SECONDS = 3600
log = logging.getLogger("strato.api")
router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/operations", tags=["operations"], dependencies=[READ_TOKEN])
def list_operations(ctx: Ctx, infrastructure: str | None = Query(None, max_length=63),
                    state: str | None = Query(None, pattern="^(running|succeeded|failed|interrupted)$"),
                    limit: int = Query(50, ge=1, le=1000)) -> dict:
    return {"operations": [scrub(o) for o in ctx.store.operations(infrastructure, state, limit)]}


@router.get("/operations/{op_id}", tags=["operations"], dependencies=[READ_TOKEN],
            summary="running | succeeded | failed | interrupted, with per-node progress")
def get_operation(ctx: Ctx, op_id: str = Path(..., max_length=64)) -> dict:
    op = ctx.store.get_operation(op_id)
    if op is None:
        raise service.NotFound(f"no operation '{op_id}'")
    return scrub(op)


@router.get("/infrastructures/{name}/events", tags=["operations"], dependencies=[READ_TOKEN],
            summary="The journal as Server-Sent Events (resume with Last-Event-ID)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def events(ctx: Ctx, request: Request, name: str = Path(..., max_length=63),
                 follow: bool = Query(True, description="Keep the stream open for new events"),
                 after: int | None = Query(None, ge=0, le=2 ** 62, description="Start after this event id"),
                 last: int = Query(200, ge=0, le=10000, description="Without a cursor: the last N events"),
                 last_event_id: str | None = Header(None)) -> StreamingResponse:
    store = ctx.store
    cursor = after if last_event_id is None else event_id(last_event_id)
    newest = await run_in_threadpool(store.last_event_id, name)
    if newest is None and store.get_infra(name) is None and not store.operations(name, limit=1):
        raise service.NotFound(f"no infrastructure named '{name}'")
    if cursor is None:
        cursor = max(0, (newest or 0) - last)
    return StreamingResponse(_event_stream(store, request, name, cursor, follow), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _event_stream(store: StateStore, request: Request, name: str, cursor: int, follow: bool):
    """The journal's rows after `cursor` as SSE messages; with `follow`, new ones as they come (for an hour)."""
    position = cursor
    quiet_since = time.monotonic()
    deadline = time.monotonic() + STREAM_SECONDS
    yield "retry: 1000\n\n"
    while time.monotonic() < deadline:
        # a client that left is noticed before the next write, busy journal or not
        if await request.is_disconnected():
            return
        try:
            rows = await run_in_threadpool(store.events_after, name, position, 500)
        except Exception as exc:  # noqa: BLE001 - the response has started: end it with an event, not a cut
            log.exception("reading events of %s failed", name)
            problem = error_body(500, "INTERNAL", f"reading the events failed ({type(exc).__name__}); "
                                                  "see the server log")
            yield f"event: error\ndata: {json.dumps(problem)}\n\n"
            return
        if rows:
            # One write per batch, not per event: between writes the loop runs, so a client that reset or
            # half-closed the connection is seen gone before the next one (a burst of writes to a lost socket
            # filled the log with asyncio's "socket.send() raised exception.").
            position = rows[-1]["id"]
            yield "".join(_message(row) for row in rows)
            quiet_since = time.monotonic()
            continue
        if not follow:
            return
        if time.monotonic() - quiet_since > KEEP_ALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.2)


def _message(row) -> str:
    """One journal row as an SSE message."""
    data = json.dumps(scrub({"id": row["id"], "ts": row["ts"], "key": row["key"], "kind": row["kind"],
                             "detail": row["detail"]}), default=str)
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {data}\n\n"


def event_id(text: str) -> int:
    """A Last-Event-ID header as a cursor: a whole number SQLite can compare with, else 400."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_EVENT_ID)) or int(text) > MAX_EVENT_ID:
        raise ApiError(400, "BAD_LAST_EVENT_ID", f"Last-Event-ID must be an event id: a whole number from 0 to "
                                                 f"{MAX_EVENT_ID}")
    return int(text)
