"""The API's reference pages, /docs (Swagger UI) and /redoc, served from this server: no CDN, since servers are
often offline. The pages' scripts come from the `fastapi-offline` package (part of `pip install 'strato[api]'`)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
MISSING = ("<!doctype html><title>Strato API</title><p>The interactive reference needs the fastapi-offline package "
           "(<code>pip install 'strato[api]'</code>). The API's description is at <a href=\"{openapi}\">{openapi}</a>.")


def assets_directory() -> str | None:
    """Where Swagger UI's and ReDoc's files are on this machine, or None when the package is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    directory = os.path.join(os.path.dirname(os.path.abspath(fastapi_offline.__file__)), "static")
    return directory if os.path.isfile(os.path.join(directory, "swagger-ui-bundle.js")) else None


def install(app: FastAPI) -> None:
    """/docs and /redoc from local files; the app must be made with docs_url=None and redoc_url=None."""
    assets = assets_directory()
    openapi = app.openapi_url or "/openapi.json"
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(MISSING.format(openapi=openapi))
        return get_swagger_ui_html(openapi_url=openapi, title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                                   # no badge fetched from validator.swagger.io
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(MISSING.format(openapi=openapi))
        return get_redoc_html(openapi_url=openapi, title=f"{app.title} API",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
