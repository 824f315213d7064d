"""Debian's Prometheus for tests: installed by tests/env/prometheus.sh, started on a free loopback port with the test's
own config and TSDB, stopped at the end (the test is skipped when it cannot be installed or does not come up)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import REPO


def require_prometheus() -> None:
    """Install Prometheus if it is missing, or skip the test saying why it cannot be."""
    setup = subprocess.run(["bash", os.path.join(REPO, "tests", "env", "prometheus.sh")], capture_output=True,
                           text=True, timeout=600)
    if setup.returncode != 0:
        pytest.skip(f"Prometheus not available: {setup.stderr.strip()[-300:]}")


@contextlib.contextmanager
def running_prometheus(directory, config: str, tsdb=None):
    """A Prometheus with this config (YAML text) and TSDB directory (default: a new one in `directory`): its URL."""
    require_prometheus()
    from drivers.local import free_port
    port = free_port()
    (directory / "prometheus.yml").write_text(config)
    log = open(directory / "prometheus.log", "w")
    proc = subprocess.Popen(["prometheus", f"--config.file={directory / 'prometheus.yml'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             f"--storage.tsdb.path={tsdb or directory / 'tsdb'}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        else:
            pytest.skip("Prometheus did not become ready within 30 s")
        assert proc.poll() is None, (directory / "prometheus.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
