"""The `openstack` driver: one Nova server per Strato instance, its metadata carrying the Strato key.

Configuration comes from clouds.yaml (`cloud: NAME`, or OS_CLOUD) or the standard OS_* environment
(Keystone v3 or v2, e.g. OS_AUTH_TYPE=v2password), each overridable per node with `auth`,
`region_name` and `compute_api_version`. Nova has no client token, so after a create whose reply
was lost the next attempt first looks for a server carrying the key (never two servers).
"""

from __future__ import annotations

import base64
import os
import re
import threading
from typing import Any

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus, Pricing
from drivers.common import DEPENDENCIES_META, node_of_key, poll, render_user_data

try:
    import openstack
    import openstack.exceptions as os_exc
    from keystoneauth1 import exceptions as ks_exc
except ImportError:  # pragma: no cover - reported when a node actually needs OpenStack
    openstack = None

BACKEND = "openstack"
META_KEY, META_INFRA, META_NODE = "strato_key", "strato_infra", "strato_node"
POLL_S = 0.5
RETRYABLE_STATUS = {409, 429, 503, 504}


def settings_for(props: dict[str, Any]) -> dict[str, Any]:
    """What to connect with, JSON-serialisable so handles carry it to later processes."""
    out: dict[str, Any] = {}
    cloud = props.get("cloud") or os.environ.get("OS_CLOUD")
    if cloud:
        out["cloud"] = str(cloud)
    if props.get("auth"):
        out["auth"] = dict(props["auth"])
        out["auth_type"] = props.get("auth_type") or os.environ.get("OS_AUTH_TYPE") or "password"
    region = props.get("region_name") or props.get("region") or os.environ.get("OS_REGION_NAME")
    if region:
        out["region_name"] = str(region)
    out["compute_api_version"] = str(props.get("compute_api_version") or os.environ.get("OS_COMPUTE_API_VERSION")
                                     or "2")
    if not out.get("cloud") and not out.get("auth"):
        # Capture the OS_* environment now: a later destroy must reach the same cloud.
        out["env"] = {k: v for k, v in os.environ.items()
                      if k.startswith("OS_") and not any(m in k for m in SECRET_MARKERS)}
    return out


SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
_AUTH_ENV = {"OS_AUTH_URL": "auth_url", "OS_USERNAME": "username", "OS_USER_ID": "user_id",
             "OS_PROJECT_NAME": "project_name", "OS_TENANT_NAME": "project_name", "OS_PROJECT_ID": "project_id",
             "OS_TENANT_ID": "project_id", "OS_USER_DOMAIN_NAME": "user_domain_name",
             "OS_USER_DOMAIN_ID": "user_domain_id", "OS_PROJECT_DOMAIN_NAME": "project_domain_name",
             "OS_PROJECT_DOMAIN_ID": "project_domain_id", "OS_DOMAIN_NAME": "domain_name",
             "OS_PASSWORD": "password", "OS_TOKEN": "token", "OS_APPLICATION_CREDENTIAL_ID":
             "application_credential_id", "OS_APPLICATION_CREDENTIAL_SECRET": "application_credential_secret"}


def _env_connect_args(env: dict[str, str]) -> dict[str, Any]:
    """openstack.connect() arguments from OS_* variables; secrets are read from the live environment only."""
    merged = dict(env)
    merged.update({k: v for k, v in os.environ.items() if k.startswith("OS_") and any(m in k for m in SECRET_MARKERS)})
    auth = {name: merged[var] for var, name in _AUTH_ENV.items() if merged.get(var)}
    version = merged.get("OS_IDENTITY_API_VERSION", "3")
    auth_type = merged.get("OS_AUTH_TYPE") or ("v2password" if version.startswith("2") else "password")
    if auth_type.startswith("v2"):
        for v3_only in ("user_domain_name", "user_domain_id", "project_domain_name", "project_domain_id",
                        "domain_name"):
            auth.pop(v3_only, None)
    args: dict[str, Any] = {"auth_type": auth_type, "auth": auth, "identity_api_version": version}
    if merged.get("OS_INTERFACE"):
        args["interface"] = merged["OS_INTERFACE"]
    if merged.get("OS_CACERT"):
        args["cacert"] = merged["OS_CACERT"]
    return args


