"""POST /v1/validate: check a descriptor (YAML body, or JSON with a descriptor or a bundle) without building it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from orchestrator.api.admission import DescriptorIn, admit, bundle_from
from orchestrator.api.errors import ApiError
from orchestrator.api.routing import ERRORS, READ_TOKEN, Ctx

router = APIRouter(prefix="/v1", responses=ERRORS)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


@router.post("/validate", tags=["descriptors"], dependencies=[READ_TOKEN], summary="Check a descriptor",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "application/json": {"schema": DescriptorIn.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
async def validate(ctx: Ctx, request: Request) -> dict:
    """YAML body, or JSON {"descriptor"} / {"bundle"}: 200 with warnings, or 422 with every error's position."""
    body = _descriptor_body(await request.body(), request.headers.get("content-type", ""))

    def check() -> dict:
        bundle = bundle_from(ctx, body, keep=False)
        try:
            result = admit(ctx, bundle, None, runs=False)
        finally:
            ctx.bundles.discard(bundle)
        return {"ok": True, "nodes": result["nodes"], "diagnostics": result["diagnostics"]}
    return await run_in_threadpool(check)


def _descriptor_body(raw: bytes, content_type: str) -> DescriptorIn:
    """The request body as a DescriptorIn, whichever of the accepted media types it came as."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/json", ""):
        try:
            return DescriptorIn.model_validate_json(raw or b"{}")
        except ValueError as exc:
            raise ApiError(422, "REQUEST_INVALID", "the body must be a JSON object with 'descriptor' or "
                                                   f"'bundle' ({_first_problem(exc)})") from None
    if kind in YAML_TYPES:
        try:
            return DescriptorIn(descriptor=raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, "TEXT_NOT_UTF8", "the descriptor is not UTF-8 text") from None
    raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"send application/yaml or application/json, not '{kind}'")


def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return "not valid JSON"
