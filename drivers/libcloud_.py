"""The `libcloud` driver: the long tail of clouds (Azure, GCE, CloudSigma, ...) through Apache Libcloud's compute API.

`provider:` is a Libcloud provider name (openstack, ec2, azure_arm, gce, cloudsigma, ...) and
`settings:` that driver's non-secret constructor arguments (region, auth URL, ...). Credentials
never come from the descriptor: they are read, at each call, from the environment
(LIBCLOUD_<PROVIDER>_KEY / _SECRET, else LIBCLOUD_KEY / LIBCLOUD_SECRET) or from the YAML/JSON file
named by `credentials_file` ({key, secret, ...more constructor arguments}); handles and state keep
only the file's path. One node per instance through create_node / list_nodes / destroy_node,
tagged with the Strato key in metadata where the provider takes metadata, and recognised by
its name everywhere (the name is derived from the key). Only OpenStack (on Mimic) and EC2 (on
moto) are exercised by Strato's tests; other providers are untested here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import threading
import time
from typing import Any

import yaml

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import DEPENDENCIES_META, node_of_key, optional_module, render_user_data, strato_home

BACKEND = "libcloud"
META_KEY = "strato_key"
POLL_S = 0.5
# Providers whose create_node takes a metadata/tag mapping, and the argument that carries it.
METADATA_ARG = {"openstack": "ex_metadata", "ec2": "ex_metadata", "azure_arm": "ex_tags", "gce": "ex_metadata",
                "outscale": "ex_metadata", "cloudstack": None}
# A setting named like this is a credential (ex_keyname, a key pair's name, is not).
SECRET_NAME = re.compile(r"(^|_)(key|secret|token|apikey)$|password|secret|credential", re.I)
RUNNING_STATES = ("running", "pending", "starting", "rebooting", "reconfiguring", "migrating", "unknown")


def _libcloud():
    needs = "the libcloud driver needs apache-libcloud"
    return (optional_module("libcloud.compute.providers", needs, "libcloud", BACKEND).get_driver,
            optional_module("libcloud.compute.types", needs, "libcloud", BACKEND).Provider)


def node_name(key: str) -> str:
    """A name every provider accepts, unique per instance key (so a node can be found by name alone)."""
    parts = key.split("/")
    readable = "-".join(parts[:2]) if len(parts) > 2 else key
    readable = re.sub(r"[^a-z0-9-]+", "-", readable.lower()).strip("-")[:40]
    return f"strato-{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def check_settings(settings: dict, node: str) -> None:
    for name in settings:
        if SECRET_NAME.search(str(name)):
            raise DriverError(f"node '{node}': libcloud setting '{name}' looks like a credential; credentials come "
                              "from the environment (LIBCLOUD_KEY/LIBCLOUD_SECRET) or `credentials_file`, never "
                              "from the descriptor", backend=BACKEND)


def credentials(provider: str, credentials_file: str | None, node: str) -> tuple[str | None, str | None, dict]:
    """(key, secret, extra constructor arguments) from the credentials file or the environment."""
    if credentials_file:
        try:
            with open(os.path.expanduser(credentials_file)) as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DriverError(f"node '{node}': cannot read the libcloud credentials file {credentials_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}", backend=BACKEND) from None
        if not isinstance(data, dict):
            raise DriverError(f"node '{node}': the libcloud credentials file {credentials_file} must be a mapping",
                              backend=BACKEND)
        data = dict(data)
        return data.pop("key", None), data.pop("secret", None), data
    prefix = f"LIBCLOUD_{provider.upper()}_"
    key = os.environ.get(prefix + "KEY") or os.environ.get("LIBCLOUD_KEY")
    secret = os.environ.get(prefix + "SECRET") or os.environ.get("LIBCLOUD_SECRET")
    return key, secret, {}


def translate(exc: BaseException, node: str, doing: str) -> DriverError:
    text = " ".join(str(exc).split())[:400]
    retryable = any(word in text.lower() for word in ("throttl", "rate limit", "timed out", "temporar", "503"))
    return DriverError(f"node '{node}': libcloud failed to {doing}: {type(exc).__name__}: {text}",
                       retryable=retryable, backend=BACKEND)


def occopus_properties(props: dict) -> dict:
    """Properties as written by `strato import` from an Occopus azure_vm / cloudsigma resource, in this driver's terms.

    Occopus names the Azure image by publisher/offer/sku/version and the machine by vm_size; a
    CloudSigma resource names its region by endpoint and its image by libdrive_id.
    """
    props = dict(props)
    provider = str(props.get("provider") or "").lower()
    settings = dict(props.get("settings") or {})
    create_args = dict(props.get("create_args") or {})
    if provider == "azure_arm":
        if not props.get("image") and props.get("publisher"):
            props["image"] = ":".join(str(props.get(k, "latest")) for k in ("publisher", "offer", "sku", "version"))
        for occopus, ours in (("vm_size", "size"), ("location", "location")):
            if props.get(occopus) and not props.get(ours):
                props[ours] = props[occopus]
        for occopus, ours in (("tenant_id", "tenant_id"), ("subscription_id", "subscription_id")):
            if props.get(occopus):
                settings.setdefault(ours, props[occopus])
        for occopus, ours in (("resource_group", "ex_resource_group"), ("username", "ex_user_name"),
                              ("network", "ex_network"), ("subnet", "ex_subnet")):
            if props.get(occopus):
                create_args.setdefault(ours, props[occopus])
    elif provider in ("cloudsigma", "cloudsigma_us"):
        endpoint = str(props.get("endpoint") or "")
        match = re.match(r"https?://([a-z0-9]+)\.cloudsigma\.com", endpoint)
        if match:
            settings.setdefault("region", match.group(1))
        if props.get("libdrive_id") and not props.get("image"):
            props["image"] = props["libdrive_id"]
        desc = props.pop("description", None)
        if isinstance(desc, dict) and not props.get("size") and desc.get("cpu") and desc.get("mem"):
            # Occopus gives CPU in MHz and memory in bytes; Libcloud's CloudSigma 2.0 size: cores (2 GHz), MB, GB
            props["size"] = {"cpu": max(1, round(float(desc["cpu"]) / 2000)),
                             "ram": int(float(desc["mem"]) // (1024 * 1024)), "disk": int(desc.get("disk_gb") or 10)}
    for occopus in ("publisher", "offer", "sku", "version", "vm_size", "tenant_id", "subscription_id",
                    "resource_group", "username", "network", "subnet", "endpoint", "libdrive_id", "public_ip_needed"):
        props.pop(occopus, None)
    props["settings"], props["create_args"] = settings, create_args
    return props


def _tolerate_ec2_namespace(conn) -> None:
    """EC2-compatible endpoints (moto among them) answer in the namespace `.../doc/2016-11-15` without Libcloud's
    trailing slash, so Libcloud's namespaced lookups find nothing; normalise it before parsing."""
    from libcloud.compute.drivers.ec2 import NAMESPACE, EC2Response

    short = NAMESPACE.rstrip("/")

    class Response(EC2Response):
        def parse_body(self):
            if isinstance(self.body, str) and f'xmlns="{short}"' in self.body:
                self.body = self.body.replace(f'xmlns="{short}"', f'xmlns="{NAMESPACE}"')
            return super().parse_body()

    conn.connection.responseCls = Response


