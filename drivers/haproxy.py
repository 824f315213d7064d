"""The `haproxy` driver: a Router node is an HAProxy process on loopback whose servers change at runtime, never by reload.

HAProxy runs in the foreground as a `local` process (the same process group, key, log and adoption rules), with
a config written under the instance's directory: one frontend, one backend, a Prometheus frontend and an admin
socket. The backend starts with free server slots; `HaproxyAdmin.sync` fills, reweighs, drains and frees them
through the runtime API, so a weight change or a replica coming and going never restarts HAProxy nor drops a
connection. L7 retries with redispatch let a request whose server died mid-way finish on
another server.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from descriptors.values import duration_seconds
from drivers.base import DriverError, InstanceSpec, Observed
from drivers.common import PRIVATE_FILE, make_private_dir
from drivers.local import LOOPBACK, LocalDriver, free_port, instance_dir

MISSING_BINARY = "HAPROXY_MISSING: haproxy is not installed: apt-get install haproxy"
MAX_WEIGHT = 256
_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
_SOCKET_PATH_MAX = 100   # sun_path holds 108 bytes; a longer path moves to a short private directory
ROUTER_FILE = "router.json"
MAP_SUFFIX = ".servers.map"   # the map (slot -> server name) of a backend's server-template slots
SLOT_PREFIX = "slot"
PARKED = "127.0.0.1:9"        # a free slot's address (it is in maintenance: never connected to)
_ADDR_OK = ("IP changed", "no need", "port changed")
# `show servers state` srv_admin_state bits: drained (forced, inherited), in maintenance (forced, inherited,
# resolver). Not 0x04, "disabled in the config": a slot keeps it after `state ready` while it serves.
_ADMIN_DRAIN = 0x08 | 0x10
_ADMIN_OUT = _ADMIN_DRAIN | 0x01 | 0x02 | 0x20


def haproxy_binary() -> str:
    """The haproxy program on PATH; DriverError with the package to install when there is none."""
    found = shutil.which("haproxy")
    if found is None:
        raise DriverError(MISSING_BINARY, backend="haproxy")
    return found


def proxy_name(text: str) -> str:
    """A name HAProxy accepts for a backend or a server (letters, digits, _ . : -)."""
    return _NAME.sub("_", text) or "_"


def server_name(node: str, index: int) -> str:
    """The backend server standing for instance `index` of `node`."""
    return proxy_name(f"{node}-{index}")


@dataclass(frozen=True)
class ServerSlot:
    """One server the backend should have: where it is and its share of the traffic (0..256, relative)."""

    name: str
    host: str
    port: int
    weight: int = 1
    drain: bool = False   # keep it, but send it no new requests

    def __post_init__(self) -> None:
        if not 0 <= int(self.weight) <= MAX_WEIGHT:
            raise ValueError(f"server {self.name}: weight {self.weight} is outside 0..{MAX_WEIGHT}")


@dataclass(frozen=True)
class ServerStats:
    """A server as HAProxy's `show stat` reports it; the counters are cumulative since the server was added."""

    name: str
    status: str                  # UP, DOWN, DRAIN, MAINT, "no check", "UP 1/2"...
    weight: int                  # the weight it gets traffic by now (0 while draining)
    sessions: int                # current sessions
    requests: int
    errors_5xx: int
    connect_errors: int
    response_errors: int
    retries: int
    redispatches: int
    connections: int             # connections opened to it (kept alive and reused between requests)
    response_time_ms_avg: float  # HAProxy's average over its last 1024 responses


