"""The docker driver against a real engine: Podman's Docker-compatible API started by tests/env/podman.sh."""

from __future__ import annotations

import urllib.request
import uuid
from dataclasses import replace

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.docker import DockerDriver, container_name, device_requests
from tests.drivers.contract import DriverContract

docker = pytest.importorskip("docker", reason="the docker driver needs the docker SDK (pip install 'strato[containers]')")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HTTPD = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]


def make_spec(podman, tmp_path, **props) -> InstanceSpec:
    base = {"image": podman.image, "command": HTTPD, "ports": [8080], "docker_host": podman.docker_host,
            "health_check": {"http": "/", "timeout": 30}}
    base.update(props)
    infra = f"d{uuid.uuid4().hex[:8]}"
    return InstanceSpec(key=f"{infra}/web/0@{uuid.uuid4().hex[:6]}", infra=infra, node="web", index=0,
                        type="strato.nodes.Container", properties=base, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=60)


@pytest.fixture
def engine(podman):
    return docker.DockerClient(base_url=podman.docker_host)


class TestDockerContract(DriverContract):
    @pytest.fixture
    def driver(self):
        return DockerDriver()

    @pytest.fixture
    def spec(self, podman, tmp_path, engine):
        self.engine = engine
        return make_spec(podman, tmp_path)

    def exists(self, handle) -> bool:
        return bool(self.engine.containers.list(all=True, filters={"label": f"strato.key={handle['key']}"}))

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "memory": "64m", "restart": "on-failure:3"})

    def check_updated(self, handle, spec):
        host = self.engine.containers.get(handle["container_id"]).attrs["HostConfig"]
        assert host["Memory"] == 64 * 1024 * 1024
        assert host["RestartPolicy"]["Name"] == "on-failure"

    def failing_spec(self, spec):
        return replace(spec, properties={**spec.properties, "command": ["/bin/sh", "-c", "echo no model; exit 3"]})


def test_port_published_on_loopback_answers_and_labels_carry_the_key(podman, tmp_path, engine):
    driver = DockerDriver()
    spec = make_spec(podman, tmp_path, env={"GREETING": "hi"})
    handle = driver.create(spec)
    try:
        attrs = driver.observe(handle).attributes
        assert attrs["host"] == "127.0.0.1" and attrs["url"] == f"http://127.0.0.1:{attrs['port']}"
        with urllib.request.urlopen(attrs["url"] + "/", timeout=5) as resp:
            assert resp.read() == b"ok\n"
        container = engine.containers.get(handle["container_id"])
        binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1"
        assert container.labels["strato.key"] == spec.key and container.name == container_name(spec.key)
        assert "GREETING=hi" in container.attrs["Config"]["Env"]
    finally:
        driver.delete(handle)


def test_update_recreates_only_when_the_run_settings_changed(podman, tmp_path, engine):
    driver = DockerDriver()
    spec = make_spec(podman, tmp_path)
    handle = driver.create(spec)
    try:
        # Same settings (a health-check change only): the container is kept as it is.
        same = driver.update(handle, replace(spec, properties={**spec.properties, "health_check": {"tcp": True}}))
        assert same["container_id"] == handle["container_id"]
        # CPU and memory: in place where the engine can (Docker), recreated where it cannot (Podman 4).
        limits = replace(spec, properties={**spec.properties, "cpus": 0.5, "memory": "32m"})
        live = driver.update(handle, limits)
        host = engine.containers.get(live["container_id"]).attrs["HostConfig"]
        assert host["Memory"] == 32 * 1024 * 1024 and host["CpuQuota"] == 50_000
        assert len(engine.containers.list(all=True, filters={"label": f"strato.key={spec.key}"})) == 1
        # A new command: a new container under the same name and key; the old one is gone.
        other = replace(limits, properties={**limits.properties, "command": HTTPD + ["-v"]})
        fresh = driver.update(live, other)
        assert fresh["container_id"] not in (handle["container_id"], live["container_id"])
        assert [c.id for c in engine.containers.list(all=True, filters={"label": f"strato.key={spec.key}"})] \
            == [fresh["container_id"]]
        handle = fresh
    finally:
        driver.delete(handle)


