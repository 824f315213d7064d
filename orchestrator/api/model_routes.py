"""/v1/models: the model registry over HTTP (list, show with history, upload a version, promote, roll back, mark).

An upload carries the artifact's bytes in the request body (under the server's body limit): the server never
reads a path the client names, so no request can make it publish a file of its own as a model.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from typing import Callable

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.errors import ApiError
from orchestrator.api.routing import ERRORS, NAME_PATTERN, READ_TOKEN, WRITE_TOKEN, Ctx

router = APIRouter(prefix="/v1", responses=ERRORS)
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
ModelName = Path(..., pattern=NAME_PATTERN, description="The model's name")
CONFLICT_CODES = ("VERSION_BAD", "NO_GOOD_VERSION")


class VersionUpload(BaseModel):
    """A version uploaded as JSON: the artifact in base64, optionally its training reference CSV as text."""

    model_config = ConfigDict(extra="forbid")
    artifact_base64: str = Field(..., description="The artifact's bytes, base64-encoded")
    reference_csv: str | None = Field(None, description="Training rows: a header (features, prediction) and rows")
    metrics: dict[str, float] = Field(default_factory=dict)
    parent: int | None = Field(None, ge=1)
    data_digest: str | None = Field(None, max_length=200)
    note: str = Field("", max_length=2000)


# The artifact as raw bytes, or JSON carrying it in base64 with the training reference beside it.
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": VersionUpload.model_json_schema()}}}}


class AliasMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(..., ge=1)
    reason: str = Field("", max_length=2000)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field("champion", pattern=ALIAS_PATTERN)
    reason: str = Field("", max_length=2000)


class StatusMark(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(..., pattern="^(good|bad)$")
    reason: str = Field("", max_length=2000)


def _registry(ctx):
    from orchestrator.mlops.registry import ModelRegistry
    return ModelRegistry(os.path.join(ctx.store.home, "models"))


async def _call(ctx, action: Callable):
    """Run a registry action off the event loop (it takes a file lock); its refusals become API errors."""
    from orchestrator.mlops.registry import RegistryError
    try:
        return await run_in_threadpool(lambda: action(_registry(ctx)))
    except RegistryError as exc:
        status = 404 if exc.code in RegistryError.NOT_FOUND_CODES else 409 if exc.code in CONFLICT_CODES else 422
        raise ApiError(status, exc.code, exc.message) from None


def shown(version) -> dict:
    """A version as a client sees it: no server path, only whether a training reference is kept."""
    doc = version.to_dict() if not isinstance(version, dict) else dict(version)
    doc.pop("path", None)
    doc["has_reference"] = bool(doc.pop("reference_path", None))
    return doc


@router.get("/models", tags=["models"], dependencies=[READ_TOKEN], summary="Every model, its versions and aliases")
async def list_models(ctx: Ctx) -> dict:
    def rows(reg) -> list[dict]:
        return [{"name": n, "versions": len(reg.versions(n)), "aliases": reg.aliases(n)} for n in reg.models()]
    return {"models": await _call(ctx, rows)}


@router.get("/models/{name}", tags=["models"], dependencies=[READ_TOKEN],
            summary="A model: its versions, aliases and the history of every change")
async def show_model(ctx: Ctx, name: str = ModelName) -> dict:
    doc = await _call(ctx, lambda reg: reg.describe(name))
    return {**doc, "versions": [shown(v) for v in doc["versions"]]}


@router.post("/models/{name}/versions", tags=["models"], dependencies=[WRITE_TOKEN], openapi_extra=UPLOAD_BODY,
             status_code=201, responses={200: {"description": "The same content was pushed before: that version",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}},
             summary="Upload a version: the artifact's bytes as the body (metadata in the query), or JSON")
async def upload_version(ctx: Ctx, request: Request, name: str = ModelName,
                         metric: list[str] = Query([], description="NAME=NUMBER (repeatable)"),
                         parent: int | None = Query(None, ge=1), data_digest: str | None = Query(None, max_length=200),
                         note: str = Query("", max_length=2000)) -> JSONResponse:
    """201 with the new version, or 200 with the existing one when the same content was pushed before."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        upload = _json_upload(body)
        data, reference = _decoded(upload.artifact_base64), upload.reference_csv
        fields = {"metrics": upload.metrics, "parent": upload.parent, "data_digest": upload.data_digest,
                  "note": upload.note}
    elif kind == "application/octet-stream":
        data, reference = body, None
        fields = {"metrics": _query_metrics(metric), "parent": parent, "data_digest": data_digest, "note": note}
    else:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the artifact as application/octet-stream, or JSON "
                                                      f"with artifact_base64, not '{kind or 'no content type'}'")
    by = _caller(request)

    def push(reg):
        count = len(reg.versions(name)) if name in reg.models() else 0
        version = reg.push_bytes(name, data, reference_csv=reference.encode() if reference is not None else None,
                                 created_by=by, **fields)
        return version, version.version > count
    version, created = await _call(ctx, push)
    return JSONResponse({"created": created, "version": shown(version)}, status_code=201 if created else 200)


@router.post("/models/{name}/aliases/{alias}", tags=["models"], dependencies=[WRITE_TOKEN],
             summary="Point an alias at a version (promote)")
async def move_alias(ctx: Ctx, request: Request, body: AliasMove, name: str = ModelName,
                     alias: str = Path(..., pattern=ALIAS_PATTERN)) -> dict:
    version = await _call(ctx, lambda reg: reg.promote(name, body.version, alias=alias, reason=body.reason,
                                                       by=_caller(request)))
    return {"alias": alias, "version": shown(version)}


@router.post("/models/{name}/rollback", tags=["models"], dependencies=[WRITE_TOKEN],
             summary="Move an alias back to its last version not marked bad")
async def rollback(ctx: Ctx, request: Request, body: Rollback, name: str = ModelName) -> dict:
    version = await _call(ctx, lambda reg: reg.rollback(name, alias=body.alias, reason=body.reason,
                                                        by=_caller(request)))
    return {"alias": body.alias, "version": shown(version)}


@router.post("/models/{name}/versions/{version}/status", tags=["models"], dependencies=[WRITE_TOKEN],
             summary="Mark a version good or bad")
async def mark(ctx: Ctx, request: Request, body: StatusMark, name: str = ModelName,
               version: int = Path(..., ge=1)) -> dict:
    marked = await _call(ctx, lambda reg: reg.mark(name, version, body.status, reason=body.reason,
                                                   by=_caller(request)))
    return {"version": shown(marked)}


def _caller(request: Request) -> str:
    """Who changed the model, for its history: the API and the client's address (tokens carry no identity)."""
    return f"api ({request.client.host if request.client else 'unknown'})"


def _json_upload(body: bytes) -> VersionUpload:
    try:
        return VersionUpload.model_validate_json(body or b"{}")
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) and errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(422, "REQUEST_INVALID", f"{where}: {first.get('msg', 'not valid JSON')} (fields: "
                                               f"{', '.join(VersionUpload.model_fields)})") from None


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "ARTIFACT_NOT_BASE64", "artifact_base64 is not valid base64") from None


def _query_metrics(pairs: list[str]) -> dict[str, float]:
    metrics = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not key or not math.isfinite(number):
            raise ApiError(422, "METRIC_INVALID", f"metric takes NAME=NUMBER, got '{pair}'")
        metrics[key] = number
    return metrics
