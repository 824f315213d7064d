"""Optimizer routes under /v1/optimizer: stored samples, model status and training, advice (thin over optimizer.cli);
and a node's decision timeline under /v1/infrastructures/{name}/nodes/{node}/optimizer."""

from __future__ import annotations

import math
import os
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.context import ApiContext
from orchestrator.api.errors import ApiError
from orchestrator.api.routing import ERRORS, READ_TOKEN, WRITE_TOKEN, Ctx, accepted_response
from orchestrator.jsonsafe import finite_tree

SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class SamplesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: list[str] = Field(..., min_length=1, max_length=64, description="Names of the system metrics")
    rows: list[dict[str, float]] = Field(..., min_length=1, max_length=100000,
                                         description="Each with timestamp, instances, target and every metric")


class AdviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float = Field(..., description="Lower threshold of the target")
    high: float = Field(..., description="Upper threshold of the target")
    min_instances: int = Field(1, ge=0, le=10000)
    max_instances: int = Field(10, ge=1, le=10000)
    max_up: int = Field(4, ge=1, le=10000)
    max_down: int = Field(4, ge=1, le=10000)
    min_samples: int = Field(100, ge=1, le=10 ** 7)


router = APIRouter(prefix="/v1/optimizer", tags=["optimizer"], responses=ERRORS)
node_router = APIRouter(prefix="/v1/infrastructures", tags=["optimizer"], responses=ERRORS)


def model_path(ctx: ApiContext, infra: str, node: str) -> str:
    return os.path.join(ctx.store.home, "models", infra, f"{node}.pkl")


def optimizer_call(ctx: ApiContext, fn, *args):
    try:
        from optimizer.errors import OptimizerInputError
    except ImportError:
        raise ApiError(400, "OPTIMIZER_MISSING", "the optimizer needs numpy, scipy and scikit-learn: "
                                                 "pip install 'strato[optimizer]'") from None
    try:
        return fn(*args)
    except OptimizerInputError as exc:
        raise ApiError(422, "OPTIMIZER_INPUT", str(exc).replace(str(ctx.store.path), "the state store")) from None


@router.get("/samples", dependencies=[READ_TOKEN], summary="Sample series stored per infrastructure and node")
def series(ctx: Ctx) -> dict:
    from optimizer.samples import SampleStore

    def run():
        with SampleStore(ctx.store.database) as samples:
            return [{"infrastructure": i, "node": n, "samples": c} for i, n, c in samples.series()]
    return {"series": optimizer_call(ctx, run)}


@router.get("/samples/{infra}/{node}", dependencies=[READ_TOKEN], summary="The latest samples of one node")
def get_samples(ctx: Ctx, infra: str = Path(..., pattern=SEGMENT), node: str = Path(..., pattern=SEGMENT),
                limit: int = Query(500, ge=1, le=100000)) -> dict:
    from optimizer.cli import load_samples

    def run():
        s = load_samples(None, ctx.store.database, infra, node)
        start = max(0, len(s) - limit)
        rows = [{"timestamp": float(s.timestamps[i]), "instances": float(s.instances[i]),
                 "target": float(s.target[i]), **{m: _finite(s.metrics[i][j]) for j, m in enumerate(s.metric_names)}}
                for i in range(start, len(s))]
        return {"metrics": list(s.metric_names), "target_name": s.target_name, "rows": rows}
    return optimizer_call(ctx, run)


@router.post("/samples/{infra}/{node}", dependencies=[WRITE_TOKEN],
             summary="Store samples (e.g. from a monitoring hook)")
def add_samples(ctx: Ctx, body: SamplesIn, infra: str = Path(..., pattern=SEGMENT),
                node: str = Path(..., pattern=SEGMENT)) -> dict:
    from optimizer.samples import SampleStore, from_rows

    def run():
        samples = from_rows(body.rows, body.metrics)
        with SampleStore(ctx.store.database) as store:
            return {"stored": store.add(infra, node, samples)}
    return optimizer_call(ctx, run)


