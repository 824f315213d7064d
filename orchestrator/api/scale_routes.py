"""POST /v1/infrastructures/{name}/nodes/{node}/scale: a new count, a change of the count, or one instance dropped."""

from __future__ import annotations

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import scaling, service
from orchestrator.api.admission import refuse_stored_host_code
from orchestrator.api.errors import ApiError
from orchestrator.api.routing import ERRORS, WRITE_TOKEN, Accepted, Ctx
from orchestrator.api.routing import accepted_response as accepted
from orchestrator.maintain import apply_request
from orchestrator.stored import stored_template

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
    """Check the request, record it (scaling), and see it applied in the operation: by the running maintain
    loop, or, without one, by one pass run there (the operation's result says what the pass did)."""
    store, settings = ctx.store, ctx.settings
    given = [k for k in ("to", "by", "drop") if getattr(body, k) is not None]
    if len(given) != 1:
        raise ApiError(422, "SCALE_BODY", "give exactly one of 'to', 'by' or 'drop'")
    infra = store.get_infra(name)
    if infra is None:
        raise service.NotFound(f"no infrastructure named '{name}'")
    scaling.check_node(infra, node)
    refuse_stored_host_code(ctx, infra)
    template = stored_template(infra)
    current = scaling.desired_count(infra, node, template) or 0
    kind = scaling.ScaleKind(given[0])
    target = {"to": body.to, "by": current + (body.by or 0), "drop": current - 1}[kind.value]
    if kind is not scaling.ScaleKind.DROP:
        if target < 0:
            raise ApiError(422, "SCALE_NEGATIVE", scaling.cannot_go_below_zero(node, current, target))
        others = sum(c or 0 for n, c in infra.desired.items() if n != node)
        if others + target > settings.max_instances:
            raise ApiError(422, "LIMIT_INSTANCES", f"this server accepts at most {settings.max_instances} instances")
    source = f"scale {name} {node} drop {body.drop}" if kind is scaling.ScaleKind.DROP else None
    request: list[int] = []

    def record() -> None:  # under the operations' lock, after the check that nothing else runs
        scaling.check_scale(store, name, node, target, body.force, source, template)
        request.append(scaling.record_request(store, name, node, kind, {"to": body.to, "by": body.by}.get(kind.value),
                                              body.drop))

    op_id = ctx.ops.submit(name, "scale", lambda on_event: _apply(store, name, node, request[0], template),
                           prepare=record)
    return accepted(name, op_id, node=node, desired=target, previous=current)


def _apply(store, name: str, node: str, request_id: int, template) -> dict:
    """The operation: the running loop applies the request, or one pass run here does."""
    out = apply_request(store, name, node, request_id, wait=30.0, template=template)
    outcome = out.get("result") or {}
    errors = (out.get("pass") or {}).get("errors") or []
    deferred = (out.get("pass") or {}).get("deferred")
    ok = bool(out.get("applied")) and outcome.get("ok", True) and not errors and not deferred
    failures = [] if ok else [{"node": node, "error": outcome.get("error") or deferred
                               or "; ".join(map(str, errors)) or "the request was not applied"}]
    return {**out, "ok": ok, "failures": failures}
