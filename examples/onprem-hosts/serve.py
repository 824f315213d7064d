"""Serves the nearest-centroid model over HTTP: POST /predict {"instances": [[...4 numbers], ...]}, GET /health."""

import argparse
import json
import math
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with open(args.model) as fh:
        centroids = {int(c): v for c, v in json.load(fh)["centroids"].items()}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(200 if self.path == "/health" else 404, {"ok": self.path == "/health"})

        def do_POST(self):
            try:
                rows = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))["instances"]
                preds = [min(centroids, key=lambda c: math.dist(row, centroids[c])) for row in rows]
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, {"predictions": preds})

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
