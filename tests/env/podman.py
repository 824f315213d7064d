"""Start Podman's Docker-compatible API for tests and benchmarks (tests/env/podman.sh does the work)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podman.sh")


class PodmanUnavailable(RuntimeError):
    """Podman cannot be installed or started here; the message says why (tests skip with it)."""


class PodmanService:
    """A running `podman system service` on a private unix socket; `stop()` ends it."""

    def __init__(self, env: dict[str, str]):
        self.docker_host = env["DOCKER_HOST"]
        self.containers_conf = env["CONTAINERS_CONF"]
        self.image = env["IMAGE"]
        self.pid = int(env["PID"])

    def cli_env(self) -> dict[str, str]:
        """Environment for the `podman` CLI and for `strato` subprocesses using this engine."""
        return {**os.environ, "CONTAINERS_CONF": self.containers_conf, "DOCKER_HOST": self.docker_host}

    def stop(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(work_dir: str, timeout: float = 600) -> PodmanService:
    try:
        proc = subprocess.run(["bash", SCRIPT, "start", work_dir], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PodmanUnavailable(f"tests/env/podman.sh did not finish: {exc}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise PodmanUnavailable(f"tests/env/podman.sh failed (exit {proc.returncode}): {tail}")
    env = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    service = PodmanService(env)
    # The engine answers and can run the test image: otherwise say why and let the tests skip.
    probe = subprocess.run(["podman", "run", "--rm", service.image, "/bin/sh", "-c", "echo ok"],
                           capture_output=True, text=True, timeout=120, env=service.cli_env())
    if probe.returncode != 0 or "ok" not in probe.stdout:
        service.stop()
        raise PodmanUnavailable(f"podman cannot run containers here: {(probe.stderr or probe.stdout).strip()[-300:]}")
    return service
