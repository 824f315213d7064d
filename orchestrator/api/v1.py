"""Routes under /v1: validate, infrastructures (create/apply/plan/scale/destroy), operations and live events."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import service
from orchestrator.api.boundary import refusal_message, stored_host_code
from orchestrator.api.errors import ApiError, error_body
from orchestrator.api.intake import Bundle, relativize
from orchestrator.api.security import READ, WRITE, authorize, scrub
from orchestrator.executor import RunOptions

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_COUNT = 10 ** 6
# An operation waits this long for the infrastructure's lock: a maintain loop holds it only while one pass acts.
API_LOCK_WAIT = 120.0
MAX_EVENT_ID = 2 ** 63 - 1  # SQLite's largest integer
log = logging.getLogger("strato.api")
_bearer = HTTPBearer(auto_error=False, description="A read or write token (see `strato serve --help`)")


def need(ctx, scope: str):
    async def check(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        return authorize(request, ctx.tokens, scope)
    return Depends(check)


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


class ScaleIn(BaseModel):
    """Exactly one of: a new count, a change of the count, or one instance to remove."""

    model_config = ConfigDict(extra="forbid")
    to: int | None = Field(None, ge=0, le=MAX_COUNT)
    by: int | None = Field(None, ge=-MAX_COUNT, le=MAX_COUNT)
    drop: str | None = Field(None, max_length=200, description="An instance key or index to remove")
    force: bool = Field(False, description="Allow scaling to 0 a node that others depend on")


class Accepted(BaseModel):
    operation: str
    infrastructure: str
    href: str


ERRORS = {s: {"description": d, "content": {"application/json": {"schema": {"type": "object"}}}} for s, d in
          ((400, "Bad request"), (401, "No or invalid token"), (403, "Token lacks the scope, or refused"),
           (404, "Not found"), (409, "Another operation is running"), (413, "Too large"), (415, "Unsupported body type"),
           (422, "Invalid descriptor or request"))}


def router(ctx) -> APIRouter:
    api = APIRouter(prefix="/v1", responses=ERRORS)
    store, settings = ctx.store, ctx.settings
    read, write = need(ctx, READ), need(ctx, WRITE)

    # -- descriptors ---------------------------------------------------------------------------
    def bundle_from(body: DescriptorIn, keep: bool) -> Bundle:
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

    def refuse_host_code(found: list[dict]) -> None:
        """403 naming each node that would run code on this machine, unless the server allows local processes."""
        if found and not settings.allow_local_processes:
            raise ApiError(403, "LOCAL_PROCESS_REFUSED", refusal_message(found), nodes=found)

    def refuse_stored_host_code(infra, deleting: bool = False) -> None:
        """The same rule for work on a stored infrastructure (scale, drop, apply, destroy), wherever it was
        built: a scale through the API starts what a CLI user's descriptor says as surely as a create does."""
        if not settings.allow_local_processes:
            refuse_host_code(stored_host_code(store, infra, deleting))

    def admit(bundle: Bundle, inputs: dict | None, stored_inputs: dict | None = None, desired: dict | None = None,
              runs: bool = True) -> dict:
        """Check a bundle in a worker process; apply the host-code rule and the size limits."""
        result = ctx.checks.run(bundle.directory, bundle.entry, inputs, stored_inputs,
                                settings.validation_timeout)
        diags = relativize(result["diagnostics"], bundle.directory)
        if not result["ok"]:
            errs = [d for d in diags if d.get("severity") == "error"] or diags
            raise ApiError(422, errs[0]["code"] if errs else "DESCRIPTOR_INVALID",
                           (errs[0]["message"] if errs else "the descriptor is invalid"), diagnostics=diags)
        result["diagnostics"] = diags
        if runs:
            refuse_host_code(result["host_code"])
        if result["nodes"] > settings.max_nodes:
            raise ApiError(422, "LIMIT_NODES", f"the descriptor has {result['nodes']} nodes; this server accepts "
                                               f"at most {settings.max_nodes}")
        counts = dict(result.get("counts") or {})
        counts.update({n: c for n, c in (desired or {}).items() if c is not None and n in counts})
        if sum(counts.values()) > settings.max_instances:
            raise ApiError(422, "LIMIT_INSTANCES", f"the descriptor asks for {sum(counts.values())} instances; this "
                                                   f"server accepts at most {settings.max_instances}")
        return result

    accepted = accepted_response

    @api.post("/validate", tags=["descriptors"], dependencies=[read], summary="Check a descriptor",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/yaml": {"schema": {"type": "string"}},
                  "application/json": {"schema": DescriptorIn.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
    async def validate(request: Request) -> dict:
        """YAML body, or JSON {"descriptor"} / {"bundle"}: 200 with warnings, or 422 with every error's position."""
        raw = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("application/json", ""):
            try:
                body = DescriptorIn.model_validate_json(raw or b"{}")
            except ValueError as exc:
                raise ApiError(422, "REQUEST_INVALID", "the body must be a JSON object with 'descriptor' or "
                                                       f"'bundle' ({_first_problem(exc)})") from None
        elif kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"):
            try:
                body = DescriptorIn(descriptor=raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, "TEXT_NOT_UTF8", "the descriptor is not UTF-8 text") from None
        else:
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"send application/yaml or application/json, not '{kind}'")

        def check() -> dict:
            bundle = bundle_from(body, keep=False)
            try:
                result = admit(bundle, None, runs=False)
            finally:
                ctx.bundles.discard(bundle)
            return {"ok": True, "nodes": result["nodes"], "diagnostics": result["diagnostics"]}
        return await run_in_threadpool(check)

    # -- infrastructures --------------------------------------------------------------------------
    def public_infra(name: str) -> dict:
        infra = store.get_infra(name)
        if infra is None:
            raise service.NotFound(f"no infrastructure named '{name}'")
        bundle = ctx.bundles.find(infra.descriptor)
        hide = service.stored_redactor(infra)  # an instance may have copied a secret input into its attributes
        return {"name": infra.name, "status": infra.status,
                "descriptor": bundle.public() if bundle else {"file": os.path.basename(infra.descriptor or "")},
                "outputs": scrub(infra.outputs), "desired": infra.desired, "dependencies": infra.dependencies,
                "operation": ctx.ops.running.get(name), "created": infra.created, "updated": infra.updated,
                "instances": [scrub(hide.value(r.to_dict())) for r in store.instances(name)]}

    @api.get("/infrastructures", tags=["infrastructures"], dependencies=[read])
    def list_infrastructures() -> Response:
        def build():
            items = []
            for infra in store.list_infras():
                recs = store.instances(infra.name)
                by_status: dict[str, int] = {}
                for r in recs:
                    by_status[r.status] = by_status.get(r.status, 0) + 1
                items.append({"name": infra.name, "status": infra.status, "instances": len(recs),
                              "by_status": by_status, "operation": ctx.ops.running.get(infra.name),
                              "updated": infra.updated})
            return {"infrastructures": items}
        return Response(ctx.cached("list", build), media_type="application/json")

    @api.post("/infrastructures", tags=["infrastructures"], dependencies=[write], status_code=202,
              response_model=Accepted, summary="Create an infrastructure (202 with an operation)")
    def create(body: CreateIn) -> JSONResponse:
        if store.get_infra(body.name) is not None:
            raise ApiError(409, "INFRASTRUCTURE_EXISTS", f"infrastructure '{body.name}' exists; PUT "
                                                         f"/v1/infrastructures/{body.name} applies a new version")
        return apply_version(body.name, body, "create")

    def apply_version(name: str, body: DescriptorIn, kind: str) -> JSONResponse:
        ctx.ops.busy(name)
        bundle = bundle_from(body, keep=True)
        infra = store.get_infra(name)
        if infra is not None:  # what the new version replaces or drops is removed first
            refuse_stored_host_code(infra, deleting=True)
        result = admit(bundle, body.inputs, infra.inputs if infra else None, infra.desired if infra else None)
        options = RunOptions(parallelism=body.parallelism, lock_wait=API_LOCK_WAIT)
        op_id = ctx.ops.submit(name, kind, lambda on_event: service.build(
            bundle.path, name, body.inputs, store, options, on_event=on_event, holder="strato api"))
        return accepted(name, op_id, descriptor=bundle.public(), warnings=result["diagnostics"])

    @api.get("/infrastructures/{name}", tags=["infrastructures"], dependencies=[read])
    async def get_infrastructure(name: str = Path(..., max_length=63),
                                 refresh: bool = Query(False, description="Ask the backends whether instances "
                                                                          "still exist (slower)")) -> Response:
        body = None if refresh else ctx.cached_now(("infra", name))
        if body is None:  # something changed (or a refresh was asked): the database work runs off the loop
            def fresh() -> bytes:
                if refresh:
                    service.status(store, name, refresh=True)
                return ctx.cached(("infra", name), lambda: public_infra(name))
            body = await run_in_threadpool(fresh)
        return Response(body, media_type="application/json")

    @api.get("/infrastructures/{name}/outputs", tags=["infrastructures"], dependencies=[read])
    def get_outputs(name: str = Path(..., max_length=63)) -> dict:
        return scrub(service.outputs(store, name))

    @api.get("/infrastructures/{name}/graph", tags=["infrastructures"], dependencies=[read],
             summary="Dependency graph with instance counts per node")
    def get_graph(name: str = Path(..., max_length=63)) -> dict:
        infra = store.get_infra(name)
        if infra is None:
            raise service.NotFound(f"no infrastructure named '{name}'")
        nodes: dict[str, dict] = {n: {"id": n, "desired": infra.desired.get(n), "instances": {}, "driver": None}
                                  for n in infra.dependencies}
        for rec in store.instances(name):
            entry = nodes.setdefault(rec.node, {"id": rec.node, "desired": None, "instances": {}, "driver": None})
            entry["instances"][rec.status] = entry["instances"].get(rec.status, 0) + 1
            entry["driver"] = rec.driver
        edges = [{"from": n, "to": d} for n, deps in infra.dependencies.items() for d in deps]
        return {"nodes": list(nodes.values()), "edges": edges}

    @api.post("/infrastructures/{name}/plan", tags=["infrastructures"], dependencies=[read],
              summary="What applying a (new) version would do")
    def plan(name: str = Path(..., pattern=NAME_PATTERN), body: DescriptorIn | None = Body(None)) -> dict:
        infra = store.get_infra(name)
        if body is None or (body.descriptor is None and body.bundle is None):
            bundle = ctx.bundles.find(infra.descriptor) if infra else None
            if infra is None:
                raise service.NotFound(f"no infrastructure named '{name}'; send a descriptor to plan a new one")
            if bundle is None:
                raise ApiError(409, "DESCRIPTOR_NOT_STORED", f"'{name}' was built from a file on the server; "
                                                             "send the descriptor to plan it")
            scratch = None
        else:
            bundle = scratch = bundle_from(body, keep=False)
        try:
            admit(bundle, body.inputs if body else {}, infra.inputs if infra else None, runs=False)
            result = service.plan(bundle.path, name, body.inputs if body else {}, store).to_dict()
        finally:
            if scratch is not None:
                ctx.bundles.discard(scratch)
        return scrub(result)

    @api.put("/infrastructures/{name}", tags=["infrastructures"], dependencies=[write], status_code=202,
             response_model=Accepted, summary="Apply a version (creates the infrastructure if new)")
    def put_infrastructure(body: DescriptorIn, name: str = Path(..., pattern=NAME_PATTERN)) -> JSONResponse:
        return apply_version(name, body, "apply")

    @api.delete("/infrastructures/{name}", tags=["infrastructures"], dependencies=[write], status_code=202,
                response_model=Accepted, summary="Destroy everything (202 with an operation)")
    def destroy(name: str = Path(..., max_length=63)) -> JSONResponse:
        infra = store.get_infra(name)
        if infra is None:
            raise service.NotFound(f"no infrastructure named '{name}'")
        refuse_stored_host_code(infra, deleting=True)
        op_id = ctx.ops.submit(name, "destroy", lambda on_event: service.destroy(store, name,
                                                                                  RunOptions(lock_wait=API_LOCK_WAIT),
                                                                                 on_event=on_event))
        return accepted(name, op_id)

    @api.post("/infrastructures/{name}/nodes/{node}/scale", tags=["infrastructures"], dependencies=[write],
              status_code=202, response_model=Accepted, summary="Scale a node: {to: n}, {by: ±n} or {drop: instance}")
    def scale(body: ScaleIn, name: str = Path(..., max_length=63), node: str = Path(..., max_length=200)):
        """Check the request, record it (scaling), and see it applied in the operation: by the running maintain
        loop, or, without one, by one pass run there (the operation's result says what the pass did)."""
        from orchestrator import scaling
        from orchestrator.maintain import apply_request
        from orchestrator.stored import stored_template
        given = [k for k in ("to", "by", "drop") if getattr(body, k) is not None]
        if len(given) != 1:
            raise ApiError(422, "SCALE_BODY", "give exactly one of 'to', 'by' or 'drop'")
        infra = store.get_infra(name)
        if infra is None:
            raise service.NotFound(f"no infrastructure named '{name}'")
        scaling.check_node(infra, node)
        refuse_stored_host_code(infra)
        template = stored_template(infra)
        current = scaling.desired_count(infra, node, template) or 0
        kind = scaling.ScaleKind(given[0])
        target = {"to": body.to, "by": current + (body.by or 0), "drop": current - 1}[kind.value]
        if kind is not scaling.ScaleKind.DROP:
            if target < 0:
                raise ApiError(422, "SCALE_NEGATIVE", scaling.cannot_go_below_zero(node, current, target))
            others = sum(c or 0 for n, c in infra.desired.items() if n != node)
            if others + target > settings.max_instances:
                raise ApiError(422, "LIMIT_INSTANCES",
                               f"this server accepts at most {settings.max_instances} instances")
        source = f"scale {name} {node} drop {body.drop}" if kind is scaling.ScaleKind.DROP else None
        request: list[int] = []

        def work(on_event) -> dict:
            out = apply_request(store, name, node, request[0], wait=30.0, template=template)
            outcome = out.get("result") or {}
            errors = (out.get("pass") or {}).get("errors") or []
            deferred = (out.get("pass") or {}).get("deferred")
            ok = bool(out.get("applied")) and outcome.get("ok", True) and not errors and not deferred
            failures = [] if ok else [{"node": node, "error": outcome.get("error") or deferred
                                       or "; ".join(map(str, errors)) or "the request was not applied"}]
            return {**out, "ok": ok, "failures": failures}

        def record() -> None:  # under the operations' lock, after the check that nothing else runs
            scaling.check_scale(store, name, node, target, body.force, source, template)
            request.append(scaling.record_request(store, name, node, kind, {"to": body.to, "by": body.by}.get(kind.value),
                                                  body.drop))

        op_id = ctx.ops.submit(name, "scale", work, prepare=record)
        return accepted(name, op_id, node=node, desired=target, previous=current)

    # -- operations and events ------------------------------------------------------------------
    @api.get("/operations", tags=["operations"], dependencies=[read])
    def list_operations(infrastructure: str | None = Query(None, max_length=63),
                        state: str | None = Query(None, pattern="^(running|succeeded|failed|interrupted)$"),
                        limit: int = Query(50, ge=1, le=1000)) -> dict:
        return {"operations": [scrub(o) for o in store.operations(infrastructure, state, limit)]}

    @api.get("/operations/{op_id}", tags=["operations"], dependencies=[read],
             summary="running | succeeded | failed | interrupted, with per-node progress")
    def get_operation(op_id: str = Path(..., max_length=64)) -> dict:
        op = store.get_operation(op_id)
        if op is None:
            raise service.NotFound(f"no operation '{op_id}'")
        return scrub(op)

    @api.get("/infrastructures/{name}/events", tags=["operations"], dependencies=[read],
             summary="The journal as Server-Sent Events (resume with Last-Event-ID)",
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def events(request: Request, name: str = Path(..., max_length=63),
                     follow: bool = Query(True, description="Keep the stream open for new events"),
                     after: int | None = Query(None, ge=0, le=2 ** 62, description="Start after this event id"),
                     last: int = Query(200, ge=0, le=10000, description="Without a cursor: the last N events"),
                     last_event_id: str | None = Header(None)) -> StreamingResponse:
        cursor = after if last_event_id is None else event_id(last_event_id)
        newest = await run_in_threadpool(store.last_event_id, name)
        if newest is None and store.get_infra(name) is None and not store.operations(name, limit=1):
            raise service.NotFound(f"no infrastructure named '{name}'")
        if cursor is None:
            cursor = max(0, (newest or 0) - last)

        async def stream():
            position = cursor
            quiet_since = time.monotonic()
            deadline = time.monotonic() + 3600
            yield "retry: 1000\n\n"
            while time.monotonic() < deadline:
                try:
                    rows = await run_in_threadpool(store.events_after, name, position, 500)
                except Exception as exc:  # noqa: BLE001 - the response has started: end it with an event, not a cut
                    log.exception("reading events of %s failed", name)
                    problem = error_body(500, "INTERNAL", f"reading the events failed ({type(exc).__name__}); "
                                                          "see the server log")
                    yield f"event: error\ndata: {json.dumps(problem)}\n\n"
                    return
                for row in rows:
                    position = row["id"]
                    data = json.dumps(scrub({"id": row["id"], "ts": row["ts"], "key": row["key"],
                                             "kind": row["kind"], "detail": row["detail"]}), default=str)
                    yield f"id: {row['id']}\nevent: {row['kind']}\ndata: {data}\n\n"
                if rows:
                    quiet_since = time.monotonic()
                    continue
                if not follow or await request.is_disconnected():
                    return
                if time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return api


def accepted_response(name: str, op_id: str, **extra) -> JSONResponse:
    return JSONResponse({"operation": op_id, "infrastructure": name, "href": f"/v1/operations/{op_id}", **extra},
                        status_code=202, headers={"Location": f"/v1/operations/{op_id}"})


def event_id(text: str) -> int:
    """A Last-Event-ID header as a cursor: a whole number SQLite can compare with, else 400."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_EVENT_ID)) or int(text) > MAX_EVENT_ID:
        raise ApiError(400, "BAD_LAST_EVENT_ID", f"Last-Event-ID must be an event id: a whole number from 0 to "
                                                 f"{MAX_EVENT_ID}")
    return int(text)


def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return "not valid JSON"


__all__ = ["router", "need", "error_body"]
