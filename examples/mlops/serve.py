"""An iris model server for the rollout example: loads $STRATO_MODEL_PATH, answers /predict, /health, /metrics.

    python serve.py --port PORT

The engine gives it the model it runs (env STRATO_MODEL_PATH, STRATO_MODEL_VERSION, STRATO_MODEL_NAME). A bundle
with `faults: {error_rate, delay_ms}` answers that share of predictions with HTTP 500 and adds that delay, so a
deliberately bad version shows what a rollout does with it. /metrics has a latency histogram per replica, which
the rollout's analysis reads for its latency quantiles. Every prediction's input and answer is recorded for
Strato's drift and accuracy monitoring (orchestrator.mlops.record, served at GET /strato/records) and its request
id sent back as the header X-Request-Id, so that labels can be fed back later. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:   # Strato's recorder (standard library only); without Strato on the path the server runs unmonitored
    from orchestrator.mlops.record import Recorder
except ImportError:  # pragma: no cover
    Recorder = None

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Prometheus text exposition of a request counter and a latency histogram (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total, self.sum, self.errors = 0, 0.0, 0

    def observe(self, seconds: float, error: bool) -> None:
        with self.lock:
            index = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
            self.counts[index] += 1
            self.total += 1
            self.sum += seconds
            self.errors += int(error)

    def text(self, version: str) -> str:
        with self.lock:
            lines = ["# TYPE model_request_duration_seconds histogram"]
            cumulative = 0
            for bound, count in zip(list(BUCKETS) + [math.inf], self.counts):
                cumulative += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'model_request_duration_seconds_bucket{{le="{le}"}} {cumulative}')
            lines += [f"model_request_duration_seconds_count {self.total}",
                      f"model_request_duration_seconds_sum {self.sum}",
                      "# TYPE model_request_errors_total counter", f"model_request_errors_total {self.errors}",
                      "# TYPE model_info gauge", f'model_info{{version="{version}"}} 1']
        return "\n".join(lines) + "\n"


def load_bundle(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def predict(bundle: dict, rows: list) -> list[str]:
    classes, centroids = bundle["classes"], bundle["centroids"]
    out = []
    for row in rows:
        distances = [sum((float(x) - c) ** 2 for x, c in zip(row, centroid)) for centroid in centroids]
        out.append(classes[distances.index(min(distances))])
    return out


def record(recorder, names: list, rows: list, predictions: list, request_id: str | None) -> str | None:
    """Record each row (named by the model's features) with its prediction; the request's id (one row's own)."""
    if recorder is None:
        return request_id
    ids = [recorder.record(dict(zip(names, row)) if names else row, p,
                           request_id if len(rows) == 1 or not request_id else f"{request_id}.{i}")
           for i, (row, p) in enumerate(zip(rows, predictions))]
    return ids[0] if len(ids) == 1 else request_id


def make_handler(bundle: dict, version: str, metrics: Metrics, recorder=None):
    faults = bundle.get("faults") or {}
    error_rate, delay = float(faults.get("error_rate", 0)), float(faults.get("delay_ms", 0)) / 1000.0

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body, ctype: str = "application/json", request_id: str | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Model-Version", version)
            if request_id:
                self.send_header("X-Request-Id", request_id)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            records = recorder.handle(self.path) if recorder is not None else None
            if records is not None:
                self._send(*records)
            elif self.path == "/health":
                self._send(200, {"status": "ok", "version": version})
            elif self.path == "/metrics":
                self._send(200, metrics.text(version).encode(), "text/plain; version=0.0.4")
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            started = time.perf_counter()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/predict":
                self._send(404, {"error": "not found"})
                return
            if delay:
                time.sleep(delay)
            failed = error_rate > 0 and random.random() < error_rate
            request_id = None
            try:
                rows = json.loads(body or b"{}").get("instances") or [[5.1, 3.5, 1.4, 0.2]]
                if failed:
                    answer = (500, {"error": "injected fault"})
                else:
                    predictions = predict(bundle, rows)
                    request_id = record(recorder, bundle.get("features") or [], rows, predictions,
                                        self.headers.get("X-Request-Id"))
                    answer = (200, {"predictions": predictions, "version": version, "id": request_id})
            except (ValueError, TypeError, AttributeError) as exc:
                answer = (400, {"error": f"bad request: {exc}"})
            metrics.observe(time.perf_counter() - started, answer[0] >= 500)
            self._send(*answer, request_id=request_id)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    path = os.environ.get("STRATO_MODEL_PATH")
    if not path:
        raise SystemExit("serve.py: STRATO_MODEL_PATH is not set (the engine sets it from the node's `model`)")
    version = os.environ.get("STRATO_MODEL_VERSION", "?")
    recorder = Recorder(version=version) if Recorder is not None else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(load_bundle(path), version, Metrics(), recorder))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
