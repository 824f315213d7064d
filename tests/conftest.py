"""Shared fixtures: an isolated STRATO_HOME per test and a helper to run the real `strato` CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pg import pg_cluster, pg_url, state_location  # noqa: F401  (fixtures: a private PostgreSQL)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def strato_home(tmp_path, monkeypatch):
    home = tmp_path / "strato-home"
    home.mkdir()
    monkeypatch.setenv("STRATO_HOME", str(home))
    return home


def run_strato(*args: str, home=None, timeout: float = 120, check: bool = False, input: str | None = None):
    """Run the CLI in a subprocess exactly as a user would (python -m orchestrator)."""
    env = dict(os.environ)
    if home is not None:
        env["STRATO_HOME"] = str(home)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"strato {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


API_WRITE_TOKEN = "w-" + "x" * 30
API_READ_TOKEN = "r-" + "y" * 30


@pytest.fixture
def make_client(strato_home, monkeypatch):
    """make(raise_server_exceptions=True, **ApiSettings) -> a TestClient of a fresh API app over this test's state,
    with the tokens API_WRITE_TOKEN / API_READ_TOKEN; its operations are waited for at teardown."""
    from fastapi.testclient import TestClient

    from orchestrator.api import ApiSettings, create_app
    monkeypatch.setenv("STRATO_API_TOKEN", API_WRITE_TOKEN)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", API_READ_TOKEN)
    clients = []

    def make(raise_server_exceptions: bool = True, **settings):
        client = TestClient(create_app(str(strato_home / "state.db"), ApiSettings(**settings)),
                            raise_server_exceptions=raise_server_exceptions)
        clients.append(client)
        return client
    yield make
    for c in clients:
        c.app.state.ctx.ops.wait_idle(30)


@pytest.fixture
def strato(strato_home):
    def run(*args, **kw):
        return run_strato(*args, home=strato_home, **kw)
    return run


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """Podman's Docker-compatible API on a private socket (installed and started by tests/env/podman.sh), with the
    tiny busybox image `strato-busybox:2`; skipped with the reason when Podman cannot run here."""
    from tests.env import podman as podman_env
    try:
        service = podman_env.start(str(tmp_path_factory.mktemp("podman")))
    except podman_env.PodmanUnavailable as exc:
        pytest.skip(str(exc))
    yield service
    service.stop()
