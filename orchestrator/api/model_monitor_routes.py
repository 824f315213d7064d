"""POST /v1/infrastructures/{name}/nodes/{node}/feedback (labels joined to served requests by request id),
GET .../nodes/{node}/monitoring (the node's drift, alarms and accuracy, window by window) and
GET /v1/infrastructures/{name}/models (every monitored model server at a glance)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.errors import ApiError
from orchestrator.api.routing import ERRORS, READ_TOKEN, WRITE_TOKEN, Ctx
from orchestrator.mlops.monitoring import MAX_LABELS, monitoring_status, node_monitoring, record_feedback
from orchestrator.scaling import check_node
from orchestrator.stored import require_infra, stored_template

router = APIRouter(prefix="/v1", responses=ERRORS)


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=200, description="The request id the model server returned "
                                                                    "(its X-Request-Id header)")
    label: Any = Field(..., description="The true answer for that request")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[Label] = Field(..., max_length=MAX_LABELS)


def _monitored(ctx: Ctx, name: str, node: str) -> None:
    infra = require_infra(ctx.store, name)
    check_node(infra, node)
    template = stored_template(infra)
    tmpl = template.node_templates.get(node) if template is not None else None
    if tmpl is None or not isinstance(tmpl.properties.get("monitoring"), dict):
        raise ApiError(409, "NOT_MONITORED", f"node '{node}' of '{name}' has no `monitoring` property: "
                                             "its requests are not recorded, so labels cannot be joined to them")


@router.post("/infrastructures/{name}/nodes/{node}/feedback", tags=["models"], dependencies=[WRITE_TOKEN],
             summary="Labels for served requests, joined by request id: accuracy per window")
def feedback(ctx: Ctx, body: FeedbackIn, name: str = Path(..., max_length=63),
             node: str = Path(..., max_length=200)):
    """Attach each label to the request the model server recorded under that id. `matched` counts the requests
    the maintain loop had already pulled; a label for a newer one does not match (send it again later)."""
    _monitored(ctx, name, node)
    return record_feedback(ctx.store, name, node, [(item.id, item.label) for item in body.labels])


@router.get("/infrastructures/{name}/nodes/{node}/monitoring", tags=["models"], dependencies=[READ_TOKEN],
            summary="A model server's drift per feature, alarms and accuracy, window by window")
def monitoring(ctx: Ctx, name: str = Path(..., max_length=63), node: str = Path(..., max_length=200),
               windows: int = Query(50, ge=0, le=1000, description="How many recent windows to return")):
    _monitored(ctx, name, node)
    return node_monitoring(ctx.store, name, node, windows)


@router.get("/infrastructures/{name}/models", tags=["models"], dependencies=[READ_TOKEN],
            summary="Every monitored model server: its last window's drift per feature, alarms, accuracy")
def monitored(ctx: Ctx, name: str = Path(..., max_length=63)):
    require_infra(ctx.store, name)
    return {"infrastructure": name, "models": monitoring_status(ctx.store, name)}