@dataclass
class SyncReport:
    """What one sync changed: servers added, updated (weight, address, drain), draining to go, and deleted."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    draining: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _address(attrs: dict) -> tuple[str, int] | None:
    """(host, port) of an instance from its `host`/`port` attributes, or else its `url`."""
    if attrs.get("port"):
        try:
            return str(attrs.get("host") or LOOPBACK), int(attrs["port"])
        except (TypeError, ValueError):
            return None
    url = attrs.get("url")
    if not isinstance(url, str) or "://" not in url:
        return None
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    try:
        return (parts.hostname or LOOPBACK), (parts.port or default)
    except ValueError:
        return None


def slots_for(instances_attrs: list[dict], weights: dict[str, int] | None = None) -> list[ServerSlot]:
    """The backend servers for these instances' attributes (each dict: `name` plus host/port or url).

    Without `weights` every server gets weight 1 (an equal split); with them, each server gets its named weight
    and a server they do not name gets 0 (a rollout names every server it wants traffic on). Instances with no
    address are left out."""
    slots = []
    for attrs in instances_attrs:
        address = _address(attrs)
        if address is None or not attrs.get("name"):
            continue
        weight = 1 if weights is None else int(weights.get(attrs["name"], 0))
        slots.append(ServerSlot(proxy_name(str(attrs["name"])), address[0], address[1], weight))
    return slots


def _effective(state: dict[str, str]) -> int:
    """The weight a server gets traffic by, from its `show servers state` row (0 while drained or in maintenance)."""
    return 0 if int(state.get("srv_admin_state") or 0) & _ADMIN_OUT else int(state.get("srv_uweight") or 0)


class HaproxyAdmin:
    """HAProxy's runtime API on a router's admin socket (`stats socket ... level admin`): one command per connection.

    The backend's servers are the slots of a `server-template` (slot1..slotN, parked in maintenance): a server
    joins by taking a free slot (address, weight, state ready), leaves by draining and going back to maintenance.
    Which server a slot holds is kept in HAProxy itself, in the map `<backend>.servers.map` (slot -> name), so any
    HaproxyAdmin, in any process, reads the same truth. (HAProxy 2.6's `add server` would do without slots, but its
    dynamic servers never reuse a connection: one new TCP connection per request.)"""

    # when each (socket, backend, server) started draining on its way out; shared by every HaproxyAdmin of this
    # process, so the maintain loop's passes (each with its own object) wait one bounded time, not each its own
    _drain_started: dict[tuple[str, str, str], float] = {}
    _drain_lock = threading.Lock()

    def __init__(self, socket_path: str, timeout: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._maps: dict[str, str] = {}

    def command(self, line: str) -> str:
        """Send one runtime API command; its answer as text."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise DriverError(f"HAProxy admin socket {self.socket_path}: {exc.strerror or exc}", retryable=True,
                              backend="haproxy") from None
        return b"".join(chunks).decode(errors="replace").strip()

    def _checked(self, line: str, ok: tuple[str, ...] = ()) -> str:
        """Run a command that answers nothing (or one of the `ok` prefixes) when it succeeds."""
        answer = self.command(line)
        if answer and not answer.startswith(ok):
            raise DriverError(f"HAProxy refused `{line}`: {answer.splitlines()[0]}", backend="haproxy")
        return answer

    # -- reading -------------------------------------------------------------------------------------------
    def _map_file(self, backend: str) -> str:
        """The file name HAProxy knows the backend's slot map by (`show map` lists every map)."""
        if backend not in self._maps:
            wanted = f"/{backend}{MAP_SUFFIX}"
            for line in self.command("show map").splitlines():
                match = re.match(r"^-?\d+ \((.+?)\) ", line)
                if match and match[1].endswith(wanted):
                    self._maps[backend] = match[1]
                    break
            else:
                raise DriverError(f"HAProxy has no server map for backend '{backend}' (not a Strato router?)",
                                  backend="haproxy")
        return self._maps[backend]

    def slots(self, backend: str) -> dict[str, str]:
        """server name -> the slot holding it (the `server` label of HAProxy's Prometheus metrics is the slot)."""
        held = {}
        for line in self.command(f"show map {self._map_file(backend)}").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("0x"):
                held[parts[2]] = parts[1]
        return held

    def _stat_rows(self, backend: str) -> dict[str, dict[str, str]]:
        """`show stat` rows of the backend's slots, by slot."""
        text = self.command("show stat")
        if not text.startswith("#"):
            raise DriverError(f"HAProxy `show stat` failed: {text[:200]}", backend="haproxy")
        rows = list(csv.reader(text.lstrip("# ").splitlines()))
        found = [dict(zip(rows[0], row)) for row in rows[1:] if row and row[0] == backend]
        if not found:
            raise DriverError(f"HAProxy has no backend '{backend}'", backend="haproxy")
        return {row["svname"]: row for row in found if row.get("svname") not in ("BACKEND", "FRONTEND")}

    def _states(self, backend: str) -> dict[str, dict[str, str]]:
        """`show servers state`: each slot's address, port, admin state bits and user weight, by slot."""
        lines = self.command(f"show servers state {backend}").splitlines()
        header = next((ln.lstrip("# ").split() for ln in lines if ln.startswith("#")), [])
        rows = [dict(zip(header, ln.split())) for ln in lines if ln and not ln.startswith("#") and " " in ln]
        return {row["srv_name"]: row for row in rows if "srv_name" in row}

    def server_stats(self, backend: str) -> dict[str, ServerStats]:
        """Each server of the backend with its status and cumulative counters (since it took its slot)."""
        def num(row: dict, key: str) -> int:
            return int(row.get(key) or 0)
        rows = self._stat_rows(backend)
        return {name: ServerStats(
            name=name, status=row.get("status", ""), weight=num(row, "weight"), sessions=num(row, "scur"),
            requests=num(row, "req_tot") or num(row, "stot"), errors_5xx=num(row, "hrsp_5xx"),
            connect_errors=num(row, "econ"), response_errors=num(row, "eresp"), retries=num(row, "wretr"),
            redispatches=num(row, "wredis"), connections=num(row, "connect"),
            response_time_ms_avg=float(row.get("rtime") or 0))
            for name, slot in self.slots(backend).items() if (row := rows.get(slot)) is not None}

    def weights(self, backend: str) -> dict[str, int]:
        """Each server's weight as set (0 for a server draining or in maintenance)."""
        states = self._states(backend)
        return {name: _effective(states[slot]) for name, slot in self.slots(backend).items() if slot in states}

    # -- changing ------------------------------------------------------------------------------------------
    def sync(self, backend: str, servers: list[ServerSlot], *, drain_timeout: float = 30.0,
             wait: float = 0.0) -> SyncReport:
        """Make the backend hold exactly `servers` (idempotent; runtime API only, never a reload).

        A new server takes a free slot and is ready at once (the engine saw it healthy; HAProxy's checks go on);
        a present one gets its weight, address and drain flag set when they differ. A server not in `servers` is
        drained first and leaves once it has no session left, or after `drain_timeout` seconds of draining (its
        sessions are then cut). Leaving does not block: a later sync finishes it, or this one within `wait` s."""
        report, states, held = SyncReport(), self._states(backend), self.slots(backend)
        wanted = {slot.name: slot for slot in servers}
        leaving = [name for name in held if name not in wanted]
        free = [slot for slot in states if slot not in held.values()]
        for server in servers:
            if server.name not in held:
                if not free:
                    raise DriverError(f"router backend '{backend}' has no free server slot for '{server.name}' "
                                      f"({len(states)} slots: raise the node's max_servers)", backend="haproxy")
                self._add(backend, server, free.pop(0))
                report.added.append(server.name)
        # weights that rise before those that fall: moving all traffic from a to b never leaves both at 0 between
        # the two commands (a client would get a 503)
        present = sorted((s for s in servers if s.name in held),
                         key=lambda s: _effective(states[held[s.name]]) - (0 if s.drain else s.weight))
        for server in present:
            if self._update(backend, server, held[server.name], states[held[server.name]]):
                report.updated.append(server.name)
        deadline = time.monotonic() + wait
        while leaving:
            gone = self._retire(backend, {name: held[name] for name in leaving}, drain_timeout)
            report.removed.extend(gone)
            leaving = [name for name in leaving if name not in gone]
            if not leaving or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        report.draining = leaving
        return report

    def _add(self, backend: str, server: ServerSlot, slot: str) -> None:
        where = f"{backend}/{slot}"
        self._checked(f"add map {self._map_file(backend)} {slot} {server.name}")   # first: a crash leaves it held
        self._checked(f"set server {where} addr {server.host} port {server.port}", ok=_ADDR_OK)
        self._checked(f"set server {where} weight {server.weight}")
        self._checked(f"set server {where} state {'drain' if server.drain else 'ready'}")
        self._checked(f"set server {where} health up")   # seen healthy by the engine: no wait for a first check
        self._forget_drain(backend, server.name)

    def _update(self, backend: str, server: ServerSlot, slot: str, state: dict[str, str]) -> bool:
        where, changed = f"{backend}/{slot}", False
        if (state.get("srv_addr"), state.get("srv_port")) != (server.host, str(server.port)):
            self._checked(f"set server {where} addr {server.host} port {server.port}", ok=_ADDR_OK)
            changed = True
        if int(state.get("srv_uweight") or 0) != server.weight:
            self._checked(f"set server {where} weight {server.weight}")
            changed = True
        admin = int(state.get("srv_admin_state") or 0)
        if server.drain and not admin & _ADMIN_DRAIN:
            self._checked(f"set server {where} state drain")
            changed = True
        elif not server.drain and admin & _ADMIN_OUT:
            self._checked(f"set server {where} state ready")   # back from a drain (wanted again)
            changed = True
        if not server.drain:
            self._forget_drain(backend, server.name)
        return changed

    def _retire(self, backend: str, leaving: dict[str, str], drain_timeout: float) -> list[str]:
        """One step of taking servers (name -> slot) out: drain each; once it has no session left (or has drained
        for `drain_timeout` seconds: its sessions are cut) its slot goes back to maintenance and is free again.
        Returns the servers gone now."""
        states, stats, gone = self._states(backend), self._stat_rows(backend), []
        for name, slot in leaving.items():
            where = f"{backend}/{slot}"
            with self._drain_lock:
                started = self._drain_started.setdefault((self.socket_path, backend, name), time.monotonic())
            if not int(states.get(slot, {}).get("srv_admin_state") or 0) & _ADMIN_OUT:
                self._checked(f"set server {where} state drain")
            overdue = time.monotonic() - started >= drain_timeout
            if int(stats.get(slot, {}).get("scur") or 0) and not overdue:
                continue
            self._checked(f"set server {where} state maint")   # closes its idle connections too
            if overdue:
                self.command(f"shutdown sessions server {where}")
            self._checked(f"del map {self._map_file(backend)} {slot}")
            gone.append(name)
            self._forget_drain(backend, name)
        return gone

    def _forget_drain(self, backend: str, name: str) -> None:
        with self._drain_lock:
            self._drain_started.pop((self.socket_path, backend, name), None)


