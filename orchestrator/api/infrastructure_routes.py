"""Routes over infrastructures under /v1/infrastructures: list, create, read, outputs, graph, plan, apply, destroy
(scaling a node is in scale_routes.py)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from orchestrator import service
from orchestrator.api.admission import CreateIn, DescriptorIn, admit, bundle_from, refuse_stored_host_code
from orchestrator.api.context import ApiContext
from orchestrator.api.errors import ApiError
from orchestrator.api.operations import runner
from orchestrator.api.routing import (API_LOCK_WAIT, ERRORS, NAME_PATTERN, READ_TOKEN, WRITE_TOKEN, Accepted, Ctx,
                                      accepted_response)
from orchestrator.api.security import scrub
from orchestrator.executor import RunOptions

router = APIRouter(prefix="/v1", responses=ERRORS)
# The same key twice (a client retrying after a lost answer) answers the first operation instead of a second one.
IDEMPOTENCY_KEY = Header(None, alias="Idempotency-Key", max_length=200,
                         description="Any unique text; a retry with the same key answers the first operation")


@runner("build")
def run_build(store, request: dict, on_event) -> dict:
    """A create or apply, by whichever server claims it (its inputs were stored sealed)."""
    options = RunOptions(parallelism=request["parallelism"], lock_wait=API_LOCK_WAIT)
    return service.build(request["path"], request["name"], request["inputs"], store, options, on_event=on_event,
                         holder="strato api")


@runner("destroy")
def run_destroy(store, request: dict, on_event) -> dict:
    return service.destroy(store, request["name"], RunOptions(lock_wait=API_LOCK_WAIT), on_event=on_event)


def public_infra(ctx: ApiContext, name: str) -> dict:
    store = ctx.store
    infra = store.get_infra(name)
    if infra is None:
        raise service.NotFound(f"no infrastructure named '{name}'")
    bundle = ctx.bundles.find(infra.descriptor)
    hide = service.stored_redactor(infra)  # an instance may have copied a secret input into its attributes
    return {"name": infra.name, "status": infra.status,
            "descriptor": bundle.public() if bundle else {"file": os.path.basename(infra.descriptor or "")},
            "outputs": scrub(infra.outputs), "desired": infra.desired, "dependencies": infra.dependencies,
            "operation": ctx.ops.running.get(name), "created": infra.created, "updated": infra.updated,
            "instances": [scrub(hide.value(r.to_dict())) for r in store.instances(name)],
            **service.rollout_status(store, name)}   # model servers: pinned versions and rollouts under way


@router.get("/infrastructures", tags=["infrastructures"], dependencies=[READ_TOKEN])
def list_infrastructures(ctx: Ctx) -> Response:
    def build():
        items = []
        for infra in ctx.store.list_infras():
            recs = ctx.store.instances(infra.name)
            by_status: dict[str, int] = {}
            for r in recs:
                by_status[r.status] = by_status.get(r.status, 0) + 1
            items.append({"name": infra.name, "status": infra.status, "instances": len(recs),
                          "by_status": by_status, "operation": ctx.ops.running.get(infra.name),
                          "updated": infra.updated})
        return {"infrastructures": items}
    return Response(ctx.cached("list", build), media_type="application/json")


@router.post("/infrastructures", tags=["infrastructures"], dependencies=[WRITE_TOKEN], status_code=202,
             response_model=Accepted, summary="Create an infrastructure (202 with an operation)")
def create(ctx: Ctx, body: CreateIn, idempotency_key: str | None = IDEMPOTENCY_KEY) -> JSONResponse:
    if (existing := ctx.ops.by_key(idempotency_key)) is not None:
        return accepted_response(body.name, existing)
    if ctx.store.get_infra(body.name) is not None:
        raise ApiError(409, "INFRASTRUCTURE_EXISTS", f"infrastructure '{body.name}' exists; PUT "
                                                     f"/v1/infrastructures/{body.name} applies a new version")
    return apply_version(ctx, body.name, body, "create", idempotency_key)


def apply_version(ctx: ApiContext, name: str, body: DescriptorIn, kind: str,
                  idem_key: str | None = None) -> JSONResponse:
    store = ctx.store
    if (existing := ctx.ops.by_key(idem_key)) is not None:
        return accepted_response(name, existing)
    ctx.ops.busy(name)
    bundle = bundle_from(ctx, body, keep=True)
    infra = store.get_infra(name)
    if infra is not None:  # what the new version replaces or drops is removed first
        refuse_stored_host_code(ctx, infra, deleting=True)
    result = admit(ctx, bundle, body.inputs, infra.inputs if infra else None, infra.desired if infra else None,
                   keep_loaded=True)
    options = RunOptions(parallelism=body.parallelism, lock_wait=API_LOCK_WAIT)
    op_id = ctx.ops.submit(name, kind, lambda on_event: service.build(
        bundle.path, name, body.inputs, store, options, on_event=on_event, holder="strato api",
        loaded=result["loaded"]), request={"runner": "build", "path": bundle.path, "name": name,
                                           "inputs": body.inputs, "parallelism": body.parallelism},
        idem_key=idem_key)
    return accepted_response(name, op_id, descriptor=bundle.public(), warnings=result["diagnostics"])


@router.get("/infrastructures/{name}", tags=["infrastructures"], dependencies=[READ_TOKEN])
async def get_infrastructure(ctx: Ctx, name: str = Path(..., max_length=63),
                             refresh: bool = Query(False, description="Ask the backends whether instances "
                                                                      "still exist (slower)")) -> Response:
    body = None if refresh else ctx.cached_now(("infra", name))
    if body is None:  # something changed (or a refresh was asked): the database work runs off the loop
        def fresh() -> bytes:
            if refresh:
                service.status(ctx.store, name, refresh=True)
            return ctx.cached(("infra", name), lambda: public_infra(ctx, name))
        body = await run_in_threadpool(fresh)
    return Response(body, media_type="application/json")


@router.get("/infrastructures/{name}/outputs", tags=["infrastructures"], dependencies=[READ_TOKEN])
def get_outputs(ctx: Ctx, name: str = Path(..., max_length=63)) -> dict:
    return scrub(service.outputs(ctx.store, name))


@router.get("/infrastructures/{name}/graph", tags=["infrastructures"], dependencies=[READ_TOKEN],
            summary="Dependency graph with instance counts per node")
def get_graph(ctx: Ctx, name: str = Path(..., max_length=63)) -> dict:
    infra = ctx.store.get_infra(name)
    if infra is None:
        raise service.NotFound(f"no infrastructure named '{name}'")
    nodes: dict[str, dict] = {n: {"id": n, "desired": infra.desired.get(n), "instances": {}, "driver": None}
                              for n in infra.dependencies}
    for rec in ctx.store.instances(name):
        entry = nodes.setdefault(rec.node, {"id": rec.node, "desired": None, "instances": {}, "driver": None})
        entry["instances"][rec.status] = entry["instances"].get(rec.status, 0) + 1
        entry["driver"] = rec.driver
    edges = [{"from": n, "to": d} for n, deps in infra.dependencies.items() for d in deps]
    return {"nodes": list(nodes.values()), "edges": edges}


@router.post("/infrastructures/{name}/plan", tags=["infrastructures"], dependencies=[READ_TOKEN],
             summary="What applying a (new) version would do")
def plan(ctx: Ctx, name: str = Path(..., pattern=NAME_PATTERN), body: DescriptorIn | None = Body(None)) -> dict:
    store = ctx.store
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
        bundle = scratch = bundle_from(ctx, body, keep=False)
    try:
        loaded = admit(ctx, bundle, body.inputs if body else {}, infra.inputs if infra else None, runs=False,
                       keep_loaded=True)["loaded"]
        result = service.plan(bundle.path, name, body.inputs if body else {}, store, loaded=loaded).to_dict()
    finally:
        if scratch is not None:
            ctx.bundles.discard(scratch)
    return scrub(result)


@router.put("/infrastructures/{name}", tags=["infrastructures"], dependencies=[WRITE_TOKEN], status_code=202,
            response_model=Accepted, summary="Apply a version (creates the infrastructure if new)")
def put_infrastructure(ctx: Ctx, body: DescriptorIn, name: str = Path(..., pattern=NAME_PATTERN),
                       idempotency_key: str | None = IDEMPOTENCY_KEY) -> JSONResponse:
    return apply_version(ctx, name, body, "apply", idempotency_key)


@router.delete("/infrastructures/{name}", tags=["infrastructures"], dependencies=[WRITE_TOKEN], status_code=202,
               response_model=Accepted, summary="Destroy everything (202 with an operation)")
def destroy(ctx: Ctx, name: str = Path(..., max_length=63),
            idempotency_key: str | None = IDEMPOTENCY_KEY) -> JSONResponse:
    store = ctx.store
    if (existing := ctx.ops.by_key(idempotency_key)) is not None:
        return accepted_response(name, existing)
    infra = store.get_infra(name)
    if infra is None:
        raise service.NotFound(f"no infrastructure named '{name}'")
    refuse_stored_host_code(ctx, infra, deleting=True)
    op_id = ctx.ops.submit(name, "destroy", lambda on_event: service.destroy(store, name,
                                                                              RunOptions(lock_wait=API_LOCK_WAIT),
                                                                              on_event=on_event),
                           request={"runner": "destroy", "name": name}, idem_key=idempotency_key)
    return accepted_response(name, op_id)
