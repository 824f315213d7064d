"""Monitoring what models do, on real processes over loopback: the Recorder protocol, the maintain pass pulling
records from a real model server, drift against the registry's training reference with k-consecutive alerts
(event and webhook), labels fed back through the REST API into accuracy, continuous training (one retraining,
dedup and cooldown, a new version pushed and the alias moved), status and /metrics, and `strato loadgen`'s
shifting feature stream."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.mlops.record import Recorder
from orchestrator.mlops.registry import ModelRegistry
from orchestrator.mlops.shift import IRIS, FeatureStream, ShiftError, parse_shift
from orchestrator.state import StateStore
from tests.conftest import API_WRITE_TOKEN, REPO, run_strato

WRITE = {"Authorization": f"Bearer {API_WRITE_TOKEN}"}
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_monitoring")


# -- the Recorder protocol ---------------------------------------------------------------------------------------
def test_recorder_pages_by_seq_and_reports_what_the_ring_dropped():
    rec = Recorder(version="iris:1", capacity=5)
    ids = [rec.record({"x": i}, i % 2) for i in range(8)]
    assert len(set(ids)) == 8
    page = rec.records(after=0, limit=100)
    assert [r["seq"] for r in page["records"]] == [4, 5, 6, 7, 8]   # the ring kept the newest 5
    assert page["dropped"] == 3 and page["next"] == 8
    assert page["records"][0] | {"ts": 0} == {"seq": 4, "id": ids[3], "ts": 0, "features": {"x": 3},
                                              "prediction": 1, "version": "iris:1"}
    assert rec.records(after=5, limit=2)["records"][0]["seq"] == 6
    assert rec.records(after=5, limit=2)["next"] == 7
    nothing = rec.records(after=8)
    assert nothing["records"] == [] and nothing["next"] == 8 and nothing["dropped"] == 0
    assert nothing["stream"] == page["stream"] != Recorder().stream


def test_recorder_keeps_the_clients_request_id_and_samples():
    rec = Recorder(sample=0.0)
    assert rec.record([1, 2], "a", request_id="client-7") == "client-7"
    assert rec.records()["records"] == []          # sampled out, yet the id goes back to the client
    with pytest.raises(ValueError):
        Recorder(capacity=0)


def test_recorder_serves_the_protocol_over_http_with_bad_queries_refused():
    rec = Recorder(version="v")
    for i in range(3):
        rec.record({"x": i}, i)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = rec.handle(self.path) or (404, b"{}")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/strato/records?after=1&limit=1", timeout=5) as response:
            doc = json.loads(response.read())
        assert [r["seq"] for r in doc["records"]] == [2] and doc["next"] == 2
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(f"{base}/strato/records?after=-1", timeout=5)
        assert bad.value.code == 400 and json.loads(bad.value.read())["error"]["code"] == "BAD_QUERY"
        assert rec.handle("/predict") is None
    finally:
        server.shutdown()


# -- a real model server under the maintain loop -----------------------------------------------------------------
class Webhook:
    """A loopback HTTP server that keeps what is POSTed to it."""

    def __init__(self):
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


DESCRIPTOR = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server:
      type: strato.nodes.ai.ModelServer
      properties:
        command: ["{{python}}", "{here}/server.py", "{{port}}"]
        port: auto
        env: {{PYTHONPATH: "{repo}"}}
        model: iris@champion
        health_check: {{http: /health, timeout: 20}}
        monitoring: {{window: 100, k: 2, accuracy_min: 0.8, min_labels: 20, webhook: "{webhook}"}}
{extra}"""

TRAINING = """
    trainer:
      type: strato.nodes.ai.Trainer
      properties:
        command: ["{{python}}", "{here}/train.py"]
  policies:
    - retrain:
        type: strato.policies.ContinuousTraining
        targets: [server]
        properties: {{trainer: trainer, model: iris, "on": [drift], cooldown: 1 h}}
"""


def reference_csv(path, rows: int = 300, seed: int = 1) -> str:
    stream = FeatureStream(IRIS, seed=seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*stream.names, "label"])
        for _ in range(rows):
            features, label = stream.draw()
            writer.writerow([*features.values(), label])
    return str(path)


