"""The kubernetes driver through the official client against kmock's KubernetesEmulator on loopback.

The emulator keeps objects but runs no controllers; tests/env/kube.py's stand-in kubelet patches
Deployment and Job status in plain sight, as a cluster's controllers would.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

pytest.importorskip("kubernetes", reason="the kubernetes driver needs the official client (pip install "
                                         "'strato[kubernetes]')")
pytest.importorskip("kmock", reason="the Kubernetes emulator is kmock (pip install 'strato[test]')")

from drivers.base import DriverError, InstanceSpec  # noqa: E402
from drivers.kubernetes import ANN_SLOTS, KubernetesDriver, resources_of  # noqa: E402
from tests.drivers.contract import DriverContract  # noqa: E402
from tests.env import kube  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def emulator():
    emu = kube.Emulator()
    kubelet = kube.StandInKubelet(emu.url)
    emu.kubelet = kubelet
    yield emu
    kubelet.stop()
    emu.stop()


@pytest.fixture
def kubeconfig(emulator, tmp_path):
    return emulator.kubeconfig(str(tmp_path / "kubeconfig"), {"dev": "team-a", "prod": "team-b"})


@pytest.fixture
def apis(emulator):
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = emulator.url
    api = client.ApiClient(cfg)
    return client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)


def make_spec(kubeconfig, tmp_path, index=0, uid=None, node="web", **props) -> InstanceSpec:
    base = {"image": "registry.example/model-server:1", "ports": [8080], "kubeconfig": kubeconfig,
            "env": {"MODEL": "iris"}, "start_timeout": 20}
    base.update(props)
    uid = uid or uuid.uuid4().hex[:6]
    return InstanceSpec(key=f"k8s/{node}/{index}@{uid}", infra="k8s", node=node, index=index,
                        type="strato.nodes.Container", properties=base, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=60)


def deployments(apps, ns, node_name="web"):
    return [d for d in apps.list_namespaced_deployment(ns).items if d.metadata.name.startswith(f"k8s-{node_name}-")]


class TestKubernetesContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return KubernetesDriver()

    @pytest.fixture
    def spec(self, kubeconfig, tmp_path, apis):
        self.apps = apis[0]
        return make_spec(kubeconfig, tmp_path)

    def exists(self, handle) -> bool:
        try:
            dep = self.apps.read_namespaced_deployment(handle["deployment"], handle["namespace"])
        except Exception:  # noqa: BLE001
            return False
        return json.loads(dep.metadata.annotations[ANN_SLOTS]).get(str(handle["slot"])) == handle["key"]

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "image": "registry.example/model-server:2"})

    def check_updated(self, handle, spec):
        dep = self.apps.read_namespaced_deployment(handle["deployment"], handle["namespace"])
        assert dep.spec.template.spec.containers[0].image == "registry.example/model-server:2"

    def failing_spec(self, spec):
        # A one-shot node whose Job fails (the stand-in kubelet fails Jobs carrying STRATO_TEST_FAIL).
        return replace(spec, metadata={"strato.one_shot": True},
                       properties={**spec.properties, "env": {kube.FAIL_ENV: "1"}, "ports": []})


def test_one_deployment_per_node_replicas_are_instances(kubeconfig, tmp_path, apis):
    apps, core, _ = apis
    driver = KubernetesDriver()
    uid = uuid.uuid4().hex[:6]
    specs = [make_spec(kubeconfig, tmp_path, index=i, uid=uid, config_files={"/etc/model/config.yaml": "depth: 3\n"})
             for i in range(4)]
    handles = [driver.create(s) for s in specs]
    try:
        ns = handles[0]["namespace"]
        assert ns == "team-a"  # the kubeconfig's current context's namespace
        (dep,) = deployments(apps, ns)
        assert dep.spec.replicas == 4 and {h["deployment"] for h in handles} == {dep.metadata.name}
        assert json.loads(dep.metadata.annotations[ANN_SLOTS]) == {str(i): s.key for i, s in enumerate(specs)}
        svc = core.read_namespaced_service(dep.metadata.name, ns)
        assert svc.spec.ports[0].target_port == 8080
        assert svc.spec.selector.items() <= dep.spec.template.metadata.labels.items()
        cm = core.read_namespaced_config_map(dep.metadata.name, ns)
        assert cm.data == {"etc_model_config.yaml": "depth: 3\n"}
        mount = dep.spec.template.spec.containers[0].volume_mounts[0]
        assert mount.mount_path == "/etc/model/config.yaml" and mount.sub_path == "etc_model_config.yaml"
        attrs = driver.observe(handles[2]).attributes
        assert attrs["ready"] and attrs["address"] == f"{dep.metadata.name}.team-a.svc.cluster.local"
        # scaling down: the slot goes, replicas are patched in place on the same Deployment
        driver.delete(handles.pop(1))
        (dep,) = deployments(apps, ns)
        assert dep.spec.replicas == 3 and "1" not in json.loads(dep.metadata.annotations[ANN_SLOTS])
        # scaling up again: the same Deployment, replicas patched
        handles.append(driver.create(specs[1]))
        (dep,) = deployments(apps, ns)
        assert dep.spec.replicas == 4
    finally:
        for h in handles:
            driver.delete(h)
    assert deployments(apps, "team-a") == []
    assert [s for s in core.list_namespaced_service("team-a").items if s.metadata.name == dep.metadata.name] == []
    assert [c for c in core.list_namespaced_config_map("team-a").items if c.metadata.name == dep.metadata.name] == []


def test_a_canary_deployment_runs_behind_its_stable_nodes_one_service(kubeconfig, tmp_path, apis):
    """A rollout's canary node (`web~canary`, orchestrator/mlops/rollout.py): its own Deployment, no Service of its
    own; web's Service selects the pods of both, so the traffic splits by replica ratio (here 1 of 4: 25 %)."""
    apps, core, _ = apis
    driver = KubernetesDriver()
    uid = uuid.uuid4().hex[:6]
    stable = [make_spec(kubeconfig, tmp_path, index=i, uid=uid, env={"MODEL": "iris:1"}) for i in range(3)]
    canary = make_spec(kubeconfig, tmp_path, index=0, uid=uid, node="web~canary", env={"MODEL": "iris:2"})
    handles = [driver.create(s) for s in stable] + [driver.create(canary)]
    try:
        ns = handles[0]["namespace"]
        (web,) = [d for d in deployments(apps, ns) if "canary" not in d.metadata.name]
        (web_canary,) = deployments(apps, ns, "web-canary")
        assert (web.spec.replicas, web_canary.spec.replicas) == (3, 1)
        assert web.spec.selector.match_labels != web_canary.spec.selector.match_labels   # never each other's pods
        (svc,) = [s for s in core.list_namespaced_service(ns).items if s.metadata.name in
                  (web.metadata.name, web_canary.metadata.name)]
        assert svc.metadata.name == web.metadata.name and handles[-1]["service"] is None
        for dep in (web, web_canary):
            assert svc.spec.selector.items() <= dep.spec.template.metadata.labels.items()
        share = web_canary.spec.replicas / (web.spec.replicas + web_canary.spec.replicas)
        assert share == 0.25
    finally:
        for h in handles:
            driver.delete(h)


