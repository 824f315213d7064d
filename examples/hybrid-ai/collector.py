"""Local collector of the hybrid example: receives the cloud resources' ids/addresses as inputs and serves them.

It never contacts those addresses (they may be an emulator's inventions); it only records and
reports them at http://127.0.0.1:PORT/inventory, with /health for Strato's health check.
"""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYS = ("GPU_WORKER_IDS", "GPU_WORKER_ADDRESSES", "CPU_WORKER_BACKENDS", "CPU_WORKER_ADDRESSES", "ENDPOINT_NAME",
        "FUNCTION_NAME", "FUNCTION_URL")


def inventory() -> dict:
    inv = {k.lower(): os.environ.get(k, "") for k in KEYS}
    for k in ("gpu_worker_ids", "gpu_worker_addresses", "cpu_worker_backends", "cpu_worker_addresses"):
        inv[k] = [x for x in inv[k].split(",") if x]
    return inv


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(inventory() if self.path == "/inventory" else {"ok": True}).encode()
        self.send_response(200 if self.path in ("/inventory", "/health") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    attrs_file = os.environ.get("STRATO_ATTRIBUTES_FILE")
    if attrs_file:
        with open(attrs_file, "w") as fh:
            json.dump(inventory(), fh)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
