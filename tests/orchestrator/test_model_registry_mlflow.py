"""MLflow references (`models:/iris@champion`, `models:/iris/2`) resolved through MLflow's own registry on its local
file backend, the artifact copied into Strato's content store (the optional [mlflow] extra)."""

from __future__ import annotations

import hashlib
import os

import pytest

from orchestrator.mlops.registry import ModelRegistry, RegistryError

mlflow = pytest.importorskip("mlflow", reason="MLflow references need the [mlflow] extra (pip install 'strato[mlflow]')")


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A fresh MLflow file store holding model 'iris': v1 a single file, v2 a directory; champion -> v2."""
    # MLflow 3 keeps its file backend only behind this switch; the issue asks for exactly that backend
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("strato-test")
    client.create_registered_model("iris")
    for number, files in ((1, {"model.pkl": b"pickled v1"}), (2, {"MLmodel": b"flavors: {}", "model.pkl": b"v2"})):
        run = client.create_run(experiment)
        source = tmp_path / f"v{number}"
        source.mkdir()
        for name, data in files.items():
            (source / name).write_bytes(data)
        client.log_artifacts(run.info.run_id, str(source), artifact_path="model")
        client.set_terminated(run.info.run_id)
        client.create_model_version("iris", f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                    description=f"version {number}")
    client.set_registered_model_alias("iris", "champion", "2")
    return uri


def test_alias_and_version_refs_resolve_through_mlflow_into_the_store(tmp_path, mlflow_uri):
    reg = ModelRegistry(str(tmp_path / "models"))
    champion = reg.resolve("models:/iris@champion")
    assert (champion.name, champion.version, champion.ref) == ("iris", 2, "models:/iris/2")
    assert champion.path.startswith(os.path.join(reg.root, "blobs", "sha256"))
    assert sorted(os.listdir(champion.path)) == ["MLmodel", "model.pkl"]      # an MLflow model directory, whole
    assert champion.metadata["source"] == "mlflow" and champion.metadata["run_id"]
    first = reg.resolve("models:/iris/1")
    assert os.path.isfile(first.path) and open(first.path, "rb").read() == b"pickled v1"  # one file: that file
    assert first.digest == "sha256:" + hashlib.sha256(b"pickled v1").hexdigest()
    assert reg.resolve("models:/iris/1").digest == first.digest              # resolving again: the same blob
    assert os.listdir(os.path.join(reg.root, "tmp")) == []                   # downloads are cleaned up


def test_the_alias_moving_in_mlflow_moves_the_resolution(tmp_path, mlflow_uri):
    reg = ModelRegistry(str(tmp_path / "models"))
    assert reg.resolve("models:/iris@champion").version == 2
    mlflow.MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri).set_registered_model_alias(
        "iris", "champion", "1")
    assert reg.resolve("models:/iris@champion").version == 1


@pytest.mark.parametrize("ref, code", [("models:/iris@nope", "ALIAS_NOT_FOUND"),
                                       ("models:/iris/9", "VERSION_NOT_FOUND"),
                                       ("models:/ghost/1", "VERSION_NOT_FOUND"),
                                       ("models:/iris/latest", "VERSION_INVALID")])
def test_mlflow_refusals_have_a_code_and_one_sentence(tmp_path, mlflow_uri, ref, code):
    with pytest.raises(RegistryError) as info:
        ModelRegistry(str(tmp_path / "models")).resolve(ref)
    assert info.value.code == code and "\n" not in info.value.message


def test_local_refs_stay_local_with_mlflow_configured(tmp_path, mlflow_uri):
    reg = ModelRegistry(str(tmp_path / "models"))
    (tmp_path / "m").write_text("local")
    reg.push("iris", str(tmp_path / "m"))
    assert reg.resolve("iris:1").metadata.get("source") is None
    assert reg.resolve("iris:1").ref == "iris:1"


def test_a_version_already_copied_is_not_downloaded_again(tmp_path, mlflow_uri):
    reg = ModelRegistry(str(tmp_path / "models"))
    first = reg.resolve("models:/iris@champion")
    import shutil
    shutil.rmtree(tmp_path / "v2")                      # the source files, gone; MLflow's copy too:
    for root, dirs, _ in os.walk(tmp_path / "mlruns"):
        if os.path.basename(root) == "artifacts":
            shutil.rmtree(root)
            dirs[:] = []
    again = reg.resolve("models:/iris/2")               # MLflow still says which version; the store has it
    assert (again.version, again.digest, again.path) == (first.version, first.digest, first.path)
    cache = open(os.path.join(reg.root, "mlflow-versions.json")).read()
    assert "file:" not in cache and "mlruns" not in cache   # the URI (maybe with credentials) is not written
    os.unlink(first.path) if os.path.isfile(first.path) else shutil.rmtree(first.path)
    with pytest.raises(RegistryError) as info:          # the blob went missing: download again, which fails here
        reg.resolve("models:/iris/2")
    assert info.value.code == "MLFLOW_ARTIFACT_UNAVAILABLE" and "\n" not in info.value.message


def test_a_tracking_server_that_does_not_answer_is_one_line(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:      # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    reg = ModelRegistry(str(tmp_path / "models"), mlflow_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(RegistryError) as info:
        reg.resolve("models:/iris@champion")
    assert info.value.code == "MLFLOW_ERROR" and "\n" not in info.value.message
