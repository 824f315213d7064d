"""The model registry: versioned, content-addressed model artifacts with aliases and a journal of every change.

Layout under ROOT (default $STRATO_HOME/models; directories 0700, files 0600):

    blobs/sha256/<hex>   an artifact (a file or a directory) or a training reference CSV, by content
    meta/<name>.json     one model: its versions, its aliases and its history, replaced atomically
    .lock                held (fcntl.flock) by whoever changes a model, so two pushes never lose a version

Versions are numbered 1, 2, 3... per name; pushing the same content again gives back the existing version.
Aliases (`champion`, `staging`, ...) point at versions; `latest` follows every push. Every push, promote,
rollback and mark is recorded with its reason and time, so "why did this model change?" has an answer.

References: `iris` (its champion, else its newest version), `iris:3`, `iris@champion`, and MLflow's
`models:/iris@champion` and `models:/iris/3`. The `models:/` forms go to MLflow's registry when a
registry URI is set (MLFLOW_REGISTRY_URI or MLFLOW_TRACKING_URI, or `mlflow_uri=`) and the `[mlflow]` extra is
installed; the artifact is then copied into this store, so what is served is a local, hashed path. Without an
MLflow URI they name this registry's models.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import getpass
import hashlib
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from drivers.common import make_private_dir, make_private_file, strato_home
from orchestrator.errors import UserError
from orchestrator.mlops.blobs import BlobError, BlobStore

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
LATEST = "latest"              # moved by every push, never by hand
DEFAULT_ALIAS = "champion"
STATUSES = ("good", "bad")
REF_FORMS = "NAME, NAME:VERSION, NAME@ALIAS, models:/NAME@ALIAS or models:/NAME/VERSION"
_MLFLOW_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")
_LOCAL_REF = re.compile(r"^(?P<name>[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<alias>[^:@/]+))?$")


class RegistryError(UserError):
    """A refusal of the registry: a stable code and one sentence (the CLI prints it, the API answers 4xx)."""

    NOT_FOUND_CODES = ("MODEL_NOT_FOUND", "VERSION_NOT_FOUND", "ALIAS_NOT_FOUND", "BLOB_MISSING")

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model; `path` is its blob (a file or a directory) in the content store."""

    name: str
    version: int
    digest: str
    path: str
    created_at: float
    metadata: dict = field(default_factory=dict)   # metrics, data_digest, parent, created_by, note, status
    reference_path: str | None = None               # a CSV of training rows (header + rows), or None

    @property
    def ref(self) -> str:
        if self.metadata.get("source") == "mlflow":
            return f"models:/{self.name}/{self.version}"
        return f"{self.name}:{self.version}"

    @property
    def status(self) -> str | None:
        return self.metadata.get("status")

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "ref": self.ref, "digest": self.digest,
                "path": self.path, "created_at": self.created_at, "metadata": dict(self.metadata),
                "reference_path": self.reference_path}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError("MODEL_NAME_INVALID", f"'{name}' is not a model name: use 1-63 letters, digits, "
                                                  "'_', '-' or '.', starting with a letter or digit")
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise RegistryError("ALIAS_INVALID", f"'{alias}' is not an alias: use 1-63 letters, digits, '_' or '-', "
                                             "starting with a letter")
    return alias