def translate(exc: BaseException, node: str, doing: str) -> DriverError:
    if openstack is not None and isinstance(exc, os_exc.HttpException):
        code = exc.status_code or 0
        detail = (exc.details or exc.message or str(exc)).strip()
        return DriverError(f"node '{node}': openstack refused to {doing}: HTTP {code}: {detail}",
                           retryable=code in RETRYABLE_STATUS, backend=BACKEND)
    if openstack is not None and isinstance(exc, (ks_exc.ConnectionError, ks_exc.ConnectFailure)):
        return DriverError(f"node '{node}': openstack unreachable while trying to {doing}: {exc}", retryable=True,
                           backend=BACKEND)
    if openstack is not None and isinstance(exc, (os_exc.SDKException, ks_exc.ClientException)):
        return DriverError(f"node '{node}': openstack failed to {doing}: {exc}", backend=BACKEND)
    return DriverError(f"node '{node}': openstack failed to {doing}: {type(exc).__name__}: {exc}", backend=BACKEND)


def _addresses(server) -> tuple[str | None, str | None]:
    private = public = None
    for net, entries in (server.addresses or {}).items():
        for entry in entries or []:
            ip = entry.get("addr")
            kind = entry.get("OS-EXT-IPS:type")
            if kind == "floating" or (kind is None and net == "public" and entry.get("version", 4) == 4):
                public = public or ip
            elif entry.get("version", 4) == 4:
                private = private or ip
    return private, public


