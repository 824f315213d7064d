"""A running examples/mlops stack for the rollout tests and benchmark: real model servers, a real HAProxy, a steady
request stream through it and the maintain loop in a thread. Everything stops by itself (bounded waits)."""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "mlops")
sys.path.insert(0, EXAMPLE)
import train  # noqa: E402  (examples/mlops/train.py: make_bundle, push)

sys.path.remove(EXAMPLE)


def haproxy_missing() -> str | None:
    """Why the router cannot run here (None when it can)."""
    try:
        from drivers.haproxy import haproxy_binary
        haproxy_binary()
    except Exception as exc:
        return f"haproxy is not installed ({exc}); tests/env/haproxy.sh installs it"
    return None


@dataclass
class Load:
    """Requests at a steady rate through the router, each outcome kept: (time, status, model version)."""

    url: str
    rate: float = 80.0
    results: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, threads: int = 2) -> "Load":
        self._threads = [threading.Thread(target=self._run, args=(threads,), daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()
        return self

    def _run(self, threads: int) -> None:
        parts = urllib.parse.urlsplit(self.url)
        conn, gap, nxt = None, threads / self.rate, time.monotonic()
        body = json.dumps({"instances": [[6.5, 3.0, 5.5, 2.0]]})
        while not self.stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                self.results.append((time.time(), resp.status, resp.getheader("X-Model-Version") or "?"))
            except (OSError, http.client.HTTPException):
                self.results.append((time.time(), 599, "?"))
                conn = None
            nxt += gap
            self.stop.wait(max(0.0, nxt - time.monotonic()))

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def failed(self, since: float = 0.0) -> list:
        return [r for r in self.results if r[1] >= 500 and r[0] >= since]


class Webhook:
    """A local HTTP server that keeps every JSON POST it gets."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """examples/mlops built under its own STRATO_HOME, with a maintain loop that can be stopped and restarted."""

    def __init__(self, home: str, name: str, inputs: dict, interval: float = 0.5):
        from orchestrator import service
        from orchestrator.mlops.registry import ModelRegistry
        self.home, self.name, self.inputs, self.interval = home, name, inputs, interval
        self.store = service.open_store(os.path.join(home, "state.db"))
        self.registry = ModelRegistry(os.path.join(home, "models"))
        self._loop: tuple | None = None

    def build(self) -> dict:
        from orchestrator import service
        from orchestrator.executor import RunOptions
        report = service.build(os.path.join(EXAMPLE, "service.yaml"), self.name, self.inputs, self.store,
                               RunOptions(parallelism=8, timeout=120))
        assert report["ok"], report
        return report

    def endpoint(self) -> str:
        return self.store.get_infra(self.name).outputs["endpoint"]

    def push(self, note: str, error_rate: float = 0.0, delay_ms: float = 0.0, promote: bool = True):
        return train.push(self.registry, "iris", train.make_bundle(error_rate, delay_ms, note), promote, note)

    def start_loop(self) -> None:
        from orchestrator.maintain import MaintainOptions, Maintainer
        stop = threading.Event()
        maintainer = Maintainer(self.store, self.name, MaintainOptions(interval=self.interval, policy_timeout=5))
        thread = threading.Thread(target=maintainer.run, args=(stop,), daemon=True)
        thread.start()
        self._loop = (stop, thread)

    def stop_loop(self) -> None:
        if self._loop:
            self._loop[0].set()
            self._loop[1].join(timeout=60)
            self._loop = None

    def events(self, kind: str) -> list[dict]:
        return [{"ts": e["ts"], "kind": e["kind"], **e["detail"]}
                for e in self.store.events_after(self.name, 0, 100000) if e["kind"] == kind]

    def rollout_state(self, node: str = "server") -> dict:
        return self.store.policy_states(self.name).get(("rollout", node)) or {}

    def wait_for(self, kind: str, timeout: float, since: float = 0.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events(kind) if e["ts"] >= since]
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def weights(self) -> dict[str, int]:
        from drivers.haproxy import HaproxyAdmin
        router = next(r for r in self.store.instances(self.name) if r.node == "router")
        return HaproxyAdmin(router.attributes["admin_socket"]).weights(router.attributes["backend"])

    def destroy(self) -> None:
        from orchestrator import service
        from orchestrator.executor import RunOptions
        self.stop_loop()
        service.destroy(self.store, self.name, RunOptions(parallelism=8, timeout=60))
