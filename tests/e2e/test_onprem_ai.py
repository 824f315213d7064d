"""examples/onprem-ai end to end: built, answering on loopback and destroyed on Podman; its Kubernetes variant built
against kmock's emulator (tests/env/kube.py's stand-in kubelet marks the Deployment ready)."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid

import pytest

from tests.conftest import REPO

EXAMPLE = os.path.join(REPO, "examples", "onprem-ai")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
pytest.importorskip("sklearn", reason="the example's trainer needs scikit-learn (pip install 'strato[examples]')")


def test_onprem_ai_on_podman_builds_answers_and_destroys_cleanly(podman, strato, monkeypatch):
    docker = pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", podman.docker_host)
    name = f"onprem-{uuid.uuid4().hex[:6]}"
    engine = docker.DockerClient(base_url=podman.docker_host)
    try:
        # the example's default base_image is the one tests/env/podman.sh builds: no input needed for it
        image = [] if podman.image == "strato-busybox:2" else ["-i", f"base_image={podman.image}"]
        built = strato("build", os.path.join(EXAMPLE, "service.yaml"), "--name", name, *image, "--json", timeout=240)
        assert built.returncode == 0, built.stdout + built.stderr
        outputs = json.loads(built.stdout)["outputs"]
        urls = outputs["urls"] if isinstance(outputs["urls"], list) else [outputs["urls"]]
        assert outputs["classes"] == 3 and len(urls) == 2
        for url in urls:  # every replica answers on its own loopback port
            assert url.startswith("http://127.0.0.1:")
            req = urllib.request.Request(url + "/cgi-bin/predict", method="POST",
                                         data=b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert json.load(resp) == {"predictions": [0, 2], "model_classes": 3}
        mine = engine.containers.list(filters={"label": f"strato.infra={name}"})
        assert len(mine) == 2
        assert all(c.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostIp"] == "127.0.0.1" for c in mine)
        image = mine[0].attrs["Config"]["Image"]
    finally:
        gone = strato("destroy", name, "--yes", timeout=120)
    assert gone.returncode == 0, gone.stderr
    assert engine.containers.list(all=True, filters={"label": f"strato.infra={name}"}) == []
    assert not [i for i in engine.images.list() if image in i.tags]  # the built image went with the node


def test_onprem_ai_on_kubernetes_emulator_builds_scales_and_destroys(strato, tmp_path, monkeypatch):
    pytest.importorskip("kubernetes")
    pytest.importorskip("kmock")
    from kubernetes import client

    from tests.env import kube
    emu = kube.Emulator()
    kubelet = kube.StandInKubelet(emu.url)
    try:
        monkeypatch.setenv("KUBECONFIG", emu.kubeconfig(str(tmp_path / "kubeconfig")))
        cfg = client.Configuration()
        cfg.host = emu.url
        api = client.ApiClient(cfg)
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        path = os.path.join(EXAMPLE, "kubernetes.yaml")
        name = f"onprem-k8s-{uuid.uuid4().hex[:6]}"
        built = strato("build", path, "--name", name, "-i", "namespace=ai", "--json", timeout=180)
        assert built.returncode == 0, built.stdout + built.stderr
        (dep,) = apps.list_namespaced_deployment("ai").items
        assert dep.spec.replicas == 2
        cm = core.read_namespaced_config_map(dep.metadata.name, "ai")
        assert len(list(cm.data.values())[0].splitlines()) == 3  # the trainer's model, through get_attribute
        assert core.read_namespaced_service(dep.metadata.name, "ai").spec.ports[0].port == 80
        service = json.loads(built.stdout)["outputs"]["service"]
        assert set(service) == {f"{dep.metadata.name}.ai.svc.cluster.local"}  # one Service for both replicas
        assert strato("scale", name, "server", "3").returncode == 0
        assert strato("build", path, "--name", name, timeout=180).returncode == 0
        (again,) = apps.list_namespaced_deployment("ai").items
        assert again.metadata.name == dep.metadata.name and again.spec.replicas == 3  # patched in place
        gone = strato("destroy", name, "--yes", timeout=120)
        assert gone.returncode == 0, gone.stderr
        assert apps.list_namespaced_deployment("ai").items == []
        assert core.list_namespaced_config_map("ai").items == []
    finally:
        kubelet.stop()
        emu.stop()
