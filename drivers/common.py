"""Helpers shared by drivers (and the state store): instance keys, process start time, owner-only files,
cloud-init rendering, polling, health checks."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import yaml

from drivers.base import DriverError

T = TypeVar("T")
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_KEY = re.compile(r"^(?P<infra>[^/]+)/(?P<node>[^/]+)/(?P<index>-?\d+)@(?P<uid>.*)$")


@dataclass(frozen=True)
class InstanceKey:
    """Strato's instance key `INFRA/NODE/INDEX@UID`: unique across state stores thanks to the infrastructure's uid."""

    infra: str
    node: str
    index: int
    uid: str

    def __str__(self) -> str:
        return f"{self.infra}/{self.node}/{self.index}@{self.uid}"

    @property
    def node_key(self) -> str:
        """The key of the node the instance belongs to (all its instances share it)."""
        return f"{self.infra}/{self.node}@{self.uid}"

    @classmethod
    def parse(cls, key: str) -> "InstanceKey | None":
        match = _KEY.match(key or "")
        if match is None:
            return None
        return cls(match["infra"], match["node"], int(match["index"]), match["uid"])


def node_of_key(key: str) -> str:
    """The node name inside an instance key (for messages); the key itself when it is not one."""
    parsed = InstanceKey.parse(key)
    return parsed.node if parsed else key


def process_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), or None if it is gone or a zombie.

    A pid together with its start time names one process for good: pids are reused, start times
    of a reused pid differ.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    if rest and rest[0] == b"Z":
        return None
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def make_private_dir(path: str) -> None:
    """Create a directory (and parents) readable by the owner only; tighten it if it already exists."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    _tighten(path, PRIVATE_DIR)


def make_private_file(path: str) -> None:
    """Make sure a file exists with mode 0600 (created so, never readable by others in between)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    _tighten(path, PRIVATE_FILE)


def _tighten(path: str, mode: int) -> None:
    """Take away group/other access from what an older Strato (or the umask) left open."""
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, mode)
    except OSError:  # not ours to change; SQLite or the open() that follows reports real problems
        pass


def render_user_data(props: dict[str, Any]) -> str | None:
    """User data from a node's contextualisation: `user_data` verbatim or `cloud_init` as #cloud-config."""
    if props.get("user_data"):
        return str(props["user_data"])
    cloud_init = props.get("cloud_init")
    if not cloud_init:
        return None
    if isinstance(cloud_init, str):
        return cloud_init
    return "#cloud-config\n" + yaml.safe_dump(cloud_init, sort_keys=False)


def poll(check: Callable[[], T | None], timeout: float, interval: float, on_timeout: Callable[[], DriverError]) -> T:
    """Call `check` until it returns something other than None; raise on_timeout() after `timeout` seconds.

    `check` raises DriverError itself for states that will never turn good (failed, terminated).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise on_timeout()
        time.sleep(interval)


def tcp_ok(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """Whether an HTTP GET of url answers with anything below 500 now."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def read_attributes(path: str | None, backend: str) -> dict:
    """The JSON object an instance wrote to its STRATO_ATTRIBUTES_FILE ({} when it wrote none)."""
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DriverError(f"could not read attributes the instance wrote to {path}: {exc}",
                          backend=backend) from None
    return data if isinstance(data, dict) else {}
