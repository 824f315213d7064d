"""examples/control-plane/: the Kubernetes manifests validate offline in strict mode, and the image Podman builds
from this repository serves /healthz, refuses an unauthenticated /v1 call, runs as a non-root user, listens beyond
its own loopback only when told, reads its secrets from files, and runs as three replicas over one PostgreSQL.

With no image registry here the image's base is assembled from this machine's Python by examples/control-plane/
rootfs.sh (kept between runs, tagged by the script's and the interpreter's digest) and the dependencies install
from a wheelhouse (kept under /tmp per setup.cfg) with `pip --no-index`; the build itself has no network.
Measured here: about 45 s cold (base 6 s, wheels 8 s, image 30 s), about 5 s when only the source changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
import yaml

from tests.conftest import REPO
from tests.pg import free_port

EXAMPLE = os.path.join(REPO, "examples", "control-plane")
ROOTFS = os.path.join(EXAMPLE, "rootfs.sh")
KUBERNETES_VERSION = "1.33.0"  # the schemas the manifests are checked against (kubernetes-validate ships them)
WRITE_TOKEN, READ_TOKEN = "w-" + "c" * 38, "r-" + "d" * 38
NOOP = "tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n  node_templates:\n" \
       "    n:\n      type: strato.nodes.Noop\n"

pytestmark = [pytest.mark.e2e]


def manifests() -> list[dict]:
    """Every object of examples/control-plane/kubernetes/ (the Secret template and the workload)."""
    docs = []
    for name in ("secret.yaml", "control-plane.yaml"):
        with open(os.path.join(EXAMPLE, "kubernetes", name), encoding="utf-8") as fh:
            docs += [doc for doc in yaml.safe_load_all(fh) if doc]
    return docs


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in manifests() if d["kind"] == kind]
    return doc


# ---------------------------------------------------------------- the Kubernetes manifests, offline


def test_manifests_validate_in_strict_mode_against_pinned_kubernetes():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install 'strato[test]'")
    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_misspelled_field():
    """The check has teeth: a field Kubernetes does not know (it would silently ignore it) fails validation."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install 'strato[test]'")
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/healthz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_deployment_runs_three_probed_limited_non_root_replicas_behind_the_service():
    deployment, service = by_kind("Deployment"), by_kind("Service")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 3
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and set(container["resources"]["limits"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # the writable places are volumes; the server is told to listen beyond loopback
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/strato", "/tmp"} <= mounts
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STRATO_HOST"] == "0.0.0.0"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["ports"][0]["name"] == "http"


def test_secret_holds_placeholders_the_server_refuses_and_the_pod_reads_them_as_files():
    from orchestrator.api.security import MIN_TOKEN_LENGTH
    secret, deployment = by_kind("Secret"), by_kind("Deployment")
    values = secret["stringData"]
    assert set(values) == {"api-token", "api-read-token", "state-url", "secret-key"}
    assert all("CHANGE-ME" in v for v in values.values())
    # applied by mistake, the placeholders do not become working credentials: tokens that short are refused
    assert all(len(values[k]) < MIN_TOKEN_LENGTH for k in ("api-token", "api-read-token"))
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    for name, key in (("STRATO_API_TOKEN", "api-token"), ("STRATO_API_READ_TOKEN", "api-read-token"),
                      ("STRATO_STATE_URL", "state-url"), ("STRATO_SECRET_KEY", "secret-key")):
        assert env[f"{name}_FILE"] == f"/run/secrets/strato/{key}"


# ---------------------------------------------------------------- the image, built by Podman


def podman_cli(env: dict, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}... exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def script(env: dict, *args: str, timeout: float = 600) -> dict[str, str]:
    """Run rootfs.sh; its KEY=VALUE lines. A failure that is the machine's (no network for the wheels) skips."""
    proc = subprocess.run(["bash", ROOTFS, *args], capture_output=True, text=True, timeout=timeout,
                          env={**env, "PYTHON": sys.executable})
    if proc.returncode != 0:
        pytest.skip(f"examples/control-plane/rootfs.sh {args[0]} failed here: {proc.stderr.strip()[-400:]}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def base_image(env: dict, work: str) -> str:
    """The locally assembled base, rebuilt only when rootfs.sh or the interpreter changes."""
    digest = hashlib.sha256(open(ROOTFS, "rb").read() + sys.version.encode()).hexdigest()[:12]
    tag = f"localhost/strato-python-base:3.11-{digest}"
    if podman_cli(env, "image", "exists", tag, check=False).returncode != 0:
        script(env, "base", os.path.join(work, "base"), tag)
    return tag


def wheelhouse(env: dict, work: str) -> str:
    """The dependencies' wheels, downloaded once per setup.cfg and kept under /tmp: a stable path also keeps
    Podman's cache of the layer that installs them."""
    digest = hashlib.sha256(open(os.path.join(REPO, "setup.cfg"), "rb").read() + sys.version.encode()).hexdigest()
    kept = os.path.join(tempfile.gettempdir(), f"strato-control-plane-wheels-{digest[:12]}")
    if not os.path.isdir(kept):
        staged = script(env, "wheels", os.path.join(work, "wheels"))["WHEELS"]
        try:
            os.rename(staged, kept)
        except OSError:  # another session kept the same wheels first
            return staged
    return kept


@pytest.fixture(scope="module")
def image(podman, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("control-plane"))
    env = podman.cli_env()
    base = base_image(env, work)
    wheels = wheelhouse(env, work)
    tag = f"localhost/strato-control-plane-test:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    podman_cli(env, "build", "--format", "docker", "-f", os.path.join(EXAMPLE, "Containerfile"), "-t", tag,
               "--build-arg", f"BASE={base}", "--build-arg", "PIP_OPTIONS=--no-index --find-links /wheels",
               "--network", "none", "-v", f"{wheels}:/wheels:ro", REPO, timeout=900)
    print(f"control-plane image built in {time.monotonic() - started:.1f} s", file=sys.stderr)
    yield tag
    podman_cli(env, "rmi", "--no-prune", tag, check=False)  # its intermediate layers stay: the next build's cache


@pytest.fixture
def secrets_dir(tmp_path):
    """Token files as a Secret volume would hold them, readable by the image's user (not root)."""
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o755)
    for name, value in (("api-token", WRITE_TOKEN), ("api-read-token", READ_TOKEN)):
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o644)
    os.chmod(directory, 0o755)
    return directory


