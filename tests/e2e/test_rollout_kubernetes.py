"""A model server on Kubernetes (kmock's emulator on loopback): a new version's canary is a second Deployment
behind the stable node's one Service, the split is the replica ratio and the weight achieved is reported; with
no router to count requests per track, the analysis stays inconclusive and the canary is never promoted."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

pytest.importorskip("kubernetes", reason="needs the official client (pip install 'strato[kubernetes]')")
pytest.importorskip("kmock", reason="the Kubernetes emulator is kmock (pip install 'strato[test]')")

from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.maintain import MaintainOptions, Maintainer  # noqa: E402
from orchestrator.mlops.registry import ModelRegistry  # noqa: E402
from tests.env import kube  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mlops"))
import train  # noqa: E402

sys.path.pop(0)

DESCRIPTOR = """\
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    server:
      type: strato.nodes.ai.kubernetes.ModelServer
      properties:
        image: registry.example/iris-server:1
        ports: [8080]
        namespace: ml
        start_timeout: 20
        model: iris@champion
        rollout:
          steps: [{weight: 10, pause: 1 s}]
          analysis: {interval: 1 s, min_samples: 5}
          progress_deadline: 4 s
          keep_failed: 0 s
      capabilities:
        scalable:
          properties: {default_instances: 3}
"""


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    emu = kube.Emulator()
    kubelet = kube.StandInKubelet(emu.url)
    monkeypatch.setenv("KUBECONFIG", emu.kubeconfig(str(tmp_path / "kubeconfig")))
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = emu.url
    yield client.AppsV1Api(client.ApiClient(cfg)), client.CoreV1Api(client.ApiClient(cfg))
    kubelet.stop()
    emu.stop()


def test_a_kubernetes_canary_splits_by_replica_ratio_and_reports_the_weight_achieved(tmp_path, monkeypatch, cluster):
    apps, core = cluster
    monkeypatch.setenv("STRATO_HOME", str(tmp_path))
    registry = ModelRegistry(str(tmp_path / "models"))
    train.push(registry, "iris", train.make_bundle(note="v1"), promote=True)
    path = tmp_path / "service.yaml"
    path.write_text(DESCRIPTOR)
    store, name = service.open_store(str(tmp_path / "state.db")), f"k8s{uuid.uuid4().hex[:6]}"
    assert service.build(str(path), name, {}, store, RunOptions(parallelism=8, timeout=60))["ok"]
    (stable,) = apps.list_namespaced_deployment("ml").items
    env = {e.name: e.value for e in stable.spec.template.spec.containers[0].env}
    assert env["STRATO_MODEL_VERSION"] == "iris:1" and env["STRATO_MODEL_NAME"] == "iris"
    train.push(registry, "iris", train.make_bundle(note="v2"), promote=True)
    maintainer = Maintainer(store, name, MaintainOptions(interval=0.5))
    seen_canary = None
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not [e for e in store.events(name, 500) if e["kind"] == "rollout_aborted"]:
        maintainer.run_pass()
        deployments = apps.list_namespaced_deployment("ml").items
        canaries = [d for d in deployments if "canary" in d.metadata.name]
        if canaries and seen_canary is None:
            seen_canary = (canaries[0], [d for d in deployments if "canary" not in d.metadata.name][0],
                           core.list_namespaced_service("ml").items)
        time.sleep(0.3)
    assert seen_canary, "no canary Deployment was made"
    canary, stable, services = seen_canary
    assert (stable.spec.replicas, canary.spec.replicas) == (3, 1)          # ceil(3 x 10 %)
    (svc,) = services                                                      # one Service for both
    assert all(svc.spec.selector.items() <= d.spec.template.metadata.labels.items() for d in (stable, canary))
    env = {e.name: e.value for e in canary.spec.template.spec.containers[0].env}
    assert env["STRATO_MODEL_VERSION"] == "iris:2"
    kinds = {e["kind"]: e["detail"] for e in store.events(name, 500)}
    assert kinds["rollout_weight"]["weight"] == 10 and kinds["rollout_weight"]["weight_achieved"] == 25.0
    assert kinds["rollout_weight"]["by"] == "replica ratio"
    assert "rollout_promoted" not in kinds                                 # no data: never promoted
    assert kinds["rollout_aborted"]["reasons"] == ["no conclusive analysis before the deadline"]
    service.destroy(store, name, RunOptions(parallelism=8, timeout=60))
