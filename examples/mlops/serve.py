"""An iris model server for the rollout example: loads $STRATO_MODEL_PATH, answers /predict, /health, /metrics.

    python serve.py --port PORT

The engine gives it the model it runs (env STRATO_MODEL_PATH, STRATO_MODEL_VERSION, STRATO_MODEL_NAME). A bundle
with `faults: {error_rate, delay_ms}` answers that share of predictions with HTTP 500 and adds that delay, so a
deliberately bad version shows what a rollout does with it. /metrics has a latency histogram per replica, which
the rollout's analysis reads for its latency quantiles. Standard library only.
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


def make_handler(bundle: dict, version: str, metrics: Metrics):
    faults = bundle.get("faults") or {}
    error_rate, delay = float(faults.get("error_rate", 0)), float(faults.get("delay_ms", 0)) / 1000.0

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body, ctype: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Model-Version", version)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
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
            try:
                rows = json.loads(body or b"{}").get("instances") or [[5.1, 3.5, 1.4, 0.2]]
                answer = (500, {"error": "injected fault"}) if failed else \
                    (200, {"predictions": predict(bundle, rows), "version": version})
            except (ValueError, TypeError, AttributeError) as exc:
                answer = (400, {"error": f"bad request: {exc}"})
            metrics.observe(time.perf_counter() - started, answer[0] >= 500)
            self._send(*answer)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    path = os.environ.get("STRATO_MODEL_PATH")
    if not path:
        raise SystemExit("serve.py: STRATO_MODEL_PATH is not set (the engine sets it from the node's `model`)")
    version = os.environ.get("STRATO_MODEL_VERSION", "?")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(load_bundle(path), version, Metrics()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
