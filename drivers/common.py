"""Helpers shared by drivers (and the state store): instance keys, process start time, owner-only files,
cloud-init rendering, polling, health checks."""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

import yaml

from drivers.base import DriverError


def optional_module(module: str, needed_for: str, extra: str, backend: str):
    """Import a backend's SDK when a driver first needs it, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DriverError(f"{needed_for}: pip install 'strato[{extra}]'", backend=backend) from None

T = TypeVar("T")
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_KEY = re.compile(r"^(?P<infra>[^/]+)/(?P<node>[^/]+)/(?P<index>-?\d+)@(?P<uid>.*)$")


# A rollout's canary of node `web` is the node `web~canary` (orchestrator/mlops/rollout.py); a backend that has its
# own way to split traffic (a Kubernetes Service over two Deployments) serves both under `web`'s endpoint.
CANARY_SUFFIX = "~canary"


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


# -- cloud-init contextualisation --------------------------------------------------------------------------
# -- what drivers need from the orchestrator's store, handed to them: drivers never import orchestrator/ ------
def strato_home() -> str:
    """The directory Strato keeps its state and infrastructures in: $STRATO_HOME, else ~/.strato."""
    return os.environ.get("STRATO_HOME") or os.path.join(os.path.expanduser("~"), ".strato")


class ClaimStore(Protocol):
    """Claims on pooled hosts (the `ssh` driver's): which instance holds which host; atomic across processes."""

    def claim(self, pool: str, candidates: list[str], key: str, infra: str) -> str | None: ...
    def held_by(self, pool: str, key: str) -> str | None: ...
    def readiness(self, pool: str, key: str) -> tuple[bool, dict]: ...
    def mark_ready(self, pool: str, host: str, key: str, attributes: dict | None = None) -> None: ...
    def release(self, pool: str, host: str, key: str) -> None: ...
    def claims(self, pool: str | None = None) -> list[dict]: ...


_claim_store_factory: list[Callable[[str], ClaimStore]] = []


def provide_claim_store(factory: Callable[[str], ClaimStore]) -> None:
    """The orchestrator hands drivers its claims table: `factory(state database path)` opens it."""
    _claim_store_factory[:] = [factory]


def open_claim_store(path: str, backend: str) -> ClaimStore:
    """The claims table of the state database at `path`, from the factory the orchestrator provided."""
    if not _claim_store_factory:
        raise DriverError("no host claim store was provided (the orchestrator provides it when its state "
                          "module loads)", backend=backend)
    return _claim_store_factory[0](path)


DEPENDENCIES_META = "strato.dependencies"  # in spec.metadata: {node: [attributes of each instance]} of what it needs
# The most user data each provider accepts (bytes), and whether that counts the base64 form sent on the wire.
USER_DATA_LIMITS = {
    "ec2": (16 * 1024, False),        # EC2: 16 KB before base64
    "openstack": (65535, True),       # Nova: 65535 bytes of base64
    "azure_arm": (64 * 1024, True),   # Azure custom data: 64 KB base64-encoded
    "gce": (256 * 1024, False),       # GCE: one metadata value, 256 KB
}


def _address(dependencies: dict, node: str, which: str, kind: str) -> str:
    instances = (dependencies or {}).get(node)
    if not instances:
        raise DriverError(f"cloud-init asks for {kind}('{node}') but '{node}' is not a dependency of this node "
                          "(add it under requirements)")
    attrs = instances[0] or {}
    value = attrs.get(which) or attrs.get("private_address" if which == "public_address" else "public_address") \
        or attrs.get("address") or attrs.get("host")
    if not value:
        raise DriverError(f"cloud-init asks for {kind}('{node}') but '{node}' reports no address")
    return str(value)


def render_user_data(props: dict[str, Any], dependencies: dict[str, list] | None = None, provider: str | None = None,
                     node: str = "?", descriptor_dir: str | None = None) -> str | None:
    """User data from a node's contextualisation: `user_data` verbatim, or `cloud_init` rendered as #cloud-config.

    `cloud_init` is a mapping, cloud-config text, or a file beside the descriptor. Text is a Jinja2
    template (sandboxed, undefined names are errors) over `variables` (the node's
    cloud_init_variables) and, for Occopus templates, getip('node') / getprivip('node'): the public /
    private address of a dependency's first instance. The result is checked: a #cloud-config
    document must parse as a YAML mapping, and it must fit the provider's size limit.
    """
    if props.get("user_data"):
        text = str(props["user_data"])
    else:
        cloud_init = props.get("cloud_init")
        if not cloud_init:
            return None
        if isinstance(cloud_init, dict):
            text = "#cloud-config\n" + yaml.safe_dump(cloud_init, sort_keys=False)
        else:
            text = str(cloud_init)
            if descriptor_dir and "\n" not in text and os.path.isfile(os.path.join(descriptor_dir, text)):
                with open(os.path.join(descriptor_dir, text)) as fh:
                    text = fh.read()
        if "{{" in text or "{%" in text:
            text = _render_template(text, dict(props.get("cloud_init_variables") or {}), dependencies or {}, node)
    check_user_data(text, provider, node)
    return text


def _render_template(text: str, variables: dict, dependencies: dict, node: str) -> str:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    context = {"variables": variables, **{k: v for k, v in variables.items() if k.isidentifier()},
               "getip": lambda name: _address(dependencies, str(name), "public_address", "getip"),
               "getprivip": lambda name: _address(dependencies, str(name), "private_address", "getprivip")}
    try:
        return env.from_string(text).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise DriverError(f"node '{node}': cloud-init template line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise DriverError(f"node '{node}': cloud-init template: {exc.message} (set it in cloud_init_variables)") \
            from None


def check_user_data(text: str, provider: str | None, node: str = "?") -> None:
    """A #cloud-config document must be a YAML mapping; the whole must fit the provider's user-data limit."""
    if text.startswith("#cloud-config"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise DriverError(f"node '{node}': the rendered cloud-config is not valid YAML ({where.strip() or 'at'}: "
                              f"{getattr(exc, 'problem', None) or exc})") from None
        if doc is not None and not isinstance(doc, dict):
            raise DriverError(f"node '{node}': the rendered cloud-config must be a YAML mapping, not "
                              f"{type(doc).__name__}")
    limit = USER_DATA_LIMITS.get((provider or "").lower())
    if limit:
        size = len(text.encode())
        wire = (size + 2) // 3 * 4 if limit[1] else size
        if wire > limit[0]:
            raise DriverError(f"node '{node}': user data is {wire} bytes{' in base64' if limit[1] else ''}, over "
                              f"{provider}'s limit of {limit[0]} bytes")


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
