"""A real `strato serve` on a free loopback port, for tests that drive the API over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from drivers.local import free_port
from tests.conftest import REPO

WRITE_TOKEN = "srv-w-" + "a" * 30
READ_TOKEN = "srv-r-" + "b" * 30


class Server:
    def __init__(self, home, *args: str):
        self.home, self.args = home, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 30) -> "Server":
        env = dict(os.environ, STRATO_HOME=str(self.home), STRATO_API_TOKEN=WRITE_TOKEN,
                   STRATO_API_READ_TOKEN=READ_TOKEN, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(os.path.join(str(self.home), f"serve-{self.port}.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(self.port),
                                      *self.args], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_healthz(self.proc, self.url, timeout, self.output)
        return self

    def output(self) -> str:
        with open(self.log.name, "rb") as fh:
            return fh.read().decode(errors="replace")[-3000:]

    def client(self, token: str = WRITE_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_healthz(proc: subprocess.Popen, url: str, timeout: float, output) -> None:
    """Until `strato serve` at `url` answers /healthz; its exit or silence fails with the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"strato serve exited {proc.returncode}: {output()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"strato serve did not answer in {timeout} s: {output()}")


def wait_operation(client: httpx.Client, op_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}").json()
        if op["state"] != "running":
            return op
        time.sleep(0.1)
    raise AssertionError(f"operation {op_id} still running after {timeout} s")
