"""An inference replica: loads the trained model and answers JSON predictions, with Prometheus /metrics.

It listens on its own port (health checks, metrics scraping) and on the node's shared port with
SO_REUSEPORT: every replica binds the same shared port and the kernel spreads connections over
them, so the endpoint stays the same whatever the number of replicas.
"""

import argparse
import json
import os
import pickle
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

LATENCY = Histogram("inference_request_latency_seconds", "Time to answer a prediction request",
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
REQUESTS = Counter("inference_requests_total", "Prediction requests", ["status"])


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, reuse_port=False):
        self.reuse_port = reuse_port
        super().__init__(address, handler)

    def server_bind(self):
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def make_handler(bundle, replica):
    model = bundle["model"]
    classes = bundle["classes"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: with Nagle's algorithm on, a keep-alive client
        # waits for its delayed ACK (~40 ms) before the body arrives.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # keep the log for errors only
            pass

        def _send(self, code, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path in ("/health", "/"):
                self._send(200, {"status": "ok", "replica": replica, "pid": os.getpid()})
            else:
                self._send(404, {"error": "not found; POST /predict or GET /metrics"})

        def do_POST(self):
            if self.path != "/predict":
                self._send(404, {"error": "not found; POST /predict"})
                return
            started = time.perf_counter()
            try:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                rows = payload["instances"]
                labels = model.predict(rows)
                body = {"predictions": [classes[int(i)] for i in labels], "replica": replica, "pid": os.getpid()}
                self._send(200, body)
                REQUESTS.labels("ok").inc()
            except (KeyError, ValueError, TypeError) as exc:
                self._send(400, {"error": f"send {{\"instances\": [[4 numbers], ...]}}: {exc}"})
                REQUESTS.labels("bad_request").inc()
            finally:
                LATENCY.observe(time.perf_counter() - started)

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True, help="this replica's own port")
    parser.add_argument("--shared-port", type=int, default=0, help="the node's shared endpoint port")
    parser.add_argument("--replica", default=os.environ.get("STRATO_INSTANCE_INDEX", "0"))
    args = parser.parse_args()
    with open(args.model, "rb") as fh:
        bundle = pickle.load(fh)
    handler = make_handler(bundle, args.replica)
    servers = [Server(("127.0.0.1", args.port), handler)]
    if args.shared_port:
        servers.append(Server(("127.0.0.1", args.shared_port), handler, reuse_port=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"replica {args.replica} serving on 127.0.0.1:{args.port}"
          + (f" and shared 127.0.0.1:{args.shared_port}" if args.shared_port else ""), flush=True)
    stop.wait()
    for srv in servers:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
