"""examples/mlops end to end, on real processes over loopback: iris servers behind HAProxy, requests whose petal
length shifts part-way, labels fed back by request id. The maintain loop detects the drift, continuous training
re-runs the trainer on the labelled requests, the new version is pushed and promoted, and the rollout takes it
live through a canary, with no failed request."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest

from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions
from orchestrator.mlops.monitoring import record_feedback
from orchestrator.mlops.registry import ModelRegistry
from orchestrator.mlops.shift import IRIS, FeatureStream, parse_shift
from orchestrator.state import StateStore
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="HAProxy is not installed (tests/env/haproxy.sh installs it)")

INPUTS = {"replicas": 1, "analysis_interval": "2 s", "step_pause": "2 s", "min_samples": 5, "failure_limit": 3,
          "monitoring_window": 100, "drift_k": 2, "retrain_cooldown": "1 h", "keep_failed": "5 s"}


class Traffic:
    """Requests in a thread: unshifted for the first `calm` ones, then petal_length +1.5; every answer's request id
    with its true label, and every failure."""

    def __init__(self, url: str, calm: int = 250):
        self.url, self.calm = url, calm
        self.stream = FeatureStream(IRIS, [parse_shift("petal_length:+1.5")], shift_at=0.5, seed=11)
        self.served: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            features, label = self.stream.draw(1.0 if len(self.served) >= self.calm else 0.0)
            body = json.dumps({"instances": [[features[n] for n in self.stream.names]]}).encode()
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as response:
                    response.read()
                    self.served.append((response.headers["X-Request-Id"], label))
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(str(exc))
            time.sleep(0.01)


def kinds(store, name: str) -> list[str]:
    return [e["kind"] for e in store.events(name, limit=5000)]


@pytest.fixture
def example(strato_home, monkeypatch):
    """examples/mlops built as `mlx` and maintained by a loop in a thread; run(calm, until) plays traffic (shifted
    after `calm` requests), feeding the labels back, until `until(event kinds)` or 240 s."""
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))  # the servers' recorder
    store = StateStore(str(strato_home / "state.db"))
    descriptor = os.path.join(REPO, "examples", "mlops", "service.yaml")
    report = service.build(descriptor, "mlx", dict(INPUTS), store, RunOptions(timeout=120), confined=False)
    assert report["ok"], report
    maintainer = Maintainer(store, "mlx", MaintainOptions(interval=1.0, policies=False))
    stop = threading.Event()
    loop = threading.Thread(target=maintainer.run, args=(stop,), daemon=True)
    loop.start()

    def run(calm: int, until) -> Traffic:
        traffic = Traffic(store.get_infra("mlx").outputs["endpoint"], calm)
        try:
            deadline = time.monotonic() + 240
            while not until(kinds(store, "mlx")) and time.monotonic() < deadline:
                record_feedback(store, "mlx", "server", list(traffic.served))   # labels arrive, again and again
                time.sleep(1.0)
        finally:
            traffic.stop.set()
            traffic.thread.join(15)
        return traffic

    yield store, run
    stop.set()
    loop.join(60)
    try:
        service.destroy(store, "mlx", RunOptions(timeout=60))
    finally:
        store.close()


def test_a_stream_without_drift_raises_no_alert_and_retrains_nothing(example):
    store, run = example
    traffic = run(10 ** 9, lambda seen: seen.count("model_window") >= 8)
    seen = kinds(store, "mlx")
    assert seen.count("model_window") >= 8 and traffic.failures == []
    assert not {"model_drift", "model_accuracy_low", "retrain_triggered", "rollout_started"} & set(seen)


def test_drift_retrains_promotes_and_rolls_out_with_no_failed_request(example, strato_home):
    store, run = example
    traffic = run(250, lambda seen: "rollout_promoted" in seen)
    seen = kinds(store, "mlx")
    order = ["model_drift", "retrain_triggered", "retrain_finished", "model_pushed", "alias_moved",
             "rollout_started", "rollout_promoted"]
    assert all(k in seen for k in order), [k for k in seen if k.startswith(("model_", "retrain", "alias", "rollout"))]
    assert [seen.index(k) for k in order] == sorted(seen.index(k) for k in order)
    assert traffic.failures == []
    champion = ModelRegistry(str(strato_home / "models")).resolve("iris@champion")
    assert champion.version == 2 and champion.metadata["created_by"] == "continuous-training"
    drift = next(e for e in store.events("mlx", limit=5000) if e["kind"] == "model_drift")
    assert "petal_length" in drift["detail"]["features"]
