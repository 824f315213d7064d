"""The maintain loop on the real ai-inference example: kill -9 of a replica is healed while the endpoint answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from orchestrator.state import StateStore
from tests.conftest import REPO
from tests.e2e.test_local_e2e import EXAMPLE, post, unique

pytest.importorskip("sklearn", reason="the ai-inference example needs scikit-learn (pip install '.[test]')")
pytest.importorskip("prometheus_client", reason="the ai-inference example needs prometheus-client")

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