@pytest.fixture
def ml(strato_home, tmp_path):
    """The `ml` infrastructure built: a model server serving iris@champion (v1, with its training reference)."""
    def build(extra: str = ""):
        model = tmp_path / "model.json"
        model.write_text(json.dumps({"setosa_below": 2.5, "versicolor_below": 4.9}))
        registry = ModelRegistry(str(strato_home / "models"))
        v1 = registry.push("iris", str(model), reference_path=reference_csv(tmp_path / "reference.csv"))
        registry.promote("iris", v1.version, "champion", reason="first")
        path = tmp_path / "ml.yaml"
        path.write_text(DESCRIPTOR.format(here=HERE, repo=REPO, webhook=hook.url,
                                          extra=extra.format(here=HERE)))
        report = service.build(str(path), "ml", {}, store, RunOptions(timeout=60))
        assert report["ok"], report
        return Maintainer(store, "ml", MaintainOptions(interval=1.0, policies=False))

    hook = Webhook()
    store = StateStore(str(strato_home / "state.db"))
    yield build, store, hook
    if store.get_infra("ml") is not None:
        service.destroy(store, "ml", RunOptions(timeout=30))
    store.close()
    hook.server.shutdown()


def server_url(store) -> str:
    rec = next(r for r in store.instances("ml") if r.node == "server")
    return rec.attributes["url"]


