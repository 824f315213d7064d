"""The `kubernetes` driver: a long-running node is ONE Deployment (+ Service, + ConfigMap) whose replicas are its instances;
a one-shot node's instance is a Job.

Instance identity. Strato's contract is per instance (create/observe/delete one key), Kubernetes
scales a Deployment as a whole and its pods are interchangeable. The driver maps one onto the
other with replica slots: the Deployment's annotation `strato.io/slots` maps each instance index
to its instance key, and `replicas` is always the number of slots. Creating instance i adds slot
i (creating the Deployment, Service and ConfigMap with the first one); deleting it removes the
slot and patches `replicas` down (the last slot deletes the Deployment and its Service and
ConfigMap, with foreground propagation so the pods go first). So scaling 2 -> 4 patches
`replicas` in place on the one Deployment, and which pod Kubernetes removes on a scale-down is
Kubernetes' choice, as with any Deployment. Instance i is ready once at least rank(i)+1
replicas are ready (rank: its position among the slots), and its `pod` attribute is the
rank(i)-th ready pod by name, when the cluster lists pods.

Labels carry the key: label values cannot hold '/' or '@', so the labels carry a digest of the
node key (`strato.io/node`) or instance key (`strato.io/instance`, Jobs) and annotations carry
the keys themselves; `find` lists by label and checks the annotation.

Cluster: the node's `kubeconfig` (relative to the descriptor) and `context`, else KUBECONFIG /
~/.kube/config, else the in-cluster service account. Namespace: the node's `namespace`, else the
context's, else default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from typing import Any

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import CANARY_SUFFIX, InstanceKey, node_of_key, optional_module, poll

BACKEND = "kubernetes"
LABEL_NODE, LABEL_INSTANCE, LABEL_MANAGED = "strato.io/node", "strato.io/instance", "app.kubernetes.io/managed-by"
LABEL_SERVICE = "strato.io/service"   # the Service that selects a pod: its node's, or for a canary its stable node's
ANN_NODE_KEY, ANN_KEY, ANN_SLOTS, ANN_TEMPLATE = ("strato.io/node-key", "strato.io/key", "strato.io/slots",
                                                  "strato.io/template")
POLL_S = 0.2
RETRYABLE_STATUS = {409, 429, 500, 503, 504}


def digest(text: str, size: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def dns_name(text: str, suffix_from: str, limit: int = 63) -> str:
    """A DNS-1123 label from text, made unique by a digest of suffix_from."""
    base = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[: limit - 11].strip("-") or "strato"
    return f"{base}-{digest(suffix_from, 10)}"


def _client():
    return optional_module("kubernetes", "the kubernetes driver needs the official client", "kubernetes", BACKEND)


def translate(exc: BaseException, node: str, doing: str) -> DriverError:
    k8s = _client()
    if isinstance(exc, k8s.client.ApiException):
        detail = exc.reason or ""
        try:
            detail = json.loads(exc.body or "{}").get("message") or detail
        except (ValueError, AttributeError):
            pass
        return DriverError(f"node '{node}': kubernetes refused to {doing}: HTTP {exc.status}: {detail}",
                           retryable=exc.status in RETRYABLE_STATUS, backend=BACKEND)
    if isinstance(exc, (OSError, k8s.config.ConfigException)) or "urllib3" in type(exc).__module__:
        return DriverError(f"node '{node}': kubernetes API unreachable while trying to {doing}: {exc}",
                           retryable=not isinstance(exc, k8s.config.ConfigException), backend=BACKEND)
    return DriverError(f"node '{node}': kubernetes failed to {doing}: {type(exc).__name__}: {exc}", backend=BACKEND)


def _missing(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404


def cluster_settings(props: dict, descriptor_dir: str | None = None) -> dict[str, Any]:
    """Where the cluster is, JSON-serialisable so handles carry it to later processes."""
    out: dict[str, Any] = {}
    kubeconfig = props.get("kubeconfig")
    if kubeconfig and descriptor_dir:  # the node's own file: relative to its descriptor, like every path property
        kubeconfig = os.path.join(descriptor_dir, os.path.expanduser(str(kubeconfig)))
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        out["kubeconfig"] = str(kubeconfig)
    if props.get("context"):
        out["context"] = str(props["context"])
    return out


def resources_of(props: dict) -> dict[str, dict]:
    """Container requests/limits: `resources: {requests, limits}` plus the shorthands cpus, memory and gpus."""
    given = props.get("resources") or {}
    requests = {str(k): str(v) for k, v in (given.get("requests") or {}).items()}
    limits = {str(k): str(v) for k, v in (given.get("limits") or {}).items()}
    if props.get("cpus"):
        requests.setdefault("cpu", str(props["cpus"]))
        limits.setdefault("cpu", str(props["cpus"]))
    if props.get("memory"):
        memory = str(props["memory"])
        memory = re.sub(r"^(\d+)([kmgt])b?$", lambda m: m[1] + m[2].upper() + "i", memory.lower())
        requests.setdefault("memory", memory)
        limits.setdefault("memory", memory)
    if props.get("gpus"):
        # Extended resources are set as limits (requests default to them); the device plugin's name.
        limits.setdefault(str(props.get("gpu_resource") or "nvidia.com/gpu"), str(int(props["gpus"])))
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _config_key(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.strip("/")) or "config"


def pod_spec(spec: InstanceSpec, name: str, restart: str) -> dict:
    props = spec.properties
    if not props.get("image"):
        raise DriverError(f"node '{spec.node}': kubernetes needs `image` (a container image the cluster can pull)",
                          backend=BACKEND)
    container: dict[str, Any] = {"name": re.sub(r"[^a-z0-9-]+", "-", spec.node.lower()).strip("-")[:63] or "main",
                                 "image": str(props["image"])}
    if props.get("command"):
        command = props["command"]
        container["command"] = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(c) for c in command]
    if props.get("args"):
        container["args"] = [str(a) for a in props["args"]]
    env = {str(k): str(v) for k, v in (props.get("env") or {}).items()}
    container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    ports = [p if isinstance(p, dict) else {"container": p} for p in props.get("ports") or []]
    if ports:
        container["ports"] = [{"containerPort": int(p["container"]), "protocol": str(p.get("protocol", "TCP")).upper()}
                              for p in ports]
    resources = resources_of(props)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"containers": [container], "restartPolicy": restart}
    files = props.get("config_files") or {}
    if files:
        container["volumeMounts"] = [{"name": "strato-config", "mountPath": str(path),
                                      "subPath": _config_key(str(path)), "readOnly": True} for path in sorted(files)]
        pod["volumes"] = [{"name": "strato-config", "configMap": {"name": name}}]
    health = props.get("health_check") or {}
    if health.get("http") and ports:
        container["readinessProbe"] = {"httpGet": {"path": str(health["http"]), "port": int(ports[0]["container"])},
                                       "periodSeconds": 2}
    elif ports and health.get("tcp", True):
        container["readinessProbe"] = {"tcpSocket": {"port": int(ports[0]["container"])}, "periodSeconds": 2}
    return pod


class KubernetesDriver(Driver):
    name = BACKEND
    path_properties = ("kubeconfig",)

    @classmethod
    def host_code(cls, properties: dict, deleting: bool = False) -> str:
        # A kubeconfig's credential plugins (users[].user.exec) run a command here whenever the cluster is called.
        return "reads the kubeconfig it names, whose credential plugins run commands on this machine" \
            if properties.get("kubeconfig") else ""

    def __init__(self) -> None:
        self._apis: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = {}

    # -- cluster access -----------------------------------------------------------
    def api(self, settings: dict[str, Any], node: str = "?"):
        k8s = _client()
        ident = json.dumps(settings, sort_keys=True)
        with self._lock:
            if ident not in self._apis:
                try:
                    if settings.get("kubeconfig") or os.path.exists(os.path.expanduser("~/.kube/config")):
                        api = k8s.config.new_client_from_config(config_file=settings.get("kubeconfig"),
                                                                context=settings.get("context"))
                    else:
                        k8s.config.load_incluster_config()
                        api = k8s.client.ApiClient()
                except Exception as exc:  # noqa: BLE001
                    raise translate(exc, node, "load the cluster configuration (kubeconfig/context)") from None
                self._apis[ident] = api
            return self._apis[ident]

    def namespace(self, props: dict, settings: dict) -> str:
        if props.get("namespace"):
            return str(props["namespace"])
        try:
            _contexts, active = _client().config.list_kube_config_contexts(config_file=settings.get("kubeconfig"))
            if settings.get("context"):
                active = next(c for c in _contexts if c["name"] == settings["context"])
            return (active or {}).get("context", {}).get("namespace") or "default"
        except Exception:  # noqa: BLE001 - no kubeconfig (in-cluster): the default namespace
            return "default"

    def _apps(self, settings, node):
        return _client().client.AppsV1Api(self.api(settings, node))

    def _core(self, settings, node):
        return _client().client.CoreV1Api(self.api(settings, node))

    def _batch(self, settings, node):
        return _client().client.BatchV1Api(self.api(settings, node))

    def _node_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(name, threading.Lock())

    # -- creating -------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> dict:
        settings = cluster_settings(spec.properties, spec.descriptor_dir)
        handle = {"key": spec.key, "settings": settings, "namespace": self.namespace(spec.properties, settings),
                  "slot": spec.index}
        if spec.metadata.get("strato.one_shot"):
            return self._start_job(spec, handle)
        return self._add_slot(spec, handle)

    def _names(self, spec: InstanceSpec) -> tuple[str, str]:
        parsed = InstanceKey.parse(spec.key)
        node_key = parsed.node_key if parsed else f"{spec.infra}/{spec.node}"
        return dns_name(f"{spec.infra}-{spec.node}", node_key), node_key

    def _objects(self, spec: InstanceSpec, name: str, ns: str, node_key: str, slots: dict[str, str]) -> dict[str, dict]:
        labels = {LABEL_NODE: digest(node_key), LABEL_MANAGED: "strato"}
        # a rollout's canary (`web~canary`) runs beside `web` behind web's one Service, which selects both nodes'
        # pods: the traffic splits by their replica counts
        canary = spec.node.endswith(CANARY_SUFFIX)
        served = node_key.replace(f"/{spec.node}@", f"/{spec.node.removesuffix(CANARY_SUFFIX)}@", 1)
        pod_labels = {**labels, LABEL_SERVICE: digest(served)}
        template = pod_spec(spec, name, "Always")
        template_hash = digest(json.dumps(template, sort_keys=True))
        meta = {"name": name, "namespace": ns, "labels": labels,
                "annotations": {ANN_NODE_KEY: node_key, ANN_SLOTS: json.dumps(slots, sort_keys=True),
                                ANN_TEMPLATE: template_hash}}
        out = {"deployment": {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": len(slots), "selector": {"matchLabels": {LABEL_NODE: labels[LABEL_NODE]}},
                     "template": {"metadata": {"labels": pod_labels}, "spec": template}}}}
        ports = [p if isinstance(p, dict) else {"container": p} for p in spec.properties.get("ports") or []]
        if ports and not canary:
            out["service"] = {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels,
                                                                   "annotations": {ANN_NODE_KEY: node_key}},
                "spec": {"type": str(spec.properties.get("service_type") or "ClusterIP"),
                         "selector": {LABEL_SERVICE: pod_labels[LABEL_SERVICE]},
                         "ports": [{"name": f"p{int(p['container'])}", "port": int(p.get("service", p["container"])),
                                    "targetPort": int(p["container"])} for p in ports]}}
        files = spec.properties.get("config_files") or {}
        if files:
            out["config_map"] = {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": name, "namespace": ns, "labels": labels,
                                              "annotations": {ANN_NODE_KEY: node_key}},
                                 "data": {_config_key(str(p)): str(v) for p, v in files.items()}}
        return out

    def _read_deployment(self, apps, name: str, namespace: str, node: str):
        try:
            return apps.read_namespaced_deployment(name, namespace)
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return None
            raise translate(exc, node, f"read deployment {namespace}/{name}") from None

    def _add_slot(self, spec: InstanceSpec, handle: dict) -> dict:
        name, node_key = self._names(spec)
        ns, settings = handle["namespace"], handle["settings"]
        apps, core = self._apps(settings, spec.node), self._core(settings, spec.node)
        handle.update({"deployment": name, "node_key": node_key})
        with self._node_lock(f"{ns}/{name}"):
            current = self._read_deployment(apps, name, ns, spec.node)
            if current is None:
                objects = self._objects(spec, name, ns, node_key, {str(spec.index): spec.key})
                for kind, create in (("config_map", core.create_namespaced_config_map),
                                     ("service", core.create_namespaced_service),
                                     ("deployment", apps.create_namespaced_deployment)):
                    if kind not in objects:
                        continue
                    try:
                        create(ns, objects[kind])
                    except Exception as exc:  # noqa: BLE001
                        if getattr(exc, "status", None) == 409 and kind != "deployment":
                            continue  # left by an earlier attempt: the same name, the same node
                        if getattr(exc, "status", None) == 409:
                            current = self._read_deployment(apps, name, ns, spec.node)
                            break
                        raise translate(exc, spec.node, f"create {kind.replace('_', ' ')} {ns}/{name}") from None
                handle["service"] = name if "service" in objects else None
                if current is None:
                    return handle
            slots = self._slots(current)
            slots[str(spec.index)] = spec.key
            objects = self._objects(spec, name, ns, node_key, slots)
            self._patch_deployment(apps, current, objects["deployment"], ns, spec.node)
            handle["service"] = name if "service" in objects else None
        return handle

    @staticmethod
    def _slots(deployment) -> dict[str, str]:
        raw = ((deployment.metadata.annotations or {}) if deployment is not None else {}).get(ANN_SLOTS) or "{}"
        try:
            slots = json.loads(raw)
        except ValueError:
            slots = {}
        return {str(k): str(v) for k, v in slots.items()} if isinstance(slots, dict) else {}

    def _patch_deployment(self, apps, current, wanted: dict, ns: str, node: str) -> None:
        """Slots, replicas and the pod template in one merge patch; the resourceVersion makes a real API server refuse
        (409) a patch based on a stale read by another process: then read again and redo."""
        body = {"metadata": {"annotations": wanted["metadata"]["annotations"]},
                "spec": {"replicas": wanted["spec"]["replicas"], "template": wanted["spec"]["template"]}}
        if current.metadata.resource_version:
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            apps.patch_namespaced_deployment(current.metadata.name, ns, body)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, f"patch deployment {ns}/{current.metadata.name}") from None

    def _start_job(self, spec: InstanceSpec, handle: dict) -> dict:
        name = dns_name(f"{spec.infra}-{spec.node}-{spec.index}", spec.key)
        labels = {LABEL_INSTANCE: digest(spec.key), LABEL_MANAGED: "strato"}
        backoff = int(spec.properties.get("backoff_limit") or 0)
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": handle["namespace"], "labels": labels,
                            "annotations": {ANN_KEY: spec.key}},
               "spec": {"backoffLimit": backoff,
                        "template": {"metadata": {"labels": labels},
                                     "spec": pod_spec(spec, name, str(spec.properties.get("restart") or "Never"))}}}
        if spec.properties.get("config_files"):
            raise DriverError(f"node '{spec.node}': config_files are for long-running nodes (a ConfigMap per node)",
                              backend=BACKEND)
        try:
            self._batch(handle["settings"], spec.node).create_namespaced_job(handle["namespace"], job)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 409:  # 409: made by an earlier attempt of this create
                raise translate(exc, spec.node, f"create job {handle['namespace']}/{name}") from None
        handle.update({"job": name, "backoff_limit": backoff})
        return handle

    # -- readiness --------------------------------------------------------------------
    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        timeout = min(float(spec.properties.get("start_timeout") or 300), spec.timeout)
        last: dict = {}

        def ready() -> dict | None:
            observed = self.observe(handle)
            last["detail"] = observed.detail
            if observed.status in ("failed", "missing"):
                raise DriverError(f"node '{spec.node}': kubernetes {self._what(handle)} {observed.status}: "
                                  f"{observed.detail}", backend=BACKEND)
            if observed.status == "completed":
                return {**handle, "completed": True}
            return handle if observed.attributes.get("ready") else None

        return poll(ready, timeout, POLL_S, lambda: DriverError(
            f"node '{spec.node}': kubernetes {self._what(handle)} not ready within {timeout:g} s "
            f"({last.get('detail') or 'no status yet'})", retryable=True, backend=BACKEND))

    @staticmethod
    def _what(handle: dict) -> str:
        if handle.get("job"):
            return f"job {handle['namespace']}/{handle['job']}"
        return f"deployment {handle['namespace']}/{handle['deployment']} slot {handle['slot']}"

    def observe(self, handle: dict) -> Observed:
        if handle.get("job"):
            return self._observe_job(handle)
        node = node_of_key(handle["key"])
        apps = self._apps(handle["settings"], node)
        ns, name = handle["namespace"], handle["deployment"]
        dep = self._read_deployment(apps, name, ns, node)
        base = {"namespace": ns, "deployment": name, "service": handle.get("service"), "slot": handle["slot"],
                "backend": BACKEND}
        if dep is None:
            return Observed(ObservedStatus.MISSING, base, "deployment not found")
        slots = self._slots(dep)
        if slots.get(str(handle["slot"])) != handle["key"]:
            return Observed(ObservedStatus.MISSING, base, f"slot {handle['slot']} is not this instance's")
        rank = sorted(slots, key=int).index(str(handle["slot"]))
        status = dep.status
        ready = (status.ready_replicas or 0) if status else 0
        attrs = {**base, "replicas": dep.spec.replicas, "ready_replicas": ready, "ready": ready > rank}
        if handle.get("service"):
            port = next(iter(p for p in (dep.spec.template.spec.containers[0].ports or [])), None)
            attrs["address"] = f"{handle['service']}.{ns}.svc.cluster.local"
            if port is not None:
                attrs["port"] = port.container_port
        pod = self._pod_for(handle, rank)
        if pod:
            attrs.update(pod)
        for cond in (status.conditions or []) if status else []:
            if cond.type == "Progressing" and cond.status == "False":
                return Observed(ObservedStatus.FAILED, attrs, f"{cond.reason}: {cond.message}")
        detail = f"{ready}/{dep.spec.replicas} replicas ready"
        return Observed(ObservedStatus.RUNNING, attrs, detail)

    def _pod_for(self, handle: dict, rank: int) -> dict | None:
        """The rank-th ready pod of the Deployment by name, if the cluster lists any."""
        node = node_of_key(handle["key"])
        try:
            pods = self._core(handle["settings"], node).list_namespaced_pod(
                handle["namespace"], label_selector=f"{LABEL_NODE}={digest(handle.get('node_key', ''))}")
        except Exception:  # noqa: BLE001 - pods are an extra, not the instance's state
            return None
        mine = sorted((p for p in pods.items
                       if (p.metadata.labels or {}).get(LABEL_NODE) == digest(handle.get("node_key", ""))
                       and p.status and p.status.phase == "Running"), key=lambda p: p.metadata.name)
        if rank < len(mine):
            return {"pod": mine[rank].metadata.name, "pod_ip": mine[rank].status.pod_ip}
        return None

    def _observe_job(self, handle: dict) -> Observed:
        node = node_of_key(handle["key"])
        ns, name = handle["namespace"], handle["job"]
        attrs = {"namespace": ns, "job": name, "backend": BACKEND}
        try:
            job = self._batch(handle["settings"], node).read_namespaced_job(name, ns)
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return Observed(ObservedStatus.MISSING, attrs, "job not found")
            raise translate(exc, node, f"read job {ns}/{name}") from None
        status = job.status
        attrs.update({"succeeded": (status.succeeded or 0) if status else 0,
                      "failed": (status.failed or 0) if status else 0})
        for cond in (status.conditions or []) if status else []:
            if cond.type == "Complete" and cond.status == "True":
                return Observed(ObservedStatus.COMPLETED, attrs)
            if cond.type == "Failed" and cond.status == "True":
                return Observed(ObservedStatus.FAILED, attrs, f"{cond.reason}: {cond.message}")
        if attrs["succeeded"] >= 1:
            return Observed(ObservedStatus.COMPLETED, attrs)
        if attrs["failed"] > int(handle.get("backoff_limit") or 0):
            return Observed(ObservedStatus.FAILED, attrs, f"{attrs['failed']} pod(s) failed")
        return Observed(ObservedStatus.RUNNING, attrs, "job running")

    # -- deleting ---------------------------------------------------------------------
    def delete(self, handle: dict) -> None:
        node = node_of_key(handle["key"])
        ns = handle["namespace"]
        if handle.get("job"):
            try:
                self._batch(handle["settings"], node).delete_namespaced_job(
                    handle["job"], ns, propagation_policy="Background")
            except Exception as exc:  # noqa: BLE001
                if not _missing(exc):
                    raise translate(exc, node, f"delete job {ns}/{handle['job']}") from None
            return
        apps, core = self._apps(handle["settings"], node), self._core(handle["settings"], node)
        name = handle["deployment"]
        with self._node_lock(f"{ns}/{name}"):
            dep = self._read_deployment(apps, name, ns, node)
            if dep is None:
                return
            slots = self._slots(dep)
            if slots.get(str(handle["slot"])) != handle["key"]:
                return  # not ours (any more)
            del slots[str(handle["slot"])]
            if slots:
                body = {"metadata": {"annotations": {ANN_SLOTS: json.dumps(slots, sort_keys=True)}},
                        "spec": {"replicas": len(slots)}}
                if dep.metadata.resource_version:
                    body["metadata"]["resourceVersion"] = dep.metadata.resource_version
                try:
                    apps.patch_namespaced_deployment(name, ns, body)
                except Exception as exc:  # noqa: BLE001
                    raise translate(exc, node, f"scale deployment {ns}/{name} down") from None
                return
            # The last instance: the Deployment (pods first: foreground), its Service and ConfigMap.
            for kind, remove in (("deployment", lambda: apps.delete_namespaced_deployment(
                                     name, ns, propagation_policy="Foreground")),
                                 ("service", lambda: core.delete_namespaced_service(name, ns)),
                                 ("config map", lambda: core.delete_namespaced_config_map(name, ns))):
                try:
                    remove()
                except Exception as exc:  # noqa: BLE001
                    if not _missing(exc):
                        raise translate(exc, node, f"delete {kind} {ns}/{name}") from None

    # -- adopting and updating -------------------------------------------------------
    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        props = spec.properties if spec else {}
        settings = cluster_settings(props, spec.descriptor_dir if spec else None)
        ns = self.namespace(props, settings)
        parsed = InstanceKey.parse(key)
        node = node_of_key(key)
        one_shot = bool(spec and spec.metadata.get("strato.one_shot"))
        try:
            if one_shot or parsed is None:
                jobs = self._batch(settings, node).list_namespaced_job(
                    ns, label_selector=f"{LABEL_INSTANCE}={digest(key)}").items
                for job in jobs:  # the label selector narrows; the annotation decides
                    if (job.metadata.annotations or {}).get(ANN_KEY) == key:
                        return {"key": key, "settings": settings, "namespace": ns, "slot": parsed.index if parsed
                                else 0, "job": job.metadata.name, "adopted": True,
                                "backoff_limit": job.spec.backoff_limit or 0}
                if one_shot or parsed is None:
                    return None
            deps = self._apps(settings, node).list_namespaced_deployment(
                ns, label_selector=f"{LABEL_NODE}={digest(parsed.node_key)}").items
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, f"list strato objects in namespace {ns}") from None
        for dep in deps:
            if (dep.metadata.annotations or {}).get(ANN_NODE_KEY) != parsed.node_key:
                continue
            if self._slots(dep).get(str(parsed.index)) == key:
                service = dep.metadata.name if (dep.spec.template.spec.containers[0].ports or []) else None
                return {"key": key, "settings": settings, "namespace": ns, "slot": parsed.index,
                        "deployment": dep.metadata.name, "node_key": parsed.node_key, "service": service,
                        "adopted": True}
        return None

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """A Deployment's pod template is patched in place (Kubernetes rolls the pods); a Job is replaced."""
        if handle.get("job") or cluster_settings(spec.properties, spec.descriptor_dir) != handle.get("settings"):
            return None
        if self.namespace(spec.properties, handle["settings"]) != handle["namespace"]:
            return None
        apps = self._apps(handle["settings"], spec.node)
        ns, name = handle["namespace"], handle["deployment"]
        with self._node_lock(f"{ns}/{name}"):
            current = self._read_deployment(apps, name, ns, spec.node)
            if current is None or self._slots(current).get(str(handle["slot"])) != handle["key"]:
                return None
            wanted = self._objects(spec, name, ns, handle["node_key"], self._slots(current))
            if (current.metadata.annotations or {}).get(ANN_TEMPLATE) != \
                    wanted["deployment"]["metadata"]["annotations"][ANN_TEMPLATE]:
                self._patch_deployment(apps, current, wanted["deployment"], ns, spec.node)
            if "config_map" in wanted:
                try:
                    self._core(handle["settings"], spec.node).patch_namespaced_config_map(
                        name, ns, {"data": wanted["config_map"]["data"]})
                except Exception as exc:  # noqa: BLE001
                    raise translate(exc, spec.node, f"patch config map {ns}/{name}") from None
        return handle
