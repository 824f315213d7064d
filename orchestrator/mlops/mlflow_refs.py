"""MLflow registry references (`models:/iris@champion`, `models:/iris/3`) resolved through MLflow's own client and
copied into Strato's content store, so a model server is always handed a local, hashed path (the `[mlflow]` extra).

MLflow is imported here only, when such a reference is resolved: the CLI and the engine start without it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Callable

INSTALL_HINT = ("pip install 'strato[mlflow]', or unset MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI "
                "to name Strato's own models")


class MlflowRefError(Exception):
    """A refusal with the registry's codes (the registry re-raises it as its own RegistryError)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Fetched:
    """An MLflow model version whose artifact is now in the content store under `digest`."""

    version: int
    digest: str
    created_at: float
    metadata: dict
    downloaded: bool


def fetch(uri: str, name: str, alias: str | None, version: str | None, tmp_dir: str,
          store: Callable[[str], str], cached: Callable[[int], str | None]) -> Fetched:
    """Look the reference up in MLflow's registry at `uri`; unless `cached(version)` already knows the digest of
    that version (an MLflow version's artifact never changes), download its artifact under tmp_dir and hand
    the local path to `store` (which returns its digest)."""
    try:
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise MlflowRefError("MLFLOW_MISSING", f"models:/{name} names an MLflow model but MLflow is not installed: "
                                              f"{INSTALL_HINT}") from None
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if alias is not None:
            found = client.get_model_version_by_alias(name, alias)
        else:
            found = client.get_model_version(name, str(_number(version)))
    except (MlflowException, OSError) as exc:   # OSError: a tracking server that does not answer
        raise _refusal(exc, name, alias, version) from None
    digest = cached(int(found.version))
    if digest is None:
        try:
            source = client.get_model_version_download_uri(name, found.version)
            with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="mlflow-") as tmp:
                local = download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=uri)
                fresh = store(_single_file(local))
        except (MlflowException, OSError) as exc:
            raise MlflowRefError("MLFLOW_ARTIFACT_UNAVAILABLE", f"MLflow has models:/{name}/{found.version} but "
                                                                f"its artifact could not be downloaded: "
                                                                f"{_first_line(exc)}") from None
    metadata = {"source": "mlflow", "run_id": found.run_id, "source_uri": found.source, "alias": alias,
                "metrics": {}, "data_digest": None, "parent": None, "created_by": found.user_id,
                "note": found.description or "", "status": None, "tags": dict(found.tags or {})}
    return Fetched(int(found.version), digest or fresh, (found.creation_timestamp or 0) / 1000.0, metadata,
                   digest is None)


def _number(version: str | None) -> int:
    if version is None or not version.isdigit() or int(version) < 1:
        raise MlflowRefError("VERSION_INVALID", f"'{version}' is not an MLflow model version: use models:/NAME/3 "
                                               "or models:/NAME@ALIAS")
    return int(version)


def _single_file(path: str) -> str:
    """A downloaded artifact directory holding exactly one file is that file (a pickled model, say); any other
    directory (an MLflow model with its MLmodel file) is stored whole."""
    if os.path.isdir(path):
        entries = os.listdir(path)
        if len(entries) == 1 and os.path.isfile(os.path.join(path, entries[0])):
            return os.path.join(path, entries[0])
    return path


def _refusal(exc, name: str, alias: str | None, version: str | None) -> MlflowRefError:
    """MLflow's exception as one of the registry's codes and one sentence (its first line)."""
    what = f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"
    message = _first_line(exc)
    # a missing alias comes back as INVALID_PARAMETER_VALUE with "not found" (MLflow 3's file and SQL stores)
    code = getattr(exc, "error_code", None)   # only MLflow's own exceptions have one
    if code == "RESOURCE_DOES_NOT_EXIST" or (code and "not found" in message.lower()):
        code = "ALIAS_NOT_FOUND" if alias is not None else "VERSION_NOT_FOUND"
        return MlflowRefError(code, f"MLflow's registry has no {what}: {message}")
    return MlflowRefError("MLFLOW_ERROR", f"MLflow could not resolve {what}: {message}")


def _first_line(exc: Exception) -> str:
    return (str(getattr(exc, "message", exc)).strip().splitlines() or ["no detail"])[0]
