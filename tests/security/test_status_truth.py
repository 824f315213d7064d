"""Status tells the truth (issue 17, items 13-17): never `ready` for what was not observed healthy just now.

Real backends throughout: local processes (SIGSTOP'd, killed, slow to listen), moto_server killed under a
built EC2 infrastructure, and Podman's Docker-compatible API stopped under three containers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.conftest import REPO
from tests.processes import processes_of

pytestmark = pytest.mark.timeout(240)


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


# An HTTP server on 127.0.0.1:PORT that starts listening after DELAY seconds, and with "stubborn" ignores SIGTERM.
SERVER = """
import http.server, signal, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
if "stubborn" in sys.argv[3:]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(delay)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def write(tmp_path, text: str, name: str = "service.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    (tmp_path / "server.py").write_text(SERVER)
    return str(path)


def kill_all(infra: str) -> None:
    """Teardown's last resort: no process of this test outlives it, stopped or not."""
    for pids in processes_of(infra).values():
        for pid in pids:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def status_json(strato, name: str, *extra: str) -> tuple[int, dict]:
    proc = strato("status", name, "--json", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)["infrastructures"][0]


@pytest.fixture
def local_infra(strato):
    """Names built here are destroyed (and their processes killed) whatever the test did."""
    names: list[str] = []
    yield names
    for name in names:
        kill_all(name)  # SIGCONT first: a stopped process must not hold up the destroy
        strato("destroy", name, "--yes", "-q", timeout=60)
        kill_all(name)


# -- 14: --check runs the nodes' health checks ----------------------------------------------------------

HTTP_REPLICAS = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
            port: auto
            health_check: {http: /, timeout: 2}
            stop_grace_period: 1
          capabilities: {scalable: {properties: {default_instances: 2}}}
"""


def test_status_check_runs_health_checks_and_a_stopped_replica_is_unhealthy(strato, tmp_path, local_infra):
    name = unique("probe")
    local_infra.append(name)
    assert strato("build", write(tmp_path, HTTP_REPLICAS), "--name", name, "-q").returncode == 0
    code, data = status_json(strato, name, "--check")
    assert code == 0 and all(i["status"] == "ready" for i in data["instances"])
    victim = next(i for i in data["instances"] if i["index"] == 1)
    os.kill(victim["attributes"]["pid"], signal.SIGSTOP)
    try:
        code, data = status_json(strato, name, "--check")
        assert code == 2
        states = {i["index"]: i for i in data["instances"]}
        assert states[1]["status"] == "unhealthy" and "HTTP" in states[1]["error"]
        assert states[0]["status"] == "ready"
        assert not data["healthy"] and data["status"] == "degraded"
        text = strato("status", name, "--check")
        assert text.returncode == 2 and "unhealthy" in text.stdout and "web[1]" in text.stdout
    finally:
        os.kill(victim["attributes"]["pid"], signal.SIGCONT)
    code, _ = status_json(strato, name, "--check")
    assert code == 0  # it answers again


def test_status_check_refuses_no_refresh(strato, tmp_path, local_infra):
    name = unique("norefresh")
    local_infra.append(name)
    assert strato("build", write(tmp_path, HTTP_REPLICAS), "--name", name, "-q").returncode == 0
    proc = strato("status", name, "--check", "--no-refresh")
    assert proc.returncode == 64 and "--no-refresh" in proc.stderr and "Traceback" not in proc.stderr


# -- 15: a resumed build checks what it adopts --------------------------------------------------------

SLOW_START = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "{descriptor_dir}/server.py", "{port}", "6"]
            port: auto
            health_check: {tcp: true, timeout: 30}
            stop_grace_period: 1
"""


def test_resumed_build_waits_until_an_adopted_instance_is_ready(strato, strato_home, tmp_path, local_infra):
    name = unique("adopt")
    local_infra.append(name)
    path = write(tmp_path, SLOW_START)
    env = dict(os.environ, STRATO_HOME=str(strato_home), PYTHONPATH=REPO)
    first = subprocess.Popen([sys.executable, "-m", "orchestrator", "build", path, "--name", name],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not processes_of(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_of(name), "the first build never started its process"
    finally:
        first.kill()  # kill -9 while the instance is starting: intent recorded, readiness never seen
        first.wait(timeout=10)
    started = list(processes_of(name).values())[0]
    proc = strato("build", path, "--name", name)
    assert proc.returncode == 0, proc.stderr
    assert "adopted from an interrupted run" in proc.stderr
    assert list(processes_of(name).values()) == [started]  # adopted, not duplicated
    _, data = status_json(strato, name, "--no-refresh")
    port = data["instances"][0]["attributes"]["port"]
    assert listening(port), "the build said ready, but nothing listens"


# -- 16: the summary counts what was done ------------------------------------------------------------

ONE_OF_THREE = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["/bin/sh", "-c",
                      "test {instance} = 0 || exit 3; exec {python} -m http.server {port} --bind 127.0.0.1"]
            port: auto
            health_check: {tcp: true, timeout: 30}
            stop_grace_period: 1
          capabilities: {scalable: {properties: {default_instances: 3}}}
"""


def test_build_summary_counts_done_work_not_planned_work(strato, tmp_path, local_infra):
    name = unique("count")
    local_infra.append(name)
    path = write(tmp_path, ONE_OF_THREE)
    proc = strato("build", path, "--name", name)
    assert proc.returncode == 1
    assert "1 created" in proc.stdout and "2 failed" in proc.stdout and "3 created" not in proc.stdout
    proc = strato("build", path, "--name", name, "--json")
    report = json.loads(proc.stdout)
    assert report["plan"]["create"] == 2  # planned: the two failed ones again
    assert report["done"]["create"] == 0 and report["done"]["failed"] == 2 and report["done"]["noop"] == 1


def test_api_operation_result_counts_done_work(strato_home, tmp_path, monkeypatch):
    pytest.importorskip("fastapi", reason="the REST API needs fastapi (pip install '.[test]')")
    from fastapi.testclient import TestClient

    from orchestrator.api import ApiSettings, create_app
    token = "w-" + "s" * 30
    monkeypatch.setenv("STRATO_API_TOKEN", token)
    auth = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(str(strato_home / "state.db"), ApiSettings(allow_local_processes=True)))
    name = unique("apicount")
    try:
        resp = client.post("/v1/infrastructures", json={"name": name, "descriptor": textwrap.dedent(ONE_OF_THREE)},
                           headers=auth)
        assert resp.status_code == 202, resp.text
        deadline = time.monotonic() + 60
        while (op := client.get(resp.json()["href"], headers=auth).json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert op["state"] == "failed"
        assert op["result"]["done"]["create"] == 1 and op["result"]["done"]["failed"] == 2
    finally:
        client.app.state.ctx.ops.wait_idle(30)
        client.delete(f"/v1/infrastructures/{name}", headers=auth)
        client.app.state.ctx.ops.wait_idle(30)
        kill_all(name)


# -- 17: instances leaving in a scale-down read `deleting` ----------------------------------------------

SLOW_TO_STOP = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["{python}", "{descriptor_dir}/server.py", "{port}", "0", "stubborn"]
            port: auto
            health_check: {tcp: true, timeout: 30}
            stop_grace_period: 6
          capabilities: {scalable: {properties: {default_instances: 3}}}
"""


def test_scale_down_instances_read_deleting_not_missing(strato, strato_home, tmp_path, local_infra):
    name = unique("leave")
    local_infra.append(name)
    assert strato("build", write(tmp_path, SLOW_TO_STOP), "--name", name, "-q").returncode == 0
    env = dict(os.environ, STRATO_HOME=str(strato_home), PYTHONPATH=REPO)
    scale = subprocess.Popen([sys.executable, "-m", "orchestrator", "scale", name, "web", "--to", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline and scale.poll() is None:
            code, data = status_json(strato, name, "--check")
            if any(i["status"] == "deleting" for i in data["instances"]):
                seen = (code, data, strato("status", name).stdout)
                break
            time.sleep(0.1)
        assert seen is not None, "never saw the scale-down in progress"
        code, data, text = seen
        leaving = sorted(i["index"] for i in data["instances"] if i["status"] == "deleting")
        assert leaving == [1, 2]
        assert data["status"] == "ready" and data["healthy"] and code == 0
        assert data["missing"] == [] and sorted(i["index"] for i in data["leaving"]) == [1, 2]
        assert "not healthy" not in text and "recreate" not in text and "deleting" in text
        # a status refresh during the delete did not turn them into `missing`
        code, data = status_json(strato, name)
        assert {i["status"] for i in data["instances"] if i["index"] > 0} <= {"deleting"}
        out, err = scale.communicate(timeout=60)
        assert scale.returncode == 0, out + err
    finally:
        if scale.poll() is None:
            scale.kill()
            scale.wait(timeout=10)
    code, data = status_json(strato, name, "--check")
    assert code == 0 and [i["index"] for i in data["instances"]] == [0]


# -- 13: an unreachable backend is `unknown` ------------------------------------------------------------

EC2_PAIR = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        vm:
          type: strato.nodes.aws.EC2Instance
          properties: {image: ami-04681a1dbd79675a5, instance_type: t3.micro}
          capabilities: {scalable: {properties: {default_instances: 2}}}
"""


@pytest.fixture
def moto(tmp_path, monkeypatch, strato_home):
    """Our own moto_server (the test kills it), with the AWS environment pointing at it."""
    pytest.importorskip("boto3", reason="the AWS drivers need boto3 (pip install 'strato[aws]')")
    from tests.cloud import emulators
    try:
        emu = emulators.start_moto(str(tmp_path))
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"moto_server unavailable: {exc}")
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in emulators.aws_environment(emu).items():
        monkeypatch.setenv(k, v)
    yield emu
    emu.stop()


def test_unreachable_cloud_is_unknown_in_status_plan_and_the_loop(strato, strato_home, tmp_path, moto):
    from orchestrator import service
    from orchestrator.maintain import MaintainOptions, Maintainer
    name = unique("cloud")
    path = write(tmp_path, EC2_PAIR)
    assert strato("build", path, "--name", name, "-q").returncode == 0
    code, data = status_json(strato, name, "--check")
    assert code == 0 and [i["status"] for i in data["instances"]] == ["ready", "ready"]
    moto.stop()  # the cloud's API is gone: nothing can be observed
    code, data = status_json(strato, name, "--check")
    assert code == 2 and not data["healthy"] and data["status"] == "degraded"
    for inst in data["instances"]:
        assert inst["status"] == "unknown" and inst["error"], inst
    text = strato("status", name, "--check")
    assert text.returncode == 2 and "unknown" in text.stdout and "recreate" not in text.stdout
    plan = strato("plan", path, "--name", name)
    assert "0 to create" in plan.stdout and "unknown" in plan.stdout, plan.stdout + plan.stderr
    store = service.open_store(str(strato_home / "state.db"))
    report = Maintainer(store, name, MaintainOptions(policies=False)).run_pass()
    assert report.healthy == 0 and sorted(report.unknown) == sorted(i["key"] for i in data["instances"])
    assert report.plan.get("create", 0) == 0 and not report.acted  # nothing recreated over what cannot be seen
    assert {r.status for r in store.instances(name)} == {"unknown"}


def test_stopped_podman_makes_containers_unknown_then_ready_again(strato, tmp_path, monkeypatch):
    pytest.importorskip("docker", reason="the docker driver needs the docker SDK (pip install 'strato[containers]')")
    from tests.env import podman as podman_env
    work = str(tmp_path / "podman")
    try:
        engine = podman_env.start(work)
    except podman_env.PodmanUnavailable as exc:
        pytest.skip(str(exc))
    name = unique("pods")
    doc = f"""
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            web:
              type: strato.nodes.Container
              properties:
                image: {engine.image}
                command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
                ports: [8080]
                docker_host: {engine.docker_host}
                health_check: {{http: /, timeout: 30}}
              capabilities: {{scalable: {{properties: {{default_instances: 3}}}}}}
    """
    up = True
    try:
        proc = strato("build", write(tmp_path, doc), "--name", name, "-q", timeout=180)
        assert proc.returncode == 0, proc.stderr
        code, data = status_json(strato, name, "--check")
        assert code == 0 and [i["status"] for i in data["instances"]] == ["ready"] * 3
        engine.stop()
        up = False
        code, data = status_json(strato, name, "--check")
        assert code == 2 and [i["status"] for i in data["instances"]] == ["unknown"] * 3
        assert all(i["error"] for i in data["instances"])
        engine, up = podman_env.start(work), True  # the engine is back: observed, and ready again
        code, data = status_json(strato, name, "--check")
        assert code == 0 and [i["status"] for i in data["instances"]] == ["ready"] * 3
    finally:
        if not up:
            engine = podman_env.start(work)
        strato("destroy", name, "--yes", "-q", timeout=120)
        subprocess.run(["podman", "rm", "-f", "--filter", f"label=strato.infra={name}"], capture_output=True,
                       env=engine.cli_env(), timeout=60)
        engine.stop()
