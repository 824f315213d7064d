"""A descriptor arriving in a request: its body models, unpacking it into a bundle, and admitting it (checked in a
worker process, then the host-code rule and the size limits) before any route acts on it."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.boundary import refusal_message, stored_host_code
from orchestrator.api.context import ApiContext
from orchestrator.api.errors import ApiError
from orchestrator.api.handover import thaw
from orchestrator.api.intake import Bundle, relativize
from orchestrator.api.routing import NAME_PATTERN


class DescriptorIn(BaseModel):
    """A descriptor as YAML text, or a base64 tar/zip bundle of it and the files it imports."""

    model_config = ConfigDict(extra="forbid")
    descriptor: str | None = Field(None, description="Descriptor YAML text")
    bundle: str | None = Field(None, description="Base64 of a tar (optionally gzip) or zip archive")
    entry: str | None = Field(None, max_length=255, description="The descriptor's file inside the bundle")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Input values")
    parallelism: int = Field(32, ge=1, le=1024, description="Driver operations at once")


class CreateIn(DescriptorIn):
    name: str = Field(..., pattern=NAME_PATTERN, description="Infrastructure name")


def bundle_from(ctx: ApiContext, body: DescriptorIn, keep: bool) -> Bundle:
    if (body.descriptor is None) == (body.bundle is None):
        raise ApiError(422, "DESCRIPTOR_MISSING", "give exactly one of 'descriptor' (YAML text) or 'bundle' "
                                                  "(base64 tar/zip); server paths are not accepted")
    if body.descriptor is not None:
        return ctx.bundles.unpack(text=body.descriptor, entry=body.entry, keep=keep)
    try:
        data = base64.b64decode(body.bundle, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "BUNDLE_NOT_BASE64", "'bundle' must be base64 of a tar or zip archive") from None
    return ctx.bundles.unpack(archive=data, entry=body.entry, keep=keep)


def refuse_host_code(ctx: ApiContext, found: list[dict]) -> None:
    """403 naming each node that would run code on this machine, unless the server allows local processes."""
    if found and not ctx.settings.allow_local_processes:
        raise ApiError(403, "LOCAL_PROCESS_REFUSED", refusal_message(found), nodes=found)


def refuse_stored_host_code(ctx: ApiContext, infra, deleting: bool = False) -> None:
    """The same rule for work on a stored infrastructure (scale, drop, apply, destroy), wherever it was
    built: a scale through the API starts what a CLI user's descriptor says as surely as a create does."""
    if not ctx.settings.allow_local_processes:
        refuse_host_code(ctx, stored_host_code(ctx.store, infra, deleting))


def admit(ctx: ApiContext, bundle: Bundle, inputs: dict | None, stored_inputs: dict | None = None,
          desired: dict | None = None, runs: bool = True, keep_loaded: bool = False) -> dict:
    """Check a bundle in a worker process; apply the host-code rule and the size limits.

    keep_loaded: the result's "loaded" is what the worker loaded (service.Loaded), for service.build or
    service.plan to use rather than parse the descriptor a second time."""
    settings = ctx.settings
    result = ctx.checks.run(bundle.directory, bundle.entry, inputs, stored_inputs, settings.validation_timeout,
                            keep_loaded)
    diags = relativize(result["diagnostics"], bundle.directory)
    if not result["ok"]:
        errs = [d for d in diags if d.get("severity") == "error"] or diags
        raise ApiError(422, errs[0]["code"] if errs else "DESCRIPTOR_INVALID",
                       (errs[0]["message"] if errs else "the descriptor is invalid"), diagnostics=diags)
    result["diagnostics"] = diags
    if runs:
        refuse_host_code(ctx, result["host_code"])
    if result["nodes"] > settings.max_nodes:
        raise ApiError(422, "LIMIT_NODES", f"the descriptor has {result['nodes']} nodes; this server accepts "
                                           f"at most {settings.max_nodes}")
    counts = dict(result.get("counts") or {})
    counts.update({n: c for n, c in (desired or {}).items() if c is not None and n in counts})
    if sum(counts.values()) > settings.max_instances:
        raise ApiError(422, "LIMIT_INSTANCES", f"the descriptor asks for {sum(counts.values())} instances; this "
                                               f"server accepts at most {settings.max_instances}")
    if keep_loaded:
        result["loaded"] = thaw(result["loaded"])
    return result