@router.get("/models/{infra}/{node}", dependencies=[READ_TOKEN], summary="Whether a model is trained, and its report")
def model_status(ctx: Ctx, infra: str = Path(..., pattern=SEGMENT), node: str = Path(..., pattern=SEGMENT)) -> dict:
    path = model_path(ctx, infra, node)
    if not os.path.isfile(path):
        return {"trained": False}
    from optimizer.cli import load_model
    model = optimizer_call(ctx, load_model, path)
    report = getattr(model, "report", None)
    return {"trained": True, "trained_at": os.path.getmtime(path),
            "report": finite_tree(report.as_dict()) if report is not None else None}


@router.post("/models/{infra}/{node}/train", dependencies=[WRITE_TOKEN], status_code=202,
             summary="Train the node's model on its stored samples (202 with an operation)")
def train(ctx: Ctx, infra: str = Path(..., pattern=SEGMENT), node: str = Path(..., pattern=SEGMENT)):
    from optimizer.cli import load_samples, train_model
    path = model_path(ctx, infra, node)

    def work(on_event):
        samples = optimizer_call(ctx, load_samples, None, ctx.store.database, infra, node)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return {"ok": True, "report": finite_tree(optimizer_call(ctx, train_model, samples, path))}
    op_id = ctx.ops.submit(f"optimizer:{infra}/{node}", "train", work)
    return accepted_response(f"{infra}", op_id)


@router.post("/advice/{infra}/{node}", dependencies=[READ_TOKEN],
             summary="Advised instance count for the latest sample")
async def advice(ctx: Ctx, body: AdviceIn, infra: str = Path(..., pattern=SEGMENT),
                 node: str = Path(..., pattern=SEGMENT)) -> dict:
    if body.low >= body.high or not (math.isfinite(body.low) and math.isfinite(body.high)):
        raise ApiError(422, "ADVICE_THRESHOLDS", "'low' must be a finite number below 'high'")
    if body.min_instances > body.max_instances:
        raise ApiError(422, "ADVICE_BOUNDS", "'min_instances' must not exceed 'max_instances'")
    path = model_path(ctx, infra, node)
    if not os.path.isfile(path):
        raise ApiError(404, "NOT_FOUND", f"no trained model for {infra}/{node}; POST "
                                         f"/v1/optimizer/models/{infra}/{node}/train first")

    def run():
        from optimizer.advisor import AdvisorConfig
        from optimizer.cli import advise_latest, load_model, load_samples
        samples = load_samples(None, ctx.store.database, infra, node)
        config = AdvisorConfig(target_low=body.low, target_high=body.high, min_instances=body.min_instances,
                               max_instances=body.max_instances, max_up=body.max_up, max_down=body.max_down,
                               min_samples=body.min_samples)
        return finite_tree(advise_latest(samples, load_model(path), config))
    return await run_in_threadpool(optimizer_call, ctx, run)


@node_router.get("/{name}/nodes/{node}/optimizer/timeline", dependencies=[READ_TOKEN],
                 summary="A node's optimizer decisions over time: load, forecast band, predicted vs observed target")
def timeline(ctx: Ctx, name: str = Path(..., pattern=SEGMENT), node: str = Path(..., pattern=SEGMENT),
             passes: int = Query(720, ge=1, le=20000, description="The node's last N maintain passes")) -> dict:
    """The timeline `strato optimizer report --infra NAME --node NODE` draws (orchestrator.optimizer_view)."""
    from orchestrator.api.security import scrub
    from orchestrator.errors import NotFound
    from orchestrator.optimizer_view import node_timeline
    if ctx.store.get_infra(name) is None:
        raise NotFound(f"no infrastructure named '{name}'")   # other infrastructures are not named
    return scrub(optimizer_call(ctx, node_timeline, ctx.store, name, node, passes))


def _finite(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else None
