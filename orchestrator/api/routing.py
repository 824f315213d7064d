"""What every route module of the REST API shares: the request's context and token scopes as FastAPI dependencies,
the documented error answers, and the 202 answer of an operation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from orchestrator.api.context import ApiContext
from orchestrator.api.security import READ, WRITE, authorize

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# An operation waits this long for the infrastructure's lock: a maintain loop holds it only while one pass acts.
API_LOCK_WAIT = 120.0
_bearer = HTTPBearer(auto_error=False, description="A read or write token (see `strato serve --help`)")


async def get_ctx(request: Request) -> ApiContext:
    """The context of the app that received the request (async: FastAPI runs it without a thread hop)."""
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def need(scope: str):
    """A dependency that lets the request through only with a token of `scope` (401/403 otherwise)."""
    async def check(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        return authorize(request, request.app.state.ctx.tokens, scope)
    return Depends(check)


READ_TOKEN, WRITE_TOKEN = need(READ), need(WRITE)

ERRORS = {s: {"description": d, "content": {"application/json": {"schema": {"type": "object"}}}} for s, d in
          ((400, "Bad request"), (401, "No or invalid token"), (403, "Token lacks the scope, or refused"),
           (404, "Not found"), (409, "Another operation is running"), (413, "Too large"), (415, "Unsupported body type"),
           (422, "Invalid descriptor or request"))}


class Accepted(BaseModel):
    operation: str
    infrastructure: str
    href: str


def accepted_response(name: str, op_id: str, **extra) -> JSONResponse:
    return JSONResponse({"operation": op_id, "infrastructure": name, "href": f"/v1/operations/{op_id}", **extra},
                        status_code=202, headers={"Location": f"/v1/operations/{op_id}"})
