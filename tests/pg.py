"""A private PostgreSQL for the tests (tests/env/postgres.sh): one cluster per test session, a database per test.

`pg_cluster` (session) starts the cluster in a fresh directory under /tmp (the `postgres` user must reach
it, so not under pytest's private tmp) on a free loopback port, and stops it at the end; it skips with the
reason when PostgreSQL or psycopg is missing or the cluster cannot start. `pg_url` (per test) creates an
empty database in it (CREATE DATABASE costs milliseconds) and drops it afterwards.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env", "postgres.sh")


class PgCluster:
    def __init__(self, directory: str, port: int):
        self.directory, self.port = directory, port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.directory}&port={self.port}"

    def create_database(self) -> str:
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        subprocess.run(["bash", SCRIPT, "stop", self.directory], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster() -> PgCluster:
    """Start a private cluster, or raise RuntimeError saying why it cannot run here."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"psycopg 3 / psycopg-pool not installed ({exc}): pip install -e '.[postgres]'") from None
    directory = tempfile.mkdtemp(prefix="strato-pg-", dir="/tmp")
    os.chmod(directory, 0o755)
    for _ in range(3):  # a port taken between free_port() and the server's bind: try another
        port = free_port()
        proc = subprocess.run(["bash", SCRIPT, "start", directory, str(port)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode == 0:
            return PgCluster(directory, port)
    shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL could not start here (tests/env/postgres.sh): {proc.stderr.strip()[-300:]}")


@pytest.fixture(scope="session")
def pg_cluster():
    try:
        cluster = start_cluster()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a fresh, empty database of the session's cluster."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request, tmp_path):
    """The contract suite's parametrization: an SQLite file, then a PostgreSQL database (skipped with the reason
    when PostgreSQL cannot run here)."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return request.getfixturevalue("pg_url")