def send(url: str, stream: FeatureStream, n: int, t: float = 0.0) -> list[tuple[str, str]]:
    """n predictions; (request id, true label) of each."""
    out = []
    for _ in range(n):
        features, label = stream.draw(t)
        req = urllib.request.Request(f"{url}/predict", data=json.dumps({"features": features}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as response:
            assert json.loads(response.read())["id"] == response.headers["X-Request-Id"]
            out.append((response.headers["X-Request-Id"], label))
    return out


def events(store, *kinds):
    return [e for e in store.events("ml", limit=1000) if e["kind"] in kinds]


def test_no_drift_stream_raises_no_alert_and_status_shows_each_feature(ml):
    build, store, hook = ml
    maintainer = build()
    send(server_url(store), FeatureStream(IRIS, seed=7), 300)
    maintainer.run_pass()
    windows = events(store, "model_window")
    assert [w["detail"]["window"] for w in windows] == [1, 2, 3]
    assert all(w["detail"]["drifted"] is False and w["detail"]["version"] == "iris:1" for w in windows)
    assert set(windows[0]["detail"]["features"]) == {"sepal_length", "sepal_width", "petal_length", "petal_width",
                                                     "prediction"}
    assert events(store, "model_drift") == [] and hook.received == []
    models = service.status(store, "ml", refresh=False)["infrastructures"][0]["models"]["server"]
    assert models["last_window"]["window"] == 3 and models["alarms"]["drift"]["firing"] is False
    assert models["features"]["petal_length"]["method"] == "ks"


def test_a_shift_alerts_after_k_windows_with_event_webhook_metrics_and_accuracy_from_feedback(ml, make_client):
    build, store, hook = ml
    maintainer = build()
    url = server_url(store)
    send(url, FeatureStream(IRIS, seed=3), 100)
    maintainer.run_pass()
    shifted = FeatureStream(IRIS, [parse_shift("petal_length:+1.5")], shift_at=0.0, seed=4)
    served = send(url, shifted, 100)
    maintainer.run_pass()
    assert events(store, "model_drift") == []          # one drifted window: not yet k = 2
    served += send(url, shifted, 100)
    client = make_client()
    labels = {"labels": [{"id": rid, "label": label} for rid, label in served]}
    assert client.post("/v1/infrastructures/ml/nodes/server/feedback", json=labels).status_code == 401
    answer = client.post("/v1/infrastructures/ml/nodes/server/feedback", json=labels, headers=WRITE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["matched"] == 100 and answer.json()["unmatched"] == 100   # the rest not pulled yet
    maintainer.run_pass()
    alert = events(store, "model_drift")
    assert len(alert) == 1 and "petal_length" in alert[0]["detail"]["features"]
    assert alert[0]["detail"]["window"] == 3 and alert[0]["detail"]["version"] == "iris:1"
    assert alert[0]["detail"]["statistics"]["petal_length"]["drifted"] is True
    deadline = time.monotonic() + 10
    while not hook.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hook.received and hook.received[0]["event"] == "model_drift" and hook.received[0]["node"] == "server"
    window = events(store, "model_window")[-1]["detail"]
    assert window["labels"] == 100 and window["accuracy"] < 0.8       # the shift fools the petal-length rule
    text = maintainer.loop_metrics.registry and _exposition(maintainer)
    assert 'strato_model_drifted{feature="petal_length",infrastructure="ml",method="ks",node="server"} 1.0' in text
    assert 'strato_model_accuracy{infrastructure="ml",node="server"}' in text
    history = client.get("/v1/infrastructures/ml/nodes/server/monitoring", headers=WRITE).json()
    assert [w["window"] for w in history["history"]] == [1, 2, 3] and history["alarms"]["drift"]["firing"]
    assert history["events"][0]["kind"] == "model_drift"
    models = client.get("/v1/infrastructures/ml/models", headers=WRITE).json()["models"]
    assert models["server"]["last_window"]["accuracy"] == window["accuracy"]
    more = send(url, shifted, 100)
    maintainer.run_pass()                                      # window 4 closes before its labels arrive
    client.post("/v1/infrastructures/ml/nodes/server/feedback", headers=WRITE,
                json={"labels": [{"id": rid, "label": label} for rid, label in served + more]})
    assert events(store, "model_accuracy_low") == []           # one window below accuracy_min: not yet k = 2
    send(url, shifted, 100)
    maintainer.run_pass()
    low = events(store, "model_accuracy_low")
    assert len(low) == 1 and low[0]["detail"]["accuracy"] < 0.8 and low[0]["detail"]["labels"] == 200


def _exposition(maintainer) -> str:
    from prometheus_client import generate_latest
    return generate_latest(maintainer.loop_metrics.registry).decode()


def test_feedback_is_refused_for_unknown_or_unmonitored_nodes_and_bounded(ml, make_client):
    build, store, _ = ml
    build(TRAINING)
    client = make_client()
    post = lambda path, body: client.post(f"/v1/infrastructures/{path}/feedback", json=body, headers=WRITE)  # noqa
    assert post("nope/nodes/server", {"labels": []}).status_code == 404
    assert post("ml/nodes/nope", {"labels": []}).status_code == 404
    assert post("ml/nodes/trainer", {"labels": []}).json()["error"]["code"] == "NOT_MONITORED"
    too_many = {"labels": [{"id": str(i), "label": 1} for i in range(10001)]}
    assert post("ml/nodes/server", too_many).status_code == 422
    assert post("ml/nodes/server", {"rows": []}).status_code == 422
    assert post("ml/nodes/server", {"labels": [{"id": "never-served", "label": 1}]}).json()["matched"] == 0


def test_drift_retrains_once_pushes_a_new_version_and_moves_the_alias(ml, strato_home):
    build, store, _ = ml
    maintainer = build(TRAINING)
    url = server_url(store)
    shifted = FeatureStream(IRIS, [parse_shift("petal_length:+1.5")], shift_at=0.0, seed=5)
    served = send(url, shifted, 200)
    maintainer.run_pass()                                  # pulls; two drifted windows: the alert
    assert len(events(store, "model_drift")) == 1
    assert events(store, "retrain_skipped")[0]["detail"]["reason"].startswith("0 labelled records")
    store.label_model_records("ml", "server", served)      # labels arrive (as POST .../feedback stores them)
    monitor = maintainer.models
    alert = events(store, "model_drift")[0]["detail"]
    template = maintainer._loaded[0].template
    monitor.training().run_pass(template, {}, [{"event": "model_drift", **alert}])
    triggered = events(store, "retrain_triggered")
    assert len(triggered) == 1 and triggered[0]["detail"]["cause"]["event"] == "model_drift"
    data = triggered[0]["detail"]["data"]
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600 and triggered[0]["detail"]["rows"] == 200
    monitor.training().run_pass(template, {}, [{"event": "model_drift", **alert}])   # dedup: one at a time
    assert "still running" in events(store, "retrain_skipped")[-1]["detail"]["reason"]
    deadline = time.monotonic() + 30
    while not events(store, "alias_moved") and time.monotonic() < deadline:
        maintainer.run_pass()
        time.sleep(0.2)
    kinds = [e["kind"] for e in events(store, "retrain_finished", "model_pushed", "alias_moved")]
    assert kinds == ["retrain_finished", "model_pushed", "alias_moved"]
    registry = ModelRegistry(str(strato_home / "models"))
    champion = registry.resolve("iris@champion")
    assert champion.version == 2 and champion.metadata["parent"] == 1
    assert champion.metadata["created_by"] == "continuous-training"
    with open(data, "rb") as handle:
        assert champion.metadata["data_digest"] == hashlib.sha256(handle.read()).hexdigest()
    with open(champion.reference_path) as handle:
        assert next(csv.reader(handle))[-1] == "label"
    assert json.load(open(champion.path))["trained_on"] == 200   # the trainer saw the labelled records
    monitor.training().run_pass(template, {}, [{"event": "model_drift", **alert}])   # cooldown
    assert "cooldown" in events(store, "retrain_skipped")[-1]["detail"]["reason"]
    assert len(events(store, "retrain_triggered")) == 1


def test_an_unreachable_server_is_reported_and_does_not_hold_the_pass(ml):
    build, store, _ = ml
    maintainer = build()
    maintainer.run_pass()
    rec = next(r for r in store.instances("ml") if r.node == "server")
    os.kill(rec.handle["pid"], 19)   # SIGSTOP: the port accepts, nothing answers
    try:
        started = time.monotonic()
        maintainer.models.run_pass(maintainer._loaded[0].template, {}, {"server": [rec]}, False)
        assert time.monotonic() - started < 6
    finally:
        os.kill(rec.handle["pid"], 18)
    assert events(store, "model_records_unreachable")[0]["detail"]["node"] == "server"


# -- loadgen's shifting features -----------------------------------------------------------------------------------
def test_feature_stream_shifts_abruptly_or_gradually():
    abrupt = FeatureStream(IRIS, [parse_shift("feature=petal_length:+1.5")], shift_at=60.0, seed=0)
    assert abrupt.strength(59.9) == 0.0 and abrupt.strength(60.0) == 1.0
    gradual = FeatureStream(IRIS, [parse_shift("sepal_width:*0.5")], shift_at=10.0, ramp=20.0)
    assert gradual.strength(20.0) == pytest.approx(0.5)
    before = sum(abrupt.draw(0.0)[0]["petal_length"] for _ in range(400)) / 400
    after = sum(abrupt.draw(61.0)[0]["petal_length"] for _ in range(400)) / 400
    assert after - before == pytest.approx(1.5, abs=0.4)
    assert json.loads(FeatureStream(IRIS, body="instances").request_body(0))["instances"][0][0] > 0
    with pytest.raises(ShiftError):
        parse_shift("petal_length+1")
    with pytest.raises(ShiftError):
        FeatureStream(IRIS, [parse_shift("colour:+1")])


def test_loadgen_sends_shifted_bodies_and_refuses_bad_options(tmp_path):
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"classes": {"a": {"x": [0.0, 0.1]}}, "shift": {"x": "+10"}}))
    try:
        done = run_strato("loadgen", f"http://127.0.0.1:{server.server_address[1]}/predict", "--rate", "200",
                          "--duration", "2", "--features", str(spec), "--shift-at", "1s", "--json", timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
    xs = [b["features"]["x"] for b in bodies]
    assert len(xs) > 100 and min(xs) < 1 and max(xs) > 9      # both sides of the shift
    refused = run_strato("loadgen", "http://127.0.0.1:9/", "--rate", "1", "--shift", "x:+1")
    assert refused.returncode == 64 and "--features" in refused.stderr
    refused = run_strato("loadgen", "http://127.0.0.1:9/", "--rate", "1", "--features", "iris", "--shift", "x+1")
    assert refused.returncode == 64 and "FEATURE:+DELTA" in refused.stderr


# -- the state table, windows by time, status, validation -----------------------------------------------------------
def _records(n: int, start: float, prefix: str = "r") -> list[dict]:
    return [{"id": f"{prefix}{i}", "seq": i + 1, "ts": start + i, "features": {"x": i}, "prediction": "a",
             "version": "m:1"} for i in range(n)]


def test_model_records_keep_the_newest_and_count_a_repeated_label_once(strato_home):
    store = StateStore(str(strato_home / "state.db"))
    assert store.add_model_records("i", "n", "k", _records(10, 1000.0), keep=6) == 10
    assert [r["id"] for r in store.open_model_records("i", "n")] == ["r4", "r5", "r6", "r7", "r8", "r9"]
    assert store.add_model_records("i", "n", "k", _records(10, 1000.0)[-1:], keep=100) == 0   # r9 again: kept once
    assert store.label_model_records("i", "n", [("r5", "a"), ("gone", "b")]) == 1
    first = store.labelled_model_records("i", "n")[0]["labelled"]
    time.sleep(0.01)
    assert store.label_model_records("i", "n", [("r5", "a")]) == 1
    assert store.labelled_model_records("i", "n", since=first) == []      # the same label again: not new
    store.label_model_records("i", "n", [("r5", "b")])
    assert store.labelled_model_records("i", "n", since=first)[0]["label"] == "b"   # a corrected label is new
    assert store.close_model_window("i", "n", 1, 1006.0)[-1]["id"] == "r6"
    store.delete_infra("i")
    assert store.open_model_records("i", "n") == []
    store.close()


def test_windows_close_by_duration_and_small_ones_are_inconclusive(strato_home, tmp_path):
    from orchestrator.mlops.monitoring import ModelMonitor, monitor_spec

    store = StateStore(str(strato_home / "state.db"))
    registry = ModelRegistry(str(strato_home / "models"))
    registry.push("m", str(reference_csv(tmp_path / "m.csv")), reference_path=str(tmp_path / "m.csv"))
    seen = []
    monitor = ModelMonitor(store, "i", lambda kind, key=None, /, **d: seen.append((kind, d)))
    spec = monitor_spec({"window": "30 s", "k": 1})
    assert spec.window_rows is None and spec.window_seconds == 30.0
    now = time.time()
    stream = FeatureStream(IRIS, seed=2)
    store.add_model_records("i", "n", "k", [{"id": str(i), "seq": i + 1, "ts": now - 100 + i * 0.5,
                                             "features": stream.draw()[0], "prediction": "setosa",
                                             "version": "m:1"} for i in range(20)], keep=1000)
    state = {}
    rows = monitor._close_window("n", spec, state)
    assert len(rows) == 20 and monitor._close_window("n", spec, state) is None
    assert monitor._judge("n", spec, rows, state) == []
    window = [d for kind, d in seen if kind == "model_window"][0]
    assert window["drifted"] is None and window["rows"] == 20         # below min_window 50: no verdict
    store.close()


def test_status_shows_the_models_drift_alarms_and_accuracy(ml, strato):
    build, store, _ = ml
    maintainer = build()
    send(server_url(store), FeatureStream(IRIS, [parse_shift("petal_length:+2")], shift_at=0.0, seed=9), 200)
    maintainer.run_pass()
    text = strato("status", "ml", "--no-refresh").stdout
    assert "monitor server: iris:1  window 2 (100 rows)  drifted yes" in text
    assert "drift FIRING (2/2 in a row)" in text and "petal_length* ks" in text
    doc = json.loads(strato("status", "ml", "--no-refresh", "--json").stdout)
    assert doc["infrastructures"][0]["models"]["server"]["alarms"]["drift"]["firing"] is True


def test_a_continuous_training_policy_is_checked_at_validate(tmp_path, strato):
    path = tmp_path / "bad.yaml"
    path.write_text("""
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server: {type: strato.nodes.ai.ModelServer, properties: {command: [x]}}
    web: {type: strato.nodes.Process, properties: {command: [x]}}
  policies:
    - retrain:
        type: strato.policies.ContinuousTraining
        targets: [server]
        properties: {trainer: web, model: iris}
""")
    done = strato("validate", str(path))
    assert done.returncode != 0
    assert "trainer 'web' is a strato.nodes.Process, not a one-shot job" in done.stdout + done.stderr
    assert "target 'server' has no `monitoring`" in done.stdout + done.stderr


def test_the_pull_cursor_follows_a_restarted_server_from_its_first_record():
    from orchestrator.mlops.monitoring import advance

    first = Recorder()
    for i in range(5):
        first.record({"x": i}, i)
    cursor, new = advance(None, first.records(0))
    assert cursor["after"] == 5 and len(new) == 5
    cursor, new = advance(cursor, first.records(cursor["after"]))
    assert cursor["after"] == 5 and new == []
    restarted = Recorder()
    for i in range(7):
        restarted.record({"x": i}, i)
    cursor, new = advance(cursor, restarted.records(cursor["after"]))   # asked after 5: records 6, 7 only
    assert new == [] and cursor == {"stream": restarted.stream, "after": 0}
    cursor, new = advance(cursor, restarted.records(cursor["after"]))
    assert [r["seq"] for r in new] == list(range(1, 8))