class OpenStackDriver(Driver):
    name = BACKEND
    pricing = Pricing(table="openstack", size=("flavor_name", "flavor"), regional=False)  # the user's prices
    path_properties = ("cloud_init",)  # a one-line cloud_init names a file beside the descriptor

    def __init__(self) -> None:
        self._conns: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._uncertain: set[str] = set()  # keys whose create reply was lost
        self._lookups: dict[tuple, str] = {}

    def _conn(self, settings: dict[str, Any], node: str):
        if openstack is None:
            raise DriverError("the OpenStack driver needs openstacksdk: pip install 'strato[openstack]'",
                              backend=BACKEND)
        ident = repr(sorted((k, repr(v)) for k, v in settings.items()))
        with self._lock:
            if ident not in self._conns:
                kwargs = {k: v for k, v in settings.items() if k != "env"}
                if "env" in settings:
                    kwargs.update(_env_connect_args(settings["env"]))
                    kwargs["load_envvars"] = False
                try:
                    self._conns[ident] = openstack.connect(**kwargs)
                except Exception as exc:  # noqa: BLE001
                    raise translate(exc, node, "load the cloud configuration") from None
            return self._conns[ident]

    def _lookup_id(self, conn, kind: str, ident: str, settings_key: str, node: str) -> str:
        """Id of a flavor or image given by name or id (cached per cloud settings)."""
        cache = (kind, settings_key, ident)
        if cache not in self._lookups:
            try:
                found = getattr(conn.compute, f"find_{kind}")(ident, ignore_missing=True)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, node, f"look up {kind} {ident!r}") from None
            if found is None:
                raise DriverError(f"node '{node}': openstack has no {kind} {ident!r}", backend=BACKEND)
            self._lookups[cache] = found.id
        return self._lookups[cache]

    def _network_ids(self, conn, networks: list, node: str) -> list[dict]:
        out = []
        for net in networks:
            if isinstance(net, dict):
                out.append(net)
                continue
            try:
                found = conn.network.find_network(str(net), ignore_missing=True)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, node, f"look up network {net!r}") from None
            if found is None:
                raise DriverError(f"node '{node}': openstack has no network {net!r}", backend=BACKEND)
            out.append({"uuid": found.id})
        return out

    def start(self, spec: InstanceSpec) -> dict:
        props, key = spec.properties, spec.key
        settings = settings_for(props)
        conn = self._conn(settings, spec.node)
        handle = {"key": key, "settings": settings, "flavor_name": str(props.get("flavor") or "")}
        if key in self._uncertain:
            found = self.find(key, spec)
            if found is not None:
                self._uncertain.discard(key)
                handle = found
        if "server_id" not in handle:
            skey = repr(sorted(settings.items()))
            if not props.get("flavor") or not props.get("image"):
                raise DriverError(f"node '{spec.node}': openstack needs `flavor` and `image` (names or ids)",
                                  backend=BACKEND)
            attrs: dict[str, Any] = {
                "name": re.sub(r"[^A-Za-z0-9.-]+", "-", f"strato-{spec.infra}-{spec.node}-{spec.index}"),
                "flavorRef": self._lookup_id(conn, "flavor", str(props["flavor"]), skey, spec.node),
                "imageRef": self._lookup_id(conn, "image", str(props["image"]), skey, spec.node),
                "metadata": {**{str(k): str(v) for k, v in (props.get("metadata") or {}).items()},
                             META_KEY: key, META_INFRA: spec.infra, META_NODE: spec.node},
            }
            if props.get("key_name"):
                attrs["key_name"] = str(props["key_name"])
            if props.get("networks"):
                attrs["networks"] = self._network_ids(conn, list(props["networks"]), spec.node)
            user_data = render_user_data(props, spec.metadata.get(DEPENDENCIES_META), "openstack", spec.node,
                                         spec.descriptor_dir)
            if user_data:
                attrs["user_data"] = base64.b64encode(user_data.encode()).decode()
            try:
                server = conn.compute.create_server(**attrs)
            except Exception as exc:  # noqa: BLE001
                err = translate(exc, spec.node, f"create a server of flavor {props['flavor']!r}")
                if isinstance(exc, ks_exc.ConnectionError) and not isinstance(exc, ks_exc.ConnectFailure):
                    self._uncertain.add(key)  # the request may have reached Nova
                raise err from None
            handle["server_id"] = server.id
        return handle

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        conn = self._conn(handle["settings"], spec.node)
        timeout = min(float(spec.properties.get("wait_timeout") or 300), spec.timeout)
        server_id = handle["server_id"]
        last: dict = {}

        def active() -> bool | None:
            try:
                server = conn.compute.get_server(server_id)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, f"read server {server_id}") from None
            last["status"] = server.status
            if server.status == "ERROR":
                fault = (server.fault or {}).get("message", "no fault given") if hasattr(server, "fault") else ""
                raise DriverError(f"node '{spec.node}': openstack server {server_id} went ERROR: {fault}",
                                  backend=BACKEND)
            return True if server.status == "ACTIVE" else None

        poll(active, timeout, POLL_S, lambda: DriverError(
            f"node '{spec.node}': openstack server {server_id} not ACTIVE within {timeout:g} s "
            f"(status {last.get('status')})", backend=BACKEND))
        return handle

    def observe(self, handle: dict) -> Observed:
        node = node_of_key(handle.get("key", "?"))
        conn = self._conn(handle["settings"], node)
        try:
            server = conn.compute.find_server(handle["server_id"], ignore_missing=True)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, f"read server {handle['server_id']}") from None
        if server is None or server.status in ("DELETED", "SOFT_DELETED"):
            return Observed(ObservedStatus.MISSING, {"server_id": handle["server_id"]}, "server not found")
        private, public = _addresses(server)
        flavor = server.flavor.get("id") if isinstance(server.flavor, dict) else getattr(server.flavor, "id", None)
        attrs = {"server_id": server.id, "name": server.name, "status": server.status, "private_address": private,
                 "public_address": public, "flavor": flavor or getattr(server.flavor, "name", None),
                 "flavor_name": handle.get("flavor_name"), "region": handle["settings"].get("region_name"),
                 "backend": BACKEND}
        if server.status in ("ACTIVE", "BUILD", "REBOOT", "HARD_REBOOT"):
            return Observed(ObservedStatus.RUNNING, attrs)
        return Observed(ObservedStatus.FAILED, attrs, f"server is {server.status}")

    def delete(self, handle: dict) -> None:
        node = node_of_key(handle.get("key", "?"))
        conn = self._conn(handle["settings"], node)
        try:
            conn.compute.delete_server(handle["server_id"], ignore_missing=True)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, f"delete server {handle['server_id']}") from None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        settings = settings_for(spec.properties if spec else {})
        conn = self._conn(settings, node_of_key(key))
        try:
            # Nova cannot filter by metadata; filter by name prefix where possible, then by metadata here.
            servers = list(conn.compute.servers(details=True))
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(key), "list servers") from None
        for server in servers:
            if (server.metadata or {}).get(META_KEY) == key and server.status not in ("DELETED", "SOFT_DELETED"):
                return {"key": key, "settings": settings, "server_id": server.id, "adopted": True}
        return None
