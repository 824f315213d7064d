"""Why it scaled, live: the optimizer policy's explanation of each decision (load forecast quantiles, candidates, the
chosen cost) reaches the journal intact and JSON-safe, holds included; the node's timeline endpoint and
`strato optimizer report --infra X --node N` draw it from the real state (events written by the real loop)."""

from __future__ import annotations

import http.server
import json
import math
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from drivers import providers
from drivers.base import Observed
from drivers.noop import NoopDriver
from optimizer.samples import StoreLoadHistory
from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.state import StateStore
from policies.base import MetricSpec, ScalingDecision, ScalingPolicy
from tests.conftest import API_READ_TOKEN, run_strato

try:   # the dashboard's browser (Debian's chromium), for the one browser test here
    from tests.orchestrator.test_dashboard_browser import browser, chromium  # noqa: F401
except pytest.skip.Exception:
    pass

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
HORIZONS = [30.0, 60.0, 90.0]
PLAN = [2, 2, 2, 3, 3, 2]          # the counts the policy chooses, pass by pass
LOADS = [40.0, 42.0, 45.0, 60.0, 58.0, 41.0]
LATENCY_MS = 150.0

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  test.Served:
    derived_from: strato.nodes.Noop
    metadata: {strato.driver: test-served}
topology_template:
  node_templates:
    web:
      type: test.Served
      capabilities:
        scalable: {properties: {default_instances: 2, min_instances: 1, max_instances: 5}}
  policies:
    - autoscale:
        type: strato.policies.Optimizer
        targets: [web]
        properties:
          target_metric: latency_ms
          target_value: 200
          input_metrics: [offered_rps]
          min_instances: 1
          max_instances: 5
"""


class Metrics(http.server.BaseHTTPRequestHandler):
    """An instance's /metrics: the node's offered load (a gauge every instance reports) and its latency."""

    load = {"value": LOADS[0]}

    def do_GET(self):
        body = (f"# TYPE offered_rps gauge\noffered_rps {self.load['value']}\n"
                f"# TYPE latency_ms gauge\nlatency_ms {LATENCY_MS}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ServedDriver(NoopDriver):
    """Noop instances whose URL is a real metrics server on 127.0.0.1."""

    name = "test-served"

    def __init__(self, url: str):
        super().__init__()
        self.url = url

    def observe(self, handle):
        return Observed("running", {"url": self.url})


@pytest.fixture
def served():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    providers._instances["test-served"] = ServedDriver(f"http://127.0.0.1:{server.server_address[1]}")
    yield
    providers._instances.pop("test-served", None)
    server.shutdown()
    server.server_close()


def explanation(chosen: int, load: float) -> dict:
    """A decision's detail in the shape the optimizer policy gives it, with numpy numbers as its code makes them."""
    values = np.array([[load * (1 + h / 600) * (0.7 + 0.15 * i) for i in range(5)] for h in HORIZONS])
    candidates = [{"instances": n, "predicted_target": np.float64(400.0 / n), "violation_probability":
                   np.float32(0.5) if n > 1 else math.nan, "cost": float(n)} for n in range(1, 6)]
    return {"forecast": {"method": "seasonal+trend", "quantiles": QUANTILES, "horizon_s": np.array(HORIZONS),
                         "values": values, "startup_s": 60.0},
            "candidates": candidates, "chosen": np.int64(chosen), "chosen_cost": np.float64(chosen),
            "predicted_target": np.float64(400.0 / chosen)}


def plain(detail: dict) -> dict:
    """What the journal should hold: the same numbers as plain JSON, to 10 significant digits, NaN as null."""
    return json.loads(json.dumps(detail, default=lambda o: o.tolist()).replace("NaN", "null"),
                      parse_float=lambda text: float(f"{float(text):.10g}"))


class ExplainingPolicy(ScalingPolicy):
    """Chooses PLAN's counts and explains each choice; learns the load into the node's history as the optimizer
    policy does."""

    name = "optimizer"
    source = "autoscale"
    target = MetricSpec("latency_ms", "latency_ms", "mean")

    def __init__(self, history: StoreLoadHistory):
        self.history, self.pass_index, self.details = history, 0, []

    def metrics_needed(self):
        return [MetricSpec("offered_rps", "offered_rps", "max"), self.target]

    def needs_target(self):
        return True

    def decide(self, obs):
        chosen = PLAN[self.pass_index]
        detail = explanation(chosen, obs.metrics["offered_rps"])
        self.details.append(plain(detail))
        return ScalingDecision(chosen, "optimizer, model: the cheapest count within the violation budget",
                               self.name, detail=detail)

    def learn(self, obs):
        self.history.add(obs.now, obs.metrics["offered_rps"])
        self.pass_index += 1

    def state(self):
        return {"passes": self.pass_index}

    def restore(self, state):
        pass