# -- the router process --------------------------------------------------------------------------------------
CONFIG = """\
# Written by Strato for {node}[{index}]. Servers come and go through the admin socket's runtime API.
global
    stats socket {admin_socket} mode 600 level admin
    stats timeout 30s
    maxconn {maxconn}
    nbthread {threads}

defaults
    mode http
    timeout connect {connect_ms}
    timeout client {client_ms}
    timeout server {server_ms}
    timeout http-keep-alive {client_ms}
    timeout queue {connect_ms}
    timeout check {check_ms}
    # a request whose server refused it, died or answered 5xx mid-way is sent again to another server
    retries {retries}
    option redispatch 1
    retry-on {retry_on}
    # the whole request body is read first, so that a POST can be retried too
    option http-buffer-request

frontend {backend}_in
    bind {host}:{port}
    default_backend {backend}

frontend {backend}_metrics
    bind {host}:{metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    http-request return status 404

backend {backend}
    balance {balance}
{check_line}    # which server each slot holds: read and written by HaproxyAdmin (never true, so never evaluated)
    http-request set-var(txn.strato_server) str(x),map({map_file}) if FALSE
    server-template {slot_prefix} 1-{max_servers} {parked} disabled check inter {check_ms} fall 2 rise 1
"""


def _port(value: Any, what: str, kept: Any = None) -> int:
    """The port a property asks for: its number, or for 'auto' the one kept from before (else a free one)."""
    if value in (None, "auto"):
        return kept if isinstance(kept, int) else free_port(reuse=True)
    if isinstance(value, int) and 0 < value < 65536:
        return value
    raise DriverError(f"{what} must be 'auto' or a port number, got {value!r}", backend="haproxy")