def test_parallel_creates_of_one_node_share_one_deployment(kubeconfig, tmp_path, apis):
    from concurrent.futures import ThreadPoolExecutor
    driver = KubernetesDriver()
    uid = uuid.uuid4().hex[:6]
    specs = [make_spec(kubeconfig, tmp_path, index=i, uid=uid, node="par") for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        handles = list(pool.map(driver.create, specs))
    try:
        (dep,) = deployments(apis[0], "team-a", "par")
        assert dep.spec.replicas == 6 and len(json.loads(dep.metadata.annotations[ANN_SLOTS])) == 6
    finally:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(driver.delete, handles))
    assert deployments(apis[0], "team-a", "par") == []


def test_not_ready_in_time_fails_and_removes_its_slot(kubeconfig, tmp_path, apis, emulator):
    driver = KubernetesDriver()
    spec = make_spec(kubeconfig, tmp_path, start_timeout=0.5, node="slow")
    emulator.kubelet.paused = True  # nothing marks the Deployment ready
    try:
        with pytest.raises(DriverError, match="not ready within 0.5 s") as err:
            driver.create(spec)
        assert err.value.retryable
    finally:
        emulator.kubelet.paused = False
    assert deployments(apis[0], "team-a", "slow") == []


def test_one_shot_node_is_a_job(kubeconfig, tmp_path, apis):
    batch = apis[2]
    driver = KubernetesDriver()
    spec = replace(make_spec(kubeconfig, tmp_path, node="trainer", ports=[], command=["python", "train.py"],
                             gpus=1, backoff_limit=2), metadata={"strato.one_shot": True})
    handle = driver.create(spec)
    try:
        assert handle["completed"] and driver.observe(handle).status == "completed"
        job = batch.read_namespaced_job(handle["job"], "team-a")
        assert job.spec.backoff_limit == 2 and job.spec.template.spec.restart_policy == "Never"
        container = job.spec.template.spec.containers[0]
        assert container.command == ["python", "train.py"] and container.resources.limits == {"nvidia.com/gpu": "1"}
        assert driver.find(spec.key, spec)["job"] == handle["job"]
    finally:
        driver.delete(handle)
    assert driver.find(spec.key, spec) is None


def test_context_and_namespace_per_node(kubeconfig, tmp_path, apis):
    driver = KubernetesDriver()
    prod = driver.create(make_spec(kubeconfig, tmp_path, context="prod", node="ctx"))
    own = driver.create(make_spec(kubeconfig, tmp_path, namespace="models", node="ns"))
    try:
        assert prod["namespace"] == "team-b" and deployments(apis[0], "team-b", "ctx")
        assert own["namespace"] == "models" and deployments(apis[0], "models", "ns")
    finally:
        driver.delete(prod)
        driver.delete(own)


def test_requests_and_limits_including_gpus():
    assert resources_of({"cpus": 2, "memory": "512m", "gpus": 1}) == {
        "requests": {"cpu": "2", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "512Mi", "nvidia.com/gpu": "1"}}
    given = {"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}
    assert resources_of(given) == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    assert resources_of({}) == {}


def test_missing_image_and_unreachable_cluster_are_clear_errors(kubeconfig, tmp_path, emulator):
    driver = KubernetesDriver()
    with pytest.raises(DriverError, match="needs `image`"):
        driver.create(make_spec(kubeconfig, tmp_path, image=None))
    dead = kube.Emulator.kubeconfig(emulator, str(tmp_path / "dead"), {"x": "default"})
    with open(dead) as fh:
        text = fh.read().replace(emulator.url, "http://127.0.0.1:9")
    with open(dead, "w") as fh:
        fh.write(text)
    with pytest.raises(DriverError, match="unreachable") as err:
        driver.create(make_spec(dead, tmp_path, node="dead"))
    assert err.value.retryable
