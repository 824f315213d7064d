"""REST API throughput and latency: 50 concurrent keep-alive clients on loopback against a real `strato serve`.

Measures GET /v1/infrastructures/NAME of a 500-instance infrastructure (noop driver) p50/p99 and requests per
second, POST /v1/validate of a 100-node descriptor (requests per second), and GET /healthz as the floor.
Targets: status p99 <= 50 ms; status rps >= 0.5 x healthz rps.

Usage: python benchmarks/api.py [--clients 50] [--seconds 5]
Prints figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers.local import free_port  # noqa: E402
from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402

TOKEN = "bench-" + "t" * 40


def noop_descriptor(nodes: int, instances: int) -> str:
    lines = ["tosca_definitions_version: tosca_simple_yaml_1_3", "topology_template:", "  node_templates:"]
    for i in range(nodes):
        lines += [f"    n{i}:", "      type: strato.nodes.Noop",
                  f"      capabilities: {{scalable: {{properties: {{default_instances: {instances}}}}}}}"]
        if i:
            lines.append(f"      requirements: [{{dependency: n{i - 1}}}]")
    return "\n".join(lines) + "\n"


async def _request(reader, writer, raw: bytes) -> int:
    """One HTTP/1.1 keep-alive exchange; returns the status (the body is read by its Content-Length)."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, raw: bytes, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                status = await _request(reader, writer, raw)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors[0] += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def get(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").encode()


def post(path: str, body: str, kind: str) -> bytes:
    data = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="strato-bench-api-")
    proc = None
    try:
        store = StateStore(os.path.join(home, "state.db"))
        path = os.path.join(home, "big.yaml")
        with open(path, "w") as fh:
            fh.write(noop_descriptor(5, 100))
        report = service.build(path, "big", {}, store, RunOptions(parallelism=64))
        assert report["ok"] and len(store.instances("big")) == 500
        store.close()
        port = free_port()
        env = dict(os.environ, STRATO_HOME=home, STRATO_API_TOKEN=TOKEN, STRATO_API_READ_TOKEN=TOKEN[::-1],
                   PYTHONPATH=REPO)
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port)], env=env,
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("strato serve did not start")
                time.sleep(0.1)
        validate_body = noop_descriptor(100, 1)
        phases = {"healthz": get("/healthz"), "status": get("/v1/infrastructures/big"),
                  "validate": post("/v1/validate", validate_body, "application/yaml")}
        for raw in phases.values():  # warm up: caches, the check workers
            asyncio.run(load(port, raw, 2, 0.5))
        results = {name: asyncio.run(load(port, raw, args.clients, args.seconds)) for name, raw in phases.items()}
        status_bytes = len(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/infrastructures/big", headers={"Authorization": f"Bearer {TOKEN}"})).read())
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)

    print(f"{args.clients} concurrent keep-alive clients on loopback, {args.seconds:g} s per phase, 2-core machine")
    for name, r in results.items():
        print(f"  {name:<9} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   "
              f"({r['requests']} requests, {r['errors']} non-200)")
    print(f"  status document: 500 instances, {status_bytes} bytes")
    ratio = results["status"]["rps"] / results["healthz"]["rps"]
    print(f"  targets: status p99 {results['status']['p99_ms']:.1f} ms <= 50 ms: "
          f"{'met' if results['status']['p99_ms'] <= 50 else 'MISSED'}; status/healthz throughput {ratio:.2f} >= 0.5: "
          f"{'met' if ratio >= 0.5 else 'MISSED'}")
    print(json.dumps({"clients": args.clients, "instances": 500, "validate_nodes": 100,
                      "status_p50_ms": round(results["status"]["p50_ms"], 2),
                      "status_p99_ms": round(results["status"]["p99_ms"], 2),
                      "status_rps": round(results["status"]["rps"], 1),
                      "validate_rps": round(results["validate"]["rps"], 1),
                      "validate_p99_ms": round(results["validate"]["p99_ms"], 2),
                      "healthz_rps": round(results["healthz"]["rps"], 1),
                      "healthz_p99_ms": round(results["healthz"]["p99_ms"], 2),
                      "status_to_healthz": round(ratio, 3),
                      "errors": sum(r["errors"] for r in results.values())}))


if __name__ == "__main__":
    main()
