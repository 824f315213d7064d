"""The `docker` driver: one container per Strato instance on a Docker Engine or Podman's Docker-compatible API.

The engine comes from the node's `docker_host` or the environment (DOCKER_HOST, as the docker CLI
reads it). The image is an existing one (`image`) or built from a context directory of the
descriptor's tree (`build: {context, dockerfile, args}`) once per node by prepare_node, and removed
by release_node. A container's name is a pure function of the instance key and its labels carry
the key, so a retried create meets the container it already made and `find` adopts by label.
Ports are published on 127.0.0.1 unless `publish_address` says otherwise. Health is the first
published port answering (HTTP path or TCP), else the image's own HEALTHCHECK, else "still
running a moment later". `update` keeps a container that already runs as asked, changes CPU,
memory and restart policy in place where the engine can (Docker; Podman 4's compatible API
cannot, so there it recreates), and recreates the container when anything else changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from typing import Any

from descriptors.values import duration_seconds
from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import http_ok, node_of_key, optional_module, poll, read_attributes, tcp_ok

BACKEND = "docker"
LABEL_KEY, LABEL_INFRA, LABEL_NODE, LABEL_RUN = "strato.key", "strato.infra", "strato.node", "strato.run"
LOOPBACK = "127.0.0.1"
POLL_S = 0.05
WORK_MOUNT = "/strato"   # the instance's work directory inside the container (attributes file)
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
# Settings `update` can change on a running container; anything else means a new container.
LIVE_SETTINGS = ("cpus", "memory", "restart")


def container_name(key: str) -> str:
    """A container name the engine accepts, a pure function of the instance key."""
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", key).strip("-.")[:40]
    return f"strato-{base}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _docker():
    return optional_module("docker", "the docker driver needs the docker SDK", "containers", BACKEND)


def translate(exc: BaseException, node: str, doing: str) -> DriverError:
    """A DriverError naming node, engine and cause; retryable when the engine is unreachable or busy."""
    docker = _docker()
    if isinstance(exc, docker.errors.APIError):
        code = exc.status_code or 0
        detail = (exc.explanation or str(exc)).strip()
        return DriverError(f"node '{node}': docker refused to {doing}: HTTP {code}: {detail}",
                           retryable=code in (429, 503, 504), backend=BACKEND)
    if isinstance(exc, docker.errors.BuildError):
        tail = " | ".join(str(line.get("stream") or line.get("error") or "").strip()
                          for line in list(exc.build_log)[-3:] if isinstance(line, dict))
        return DriverError(f"node '{node}': docker could not {doing}: {exc.msg} {tail}".rstrip(), backend=BACKEND)
    if isinstance(exc, (docker.errors.DockerException, OSError)):
        return DriverError(f"node '{node}': docker engine unreachable while trying to {doing}: {exc}",
                           retryable=True, backend=BACKEND)
    return DriverError(f"node '{node}': docker failed to {doing}: {type(exc).__name__}: {exc}", backend=BACKEND)


def _memory_bytes(value: Any, node: str) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(value).lower())
    if not match:
        raise DriverError(f"node '{node}': memory must be bytes or like 512m / 2g, got {value!r}", backend=BACKEND)
    return int(float(match[1]) * 1024 ** " kmgt".index(match[2] or " "))


def _ports(spec: InstanceSpec) -> dict[str, Any]:
    """{"8080/tcp": (address, host_port or None)}: container ports published on the chosen address."""
    address = str(spec.properties.get("publish_address") or LOOPBACK)
    out: dict[str, Any] = {}
    for item in spec.properties.get("ports") or []:
        if isinstance(item, (int, str)):
            item = {"container": item}
        if not isinstance(item, dict) or "container" not in item:
            raise DriverError(f"node '{spec.node}': ports entries must be numbers like 8080, '53/udp' or "
                              f"{{container, host, address}}, got {item!r}", backend=BACKEND)
        port = str(item["container"])
        if "/" not in port:
            port += "/tcp"
        host = item.get("host")
        out[port] = (str(item.get("address") or address), int(host) if host else None)
    return out


def _volumes(spec: InstanceSpec) -> dict[str, dict]:
    out = {}
    for item in spec.properties.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            item = {"source": parts[0], "target": parts[1] if len(parts) > 1 else parts[0],
                    "mode": parts[2] if len(parts) > 2 else "rw"}
        if not isinstance(item, dict) or not item.get("source") or not item.get("target"):
            raise DriverError(f"node '{spec.node}': volumes entries must be 'SOURCE:TARGET[:ro]' or "
                              f"{{source, target, mode}}, got {item!r}", backend=BACKEND)
        source = str(item["source"])
        if source.startswith((".", "/")):  # a host path (relative to the descriptor); else a named volume
            source = os.path.normpath(os.path.join(spec.descriptor_dir, source))
        out[source] = {"bind": str(item["target"]), "mode": str(item.get("mode") or "rw")}
    return out


def device_requests(gpus: Any, node: str) -> list:
    """GPU device requests as `docker run --gpus` forms them: a count, "all", or a list of device ids."""
    if gpus in (None, 0, False):
        return []
    docker = _docker()
    if gpus == "all" or gpus is True:
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int) and gpus > 0:
        return [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    if isinstance(gpus, list) and gpus:
        return [docker.types.DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]
    raise DriverError(f"node '{node}': gpus must be a count, 'all' or a list of device ids, got {gpus!r}",
                      backend=BACKEND)


def _live_settings(props: dict, node: str) -> dict[str, Any]:
    """Keyword arguments for the settings a running container can change (create and update alike)."""
    out: dict[str, Any] = {}
    if props.get("cpus"):
        out["cpu_period"] = 100_000
        out["cpu_quota"] = int(float(props["cpus"]) * 100_000)
    if props.get("memory"):
        out["mem_limit"] = _memory_bytes(props["memory"], node)
    restart = props.get("restart")
    if restart:
        name, _, retries = str(restart).partition(":")
        if name not in RESTART_POLICIES:
            raise DriverError(f"node '{node}': restart must be one of {', '.join(RESTART_POLICIES)} "
                              f"(on-failure:N for a limit), got {restart!r}", backend=BACKEND)
        out["restart_policy"] = {"Name": name, **({"MaximumRetryCount": int(retries)} if retries else {})}
    return out


def _fingerprint(props: dict, image: str, exclude: tuple = ()) -> str:
    """A digest of what a container runs with (the image and the run settings), minus `exclude`."""
    relevant = {k: props.get(k) for k in ("command", "entrypoint", "env", "ports", "publish_address", "volumes",
                                          "gpus", "network", "user", "working_dir", *LIVE_SETTINGS)
                if k not in exclude}
    relevant["image"] = image
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DockerDriver(Driver):
    name = BACKEND
    # The engine (DOCKER_HOST) is this machine's: a container can mount its files and share its network.
    runs_on_server_host = "starts a container on this machine's container engine"

    @classmethod
    def server_paths(cls, properties: dict[str, Any]) -> list[tuple[str, Any]]:
        """The build context and every bind-mounted host directory (named volumes are not paths)."""
        build = properties.get("build")
        found = [("build.context", (build.get("context") or ".") if isinstance(build, dict) else build)] \
            if build else []
        for i, item in enumerate(properties.get("volumes") or []):
            source = item.split(":")[0] if isinstance(item, str) else (item or {}).get("source") \
                if isinstance(item, dict) else None
            if isinstance(source, str) and source.startswith((".", "/", "~")):
                found.append((f"volumes[{i}]", source))
        return found

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._builds: dict[str, threading.Lock] = {}

    # -- the engine ---------------------------------------------------------------
    @staticmethod
    def engine_of(props: dict) -> str | None:
        return props.get("docker_host") or os.environ.get("DOCKER_HOST") or None

    def client(self, engine: str | None, node: str = "?"):
        docker = _docker()
        ident = engine or ""
        with self._lock:
            if ident not in self._clients:
                try:
                    # A pool as large as the engine's parallelism, so parallel creates do not queue.
                    if engine:
                        self._clients[ident] = docker.DockerClient(base_url=engine, timeout=120, max_pool_size=64)
                    else:
                        self._clients[ident] = docker.from_env(timeout=120, max_pool_size=64)
                except Exception as exc:  # noqa: BLE001
                    raise translate(exc, node, "connect to the engine (DOCKER_HOST or the node's docker_host)") \
                        from None
            return self._clients[ident]

    # -- node level: the image built from the descriptor's tree ----------------------
    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        if spec.node_attributes or not spec.properties.get("build"):
            return dict(spec.node_attributes)
        engine = self.engine_of(spec.properties)
        image = self._build(spec, engine)
        return {"image": image, "built": True, "docker_host": engine}

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        if not node_attributes.get("built"):
            return
        docker = _docker()
        try:
            self.client(node_attributes.get("docker_host")).images.remove(node_attributes["image"])
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # still used by a container that is not ours: leave it
                raise translate(exc, "?", f"remove image {node_attributes['image']}") from None

    def _build(self, spec: InstanceSpec, engine: str | None) -> str:
        build = spec.properties["build"]
        if isinstance(build, str):
            build = {"context": build}
        context = os.path.normpath(os.path.join(spec.descriptor_dir, str(build.get("context") or ".")))
        if not os.path.isdir(context):
            raise DriverError(f"node '{spec.node}': docker build context {context} is not a directory",
                              backend=BACKEND)
        dockerfile = str(build.get("dockerfile") or "Dockerfile")
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(context):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, context).encode())
                with open(path, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
        digest.update(json.dumps([dockerfile, build.get("args")], sort_keys=True, default=str).encode())
        repo = re.sub(r"[^a-z0-9_.-]+", "-", f"strato-{spec.infra}-{spec.node}".lower()).strip("-.")
        tag = f"{repo}:{digest.hexdigest()[:12]}"
        with self._lock:
            lock = self._builds.setdefault(tag, threading.Lock())
        with lock:  # instances of one node built in parallel ask for the same image once
            client = self.client(engine, spec.node)
            docker = _docker()
            try:
                client.images.get(tag)
                return tag
            except docker.errors.ImageNotFound:
                pass
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, f"look up image {tag}") from None
            try:
                client.images.build(path=context, dockerfile=dockerfile, tag=tag, rm=True,
                                    buildargs={str(k): str(v) for k, v in (build.get("args") or {}).items()},
                                    labels={LABEL_INFRA: spec.infra, LABEL_NODE: spec.node})
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, f"build {context}") from None
        return tag

    def _image(self, spec: InstanceSpec, engine: str | None) -> str:
        if spec.node_attributes.get("image"):
            return str(spec.node_attributes["image"])
        if spec.properties.get("build"):
            return self._build(spec, engine)  # no prepare_node (a direct driver call): build now
        if not spec.properties.get("image"):
            raise DriverError(f"node '{spec.node}': docker needs `image` or `build: {{context: DIR}}`",
                              backend=BACKEND)
        return str(spec.properties["image"])

    # -- instances --------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> dict:
        props, key = spec.properties, spec.key
        engine = self.engine_of(props)
        client = self.client(engine, spec.node)
        image = self._image(spec, engine)
        docker = _docker()
        one_shot = bool(spec.metadata.get("strato.one_shot"))
        work_dir = os.path.join(spec.infra_dir, "instances", f"{spec.node}.{spec.index}")
        os.makedirs(work_dir, exist_ok=True)
        attrs_file = os.path.join(work_dir, "attributes.json")
        if os.path.exists(attrs_file):
            os.unlink(attrs_file)
        env = {str(k): str(v) for k, v in (props.get("env") or {}).items()}
        env.update({"STRATO_INSTANCE_KEY": key, "STRATO_INSTANCE_INDEX": str(spec.index),
                    "STRATO_ATTRIBUTES_FILE": f"{WORK_MOUNT}/attributes.json"})
        volumes = _volumes(spec)
        volumes[os.path.abspath(work_dir)] = {"bind": WORK_MOUNT, "mode": "rw"}
        labels = {LABEL_KEY: key, LABEL_INFRA: spec.infra, LABEL_NODE: spec.node,
                  LABEL_RUN: _fingerprint(props, image), LABEL_RUN + ".fixed": _fingerprint(props, image, LIVE_SETTINGS),
                  **{str(k): str(v) for k, v in (props.get("labels") or {}).items()}}
        kwargs: dict[str, Any] = {
            "image": image, "name": container_name(key), "detach": True, "labels": labels, "environment": env,
            "volumes": volumes, **_live_settings(props, spec.node),
        }
        if props.get("network"):
            kwargs["network_mode"] = str(props["network"])
        if kwargs.get("network_mode") != "host":
            kwargs["ports"] = _ports(spec)
        if props.get("command"):
            kwargs["command"] = props["command"]
        if props.get("entrypoint"):
            kwargs["entrypoint"] = props["entrypoint"]
        for opt in ("user", "working_dir"):
            if props.get(opt):
                kwargs[opt] = str(props[opt])
        requests = device_requests(props.get("gpus"), spec.node)
        if requests:
            kwargs["device_requests"] = requests
        try:
            container = client.containers.run(**kwargs)
        except docker.errors.ImageNotFound:
            raise DriverError(f"node '{spec.node}': docker has no image {image!r} (build it, or use `build:`)",
                              backend=BACKEND) from None
        except docker.errors.APIError as exc:
            if exc.status_code == 404 and "image" in str(exc.explanation or "").lower():
                raise DriverError(f"node '{spec.node}': docker has no image {image!r} (build it, or use `build:`)",
                                  backend=BACKEND) from None
            if exc.status_code != 409:
                raise translate(exc, spec.node, f"run a container of {image}") from None
            # The name is taken: a retried create whose first reply was lost. Use what it made.
            found = self.find(key, spec)
            if found is None:
                raise translate(exc, spec.node, f"run a container of {image}") from None
            return found
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, spec.node, f"run a container of {image}") from None
        return {"container_id": container.id, "name": container.name, "key": key, "docker_host": engine,
                "image": image, "one_shot": one_shot, "attributes_file": attrs_file,
                "run": labels[LABEL_RUN]}

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        props = spec.properties
        timeout = min(float(props.get("start_timeout") or 120), spec.timeout)
        client = self.client(handle.get("docker_host"), spec.node)
        container = self._container(client, handle, spec.node)
        if container is None:
            raise DriverError(f"node '{spec.node}': container {handle['name']} vanished while starting",
                              backend=BACKEND)
        check = dict(props.get("health_check") or {})
        timeout = duration_seconds(check.get("timeout"), timeout)
        settle_until = time.monotonic() + 0.2
        state: dict = {}

        def ready() -> dict | None:
            container.reload()
            info = container.attrs.get("State", {})
            state["status"] = info.get("Status")
            if handle["one_shot"]:
                if info.get("Status") in ("exited", "dead"):
                    code = info.get("ExitCode")
                    if code != 0:
                        raise DriverError(f"node '{spec.node}': one-shot container exited with code {code}: "
                                          f"{_logs_tail(container)}", backend=BACKEND)
                    return {**handle, "completed": True, "exit_code": 0, "result": read_attributes(handle.get("attributes_file"), BACKEND)}
                return None
            if info.get("Status") in ("exited", "dead"):
                raise DriverError(f"node '{spec.node}': container exited with code {info.get('ExitCode')} while "
                                  f"starting: {_logs_tail(container)}", backend=BACKEND)
            if info.get("Status") != "running":
                return None
            endpoint = _published(container)
            if check.get("http") and endpoint:
                return handle if http_ok(f"http://{endpoint[0]}:{endpoint[1]}{check['http']}") else None
            if endpoint and check.get("tcp", True):
                return handle if tcp_ok(*endpoint) else None
            health = (info.get("Health") or info.get("Healthcheck") or {}).get("Status")
            if health:
                if health == "unhealthy":
                    raise DriverError(f"node '{spec.node}': container reports unhealthy: {_logs_tail(container)}",
                                      backend=BACKEND)
                return handle if health == "healthy" else None
            return handle if time.monotonic() >= settle_until else None

        def too_slow() -> DriverError:
            return DriverError(f"node '{spec.node}': container {handle['name']} not ready within {timeout:g} s "
                               f"(status {state.get('status')}): {_logs_tail(container)}", retryable=True,
                               backend=BACKEND)

        try:
            return poll(ready, timeout, POLL_S, too_slow)
        except DriverError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, spec.node, f"read container {handle['name']}") from None

    @staticmethod
    def _container(client, handle: dict, node: str):
        docker = _docker()
        try:
            return client.containers.get(handle.get("container_id") or handle["name"])
        except docker.errors.NotFound:
            return None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, f"read container {handle.get('name')}") from None

    def observe(self, handle: dict) -> Observed:
        node = node_of_key(handle.get("key", "?"))
        container = self._container(self.client(handle.get("docker_host"), node), handle, node)
        if container is None:
            return Observed(ObservedStatus.MISSING, {"container_id": handle.get("container_id")}, "container not found")
        info = container.attrs.get("State", {})
        ports = {port: int(binds[0]["HostPort"]) for port, binds in
                 (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).items() if binds}
        attrs: dict[str, Any] = {"container_id": container.id, "name": container.name, "image": handle.get("image"),
                                 "status": info.get("Status"), "ports": ports, "host": LOOPBACK,
                                 "backend": BACKEND}
        endpoint = _published(container)
        if endpoint:
            attrs.update({"host": endpoint[0], "port": endpoint[1], "url": f"http://{endpoint[0]}:{endpoint[1]}"})
        if handle.get("one_shot") and handle.get("completed"):
            attrs.update(handle.get("result") or {})
            return Observed(ObservedStatus.COMPLETED, attrs)
        if info.get("Status") in ("running", "created", "restarting"):
            health = (info.get("Health") or {}).get("Status")
            if health == "unhealthy":
                return Observed(ObservedStatus.FAILED, attrs, "container reports unhealthy")
            return Observed(ObservedStatus.RUNNING, attrs)
        if handle.get("one_shot") and info.get("ExitCode") == 0:
            return Observed(ObservedStatus.COMPLETED, attrs)
        return Observed(ObservedStatus.FAILED, attrs,
                        f"container {info.get('Status')} (exit code {info.get('ExitCode')})")

    def delete(self, handle: dict) -> None:
        node = node_of_key(handle.get("key", "?"))
        client = self.client(handle.get("docker_host"), node)
        docker = _docker()
        targets = [handle.get("container_id") or handle.get("name")]
        try:  # anything else labelled with the key (a duplicate from a lost reply) goes too
            targets += [c.id for c in client.containers.list(all=True, filters={"label": f"{LABEL_KEY}={handle['key']}"})
                        if c.id != handle.get("container_id")]
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, "list containers by label") from None
        for target in targets:
            try:
                client.api.remove_container(target, force=True, v=False)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "in progress" in str(exc.explanation or ""):
                    continue  # another delete of the same container is under way
                raise translate(exc, node, f"remove container {target}") from None
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, node, f"remove container {target}") from None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        props = spec.properties if spec else {}
        engine = self.engine_of(props)
        client = self.client(engine, node_of_key(key))
        try:
            found = client.containers.list(all=True, filters={"label": f"{LABEL_KEY}={key}"})
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(key), "list containers by label") from None
        if not found:
            return None
        container = found[0]
        labels = container.labels or {}
        one_shot = bool(spec and spec.metadata.get("strato.one_shot"))
        work_dir = os.path.join(spec.infra_dir, "instances", f"{spec.node}.{spec.index}") if spec else ""
        return {"container_id": container.id, "name": container.name, "key": key, "docker_host": engine,
                "image": (container.attrs.get("Config") or {}).get("Image"), "one_shot": one_shot,
                "attributes_file": os.path.join(work_dir, "attributes.json") if work_dir else None,
                "run": labels.get(LABEL_RUN), "adopted": True}

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """Nothing when the container already runs as asked; CPU/memory/restart changed in place; else recreate."""
        if handle.get("one_shot"):
            return None
        props = spec.properties
        engine = self.engine_of(props)
        if engine != handle.get("docker_host"):
            return None  # another engine: a new container there, the old one removed
        image = self._image(spec, engine)
        if _fingerprint(props, image) == handle.get("run"):
            return handle
        client = self.client(engine, spec.node)
        container = self._container(client, handle, spec.node)
        labels = (container.labels or {}) if container is not None else {}
        if container is not None and labels.get(LABEL_RUN + ".fixed") == _fingerprint(props, image, LIVE_SETTINGS):
            docker = _docker()
            try:
                container.update(**_live_settings(props, spec.node))
                return {**handle, "run": _fingerprint(props, image)}
            except docker.errors.APIError as exc:
                # Podman 4's Docker-compatible API has no container update endpoint (404): recreate.
                if exc.status_code != 404:
                    raise translate(exc, spec.node, f"update container {handle['name']}") from None
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, f"update container {handle['name']}") from None
        self.delete(handle)
        return self.create(spec)


def _published(container) -> tuple[str, int] | None:
    """(address, port) of the container's first published port, as a client on this machine reaches it."""
    for _port, binds in sorted((container.attrs.get("NetworkSettings", {}).get("Ports") or {}).items()):
        if binds:
            address = binds[0].get("HostIp") or LOOPBACK
            return (LOOPBACK if address in ("0.0.0.0", "", "::") else address), int(binds[0]["HostPort"])
    return None


def _logs_tail(container, lines: int = 5) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except Exception:  # noqa: BLE001 - logs are a courtesy in an error message
        return ""
    return " | ".join(ln for ln in text.splitlines() if ln.strip())