def _version_number(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise RegistryError("VERSION_INVALID", f"'{value}' is not a version: versions are numbered 1, 2, 3...")
    return number


class ModelRegistry:
    """Versions, aliases and history of models, kept as JSON beside a content-addressed blob store."""

    def __init__(self, root: str | None = None, mlflow_uri: str | None = None):
        self.root = os.path.abspath(root or os.path.join(strato_home(), "models"))
        make_private_dir(self.root)
        self.meta_dir = os.path.join(self.root, "meta")
        make_private_dir(self.meta_dir)
        self.blobs = BlobStore(self.root)
        self.mlflow_uri = mlflow_uri or os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI")

    # -- reading ------------------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(n[:-5] for n in os.listdir(self.meta_dir) if n.endswith(".json") and NAME_RE.match(n[:-5]))

    def versions(self, name: str) -> list[ModelVersion]:
        doc = self._require(name)
        return [self._version(doc, v) for v in doc["versions"]]

    def aliases(self, name: str) -> dict[str, int]:
        return dict(self._require(name)["aliases"])

    def history(self, name: str) -> list[dict]:
        """Every change of the model, oldest first: {event: push|promote|rollback|mark, version, alias, previous,
        status, reason, at, by}."""
        return [dict(e) for e in self._require(name)["history"]]

    def alias_history(self, name: str, alias: str) -> list[dict]:
        """The moves of one alias, oldest first: {version, previous, kind: promote|rollback|push, reason, at}."""
        check_alias(alias)
        return [{"version": e["version"], "previous": e.get("previous"), "kind": e["event"],
                 "reason": e.get("reason", ""), "at": e["at"]}
                for e in self._require(name)["history"] if e.get("alias") == alias]

    def describe(self, name: str) -> dict:
        """The whole model as one JSON-ready document (for `strato models show` and GET /v1/models/NAME)."""
        doc = self._require(name)
        return {"name": name, "versions": [self._version(doc, v).to_dict() for v in doc["versions"]],
                "aliases": dict(doc["aliases"]), "history": [dict(e) for e in doc["history"]]}

    def resolve(self, ref: str) -> ModelVersion:
        """The version a reference names (see the module's docstring for the forms)."""
        if not isinstance(ref, str) or not ref.strip():
            raise RegistryError("REF_INVALID", f"a model reference is one of {REF_FORMS}")
        ref = ref.strip()
        mlflow_ref = _MLFLOW_REF.match(ref)
        if mlflow_ref and self.mlflow_uri:
            return self._resolve_mlflow(mlflow_ref["name"], mlflow_ref["alias"], mlflow_ref["version"])
        parts = mlflow_ref or _LOCAL_REF.match(ref)
        if parts is None:
            raise RegistryError("REF_INVALID", f"'{ref}' is not a model reference: use one of {REF_FORMS}")
        doc = self._require(check_name(parts["name"]))
        if parts["version"] is not None:
            return self._version(doc, self._find(doc, _version_number(parts["version"])))
        alias = parts["alias"] or (DEFAULT_ALIAS if DEFAULT_ALIAS in doc["aliases"] else LATEST)
        if check_alias(alias) not in doc["aliases"]:
            raise RegistryError("ALIAS_NOT_FOUND", f"model '{doc['name']}' has no alias '{alias}' "
                                                   f"(it has: {', '.join(sorted(doc['aliases'])) or 'none'})")
        return self._version(doc, self._find(doc, doc["aliases"][alias]))

    # -- changing -----------------------------------------------------------------------------------------------
    def push(self, name: str, artifact_path: str, *, metrics: dict | None = None, data_digest: str | None = None,
             parent: int | None = None, created_by: str | None = None, reference_path: str | None = None,
             note: str | None = None) -> ModelVersion:
        """Store an artifact (a file or a directory) as the model's next version; the same content again gives
        back the version that already holds it."""
        check_name(name)
        metadata = _metadata(metrics, data_digest, created_by, note)
        reference = _check_reference(reference_path) if reference_path else None
        digest = self._store(lambda: self.blobs.put(artifact_path))
        ref_digest = self._store(lambda: self.blobs.put(reference)) if reference else None
        return self._record_push(name, digest, metadata, parent, ref_digest)

    def push_bytes(self, name: str, data: bytes, *, reference_csv: bytes | None = None, **fields) -> ModelVersion:
        """push() for an artifact received as bytes (an upload): nothing is read from a path the sender names."""
        check_name(name)
        metadata = _metadata(fields.get("metrics"), fields.get("data_digest"), fields.get("created_by"),
                             fields.get("note"))
        ref_digest = None
        if reference_csv is not None:
            _check_reference_text(reference_csv, "the reference CSV")
            ref_digest = self._store(lambda: self.blobs.put_bytes(reference_csv))
        digest = self._store(lambda: self.blobs.put_bytes(data))
        return self._record_push(name, digest, metadata, fields.get("parent"), ref_digest)

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS, reason: str = "", *,
                by: str | None = None) -> ModelVersion:
        """Point the alias at the version (a version marked bad is refused); recorded with the reason and who
        (`by`, default this process's user)."""
        check_alias(alias)
        _not_latest(alias, "promote")
        with self._changing(name) as doc:
            entry = self._find(doc, _version_number(version))
            if entry["metadata"].get("status") == "bad":
                raise RegistryError("VERSION_BAD", f"{name}:{entry['version']} is marked bad; mark it good first "
                                                   f"(`strato models mark {name} {entry['version']} good`)")
            if doc["aliases"].get(alias) != entry["version"]:
                _move(doc, alias, entry["version"], "promote", reason, by)
            return self._version(doc, entry)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS, reason: str = "", *,
                 by: str | None = None) -> ModelVersion:
        """Move the alias back to the last version it pointed at before that is not marked bad; the version it
        leaves is marked bad (so a second rollback goes further back, never forth)."""
        check_alias(alias)
        _not_latest(alias, "roll back")
        with self._changing(name) as doc:
            current = doc["aliases"].get(alias)
            if current is None:
                raise RegistryError("ALIAS_NOT_FOUND", f"model '{name}' has no alias '{alias}' to roll back")
            statuses = {v["version"]: v["metadata"].get("status") for v in doc["versions"]}
            earlier = [e["version"] for e in doc["history"] if e.get("alias") == alias]
            target = next((v for v in reversed(earlier) if v != current and statuses.get(v) != "bad"), None)
            if target is None:
                raise RegistryError("NO_GOOD_VERSION", f"{name}@{alias} never pointed at a version before "
                                                       f"{current} that is not marked bad; promote one instead")
            why = reason or "rolled back"
            _set_status(doc, self._find(doc, current), "bad", f"rolled back from {name}@{alias}: {why}", by)
            _move(doc, alias, target, "rollback", why, by)
            return self._version(doc, self._find(doc, target))

    def mark(self, name: str, version: int, status: str, reason: str = "", *, by: str | None = None
             ) -> ModelVersion:
        """Mark a version good or bad (a bad version is never promoted, nor rolled back to)."""
        if status not in STATUSES:
            raise RegistryError("STATUS_INVALID", f"'{status}' is not a status: use 'good' or 'bad'")
        with self._changing(name) as doc:
            entry = self._find(doc, _version_number(version))
            if entry["metadata"].get("status") != status:
                _set_status(doc, entry, status, reason, by)
            return self._version(doc, entry)

    def _resolve_mlflow(self, name: str, alias: str | None, version: str | None) -> ModelVersion:
        """An MLflow model version, its artifact copied into this store once (see mlflow_refs); later
        resolutions of the same version ask MLflow only which version, and download nothing."""
        from orchestrator.mlops import mlflow_refs
        if alias is not None:
            check_alias(alias)
        # the key hashes the URI: it may carry credentials, which have no place in a file
        key = hashlib.sha256(self.mlflow_uri.encode()).hexdigest()[:16] + f"/{name}/"
        known = self._mlflow_known()

        def cached(number: int) -> str | None:
            digest = known.get(key + str(number))
            return digest if digest and self.blobs.exists(digest) else None
        try:
            got = mlflow_refs.fetch(self.mlflow_uri, name, alias, version, self.blobs.tmp,
                                    lambda path: self._store(lambda: self.blobs.put(path)), cached)
        except mlflow_refs.MlflowRefError as exc:
            raise RegistryError(exc.code, str(exc)) from None
        if got.downloaded:
            with self._lock():
                _write_atomic(self._mlflow_cache, {**self._mlflow_known(), key + str(got.version): got.digest})
        return ModelVersion(name, got.version, got.digest, self.blobs.path(got.digest), got.created_at,
                            got.metadata, None)

    @property
    def _mlflow_cache(self) -> str:
        return os.path.join(self.root, "mlflow-versions.json")

    def _mlflow_known(self) -> dict[str, str]:
        """{uri-hash/name/version: digest} of the MLflow versions already copied into the store."""
        try:
            with open(self._mlflow_cache) as fh:
                known = json.load(fh)
            return known if isinstance(known, dict) else {}
        except (OSError, ValueError):   # none yet, or damaged: downloading again is always right
            return {}

    # -- the pieces ---------------------------------------------------------------------------------------------
    def _store(self, put) -> str:
        try:
            return put()
        except BlobError as exc:
            raise RegistryError(exc.code, str(exc)) from None

    def _record_push(self, name: str, digest: str, metadata: dict, parent: Any, ref_digest: str | None
                     ) -> ModelVersion:
        with self._changing(name, create=True) as doc:
            same = next((v for v in doc["versions"] if v["digest"] == digest), None)
            if same is not None:
                return self._version(doc, same)
            if parent is not None:
                metadata["parent"] = self._find(doc, _version_number(parent))["version"]
            number = max((v["version"] for v in doc["versions"]), default=0) + 1
            entry = {"version": number, "digest": digest, "created_at": time.time(), "metadata": metadata,
                     "reference": ref_digest}
            doc["versions"].append(entry)
            _move(doc, LATEST, number, "push", metadata.get("note") or "", by=metadata.get("created_by"))
            return self._version(doc, entry)

    def _version(self, doc: dict, entry: dict) -> ModelVersion:
        path = self.blobs.path(entry["digest"])
        if not os.path.exists(path):
            raise RegistryError("BLOB_MISSING", f"the artifact of {doc['name']}:{entry['version']} "
                                                f"({entry['digest']}) is missing from the store")
        return ModelVersion(doc["name"], entry["version"], entry["digest"], path, entry["created_at"],
                            dict(entry["metadata"]),
                            self.blobs.path(entry["reference"]) if entry.get("reference") else None)

    @staticmethod
    def _find(doc: dict, number: int) -> dict:
        for entry in doc["versions"]:
            if entry["version"] == number:
                return entry
        raise RegistryError("VERSION_NOT_FOUND", f"model '{doc['name']}' has no version {number} "
                                                 f"(it has {len(doc['versions'])})")

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.meta_dir, check_name(name) + ".json")

    def _read(self, name: str) -> dict | None:
        try:
            with open(self._meta_path(name)) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError("REGISTRY_DAMAGED", f"cannot read model '{name}' ({exc})") from None

    def _require(self, name: str) -> dict:
        doc = self._read(name)
        if doc is None:
            raise RegistryError("MODEL_NOT_FOUND", f"no model named '{name}' (push one with `strato models push`)")
        return doc

    @contextlib.contextmanager
    def _changing(self, name: str, create: bool = False) -> Iterator[dict]:
        """The model's document under the registry's lock, written back atomically when the block succeeds."""
        with self._lock():
            doc = self._read(name)
            if doc is None:
                if not create:
                    raise RegistryError("MODEL_NOT_FOUND", f"no model named '{name}' "
                                                           "(push one with `strato models push`)")
                doc = {"name": name, "versions": [], "aliases": {}, "history": []}
            before = json.dumps(doc, sort_keys=True)
            yield doc
            if json.dumps(doc, sort_keys=True) != before:
                _write_atomic(self._meta_path(name), doc)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        path = os.path.join(self.root, ".lock")
        make_private_file(path)
        with open(path, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _move(doc: dict, alias: str, version: int, kind: str, reason: str, by: str | None = None) -> None:
    """Point the alias at the version and journal the move (a push's move of `latest` is the push's record)."""
    previous = doc["aliases"].get(alias)
    doc["aliases"][alias] = version
    doc["history"].append({"event": kind, "alias": alias, "version": version, "previous": previous,
                           "reason": reason, "at": time.time(), "by": by or _user()})


def _set_status(doc: dict, entry: dict, status: str, reason: str, by: str | None = None) -> None:
    previous = entry["metadata"].get("status")
    entry["metadata"]["status"] = status
    doc["history"].append({"event": "mark", "version": entry["version"], "status": status, "previous": previous,
                           "reason": reason, "at": time.time(), "by": by or _user()})


def _not_latest(alias: str, verb: str) -> None:
    if alias == LATEST:
        raise RegistryError("ALIAS_RESERVED", f"'{LATEST}' follows every push; you cannot {verb} it by hand")


def _metadata(metrics: dict | None, data_digest: str | None, created_by: str | None, note: str | None) -> dict:
    clean = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not key or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise RegistryError("METRIC_INVALID", f"metric '{key}' = {value!r}: a metric is a name and a finite number")
        clean[key] = float(value)
    return {"metrics": clean, "data_digest": data_digest, "parent": None, "created_by": created_by or _user(),
            "note": note or "", "status": None}


def _check_reference(path: str) -> str:
    """A training reference must be a CSV file with a header and at least one row."""
    if not os.path.isfile(path):
        raise RegistryError("REFERENCE_NOT_FOUND", f"no reference CSV at '{path}'")
    with open(path, "rb") as fh:
        _check_reference_text(fh.read(), f"'{path}'")
    return path


def _check_reference_text(data: bytes, what: str) -> None:
    try:
        rows = list(csv.reader(data.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RegistryError("REFERENCE_INVALID", f"{what} is not a UTF-8 CSV file ({exc})") from None
    rows = [r for r in rows if r]
    if len(rows) < 2 or any(len(r) != len(rows[0]) for r in rows):
        raise RegistryError("REFERENCE_INVALID", f"{what} needs a header line and at least one row, "
                                                 "every row with as many fields as the header")


def _write_atomic(path: str, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
