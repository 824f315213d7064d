"""Start throwaway OpenSSH servers on free loopback ports (via tests/env/sshd.sh) for the host-pool tests and benchmark.

Each server gets its own directory with fresh ed25519 host and user keys; `SshServer.stop()`
ends it by its pid. `SshdUnavailable` carries the reason when sshd cannot be installed or started
(tests skip with it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sshd.sh")
# Over a non-login SSH shell the `python3` on PATH may be a pyenv shim that fails; name the real one.
PYTHON = "/usr/bin/python3"


class SshdUnavailable(RuntimeError):
    pass


@dataclass
class SshServer:
    address: str
    port: int
    user: str
    key: str
    pid: int
    directory: str

    def host_entry(self, **labels) -> dict:
        """The server as a host-pool inventory entry."""
        entry = {"address": self.address, "port": self.port, "user": self.user, "key_file": self.key,
                 "python": PYTHON}
        if labels:
            entry["labels"] = labels
        return entry

    def stop(self, timeout: float = 5) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _running(self.pid):
                return
            time.sleep(0.05)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _running(pid: int) -> bool:
    """Alive and not a zombie (sshd daemonises, so its exit status may wait for a reaper that is not us)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def install(timeout: float = 600) -> None:
    try:
        proc = subprocess.run(["bash", SCRIPT, "install"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SshdUnavailable(f"could not install openssh-server: {exc}") from None
    if proc.returncode != 0:
        raise SshdUnavailable(f"could not install openssh-server: {proc.stderr.strip() or proc.stdout.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_banner(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(8).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def start(directory: str, timeout: float = 20) -> SshServer:
    """One sshd on a free loopback port, its keys and config in `directory`."""
    install()
    last = ""
    for _ in range(3):  # a port taken between choosing and binding: try another
        port = _free_port()
        proc = subprocess.run(["bash", SCRIPT, "start", directory, str(port)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            last = proc.stderr.strip()
            continue
        out = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
        server = SshServer("127.0.0.1", port, os.environ.get("USER") or "root", out["KEY"], int(out["PID"]),
                           directory)
        if _wait_banner(port, timeout):
            return server
        server.stop()
        last = f"sshd on port {port} did not answer"
    raise SshdUnavailable(f"could not start sshd: {last}")


def start_many(base_dir: str, count: int) -> list[SshServer]:
    servers: list[SshServer] = []
    try:
        for i in range(count):
            servers.append(start(os.path.join(base_dir, f"sshd{i}")))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers
