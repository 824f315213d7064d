"""A tiny HTTP/1.1 keep-alive server for the router tests: GET /health, GET / (answers its name), POST / (echoes).

    python router_backend.py PORT NAME [DELAY_S]

Each answer names the server in its body and in the X-Server header, so a client can count the split."""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle on, the body would wait for the client's delayed ACK
    # (40 ms on Linux) on every keep-alive request
    disable_nagle_algorithm = True
    server_name_: str = "?"
    delay: float = 0.0

    def _answer(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Server", self.server_name_)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/health" and self.delay:
            time.sleep(self.delay)
        self._answer(b"ok" if self.path == "/health" else self.server_name_.encode())

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.delay:
            time.sleep(self.delay)
        self._answer(self.server_name_.encode() + b":" + body)

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass   # health checks close with a reset: not worth a traceback


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    Handler.server_name_ = name
    Handler.delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    QuietServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
