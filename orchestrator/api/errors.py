"""One JSON error shape for every REST API refusal, with the CLI's codes, positions and messages, and honest statuses."""

from __future__ import annotations

import os
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from descriptors.diagnostics import DescriptorError
from orchestrator.service import NotFound, UserError
from orchestrator.state import LockHeld, StateError

# The statuses the API answers errors with; a 5xx is always a Strato bug, never a client's mistake.
STATUS_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
                422: "INVALID"}


class ApiError(Exception):
    """A refusal with its HTTP status, a stable code and one sentence (extra fields are added to the body)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_body(status: int, code: str, message: str, **extra: Any) -> dict:
    return {"error": {"status": status, "code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)


def _request_problems(exc: RequestValidationError) -> list[dict]:
    """Pydantic's complaints without the offending input (it may be large, or a credential)."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        problems.append({"code": "REQUEST_" + str(err.get("type", "invalid")).upper().replace(".", "_"),
                         "message": str(err.get("msg", "invalid value")),
                         "path": ".".join(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header")
                         else ".".join(loc), "in": loc[0] if loc else ""})
    return problems


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers=headers, **exc.extra)

    @app.exception_handler(DescriptorError)
    async def _descriptor_error(request: Request, exc: DescriptorError):
        diags = strip_bundle_root([d.to_dict() for d in exc.diagnostics], request.app.state.ctx.bundles.root)
        errors = [d for d in diags if d["severity"] == "error"] or diags
        return error_response(422, errors[0]["code"] if errors else "DESCRIPTOR_INVALID",
                              errors[0]["message"] if errors else "the descriptor is invalid", diagnostics=diags)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return error_response(404, "NOT_FOUND", _no_server_paths(str(exc)))

    @app.exception_handler(LockHeld)
    async def _locked(request: Request, exc: LockHeld):
        return error_response(409, "LOCKED", str(exc))

    @app.exception_handler(UserError)
    @app.exception_handler(StateError)
    async def _user_error(request: Request, exc: Exception):
        return error_response(400, "BAD_REQUEST", _no_server_paths(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        problems = _request_problems(exc)
        first = problems[0] if problems else {"message": "invalid request", "path": ""}
        where = f" at {first['in']} '{first['path']}'" if first.get("path") else ""
        return error_response(422, "REQUEST_INVALID", f"{first['message']}{where}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "HTTP_ERROR"), message,
                              headers=getattr(exc, "headers", None))


def _no_server_paths(message: str) -> str:
    """Messages from the service name the state database's path; a client has no use for it."""
    return re.sub(r" in (/[^ ]+|[A-Za-z]:\\[^ ]+) \(", " (", message)


def strip_bundle_root(diagnostics: list[dict], root: str) -> list[dict]:
    """Diagnostics about a stored bundle (e.g. from a scale) name files by their bundle path too."""
    pattern = re.compile("(" + "|".join(re.escape(r) for r in {root, os.path.realpath(root)}) + r")/[0-9a-f]{64}/")
    return [{k: pattern.sub("", v) if isinstance(v, str) else v for k, v in d.items()} for d in diagnostics]
