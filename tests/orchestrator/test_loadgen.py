"""`strato loadgen`: open-loop Poisson load against a tiny local HTTP server, loopback only."""
from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.loadgen import LoadgenError, Segment, arrivals, check_loopback, percentile, read_trace, run


class _Handler(BaseHTTPRequestHandler):
    delay = 0.0
    hits: list[str] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).hits.append(f"{self.command} {self.path} {body.decode()}")
        if self.path == "/fail":
            self.send_response(500)
            self.end_headers()
            return
        time.sleep(type(self).delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"delay": 0.0, "hits": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, handler
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_arrivals_follow_the_rate():
    times = list(arrivals([Segment(100, 20.0), Segment(100, 0.0), Segment(100, 5.0)], 300, random.Random(1)))
    first = sum(t < 100 for t in times)
    quiet = sum(100 <= t < 200 for t in times)
    last = sum(t >= 200 for t in times)
    assert 1700 < first < 2300 and quiet == 0 and 380 < last < 620
    assert times == sorted(times) and max(times) < 300


def test_trace_reading(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("period,count\n2020-01-01 00:00:00,600\n2020-01-01 00:01:00,1200\n2020-01-01 00:02:00,0\n")
    segments = read_trace(trace, speedup=60, scale=0.5)
    assert segments == [Segment(1.0, 5.0), Segment(1.0, 10.0), Segment(1.0, 0.0)]
    assert read_trace(trace, start="2020-01-01 00:01:00")[0] == Segment(60.0, 20.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("period,count\nx,many\n")
    with pytest.raises(LoadgenError, match="bad.csv:2"):
        read_trace(bad)


def test_loopback_only():
    check_loopback("http://127.0.0.1:1/")
    check_loopback("http://localhost:1/x")
    with pytest.raises(LoadgenError, match="not a loopback"):
        check_loopback("http://192.0.2.1/")
    check_loopback("http://192.0.2.1/", allow_remote=True)  # no traffic: only the check
    with pytest.raises(LoadgenError, match="http"):
        check_loopback("ftp://127.0.0.1/")


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 99) == 4


def test_run_reports_latency_errors_and_intervals(server):
    srv, handler = server
    handler.delay = 0.02
    port = srv.server_address[1]
    seen = []
    report = run(f"http://127.0.0.1:{port}/x", [Segment(1.0, 40.0), Segment(1.0, 0.0)], 3.0, interval_s=1.0,
                 seed=3, on_interval=seen.append)
    total = report.total()
    assert report.duration_s == 2.0 and len(report.intervals) == 2 and len(seen) == 2
    assert total["sent"] == total["ok"] + total["errors"] and total["errors"] == 0 and total["dropped"] == 0
    assert 15 <= total["sent"] <= 70 and len(handler.hits) == total["sent"]
    assert total["p50_ms"] >= 20 and total["p99_ms"] >= total["p95_ms"] >= total["p50_ms"]
    assert seen[1]["sent"] == 0  # the quiet second sends nothing
    failing = run(f"http://127.0.0.1:{port}/fail", [Segment(1.0, 20.0)], 1.0, seed=1).total()
    assert failing["errors"] == failing["sent"] > 0 and failing["error_kinds"] == {"http_500": failing["errors"]}
    assert failing["p50_ms"] is None


def test_open_loop_drops_beyond_max_inflight(server):
    srv, handler = server
    handler.delay = 0.5
    total = run(f"http://127.0.0.1:{srv.server_address[1]}/", [Segment(1.0, 50.0)], 1.0, max_inflight=2,
                seed=2).total()
    assert total["sent"] <= 4 and total["dropped"] > 20


def test_cli(strato, server, tmp_path):
    srv, handler = server
    url = f"http://127.0.0.1:{srv.server_address[1]}/predict"
    proc = strato("loadgen", url, "--rate", "20", "--duration", "1", "--interval", "0.5",
                  "--data", '{"instances": [[1, 2, 3, 4]]}', "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["intervals"]) == 2 and doc["total"]["ok"] == doc["total"]["sent"] > 0
    assert handler.hits[0].startswith('POST /predict {"instances"')
    trace = tmp_path / "t.csv"
    trace.write_text("period,count\n0,300\n60,600\n")
    proc = strato("loadgen", url.replace("/predict", "/"), "--trace", str(trace), "--speedup", "60",
                  "--duration", "5", timeout=60)
    assert proc.returncode == 0 and "total:" in proc.stdout and "p95" in proc.stdout
    proc = strato("loadgen", "http://192.0.2.1/", "--rate", "1")
    assert proc.returncode == 1 and "not a loopback" in proc.stderr and "Traceback" not in proc.stderr
    proc = strato("loadgen", url, "--duration", "1")
    assert proc.returncode == 64 and "--trace CSV or --rate" in proc.stderr  # wrong usage