def _ms(value: Any, default: float) -> int:
    return max(1, int(duration_seconds(value, default) * 1000))


def _socket_path(work_dir: str, key: str) -> str:
    """The admin socket's path: in the instance's directory, or a short private one when that path is too long."""
    path = os.path.join(work_dir, "admin.sock")
    if len(path) <= _SOCKET_PATH_MAX:
        return path
    import hashlib
    short = os.path.join(tempfile.gettempdir(), f"strato-{os.getuid()}")
    make_private_dir(short)
    return os.path.join(short, hashlib.sha256(key.encode()).hexdigest()[:24] + ".sock")


def _write_private(path: str, text: str) -> None:
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def router_settings(spec: InstanceSpec, work_dir: str) -> dict[str, Any]:
    """What the router's config and its users need: backend name, ports, admin socket, health and drain settings."""
    props = spec.properties
    path = props.get("server_health_path", "/health")
    ports = spec.node_attributes
    return {"backend": proxy_name(str(props.get("backend") or spec.node)), "host": LOOPBACK,
            "port": _port(props.get("port"), "port", ports.get("router_port")),
            "metrics_port": _port(props.get("metrics_port"), "metrics_port", ports.get("metrics_port")),
            "admin_socket": _socket_path(work_dir, spec.key), "health_path": path or None,
            "map_file": os.path.join(work_dir, proxy_name(str(props.get("backend") or spec.node)) + MAP_SUFFIX),
            "check_interval": duration_seconds(props.get("check_interval"), 2.0),
            "drain_timeout": duration_seconds(props.get("drain_timeout"), 30.0)}


