"""The kubernetes driver's contract against a real cluster: runs only when KUBECONFIG points at one that answers.

STRATO_TEST_K8S_NAMESPACE (default: default) and STRATO_TEST_K8S_IMAGE (default: the pause image)
choose where and what; nothing here patches status: the cluster's own controllers do.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace

import pytest

pytest.importorskip("kubernetes", reason="the kubernetes driver needs the official client")

from drivers.base import InstanceSpec  # noqa: E402
from drivers.kubernetes import ANN_SLOTS, KubernetesDriver  # noqa: E402
from tests.drivers.contract import DriverContract  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _cluster_reason() -> str | None:
    path = os.environ.get("KUBECONFIG")
    if not path or not os.path.exists(path):
        return "no real cluster: KUBECONFIG is not set to a kubeconfig file"
    try:
        from kubernetes import client, config
        api = config.new_client_from_config(config_file=path)
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:  # noqa: BLE001
        return f"the cluster in KUBECONFIG does not answer: {type(exc).__name__}: {exc}"[:300]
    return None


REASON = _cluster_reason()
pytestmark.append(pytest.mark.skipif(REASON is not None, reason=REASON or ""))


class TestKubernetesClusterContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return KubernetesDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        from kubernetes import client, config
        self.apps = client.AppsV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
        uid = uuid.uuid4().hex[:6]
        props = {"image": os.environ.get("STRATO_TEST_K8S_IMAGE", "registry.k8s.io/pause:3.9"),
                 "namespace": os.environ.get("STRATO_TEST_K8S_NAMESPACE", "default"), "start_timeout": 240,
                 "cpus": "50m", "memory": "32m"}
        return InstanceSpec(key=f"strato-test/pause/0@{uid}", infra="strato-test", node="pause", index=0,
                            type="strato.nodes.Container", properties=props, descriptor_dir=str(tmp_path),
                            infra_dir=str(tmp_path), timeout=300)

    def exists(self, handle) -> bool:
        try:
            dep = self.apps.read_namespaced_deployment(handle["deployment"], handle["namespace"])
        except Exception:  # noqa: BLE001
            return False
        return json.loads(dep.metadata.annotations[ANN_SLOTS]).get(str(handle["slot"])) == handle["key"]

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "env": {"STRATO_TEST": "updated"}})
