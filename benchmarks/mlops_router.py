"""The latency a Router (HAProxy, strato.nodes.ai.Router) adds: p99 through it minus p99 direct to the same replica.

One replica (tests/drivers/router_backend.py) and one router built by the haproxy driver, both on loopback. One
client thread holds two keep-alive connections, one direct and one through the router, and alternates requests
between them (interleaved one by one, so a slow moment of the machine hits both paths alike). Target: the added p99 <= 1 ms.
Ends with one JSON line; `router_added_latency_p99_ms` is the figure benchmarks/mlops.py reports.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers.base import InstanceSpec  # noqa: E402 - after the path set-up, run as a script
from drivers.haproxy import HaproxyAdmin, HaproxyDriver, ServerSlot  # noqa: E402
from drivers.local import free_port  # noqa: E402

REPLICA = os.path.join(REPO, "tests", "drivers", "router_backend.py")
TARGET_MS = 1.0
BATCH = 1   # one request each way in turn: on a busy 2-core machine, batches let noise fall on one path only


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _timed(conn: http.client.HTTPConnection) -> float:
    started = time.perf_counter()
    conn.request("GET", "/")
    resp = conn.getresponse()
    resp.read()
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status != 200:
        raise RuntimeError(f"request failed: HTTP {resp.status}")
    return elapsed


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _measure(direct_port: int, router_port: int, requests: int) -> tuple[list[float], list[float]]:
    """(direct ms, routed ms): `requests` of each, in alternating batches over two keep-alive connections."""
    direct = http.client.HTTPConnection("127.0.0.1", direct_port, timeout=10)
    routed = http.client.HTTPConnection("127.0.0.1", router_port, timeout=10)
    for _ in range(200):   # warm both paths (connections, HAProxy's buffers) before measuring
        _timed(direct)
        _timed(routed)
    times: tuple[list[float], list[float]] = ([], [])
    while len(times[0]) < requests:
        n = min(BATCH, requests - len(times[0]))
        times[0].extend(_timed(direct) for _ in range(n))
        times[1].extend(_timed(routed) for _ in range(n))
    direct.close()
    routed.close()
    return times


def router_latency(requests: int = 10000) -> dict:
    """Figures (ms) of the same replica reached directly and through a router, and the p99 the router adds."""
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: apt-get install haproxy (or tests/env/haproxy.sh)")
    work = tempfile.mkdtemp(prefix="strato-router-bench-")
    port = free_port()
    replica = subprocess.Popen([sys.executable, REPLICA, str(port), "replica"])
    driver, handle = HaproxyDriver(), None
    try:
        _wait_up(f"http://127.0.0.1:{port}/health")
        spec = InstanceSpec(key="bench/lb/0@bench", infra="bench", node="lb", index=0, type="strato.nodes.ai.Router",
                            properties={}, infra_dir=work, descriptor_dir=work, timeout=30)
        handle = driver.create(spec)
        HaproxyAdmin(handle["router"]["admin_socket"]).sync("lb", [ServerSlot("replica", "127.0.0.1", port)])
        direct, routed = _measure(port, handle["port"], requests)
    finally:
        if handle is not None:
            driver.delete(handle)
        replica.kill()
        replica.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    figures = {"requests_per_path": requests,
               "direct_p50_ms": statistics.median(direct), "direct_p99_ms": _percentile(direct, 0.99),
               "router_p50_ms": statistics.median(routed), "router_p99_ms": _percentile(routed, 0.99)}
    figures["router_added_latency_p50_ms"] = figures["router_p50_ms"] - figures["direct_p50_ms"]
    figures["router_added_latency_p99_ms"] = figures["router_p99_ms"] - figures["direct_p99_ms"]
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    figures["within_target"] = figures["router_added_latency_p99_ms"] <= TARGET_MS
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000, help="requests per path (default 10000)")
    args = parser.parse_args()
    figures = router_latency(args.requests)
    for path in ("direct", "router"):
        print(f"{path:<7} p50 {figures[f'{path}_p50_ms']:.3f} ms   p99 {figures[f'{path}_p99_ms']:.3f} ms")
    print(f"added   p50 {figures['router_added_latency_p50_ms']:.3f} ms   "
          f"p99 {figures['router_added_latency_p99_ms']:.3f} ms   (target p99 <= {TARGET_MS:g} ms: "
          f"{'ok' if figures['within_target'] else 'OVER TARGET'})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