@pytest.fixture
def explained(strato_home, tmp_path, served):
    """An infrastructure run for len(PLAN) maintain passes by the explaining policy; (store, the details given)."""
    path = tmp_path / "app.yaml"
    path.write_text(DESCRIPTOR)
    store = StateStore(str(strato_home / "state.db"))
    assert service.build(str(path), "app", {}, store, RunOptions())["ok"]
    policy = ExplainingPolicy(StoreLoadHistory(store.path, "app", "web", "offered_rps"))
    loop = Maintainer(store, "app", MaintainOptions(), policy_factory=lambda t, i, **o: {"web": [policy]})
    for load in LOADS:
        Metrics.load["value"] = load
        loop.run_pass()
    yield store, policy.details
    store.close()


def test_every_decision_event_carries_the_explanation_intact(explained):
    store, details = explained
    events = [e for e in store.events("app", 500) if e["kind"] in ("decision", "scaled")]
    # a hold with the same reason as the last one is journaled too: the timeline needs every forecast
    assert [e["detail"].get("action") or e["detail"]["direction"] for e in events] == \
        ["hold", "hold", "hold", "up", "hold", "down"]
    assert [e["detail"]["detail"] for e in events] == details
    first = events[0]["detail"]["detail"]
    assert first["forecast"]["values"][1] == pytest.approx([40 * 1.1 * (0.7 + 0.15 * i) for i in range(5)])
    assert first["candidates"][0]["violation_probability"] is None and first["chosen"] == 2


def test_the_timeline_endpoint_shows_load_band_predicted_and_observed_target(explained, make_client):
    store, details = explained
    client = make_client()
    url = "/v1/infrastructures/app/nodes/web/optimizer/timeline"
    assert client.get(url).status_code == 401
    answer = client.get(url, headers={"Authorization": f"Bearer {API_READ_TOKEN}"})
    assert answer.status_code == 200, answer.text
    timeline = answer.json()
    assert timeline["metric"] == "offered_rps" and timeline["target_metric"] == "latency_ms"
    assert timeline["target_value"] == 200 and timeline["forecasts"] == len(PLAN)
    assert [v for _, v in timeline["load"]] == LOADS
    assert [d["chosen"] for d in timeline["decisions"]] == PLAN
    assert [p["target"] for p in timeline["observed"]] == [LATENCY_MS] * len(PLAN)
    for decision, detail in zip(timeline["decisions"], details):
        ahead = detail["forecast"]["values"][1]          # startup_s 60: the second horizon step
        assert decision["band"] == {"horizon_s": 60.0, "q05": ahead[0], "q25": ahead[1], "q50": ahead[2],
                                    "q75": ahead[3], "q95": ahead[4]}
        assert decision["at"] == pytest.approx(decision["t"] + 60)
        assert decision["predicted_target"] == detail["predicted_target"] and decision["method"] == "seasonal+trend"
    headers = {"Authorization": f"Bearer {API_READ_TOKEN}"}
    missing = client.get("/v1/infrastructures/app/nodes/nope/optimizer/timeline", headers=headers)
    assert missing.status_code == 404 and "has no node 'nope'" in missing.json()["error"]["message"]
    other = client.get("/v1/infrastructures/nope/nodes/web/optimizer/timeline", headers=headers)
    assert other.status_code == 404 and "app" not in other.json()["error"]["message"]


def test_report_draws_the_timeline_png(explained, strato_home, tmp_path):
    out = tmp_path / "report"
    done = run_strato("optimizer", "report", "--infrastructure", "app", "--node", "web", "--out", str(out), "--json",
                      home=strato_home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True, "files": [str(out / "timeline.png")]}
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = run_strato("optimizer", "report", "--infra", "app", "--node", "nope", "--out", str(out),
                         home=strato_home)
    assert refused.returncode == 1 and "has no node 'nope'" in refused.stderr and "Traceback" not in refused.stderr
    usage = run_strato("optimizer", "report", "--out", str(out), home=strato_home)
    assert usage.returncode == 64 and "--infra and --node for the timeline" in usage.stderr


def test_report_without_matplotlib_says_so_in_one_line(monkeypatch):
    from optimizer.cli import optimizer_group
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if the 'plots' extra were not installed
    result = CliRunner().invoke(optimizer_group, ["report", "--infra", "app", "--node", "web"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: the report draws with matplotlib, which is not installed: "
                                     "pip install 'strato[plots]'")



@pytest.mark.e2e
def test_the_dashboard_draws_the_forecast_band_and_predicted_target(explained, strato_home, request):
    """In Debian's headless chromium: the optimizer card of the infrastructure shows its node's chart."""
    pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install '.[test]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.orchestrator.api_server import READ_TOKEN, Server
    browser = request.getfixturevalue("browser")   # tests/orchestrator/test_dashboard_browser.py's chromium
    server = Server(strato_home).start()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
        browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
        browser.find_element(By.ID, "login-button").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#infra-list li[data-name='app']").click() or True)
        wait.until(lambda d: d.find_element(By.ID, "optimizer").is_displayed())
        chart = wait.until(lambda d: d.find_element(By.ID, "optimizer-svg"))
        for part in ("band-outer", "band-inner", "median", "load", "observed", "predicted", "instances", "chosen"):
            assert chart.find_elements(By.CSS_SELECTOR, f"path.{part}"), part
        assert browser.find_element(By.ID, "optimizer-node").get_attribute("value") == "web"
    finally:
        server.stop()