@pytest.fixture
def containers(podman):
    """Start containers; every one is removed at the end of the test."""
    names: list[str] = []

    def run(image: str, *args: str, env_vars: dict | None = None) -> str:
        name = f"strato-cp-{uuid.uuid4().hex[:8]}"
        flags = [f"-e{k}={v}" for k, v in (env_vars or {}).items()]
        podman_cli(podman.cli_env(), "run", "-d", "--name", name, *flags, *args, image)
        names.append(name)
        return name

    yield run
    for name in names:
        podman_cli(podman.cli_env(), "rm", "-f", "-t", "2", name, check=False)


# the tokens as files (a mounted Secret), never as values in the container's config
TOKEN_FILES = {"STRATO_API_TOKEN_FILE": "/run/secrets/strato/api-token",
               "STRATO_API_READ_TOKEN_FILE": "/run/secrets/strato/api-read-token"}


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_healthz(url: str, podman, name: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return get(url + "/healthz", timeout=2)[1]
        except OSError:
            time.sleep(0.3)
    logs = podman_cli(podman.cli_env(), "logs", name, check=False)
    raise AssertionError(f"{name} never answered {url}/healthz: {(logs.stdout + logs.stderr).strip()[-800:]}")


def published(podman, name: str) -> str:
    mapping = podman_cli(podman.cli_env(), "port", name, "8470/tcp").stdout.strip().splitlines()[0]
    host, port = mapping.rsplit(":", 1)
    assert host == "127.0.0.1"
    return f"http://127.0.0.1:{port}"


# what the Deployment's securityContext asks of the pod: a read-only root, no capabilities, no privilege gain,
# STRATO_HOME a writable volume of the image's user
AS_THE_POD_RUNS = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                   "--tmpfs", "/var/lib/strato:rw,mode=0700,U"]


