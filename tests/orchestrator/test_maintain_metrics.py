"""Metrics, health checks and alerts of the maintain loop against real processes on loopback."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

prometheus_client = pytest.importorskip("prometheus_client", reason="metrics need prometheus-client")

from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.maintain import Maintainer, MaintainOptions  # noqa: E402
from orchestrator.metrics import (MetricsError, PrometheusSource, ScrapeSource, histogram_quantile,  # noqa: E402
                                  instance_metrics_url, parse_exposition)
from orchestrator.state import StateStore  # noqa: E402


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.35)
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_scraped_rates_quantiles_and_aggregations_from_real_endpoints():
    servers, urls = [], {}
    hists, gauges, counters = [], [], []
    for i in range(2):
        reg = prometheus_client.CollectorRegistry()
        hists.append(prometheus_client.Histogram("req_latency_seconds", "x", registry=reg,
                                                 buckets=(0.01, 0.1, 1.0)))
        gauges.append(prometheus_client.Gauge("queue_depth", "x", registry=reg))
        counters.append(prometheus_client.Counter("jobs", "x", registry=reg))
        server, _ = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=reg)
        servers.append(server)
        urls[f"k{i}"] = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        src = ScrapeSource()
        src.scrape(urls)
        assert src.builtins(["k0", "k1"]) == {}        # no rates from a single scrape
        for _ in range(30):
            hists[0].observe(0.05)
        for _ in range(10):
            hists[1].observe(0.5)
        gauges[0].set(4)
        gauges[1].set(8)
        counters[0].inc(10)
        time.sleep(0.2)
        src.scrape(urls)
        b = src.builtins(["k0", "k1"])
        assert b["request_rate"] > 0 and 10 < b["latency_mean_ms"] < 200
        assert 10 <= b["latency_p50_ms"] <= 100 and b["latency_p95_ms"] > 100
        keys = ["k0", "k1"]
        assert src.evaluate("queue_depth", keys, "mean") == 6
        assert src.evaluate("queue_depth", keys, "sum") == 12
        assert src.evaluate("queue_depth", keys, "max") == 8
        assert src.evaluate("queue_depth", keys, "quantile", 0.5) == 6
        assert src.evaluate("max(queue_depth)", keys) == 8
        assert src.evaluate("jobs_total", keys, "sum") > 0          # a counter: its per-second rate
        assert src.evaluate("sum(rate(jobs_total[1m]))", keys) > 0
        assert src.evaluate("histogram_quantile(0.5, sum(rate(req_latency_seconds_bucket[1m])) by (le))",
                            keys) == pytest.approx(0.0775, rel=0.2)
        with pytest.raises(MetricsError, match="PromQL subset"):
            src.evaluate("topk(3, queue_depth) / on() group_left foo", keys)
        # an instance that stops answering is reported, not raised
        servers[1].shutdown()
        servers[1].server_close()
        src.scrape(urls)
        assert "k1" in src.errors and src.evaluate("queue_depth", ["k0"], "sum") == 4
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def test_prometheus_source_unreachable_is_a_metrics_error():
    with pytest.raises(MetricsError, match="unreachable"):
        PrometheusSource("http://127.0.0.1:9", timeout=0.5).query("up")


def test_only_loopback_instances_are_scraped():
    assert instance_metrics_url({"url": "http://127.0.0.1:8000"}) == "http://127.0.0.1:8000/metrics"
    assert instance_metrics_url({"url": "http://10.0.0.7:8000"}) is None       # an emulator's address
    assert instance_metrics_url({"public_ip": "198.101.3.4"}) is None
    snap = parse_exposition("# TYPE a gauge\na{x=\"1\"} 2\na{x=\"2\"} 3\n")
    assert snap.values["a"] == 5


SERVER = textwrap.dedent('''
    """A test service: /health answers 500 once a file sick-<pid> exists; /metrics exposes queue_depth from a file."""
    import os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, flags = int(sys.argv[1]), sys.argv[2]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/metrics":
                try:
                    depth = open(os.path.join(flags, "depth")).read().strip()
                except OSError:
                    depth = "0"
                body, code = f"# TYPE queue_depth gauge\\nqueue_depth {depth}\\n".encode(), 200
            else:
                sick = os.path.exists(os.path.join(flags, f"sick-{os.getpid()}"))
                body, code = (b"sick", 500) if sick else (b"ok", 200)
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')

DESCRIPTOR = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    svc:
      type: strato.nodes.Process
      properties:
        command: ["{{python}}", "server.py", "{{port}}", "{flags}"]
        port: auto
        health_check: {{http: /health, grace_period: 0.6, timeout: 5}}
        stop_grace_period: 1
      capabilities:
        scalable: {{properties: {{default_instances: 2}}}}
  policies:
    - backlog:
        type: strato.policies.Alert
        targets: [svc]
        properties: {{metric: queue_depth, aggregation: max, above: 5, webhook: "{hook}"}}
"""


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def service_infra(strato_home, tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    (tmp_path / "server.py").write_text(SERVER)
    hook = HTTPServer(("127.0.0.1", 0), Hook)
    Hook.received = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    path = tmp_path / "svc.yaml"
    path.write_text(DESCRIPTOR.format(flags=flags, hook=f"http://127.0.0.1:{hook.server_port}/hook"))
    store = StateStore(str(strato_home / "state.db"))
    report = service.build(str(path), "svc", {}, store, RunOptions())
    assert report["ok"], report
    yield store, flags
    service.destroy(store, "svc", RunOptions())
    hook.shutdown()
    hook.server_close()
    store.close()


def test_unhealthy_instance_is_replaced_after_its_grace_period(service_infra):
    store, flags = service_infra
    m = Maintainer(store, "svc", MaintainOptions(interval=0.3))
    sick = store.instances("svc")[0]
    (flags / f"sick-{sick.handle['pid']}").write_text("")
    first = m.run_pass()
    assert first.unhealthy == [sick.key] and not first.acted          # within its grace period: still counted
    assert store.failing("svc")[sick.key][1].endswith("answered 500")
    time.sleep(0.7)
    second = m.run_pass()
    assert second.failed == [sick.key] and second.acted
    after = store.get_instance(sick.key)
    assert after.status == "ready" and after.handle["pid"] != sick.handle["pid"]
    assert not os.path.exists(f"/proc/{sick.handle['pid']}/stat") or \
        open(f"/proc/{sick.handle['pid']}/stat").read().split(")")[-1].split()[0] == "Z"
    assert store.failing("svc") == {}
    kinds = [e["kind"] for e in store.events("svc", 200)]
    assert "unhealthy" in kinds and "failed" in kinds
    third = m.run_pass()
    assert third.unhealthy == [] and third.failed == [] and not third.acted


def test_alert_fires_once_posts_the_webhook_and_resolves(service_infra):
    store, flags = service_infra
    m = Maintainer(store, "svc", MaintainOptions(interval=0.3))
    (flags / "depth").write_text("9")
    report = m.run_pass()
    assert [a["event"] for a in report.alerts] == ["alert_firing"] and report.alerts[0]["value"] == 9
    assert m.run_pass().alerts == []                     # still firing: no new event
    (flags / "depth").write_text("2")
    assert [a["event"] for a in m.run_pass().alerts] == ["alert_resolved"]
    deadline = time.monotonic() + 5
    while len(Hook.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p["event"] for p in Hook.received] == ["alert_firing", "alert_resolved"]
    assert Hook.received[0]["alert"] == "backlog" and Hook.received[0]["node"] == "svc"
    kinds = [e["kind"] for e in store.events("svc", 200)]
    assert kinds.count("alert_firing") == 1 and kinds.count("alert_resolved") == 1


def test_strato_metrics_are_served(service_infra):
    store, _ = service_infra
    m = Maintainer(store, "svc", MaintainOptions(interval=0.3))
    m.run_pass()
    server = m.loop_metrics.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'strato_maintain_pass_seconds_count{infrastructure="svc"} 1.0' in text
    assert 'strato_instances{infrastructure="svc",node="svc",state="ready"} 2.0' in text
