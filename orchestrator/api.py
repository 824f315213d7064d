"""The REST API (FastAPI) for external tools: the same plain functions as the CLI, over HTTP."""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from descriptors.diagnostics import DescriptorError
from orchestrator import __version__, service
from orchestrator.executor import RunOptions
from orchestrator.service import UserError
from orchestrator.state import LockHeld, StateError


class DescriptorBody(BaseModel):
    path: str | None = Field(None, description="A descriptor file on the server")
    text: str | None = Field(None, description="Descriptor YAML sent inline (written to a temporary file)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    parallelism: int = Field(32, ge=1, le=1024)


class ScaleBody(BaseModel):
    count: int = Field(..., ge=0)


def create_app(state_path: str | None = None) -> FastAPI:
    app = FastAPI(title="Strato", version=__version__,
                  description="Build, inspect, scale and destroy TOSCA-described infrastructures.")
    store = service.open_store(state_path)
    write_lock = threading.Lock()  # one build at a time per API process; the state lock guards across processes

    def with_descriptor(body: DescriptorBody, fn):
        if bool(body.path) == bool(body.text):
            raise HTTPException(422, "give exactly one of 'path' or 'text'")
        if body.path:
            return fn(body.path)
        with tempfile.TemporaryDirectory(prefix="strato-api-") as tmp:
            path = os.path.join(tmp, "descriptor.yaml")
            with open(path, "w") as fh:
                fh.write(body.text)
            return fn(path)

    @app.exception_handler(DescriptorError)
    def _descriptor_error(request, exc: DescriptorError):
        return JSONResponse(status_code=422, content={"ok": False,
                                                      "diagnostics": [d.to_dict() for d in exc.diagnostics]})

    @app.exception_handler(LockHeld)
    def _locked(request, exc):
        return JSONResponse(status_code=409, content={"ok": False, "error": str(exc)})

    @app.exception_handler(UserError)
    @app.exception_handler(StateError)
    def _user_error(request, exc):
        status = 404 if "no infrastructure named" in str(exc) else 400
        return JSONResponse(status_code=status, content={"ok": False, "error": str(exc)})

    @app.post("/validate")
    def validate(body: DescriptorBody) -> dict:
        results = with_descriptor(body, lambda p: service.validate([p]))
        return {"ok": results[0]["ok"], "diagnostics": results[0]["diagnostics"]}

    @app.get("/infrastructures")
    def list_infrastructures() -> dict:
        return service.status(store, None, refresh=False)

    @app.get("/infrastructures/{name}")
    def get_infrastructure(name: str, refresh: bool = True) -> dict:
        return service.status(store, name, refresh=refresh)["infrastructures"][0]

    @app.get("/infrastructures/{name}/outputs")
    def get_outputs(name: str) -> dict:
        return service.outputs(store, name)

    @app.post("/infrastructures/{name}/plan")
    def plan(name: str, body: DescriptorBody) -> dict:
        return with_descriptor(body, lambda p: service.plan(p, name, body.inputs, store).to_dict())

    @app.post("/infrastructures/{name}/build")
    def build(name: str, body: DescriptorBody) -> dict:
        if body.text:
            raise HTTPException(422, "build needs 'path': the descriptor must stay available for later "
                                     "scale and destroy")
        with write_lock:
            return service.build(body.path, name, body.inputs, store,
                                 RunOptions(parallelism=body.parallelism), holder="strato api")

    @app.put("/infrastructures/{name}/nodes/{node}/count")
    def scale(name: str, node: str, body: ScaleBody, apply: bool = True, force: bool = False) -> dict:
        result = service.scale(store, name, node, body.count, force=force)
        if apply:
            with write_lock:
                result["build"] = service.build(store.get_infra(name).descriptor, name, {}, store, RunOptions(),
                                                holder="strato api")
        return result

    @app.delete("/infrastructures/{name}")
    def destroy(name: str) -> dict:
        with write_lock:
            return service.destroy(store, name, RunOptions())

    @app.get("/infrastructures/{name}/events")
    def events(name: str, limit: int = 100) -> list[dict]:
        service.outputs(store, name)
        return store.events(name, limit)

    return app
