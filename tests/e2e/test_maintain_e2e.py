"""The maintain loop on the real ai-inference example: kill -9 of a replica is healed while the endpoint answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

from orchestrator.state import StateStore
from tests.conftest import REPO
from tests.e2e.test_local_e2e import EXAMPLE, post, unique
from tests.prometheus_server import running_prometheus

pytest.importorskip("sklearn", reason="the ai-inference example needs scikit-learn (pip install '.[test]')")
pytest.importorskip("prometheus_client", reason="the ai-inference example needs prometheus-client")

import policies.factory  # noqa: E402, F401 - the policies these tests run: a broken import fails, never skips
import policies.optimizer  # noqa: E402, F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROWS = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


class Client(threading.Thread):
    """Posts to the endpoint until stopped; a request may retry once (a connection the kernel had queued
    on the killed replica's socket is reset), and every request must finally be answered."""

    def __init__(self, url: str, pause: float = 0.02):
        super().__init__(daemon=True)
        self.url, self.pause = url, pause
        self.stop = threading.Event()
        self.ok = self.retried = self.failed = 0
        self.errors: list[str] = []

    def run(self):
        while not self.stop.is_set():
            for attempt in range(2):
                try:
                    assert post(self.url, ROWS)["predictions"] == ["setosa"]
                    self.ok += 1
                    break
                except (OSError, urllib.error.URLError) as exc:
                    if attempt == 1:
                        self.failed += 1
                        self.errors.append(str(exc))
                    else:
                        self.retried += 1
            time.sleep(self.pause)


def start_loop(home, name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, STRATO_HOME=str(home), PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "maintain", name, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def stop_loop(loop: subprocess.Popen) -> str:
    loop.send_signal(signal.SIGTERM)
    try:
        out, err = loop.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        loop.kill()
        out, err = loop.communicate()
    return err


@pytest.fixture
def demo(strato, strato_home):
    name = unique("heal")
    proc = strato("build", EXAMPLE, "--name", name, "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    yield name
    strato("destroy", name, "--yes", "-q")


def test_kill_9_of_a_replica_is_replaced_within_two_intervals_while_the_endpoint_answers(demo, strato, strato_home):
    interval = 1.0
    store = StateStore(str(strato_home / "state.db"))
    endpoint = strato("outputs", demo, "--get", "endpoint").stdout.strip()
    loop = start_loop(strato_home, demo, "--interval", f"{interval}s")
    client = Client(endpoint)
    try:
        deadline = time.monotonic() + 30
        while store.lease_holder(demo) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.lease_holder(demo) is not None, loop.stderr.read() if loop.poll() is not None else ""
        client.start()
        time.sleep(1.0)
        victim = next(r for r in store.instances(demo) if r.node == "server" and r.index == 0)
        os.kill(victim.handle["pid"], signal.SIGKILL)
        killed = time.monotonic()
        seen = replaced = None
        while time.monotonic() < killed + 60 and replaced is None:
            events = store.events(demo, 200)
            if seen is None and any(e["kind"] == "missing" and e["key"] == victim.key for e in events):
                seen = time.monotonic() - killed
            rec = store.get_instance(victim.key)
            if rec.status == "ready" and rec.handle["pid"] != victim.handle["pid"]:
                replaced = time.monotonic() - killed
            time.sleep(0.05)
        assert seen is not None and seen <= 2 * interval + 0.5, f"noticed after {seen} s"
        assert replaced is not None, "not replaced within 60 s"
        new = store.get_instance(victim.key)
        with urllib.request.urlopen(new.attributes["url"] + "/health", timeout=5) as resp:
            assert resp.status == 200
        time.sleep(0.5)
    finally:
        client.stop.set()
        client.join(timeout=15)
        err = stop_loop(loop)
    assert client.failed == 0, client.errors[:3]
    assert client.ok > 20
    assert "Traceback" not in err
    heals = [e for e in store.events(demo, 500) if e["kind"] == "maintain_acted"]
    assert heals and heals[-1]["detail"]["healed"] == 1
    store.close()


# -- scaling on load ----------------------------------------------------------------------------

POLICY = """
  policies:
    - autoscale:
        type: strato.policies.Scaling
        targets: [server]
        properties:
          metric: '{metric}'
          aggregation: sum
          target: {target}
          min_instances: 1
          max_instances: 4
          period: 0.5 s
          cooldown: 0 s
          scale_down_stabilization: 4 s
          scale_up_period: 1 s
"""


def example_with_policy(tmp_path, metric: str, target: float) -> str:
    """The ai-inference example with a target-tracking policy on its replicas (a copy beside its scripts)."""
    src = os.path.dirname(EXAMPLE)
    for script in ("train.py", "serve.py"):
        with open(os.path.join(src, script)) as fh:
            (tmp_path / script).write_text(fh.read())
    with open(EXAMPLE) as fh:
        text = fh.read()
    text = text.replace("\n  outputs:", POLICY.format(metric=metric, target=target) + "\n  outputs:")
    text = text.replace("default: 2\n      description: Number", "default: 1\n      description: Number")
    path = tmp_path / "service.yaml"
    path.write_text(text)
    return str(path)


class Load(threading.Thread):
    """A bounded open-loop load: `rate` requests/s from a few threads for as long as it runs."""

    def __init__(self, url: str, rate: float, threads: int = 4):
        super().__init__(daemon=True)
        self.url, self.rate, self.threads = url, rate, threads
        self.stop = threading.Event()
        self.sent = 0

    def worker(self):
        gap = self.threads / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                post(self.url, ROWS)
                self.sent += 1
            except OSError:
                pass
            next_at += gap
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def run(self):
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def replicas(store, name: str) -> int:
    infra = store.get_infra(name)
    return infra.desired.get("server") or 0


def run_load_step(strato, strato_home, descriptor: str, metric: str, *loop_args: str) -> list[int]:
    """Build, start the loop, load, unload: the desired replica counts seen over time."""
    name = unique("tt")
    proc = strato("build", descriptor, "--name", name, "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    store = StateStore(str(strato_home / "state.db"))
    endpoint = strato("outputs", name, "--get", "endpoint").stdout.strip()
    loop = start_loop(strato_home, name, "--interval", "0.5s", *loop_args)
    load = Load(endpoint, rate=50)
    seen: list[int] = []
    try:
        load.start()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and max(seen, default=0) < 3:
            seen.append(replicas(store, name))
            time.sleep(0.25)
        load.stop.set()
        load.join(timeout=10)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and seen[-1] != 1:
            seen.append(replicas(store, name))
            time.sleep(0.25)
        ready = [r for r in store.instances(name) if r.node == "server" and r.status == "ready"]
    finally:
        load.stop.set()
        err = stop_loop(loop)
        strato("destroy", name, "--yes", "-q")
    assert "Traceback" not in err, err
    assert max(seen) >= 3, f"never scaled up under load: {seen}; {err[-2000:]}"
    assert seen[-1] == 1, f"did not scale back down after the stabilisation window: {seen}"
    assert len(ready) == 1
    scaled = [e for e in store.events(name, 1000) if e["kind"] == "scaled"]
    assert {e["detail"]["direction"] for e in scaled} == {"up", "down"}
    assert all("target tracking" in e["detail"]["reason"] and metric in e["detail"]["reason"] for e in scaled)
    store.close()
    return seen


def test_target_tracking_scales_up_under_a_load_step_and_back_down(strato, strato_home, tmp_path):
    # request_rate is a built-in probe: the replicas' own histograms, scraped directly
    run_load_step(strato, strato_home, example_with_policy(tmp_path, "request_rate", 12), "request_rate")


@pytest.fixture
def prometheus(strato_home, tmp_path):
    """Debian's Prometheus on a free loopback port, scraping what the maintain loop lists in file_sd."""
    config = textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: strato
            file_sd_configs: [{{files: ["{strato_home}/prometheus/*.json"],
                                refresh_interval: 1s}}]
    """)
    with running_prometheus(tmp_path, config) as url:
        yield url


def test_target_tracking_through_promql_on_a_real_prometheus(strato, strato_home, tmp_path, prometheus):
    query = 'sum(rate(inference_requests_total{job="strato"}[4s]))'
    run_load_step(strato, strato_home, example_with_policy(tmp_path, query, 12), query, "--prometheus", prometheus)


OPTIMIZER_POLICY = """
  policies:
    - optimize:
        type: strato.policies.Optimizer
        targets: [server]
        properties:
          target_metric: latency_p95_ms
          target_value: 30
          input_metrics: [request_rate]
          metric: request_rate
          aggregation: sum
          target: 12
          min_instances: 1
          max_instances: 4
          period: 0.5 s
          cooldown: 0 s
          training_samples_required: 10
"""


def test_optimizer_policy_drives_the_example_under_a_ramp_and_its_samples_accumulate(strato, strato_home, tmp_path):
    descriptor = example_with_policy(tmp_path, "request_rate", 12)
    text = open(descriptor).read()
    text = text[:text.index("\n  policies:")] + OPTIMIZER_POLICY + text[text.index("\n  outputs:"):]
    with open(descriptor, "w") as fh:
        fh.write(text)
    name = unique("opt")
    proc = strato("build", descriptor, "--name", name, "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    store = StateStore(str(strato_home / "state.db"))
    endpoint = strato("outputs", name, "--get", "endpoint").stdout.strip()
    loop = start_loop(strato_home, name, "--interval", "0.5s")
    seen = []
    try:
        for rate in (5, 15, 30, 50):          # a ramp: 4 steps of 4 s
            load = Load(endpoint, rate=rate)
            load.start()
            time.sleep(4)
            load.stop.set()
            load.join(timeout=10)
            seen.append(replicas(store, name))
        samples = store.samples(name, "server")
        events = store.events(name, 2000)
    finally:
        err = stop_loop(loop)
        strato("destroy", name, "--yes", "-q")
    assert "Traceback" not in err, err
    assert len(samples) >= 20, len(samples)
    assert all(s["instances"] >= 1 for s in samples)
    assert any(s["metrics"].get("request_rate", 0) > 20 for s in samples)
    assert any(s["target"] is not None for s in samples)        # the target metric is measured and kept
    decisions = [e for e in events if e["kind"] in ("decision", "scaled")
                 and e["detail"].get("policy") == "optimize"]
    assert decisions, "the optimizer policy never decided"
    assert max(seen) >= 2, seen                                # it scaled the replicas up under the ramp
    store.close()