def test_one_shot_container_reports_attributes(podman, tmp_path):
    driver = DockerDriver()
    script = 'echo \'{"model_path": "/models/m.bin"}\' > "$STRATO_ATTRIBUTES_FILE"'
    spec = make_spec(podman, tmp_path, command=["/bin/sh", "-c", script], ports=[], health_check=None)
    spec.metadata = {"strato.one_shot": True}
    handle = driver.create(spec)
    try:
        observed = driver.observe(handle)
        assert observed.status == "completed" and observed.attributes["model_path"] == "/models/m.bin"
    finally:
        driver.delete(handle)


def test_container_exiting_during_start_fails_with_its_logs(podman, tmp_path):
    driver = DockerDriver()
    spec = make_spec(podman, tmp_path, command=["/bin/sh", "-c", "echo cannot load model; exit 3"])
    with pytest.raises(DriverError) as err:
        driver.create(spec)
    assert "code 3" in str(err.value) and "cannot load model" in str(err.value)
    assert driver.find(spec.key, spec) is None


def test_image_built_from_a_context_dir_once_per_node_and_removed_on_release(podman, tmp_path, engine):
    ctx = tmp_path / "image"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {podman.image}\nRUN echo built > /www/index.html\n")
    driver = DockerDriver()
    spec = make_spec(podman, tmp_path, image=None, build={"context": "image"})
    attrs = driver.prepare_node(spec)
    try:
        assert attrs["built"] and engine.images.get(attrs["image"])
        handle = driver.create(replace(spec, node_attributes=attrs))
        try:
            with urllib.request.urlopen(driver.observe(handle).attributes["url"], timeout=5) as resp:
                assert resp.read() == b"built\n"
        finally:
            driver.delete(handle)
    finally:
        driver.release_node(attrs)
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(attrs["image"])


def test_volumes_restart_policy_and_limits_reach_the_engine(podman, tmp_path, engine):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "index.html").write_text("from the volume\n")
    driver = DockerDriver()
    spec = make_spec(podman, tmp_path, volumes=["./data:/www:ro"], restart="unless-stopped", cpus=1, memory="128m")
    handle = driver.create(spec)
    try:
        with urllib.request.urlopen(driver.observe(handle).attributes["url"], timeout=5) as resp:
            assert resp.read() == b"from the volume\n"
        host = engine.containers.get(handle["container_id"]).attrs["HostConfig"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["Memory"] == 128 * 1024 * 1024 and host["CpuQuota"] == 100_000
    finally:
        driver.delete(handle)


def test_gpu_device_requests_are_formed_like_docker_run_gpus():
    # No GPU here: check the request the engine would receive, as `docker run --gpus` forms it.
    host = docker.types.HostConfig(version="1.41", device_requests=device_requests(2, "trainer"))
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]],
                                       "Options": {}}]
    every = docker.types.HostConfig(version="1.41", device_requests=device_requests("all", "t"))
    assert every["DeviceRequests"][0]["Count"] == -1
    ids = device_requests(["0", "3"], "t")[0]
    assert ids["DeviceIDs"] == ["0", "3"] and ids["Count"] == 0
    assert device_requests(0, "t") == []
    with pytest.raises(DriverError, match="gpus must be"):
        device_requests("many", "t")


def test_bad_settings_are_one_line_errors(podman, tmp_path):
    driver = DockerDriver()
    for props, message in (({"restart": "sometimes"}, "restart must be one of"),
                           ({"memory": "lots"}, "memory must be"),
                           ({"image": "strato-no-such-image:1"}, "no image")):
        with pytest.raises(DriverError, match=message):
            driver.create(make_spec(podman, tmp_path, **props))
