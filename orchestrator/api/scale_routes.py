"""POST /v1/infrastructures/{name}/nodes/{node}/scale: a new count, a change of the count, or one instance dropped."""

from __future__ import annotations

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import service
from orchestrator.api.admission import refuse_stored_host_code
from orchestrator.api.context import ApiContext
from orchestrator.api.errors import ApiError
from orchestrator.api.routing import API_LOCK_WAIT, ERRORS, WRITE_TOKEN, Accepted, Ctx
from orchestrator.api.routing import accepted_response as accepted
from orchestrator.executor import RunOptions

MAX_COUNT = 10 ** 6
router = APIRouter(prefix="/v1", responses=ERRORS)


class ScaleIn(BaseModel):
    """Exactly one of: a new count, a change of the count, or one instance to remove."""

    model_config = ConfigDict(extra="forbid")
    to: int | None = Field(None, ge=0, le=MAX_COUNT)
    by: int | None = Field(None, ge=-MAX_COUNT, le=MAX_COUNT)
    drop: str | None = Field(None, max_length=200, description="An instance key or index to remove")
    force: bool = Field(False, description="Allow scaling to 0 a node that others depend on")


@router.post("/infrastructures/{name}/nodes/{node}/scale", tags=["infrastructures"], dependencies=[WRITE_TOKEN],
             status_code=202, response_model=Accepted, summary="Scale a node: {to: n}, {by: ±n} or {drop: instance}")
def scale(ctx: Ctx, body: ScaleIn, name: str = Path(..., max_length=63), node: str = Path(..., max_length=200)):
    store, settings = ctx.store, ctx.settings
    given = [k for k in ("to", "by", "drop") if getattr(body, k) is not None]
    if len(given) != 1:
        raise ApiError(422, "SCALE_BODY", "give exactly one of 'to', 'by' or 'drop'")
    infra = store.get_infra(name)
    if infra is None:
        raise service.NotFound(f"no infrastructure named '{name}'")
    if infra.dependencies and node not in infra.dependencies:
        raise service.NotFound(f"infrastructure '{name}' has no node '{node}'")
    refuse_stored_host_code(ctx, infra)
    bundle_path = infra.descriptor
    confined = ctx.bundles.find(bundle_path) is not None  # read as it was accepted: a CLI file unconfined
    if body.drop is not None:
        return drop_instance(ctx, name, node, infra, body)
    current = infra.desired.get(node)
    if current is None:
        current = sum(1 for r in store.instances(name) if r.node == node)
    target = body.to if body.to is not None else current + body.by
    if target < 0:
        raise ApiError(422, "SCALE_NEGATIVE", f"node '{node}' has {current} instance(s); it cannot go to {target}")
    others = sum(c or 0 for n, c in infra.desired.items() if n != node)
    if others + target > settings.max_instances:
        raise ApiError(422, "LIMIT_INSTANCES", f"this server accepts at most {settings.max_instances} instances")
    op_id = ctx.ops.submit(
        name, "scale",
        lambda on_event: service.build(bundle_path, name, {}, store, RunOptions(lock_wait=API_LOCK_WAIT),
                                       on_event=on_event, holder="strato api", confined=confined),
        prepare=lambda: service.scale(store, name, node, target, force=body.force))
    return accepted(name, op_id, node=node, desired=target, previous=current)


def drop_instance(ctx: ApiContext, name: str, node: str, infra, body: ScaleIn):
    """{drop: instance}: the same scale request as `strato scale --drop`, applied by a running maintain
    loop or, without one, by one pass run in the operation."""
    from orchestrator.maintain import current_count, request_scale
    store = ctx.store
    current = current_count(infra, node)
    service.check_scale(store, name, node, current - 1, body.force,
                        source=f"scale {name} {node} drop {body.drop}")

    def work(on_event) -> dict:
        out = request_scale(store, name, node, "drop", None, body.drop, wait=30.0)
        outcome = out.get("result") or {}
        errors = (out.get("pass") or {}).get("errors") or []
        deferred = (out.get("pass") or {}).get("deferred")
        ok = bool(out.get("applied")) and outcome.get("ok", True) and not errors and not deferred
        failures = [] if ok else [{"node": node, "error": outcome.get("error") or deferred
                                   or "; ".join(map(str, errors)) or "the drop was not applied"}]
        return {**out, "ok": ok, "failures": failures}

    op_id = ctx.ops.submit(name, "scale", work)
    return accepted(name, op_id, node=node, desired=current - 1, previous=current)
