"""Routes under /v1, one module per resource; this one mounts them in their documented order."""

from __future__ import annotations

from fastapi import FastAPI

from orchestrator.api.infrastructure_routes import router as infrastructures
from orchestrator.api.model_monitor_routes import router as model_monitoring
from orchestrator.api.model_routes import router as models
from orchestrator.api.operation_routes import router as operations
from orchestrator.api.optimizer_routes import node_router as optimizer_nodes, router as optimizer
from orchestrator.api.scale_routes import router as scaling
from orchestrator.api.validate_routes import router as validation

ROUTERS = (validation, infrastructures, scaling, operations, optimizer, optimizer_nodes, models, model_monitoring)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
