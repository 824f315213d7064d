"""GET /v1/cluster: the servers sharing this state database, their heartbeats, and the loop leases and operations
each holds (orchestrator/cluster.py)."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api.routing import ERRORS, READ_TOKEN, Ctx
from orchestrator.cluster import cluster_view
from orchestrator.leases import LeaseSettings

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get("/cluster", tags=["operational"], dependencies=[READ_TOKEN],
            summary="Servers, their heartbeats, and which loop leases and operations each holds")
def get_cluster(ctx: Ctx) -> dict:
    settings = getattr(ctx.ops, "settings", None) or LeaseSettings()
    return cluster_view(ctx.store, settings.duration)
