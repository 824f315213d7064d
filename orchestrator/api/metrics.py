"""Prometheus metrics of the REST API: requests by route and status, their latency, running operations."""

from __future__ import annotations

import time

from fastapi import FastAPI


def install(app: FastAPI, ctx):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    registry = CollectorRegistry()
    requests = Counter("strato_api_requests", "HTTP requests answered", ["method", "route", "status"],
                       registry=registry)
    latency = Histogram("strato_api_request_seconds", "Time to answer a request", ["route"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
    running = Gauge("strato_api_operations_running", "Operations running now", registry=registry)
    running.set_function(lambda: len(ctx.ops.running))
    infras = Gauge("strato_infrastructures", "Infrastructures in the state store", registry=registry)
    infras.set_function(lambda: len(ctx.store.list_infras()))

    class Measure:
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            started = time.perf_counter()
            status = [500]

            async def tap(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.inner(scope, receive, tap)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                requests.labels(scope["method"], route, str(status[0])).inc()
                latency.labels(route).observe(time.perf_counter() - started)

    app.add_middleware(Measure)
    return registry