def render_config(spec: InstanceSpec, settings: dict[str, Any]) -> str:
    props = spec.properties
    path = settings["health_path"]
    check_line = f"    option httpchk GET {path}\n" if path else ""
    return CONFIG.format(node=spec.node, index=spec.index, maxconn=int(props.get("maxconn") or 4000),
                         threads=int(props.get("threads") or 1),
                         connect_ms=_ms(props.get("connect_timeout"), 5), client_ms=_ms(props.get("client_timeout"), 60),
                         server_ms=_ms(props.get("server_timeout"), 60), check_ms=_ms(settings["check_interval"], 2),
                         max_servers=int(props.get("max_servers") or 32), slot_prefix=SLOT_PREFIX, parked=PARKED,
                         retries=int(props.get("retries", 3)), retry_on=props.get("retry_on") or "all-retryable-errors",
                         balance=props.get("balance") or "roundrobin", check_line=check_line, **settings)


class HaproxyDriver(LocalDriver):
    """A strato.nodes.ai.Router instance: HAProxy in the foreground, as a local process of this machine."""

    name = "haproxy"
    path_properties = ()

    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        """The node's ports, chosen once: a router that is replaced (or a second one, HAProxy binds with SO_REUSEPORT)
        listens where its clients already connect."""
        kept, props = spec.node_attributes, spec.properties
        return {"router_port": _port(props.get("port"), "port", kept.get("router_port")),
                "metrics_port": _port(props.get("metrics_port"), "metrics_port", kept.get("metrics_port"))}

    def _local_spec(self, spec: InstanceSpec, command: list[str], port: int) -> InstanceSpec:
        props = spec.properties
        return dataclasses.replace(spec, properties={
            "command": command, "port": port, "start_timeout": props.get("start_timeout") or 30,
            "stop_grace_period": props.get("stop_grace_period") or 5})

    def start(self, spec: InstanceSpec) -> dict:
        binary = haproxy_binary()
        work_dir = instance_dir(spec)
        make_private_dir(work_dir)
        settings = router_settings(spec, work_dir)
        config = os.path.join(work_dir, "haproxy.cfg")
        _write_private(config, render_config(spec, settings))
        _write_private(settings["map_file"], "")   # empty: every slot starts free
        _check_config(binary, config)
        _write_private(os.path.join(work_dir, ROUTER_FILE), json.dumps(settings))
        if os.path.exists(settings["admin_socket"]):
            os.unlink(settings["admin_socket"])   # a dead router's socket: haproxy binds a fresh one
        handle = super().start(self._local_spec(spec, [binary, "-db", "-f", config], settings["port"]))
        handle["router"] = settings
        return handle

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        handle = super().wait_ready(handle, self._local_spec(spec, [], handle["port"]))
        admin = HaproxyAdmin(handle["router"]["admin_socket"], timeout=2.0)
        deadline = time.monotonic() + 10
        while True:   # the frontend listens; the admin socket is bound at the same start, checked all the same
            try:
                admin.command("show info")
                return handle
            except DriverError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def observe(self, handle: dict) -> Observed:
        observed = super().observe(handle)
        router = handle.get("router") or {}
        if router:
            observed.attributes.update({"admin_socket": router["admin_socket"], "backend": router["backend"],
                                        "metrics_url": f"http://{LOOPBACK}:{router['metrics_port']}/metrics",
                                        "drain_timeout": router["drain_timeout"],
                                        "check_interval": router["check_interval"],
                                        "health_path": router["health_path"]})
        return observed

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        handle = super().find(key, spec)
        if handle is not None and handle.get("attributes_file"):
            try:
                with open(os.path.join(os.path.dirname(handle["attributes_file"]), ROUTER_FILE)) as fh:
                    handle["router"] = json.load(fh)
            except (OSError, ValueError):
                pass   # adopted without its settings: observed as a plain process until replaced
        return handle


def _check_config(binary: str, config: str) -> None:
    """`haproxy -c`: a config HAProxy refuses is reported with its own first error line, before anything starts."""
    import subprocess
    proc = subprocess.run([binary, "-c", "-q", "-f", config], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ALERT" in ln] or proc.stderr.splitlines()
        raise DriverError(f"HAProxy refused its config {config}: {lines[0] if lines else 'exit %d' % proc.returncode}",
                          backend="haproxy")
