"""A tiny iris model server for the monitoring tests: a petal-length rule (or the thresholds a trained model file
holds), its inputs and predictions recorded with orchestrator.mlops.record and served at /strato/records."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orchestrator.mlops.record import Recorder

RECORDER = Recorder(version=os.environ.get("STRATO_MODEL_VERSION", "unknown"), capacity=5000)
MODEL = {"setosa_below": 2.5, "versicolor_below": 4.9}
if os.environ.get("STRATO_MODEL_PATH"):
    with open(os.environ["STRATO_MODEL_PATH"]) as handle:
        MODEL.update(json.load(handle))


def predict(features: dict) -> str:
    length = float(features["petal_length"])
    if length < MODEL["setosa_below"]:
        return "setosa"
    return "versicolor" if length < MODEL["versicolor_below"] else "virginica"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        answer = RECORDER.handle(self.path)
        if answer is None:
            answer = (200, b'{"ok": true}') if self.path == "/health" else (404, b'{"error": "not found"}')
        self.send(*answer)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        features = body.get("features", body)
        prediction = predict(features)
        request_id = RECORDER.record(features, prediction, self.headers.get("X-Request-Id"))
        self.send(200, json.dumps({"prediction": prediction, "id": request_id}).encode(), request_id)

    def send(self, status: int, body: bytes, request_id: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("X-Request-Id", request_id)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