def _marker_path(infra_dir: str, key: str) -> str:
    return os.path.join(infra_dir, "libcloud", hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")


def _write_marker(spec: InstanceSpec, handle: dict) -> None:
    """The handle's non-secret part (provider, settings, credentials file path, name) beside the state."""
    path = handle["marker"] = _marker_path(spec.infra_dir, spec.key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(handle, fh)


def _read_marker(key: str) -> dict | None:
    name = os.path.basename(_marker_path(".", key))
    for path in glob.glob(os.path.join(strato_home(), "infrastructures", "*", "libcloud", name)):
        try:
            with open(path) as fh:
                handle = json.load(fh)
        except (OSError, ValueError):
            continue
        if handle.get("key") == key:
            return handle
    return None


class LibcloudDriver(Driver):
    name = BACKEND
    path_properties = ("credentials_file", "cloud_init")  # a one-line cloud_init names a file

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, Any] = {}

    def _conn(self, handle_like: dict, node: str):
        provider = str(handle_like["provider"]).lower()
        settings = dict(handle_like.get("settings") or {})
        check_settings(settings, node)
        key, secret, extra = credentials(provider, handle_like.get("credentials_file"), node)
        ident = repr((provider, sorted(settings.items(), key=str), handle_like.get("credentials_file"),
                      hashlib.sha256(f"{key}\0{secret}".encode()).hexdigest()))
        with self._lock:
            if ident in self._conns:
                return self._conns[ident]
        get_driver, Provider = _libcloud()
        const = getattr(Provider, provider.upper(), None)
        if const is None:
            raise DriverError(f"node '{node}': libcloud has no compute provider '{provider}'", backend=BACKEND)
        try:
            cls = get_driver(const)
            creds = {name: value for name, value in (("key", key), ("secret", secret)) if value is not None}
            conn = cls(**creds, **{**settings, **extra})  # by keyword: Azure's first arguments are its tenant ids
            if provider == "ec2" and settings.get("host"):
                _tolerate_ec2_namespace(conn)
        except Exception as exc:  # noqa: BLE001 - constructor errors (missing argument, bad region)
            raise translate(exc, node, f"set up the {provider} driver") from None
        with self._lock:
            self._conns[ident] = conn
        return conn

    @staticmethod
    def _base(spec: InstanceSpec) -> dict:
        props = spec.properties = occopus_properties(spec.properties)
        if not props.get("provider"):
            raise DriverError(f"node '{spec.node}': the libcloud driver needs `provider` (e.g. openstack, azure_arm, "
                              "gce, cloudsigma)", backend=BACKEND)
        cred_file = props.get("credentials_file")
        if cred_file and not os.path.isabs(os.path.expanduser(str(cred_file))):
            cred_file = os.path.join(spec.descriptor_dir, str(cred_file))
        return {"key": spec.key, "provider": str(props["provider"]).lower(),
                "settings": dict(props.get("settings") or {}), "credentials_file": cred_file,
                "name": node_name(spec.key)}

    @staticmethod
    def _pick(items: list, wanted: Any, kind: str, node: str):
        wanted = str(wanted)
        for item in items:
            if str(getattr(item, "id", "")) == wanted:
                return item
        for item in items:
            if str(getattr(item, "name", "")) == wanted:
                return item
        raise DriverError(f"node '{node}': the provider has no {kind} {wanted!r} ({len(items)} listed)",
                          backend=BACKEND)

    def _size(self, conn, wanted: Any, node: str):
        """A listed size by id or name, or {cpu, ram (MB), disk (GB)} for providers that take any shape."""
        if isinstance(wanted, dict):
            from libcloud.compute.base import NodeSize
            size = NodeSize(id="custom", name="custom", ram=int(wanted.get("ram") or 1024),
                            disk=int(wanted.get("disk") or 10), bandwidth=None, price=None, driver=conn)
            size.cpu = int(wanted.get("cpu") or 1)
            return size
        return self._pick(conn.list_sizes(), wanted, "size", node)

    def _image(self, conn, wanted: str, node: str):
        """By id first (one call; EC2 lists thousands of public images), else by name from the list."""
        try:
            image = conn.get_image(wanted)
            if image is not None:
                return image
        except Exception:  # noqa: BLE001 - not an id this provider knows: try names
            pass
        return self._pick(conn.list_images(), wanted, "image", node)

    def start(self, spec: InstanceSpec) -> dict:
        props = spec.properties
        handle = self._base(spec)
        conn = self._conn(handle, spec.node)
        existing = self.find(spec.key, spec)  # a create whose reply was lost: never two nodes for one key
        if existing is not None:
            return existing
        _write_marker(spec, handle)  # so a destroy that knows only the key can still find which cloud to ask
        if not props.get("size") or not props.get("image"):
            raise DriverError(f"node '{spec.node}': libcloud needs `size` and `image` (ids or names)", backend=BACKEND)
        try:
            size = self._size(conn, props["size"], spec.node)
            image = self._image(conn, str(props["image"]), spec.node)
            kwargs: dict[str, Any] = {"name": handle["name"], "size": size, "image": image}
            if props.get("location"):
                kwargs["location"] = self._pick(conn.list_locations(), props["location"], "location", spec.node)
            meta_arg = METADATA_ARG.get(handle["provider"])
            if meta_arg:
                kwargs[meta_arg] = {**{str(k): str(v) for k, v in (props.get("metadata") or {}).items()},
                                    META_KEY: spec.key}
            kwargs.update(dict(props.get("create_args") or {}))
            user_data = render_user_data(props, spec.metadata.get(DEPENDENCIES_META), handle["provider"], spec.node,
                                         spec.descriptor_dir)
            if user_data:
                kwargs["ex_userdata"] = user_data
            node = conn.create_node(**kwargs)
        except DriverError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, spec.node, f"create a {handle['provider']} node of size {props['size']!r}") from None
        handle["node_id"] = str(node.id)
        return handle

    def _get(self, handle: dict):
        conn = self._conn(handle, node_of_key(handle["key"]))
        try:
            nodes = conn.list_nodes()
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(handle["key"]), "list nodes") from None
        return next((n for n in nodes if str(n.id) == handle.get("node_id")), None)

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        timeout = min(float(spec.properties.get("wait_timeout") or 300), spec.timeout)
        deadline = time.monotonic() + timeout
        while True:
            node = self._get(handle)
            state = str(getattr(node, "state", "missing")).lower() if node is not None else "missing"
            if state == "running":
                return handle
            if state in ("error", "terminated", "stopped", "suspended"):
                raise DriverError(f"node '{spec.node}': {handle['provider']} node {handle['node_id']} is {state}",
                                  backend=BACKEND)
            if time.monotonic() >= deadline:
                raise DriverError(f"node '{spec.node}': {handle['provider']} node {handle['node_id']} not running "
                                  f"within {timeout:g} s (state {state})", retryable=True, backend=BACKEND)
            time.sleep(POLL_S)

    def observe(self, handle: dict) -> Observed:
        node = self._get(handle)
        if node is None:
            return Observed(ObservedStatus.MISSING, {"node_id": handle.get("node_id")}, "node not found")
        state = str(node.state).lower()
        attrs = {"node_id": str(node.id), "name": node.name, "state": state, "provider": handle["provider"],
                 "private_address": (node.private_ips or [None])[0], "public_address": (node.public_ips or [None])[0],
                 "backend": BACKEND}
        if state in RUNNING_STATES:
            return Observed(ObservedStatus.RUNNING, attrs)
        return Observed(ObservedStatus.MISSING if state == "terminated" else "failed", attrs, f"node is {state}")

    def find(self, key: str, spec: InstanceSpec | None = None) -> dict | None:
        if spec is not None and spec.properties.get("provider"):
            handle = self._base(spec)
        else:  # only the key is known (a destroy): the marker written before create_node names the cloud
            handle = _read_marker(key)
            if handle is None:
                return None
        conn = self._conn(handle, node_of_key(key))
        try:
            nodes = conn.list_nodes()
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(key), "list nodes") from None
        for node in nodes:
            extra = node.extra or {}
            meta = extra.get("metadata") or extra.get("tags") or {}
            tagged = isinstance(meta, dict) and meta.get(META_KEY) == key
            if (tagged or node.name == handle["name"]) and str(node.state).lower() != "terminated":
                return {**handle, "node_id": str(node.id), "adopted": True}
        return None

    def delete(self, handle: dict) -> None:
        if handle.get("node_id"):
            self._destroy(handle)
        if handle.get("marker") and os.path.exists(handle["marker"]):
            os.unlink(handle["marker"])

    def _destroy(self, handle: dict) -> None:
        node = self._get(handle)
        if node is None or str(node.state).lower() == "terminated":
            return
        conn = self._conn(handle, node_of_key(handle["key"]))
        try:
            conn.destroy_node(node)
        except Exception as exc:  # noqa: BLE001
            if self._get(handle) is None:
                return
            raise translate(exc, node_of_key(handle["key"]), f"destroy node {handle['node_id']}") from None