def test_image_answers_healthz_refuses_no_token_and_runs_as_non_root(image, podman, containers, secrets_dir):
    name = containers(image, *AS_THE_POD_RUNS, "-p", "127.0.0.1::8470", "-v", f"{secrets_dir}:/run/secrets/strato:ro",
                      env_vars={"STRATO_HOST": "0.0.0.0", **TOKEN_FILES})
    url = published(podman, name)
    assert wait_healthz(url, podman, name)["ok"] is True
    status, body = get(url + "/v1/infrastructures")
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    assert get(url + "/v1/infrastructures", READ_TOKEN)[0] == 200  # the token came from the secret file
    env = podman.cli_env()
    assert podman_cli(env, "exec", name, "id", "-u").stdout.strip() == "10001"
    inspected = json.loads(podman_cli(env, "image", "inspect", image).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"
    assert inspected["Healthcheck"]["Test"] == ["CMD", "python", "/opt/strato/entrypoint.py", "healthcheck"]
    assert podman_cli(env, "healthcheck", "run", name, check=False).returncode == 0


def test_image_listens_on_its_own_loopback_unless_told(image, podman, containers, secrets_dir):
    """Without STRATO_HOST the server is healthy inside the container but the published port reaches nothing."""
    name = containers(image, "-p", "127.0.0.1::8470", "-v", f"{secrets_dir}:/run/secrets/strato:ro",
                      env_vars=TOKEN_FILES)
    url = published(podman, name)
    deadline = time.monotonic() + 90
    while podman_cli(podman.cli_env(), "healthcheck", "run", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the server never became healthy inside the container"
        time.sleep(0.5)
    with pytest.raises(OSError):
        get(url + "/healthz", timeout=3)


def test_a_missing_secret_file_stops_the_container_with_one_line(image, podman):
    proc = podman_cli(podman.cli_env(), "run", "--rm", "-e", "STRATO_API_TOKEN_FILE=/run/secrets/none", image,
                      check=False)
    assert proc.returncode == 78
    assert "entrypoint: STRATO_API_TOKEN_FILE=/run/secrets/none: No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_healthcheck_of_a_server_that_does_not_answer_fails_in_one_line():
    port = free_port()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLE, "entrypoint.py"), "healthcheck"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "STRATO_HOST": "0.0.0.0", "STRATO_PORT": str(port)})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"healthcheck: http://127.0.0.1:{port}/healthz: ") and proc.stderr.count("\n") == 1


def test_three_replicas_share_one_postgresql(image, podman, containers, secrets_dir, pg_cluster, pg_url):
    """Three containers of the image on host networking (the private PostgreSQL listens on 127.0.0.1), each on its
    own loopback port: all answer /healthz, and what one is asked to build the other two see."""
    database = urllib.parse.urlsplit(pg_url).path.lstrip("/")
    (secrets_dir / "state-url").write_text(f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{database}\n")
    (secrets_dir / "state-url").chmod(0o644)
    # one sealing key for all: what one replica seals in the shared database, the others can open
    from cryptography.fernet import Fernet
    key = Fernet.generate_key().decode()
    (secrets_dir / "secret-key").write_text(key + "\n")
    (secrets_dir / "secret-key").chmod(0o644)
    urls, names = [], []
    for _ in range(3):
        port = free_port()
        names.append(containers(image, *AS_THE_POD_RUNS, "--network", "host",
                                "-v", f"{secrets_dir}:/run/secrets/strato:ro",
                                env_vars={"STRATO_HOST": "127.0.0.1", "STRATO_PORT": str(port),
                                          "STRATO_STATE_URL_FILE": "/run/secrets/strato/state-url",
                                          "STRATO_SECRET_KEY_FILE": "/run/secrets/strato/secret-key",
                                          **TOKEN_FILES}))
        urls.append(f"http://127.0.0.1:{port}")
    for url, name in zip(urls, names):
        assert wait_healthz(url, podman, name)["ok"] is True
        copied = podman_cli(podman.cli_env(), "exec", name, "stat", "-c", "%a", "/var/lib/strato/secret.key")
        assert copied.stdout.strip() == "600"
        assert podman_cli(podman.cli_env(), "exec", name, "cat", "/var/lib/strato/secret.key").stdout == key
    infra = f"cp{uuid.uuid4().hex[:6]}"
    request = urllib.request.Request(urls[0] + "/v1/infrastructures", method="POST",
                                     data=json.dumps({"name": infra, "descriptor": NOOP}).encode(),
                                     headers={"Authorization": f"Bearer {WRITE_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202
    for url in urls[1:]:
        deadline = time.monotonic() + 30
        while get(f"{url}/v1/infrastructures/{infra}", READ_TOKEN)[0] != 200:
            assert time.monotonic() < deadline, f"{url} never saw {infra} built through {urls[0]}"
            time.sleep(0.3)
