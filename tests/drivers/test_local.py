"""The local driver against real OS processes."""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import replace

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.local import LocalDriver, processes_with_key
from drivers.noop import NoopDriver
from drivers.common import process_start_time
from tests.drivers.contract import DriverContract

SERVER = ("import http.server, os, sys\n"
          "port = int(os.environ['STRATO_PORT'])\n"
          "http.server.ThreadingHTTPServer(('127.0.0.1', port), http.server.SimpleHTTPRequestHandler)"
          ".serve_forever()\n")


def make_spec(tmp_path, **props) -> InstanceSpec:
    base = {"command": [sys.executable, "-c", SERVER], "port": "auto", "start_timeout": 20}
    base.update(props)
    return InstanceSpec(key=f"test/{uuid.uuid4().hex[:8]}/0@x", infra="t", node="web", index=0,
                        type="strato.nodes.Process", properties=base, metadata={},
                        descriptor_dir=str(tmp_path), infra_dir=str(tmp_path / "infra"), timeout=30)


class TestLocalContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return LocalDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        return make_spec(tmp_path)

    def exists(self, handle) -> bool:
        return bool(processes_with_key(handle["key"]))

    def failing_spec(self, spec):
        return replace(spec, properties={**spec.properties, "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                                         "health_check": {"tcp": True, "timeout": 0.3}})


class TestNoopContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return NoopDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        return make_spec(tmp_path)

    def exists(self, handle) -> bool:
        return handle["key"] in self.live

    @pytest.fixture(autouse=True)
    def _live(self, driver):
        self.live = driver._live  # the noop backend is the driver's own table

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "seconds": 0})

    def check_updated(self, handle, spec):
        assert handle["generation"] == 2


def test_attributes_port_auto_and_http_health(tmp_path):
    driver = LocalDriver()
    spec = make_spec(tmp_path, health_check={"http": "/", "timeout": 20})
    handle = driver.create(spec)
    try:
        attrs = driver.observe(handle).attributes
        assert attrs["host"] == "127.0.0.1" and isinstance(attrs["port"], int)
        assert attrs["url"] == f"http://127.0.0.1:{attrs['port']}"
        assert attrs["start_time"] == process_start_time(attrs["pid"])
        import urllib.request
        with urllib.request.urlopen(attrs["url"], timeout=5) as resp:
            assert resp.status == 200
        # detached: its own session / process group, not ours
        assert os.getpgid(attrs["pid"]) == attrs["pid"] != os.getpgid(0)
        assert os.path.exists(handle["log"])
    finally:
        driver.delete(handle)


def test_reused_pid_is_not_mistaken_for_ours(tmp_path):
    driver = LocalDriver()
    spec = make_spec(tmp_path)
    handle = driver.create(spec)
    try:
        forged = dict(handle, start_time=handle["start_time"] - 1, key="another/instance/0@zz")
        assert driver.observe(forged).status == "missing"
        driver.delete(forged)  # must not kill the real process: its start time differs
        assert driver.observe(handle).status == "running"
    finally:
        driver.delete(handle)


def test_delete_kills_the_whole_group_with_sigkill_after_grace(tmp_path):
    # parent ignores SIGTERM and has a child: both must go
    script = ("import os, signal, subprocess, sys, time, http.server\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal,time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
              "http.server.HTTPServer(('127.0.0.1', int(os.environ['STRATO_PORT'])), "
              "http.server.BaseHTTPRequestHandler).serve_forever()\n")
    driver = LocalDriver()
    spec = make_spec(tmp_path, command=[sys.executable, "-c", script], stop_grace_period=0.5)
    handle = driver.create(spec)
    deadline = time.monotonic() + 10
    while len(processes_with_key(spec.key)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes_with_key(spec.key)) == 2
    started = time.monotonic()
    driver.delete(handle)
    assert processes_with_key(spec.key) == []
    assert time.monotonic() - started >= 0.4  # it waited for the grace period before SIGKILL


def test_process_that_exits_during_start_fails_with_its_log(tmp_path):
    driver = LocalDriver()
    spec = make_spec(tmp_path, command=[sys.executable, "-c", "print('cannot load model'); raise SystemExit(3)"])
    with pytest.raises(DriverError) as err:
        driver.create(spec)
    assert "code 3" in str(err.value) and "cannot load model" in str(err.value)
    assert processes_with_key(spec.key) == []


def test_unhealthy_process_times_out_and_is_removed(tmp_path):
    driver = LocalDriver()
    spec = make_spec(tmp_path, command=[sys.executable, "-c", "import time; time.sleep(30)"],
                     health_check={"tcp": True, "timeout": 0.5})
    with pytest.raises(DriverError) as err:
        driver.create(spec)
    assert "not healthy within 0.5 s" in str(err.value) and err.value.retryable
    assert processes_with_key(spec.key) == []


def test_one_shot_job_reports_attributes(tmp_path):
    driver = LocalDriver()
    code = "import json, os; json.dump({'model_path': '/m.pkl'}, open(os.environ['STRATO_ATTRIBUTES_FILE'], 'w'))"
    spec = make_spec(tmp_path, command=[sys.executable, "-c", code], port=None)
    spec.metadata = {"strato.one_shot": True}
    handle = driver.create(spec)
    observed = driver.observe(handle)
    assert observed.status == "completed" and observed.attributes["model_path"] == "/m.pkl"
    failing = make_spec(tmp_path, command=[sys.executable, "-c", "raise SystemExit(2)"], port=None)
    failing.metadata = {"strato.one_shot": True}
    with pytest.raises(DriverError, match="exited with code 2"):
        driver.create(failing)


def test_shared_port_is_prepared_once_per_node(tmp_path):
    driver = LocalDriver()
    spec = make_spec(tmp_path, shared_port="auto")
    attrs = driver.prepare_node(spec)
    assert isinstance(attrs["shared_port"], int) and attrs["shared_port"] > 1024
