"""The model registry (issue 20, section 1): content-addressed versions, aliases with history, rollback to the last
good version, references, private files, and no version lost when two processes push at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from orchestrator.mlops.registry import ModelRegistry, ModelVersion, RegistryError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def reg(tmp_path):
    return ModelRegistry(str(tmp_path / "models"))


@pytest.fixture
def artifact(tmp_path):
    """artifact(text) -> the path of a new file holding text."""
    count = [0]

    def make(text: str) -> str:
        count[0] += 1
        path = tmp_path / f"model-{count[0]}.bin"
        path.write_text(text)
        return str(path)
    return make


def error_code(call, *args, **kwargs) -> str:
    with pytest.raises(RegistryError) as info:
        call(*args, **kwargs)
    assert info.value.message and "\n" not in info.value.message
    return info.value.code


def test_push_numbers_versions_and_stores_content_by_digest(reg, artifact, tmp_path):
    ref = tmp_path / "train.csv"
    ref.write_text("sepal,petal,prediction\n1.0,2.0,setosa\n3.0,4.0,virginica\n")
    v1 = reg.push("iris", artifact("one"), metrics={"accuracy": 0.93}, data_digest="sha256:abc", created_by="ci",
                  reference_path=str(ref), note="first")
    v2 = reg.push("iris", artifact("two"), parent=1)
    assert isinstance(v1, ModelVersion) and (v1.version, v2.version) == (1, 2)
    assert (v1.ref, v2.ref) == ("iris:1", "iris:2")
    import hashlib
    assert v1.digest == "sha256:" + hashlib.sha256(b"one").hexdigest()
    assert v1.path == os.path.join(reg.root, "blobs", "sha256", v1.digest[7:])
    assert open(v1.path).read() == "one"
    assert v1.metadata["metrics"] == {"accuracy": 0.93} and v1.metadata["data_digest"] == "sha256:abc"
    assert (v1.metadata["created_by"], v1.metadata["note"], v1.metadata["parent"]) == ("ci", "first", None)
    assert v2.metadata["parent"] == 1 and v2.reference_path is None
    assert open(v1.reference_path).read().startswith("sepal,petal,prediction")
    with pytest.raises(Exception):
        v1.version = 5   # frozen
    assert [v.version for v in reg.versions("iris")] == [1, 2] and reg.models() == ["iris"]


def test_same_content_twice_is_the_existing_version(reg, artifact):
    first = reg.push("iris", artifact("same"))
    again = reg.push("iris", artifact("same"), note="again")
    assert again.version == first.version == 1 and len(reg.versions("iris")) == 1
    assert reg.push("other", artifact("same")).version == 1    # per model: another name gets its own version


def test_a_directory_artifact_is_one_blob_with_a_tree_digest(reg, tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    v = reg.push("tree", str(model))
    assert os.path.isdir(v.path) and open(os.path.join(v.path, "sub", "weights.bin"), "rb").read() == b"\x00\x01"
    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(model, copy)
    assert reg.push("tree", str(copy)).version == 1          # same tree elsewhere: same digest
    (model / "link").symlink_to("/etc/passwd")
    assert error_code(reg.push, "tree", str(model)) == "ARTIFACT_INVALID"


def test_promote_rollback_and_their_history(reg, artifact):
    for text in ("a", "b", "c"):
        reg.push("iris", artifact(text))
    reg.promote("iris", 1, reason="baseline")
    reg.promote("iris", 2, reason="better accuracy")
    reg.promote("iris", 3, reason="retrained on drift")
    assert reg.resolve("iris@champion").version == 3
    back = reg.rollback("iris", reason="errors in production")
    assert back.version == 2 and reg.resolve("iris@champion").version == 2
    assert reg.resolve("iris:3").status == "bad"             # the version left behind is marked bad
    assert reg.rollback("iris").version == 1                 # further back, never forth to 3
    assert error_code(reg.rollback, "iris") == "NO_GOOD_VERSION"
    assert reg.resolve("iris@champion").version == 1         # a refused rollback changes nothing
    moves = reg.alias_history("iris", "champion")
    assert [(m["kind"], m["version"], m["previous"]) for m in moves] == [
        ("promote", 1, None), ("promote", 2, 1), ("promote", 3, 2), ("rollback", 2, 3), ("rollback", 1, 2)]
    assert moves[3]["reason"] == "errors in production" and all(isinstance(m["at"], float) for m in moves)
    assert [m["kind"] for m in reg.alias_history("iris", "latest")] == ["push"] * 3
    events = [(e["event"], e["version"]) for e in reg.history("iris")]
    assert ("mark", 3) in events and ("mark", 2) in events and events[:3] == [("push", 1), ("push", 2), ("push", 3)]


def test_rollback_skips_versions_marked_bad(reg, artifact):
    for text in ("a", "b", "c"):
        reg.push("iris", artifact(text))
    for v in (1, 2, 3):
        reg.promote("iris", v)
    reg.mark("iris", 2, "bad", reason="failed canary analysis")
    assert reg.rollback("iris", reason="manual").version == 1
    assert error_code(reg.promote, "iris", 2) == "VERSION_BAD"
    reg.mark("iris", 2, "good", reason="fixed upstream", by="alice")
    assert reg.promote("iris", 2).version == 2
    history = reg.history("iris")
    assert any(e["event"] == "mark" and e["status"] == "good" and e["reason"] == "fixed upstream"
               and e["by"] == "alice" for e in history)


def test_promote_is_idempotent_and_latest_is_reserved(reg, artifact):
    reg.push("iris", artifact("a"))
    reg.promote("iris", 1)
    reg.promote("iris", 1)
    assert len(reg.alias_history("iris", "champion")) == 1
    assert error_code(reg.promote, "iris", 1, alias="latest") == "ALIAS_RESERVED"
    assert error_code(reg.rollback, "iris", alias="latest") == "ALIAS_RESERVED"
    assert error_code(reg.rollback, "iris", alias="staging") == "ALIAS_NOT_FOUND"


def test_references_in_every_form(reg, artifact, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reg = ModelRegistry(reg.root)
    for text in ("a", "b", "c"):
        reg.push("iris", artifact(text))
    assert reg.resolve("iris").version == 3                  # no champion: the newest
    reg.promote("iris", 2, alias="champion")
    reg.promote("iris", 1, alias="staging")
    assert reg.resolve("iris").version == 2                  # the champion
    assert reg.resolve("iris:3").version == 3 and reg.resolve("iris@staging").version == 1
    assert reg.resolve("models:/iris@champion").version == 2 and reg.resolve("models:/iris/1").version == 1
    assert reg.resolve(" iris@latest ").version == 3


@pytest.mark.parametrize("ref, code", [
    ("", "REF_INVALID"), ("iris:1:2", "REF_INVALID"), ("a/b", "REF_INVALID"), ("models:/x/1/2", "REF_INVALID"),
    ("../etc", "REF_INVALID"), ("-x", "MODEL_NAME_INVALID"), ("iris:0", "VERSION_INVALID"),
    ("iris:two", "VERSION_INVALID"), ("iris@9x", "ALIAS_INVALID"), ("iris@nope", "ALIAS_NOT_FOUND"),
    ("iris:7", "VERSION_NOT_FOUND"), ("ghost", "MODEL_NOT_FOUND"), ("models:/ghost@champion", "MODEL_NOT_FOUND")])
def test_bad_references_have_a_code_and_one_sentence(reg, artifact, monkeypatch, ref, code):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reg = ModelRegistry(reg.root)
    reg.push("iris", artifact("a"))
    assert error_code(reg.resolve, ref) == code


@pytest.mark.parametrize("call, code", [
    (lambda r, f: r.push("../evil", f), "MODEL_NAME_INVALID"),
    (lambda r, f: r.push("a" * 64, f), "MODEL_NAME_INVALID"),
    (lambda r, f: r.push("iris", f + ".missing"), "ARTIFACT_NOT_FOUND"),
    (lambda r, f: r.push("iris", f, metrics={"acc": float("nan")}), "METRIC_INVALID"),
    (lambda r, f: r.push("iris", f, metrics={"acc": "high"}), "METRIC_INVALID"),
    (lambda r, f: r.push("iris", f, parent=9), "VERSION_NOT_FOUND"),
    (lambda r, f: r.push("iris", f, reference_path=f + ".csv"), "REFERENCE_NOT_FOUND"),
    (lambda r, f: r.push("iris", f, reference_path=f), "REFERENCE_INVALID"),
    (lambda r, f: r.promote("iris", 1, alias="Bad Alias"), "ALIAS_INVALID"),
    (lambda r, f: r.promote("ghost", 1), "MODEL_NOT_FOUND"),
    (lambda r, f: r.mark("iris", 1, "meh"), "STATUS_INVALID"),
    (lambda r, f: r.versions("ghost"), "MODEL_NOT_FOUND")])
def test_mistakes_have_a_code_and_one_sentence(reg, artifact, call, code):
    path = artifact("only-one-line")   # also a "CSV" without rows: refused as a reference
    if code in ("ALIAS_INVALID", "STATUS_INVALID"):
        reg.push("iris", artifact("x"))
    assert error_code(call, reg, path) == code
    if code == "VERSION_NOT_FOUND":
        assert "iris" not in reg.models() or reg.versions("iris") == []


def test_empty_artifacts_are_refused(reg, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "emptydir").mkdir()
    assert error_code(reg.push, "iris", str(tmp_path / "empty")) == "ARTIFACT_EMPTY"
    assert error_code(reg.push, "iris", str(tmp_path / "emptydir")) == "ARTIFACT_EMPTY"
    assert error_code(reg.push_bytes, "iris", b"") == "ARTIFACT_EMPTY"


def test_everything_is_private_whatever_the_umask(tmp_path, artifact):
    old = os.umask(0o022)
    try:
        reg = ModelRegistry(str(tmp_path / "models"))
        ref = tmp_path / "ref.csv"
        ref.write_text("x,prediction\n1,0\n")
        reg.push("iris", artifact("a"), reference_path=str(ref))
        reg.push_bytes("iris", b"bytes")
        model = tmp_path / "dir"
        model.mkdir()
        (model / "w").write_text("w")
        reg.push("iris", str(model))
        reg.promote("iris", 1)
    finally:
        os.umask(old)
    loose = []
    for root, dirs, files in os.walk(reg.root):
        for name in dirs + files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            wanted = 0o700 if name in dirs else 0o600
            if mode != wanted:
                loose.append((os.path.join(root, name), oct(mode)))
    assert stat.S_IMODE(os.stat(reg.root).st_mode) == 0o700
    assert loose == []
    assert os.listdir(os.path.join(reg.root, "tmp")) == []    # nothing left behind by the copies


def test_metadata_is_replaced_atomically_as_json(reg, artifact):
    reg.push("iris", artifact("a"))
    meta = os.path.join(reg.root, "meta")
    assert sorted(os.listdir(meta)) == ["iris.json"]          # no temporary file left
    doc = json.load(open(os.path.join(meta, "iris.json")))
    assert doc["aliases"] == {"latest": 1} and doc["versions"][0]["version"] == 1


def test_damaged_metadata_is_a_clear_error(reg, artifact):
    reg.push("iris", artifact("a"))
    with open(os.path.join(reg.root, "meta", "iris.json"), "w") as fh:
        fh.write("{not json")
    assert error_code(reg.resolve, "iris:1") == "REGISTRY_DAMAGED"


def test_a_missing_blob_is_named(reg, artifact):
    v = reg.push("iris", artifact("a"))
    os.unlink(v.path)
    assert error_code(reg.resolve, "iris:1") == "BLOB_MISSING"


PUSHER = """
import sys
from orchestrator.mlops.registry import ModelRegistry
root, tag, count, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
reg = ModelRegistry(root)
sys.stdin.readline()   # both processes start pushing together
for i in range(count):
    path = f"{work}/{tag}-{i}"
    open(path, "w").write(f"{tag} {i}")
    reg.push("race", path, note=f"{tag}-{i}")
"""


def test_two_processes_pushing_at_once_lose_no_version(tmp_path):
    root, count = str(tmp_path / "models"), 25
    env = {**os.environ, "PYTHONPATH": REPO}
    procs = [subprocess.Popen([sys.executable, "-c", PUSHER, root, tag, str(count), str(tmp_path)],
                              stdin=subprocess.PIPE, env=env, text=True) for tag in ("a", "b")]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=120) == 0
    versions = ModelRegistry(root).versions("race")
    assert sorted(v.version for v in versions) == list(range(1, 2 * count + 1))
    assert sorted(v.metadata["note"] for v in versions) == sorted(f"{t}-{i}" for t in "ab" for i in range(count))
    assert len({v.digest for v in versions}) == 2 * count


def test_push_bytes_reads_no_path(reg, tmp_path):
    v = reg.push_bytes("iris", b"uploaded", reference_csv=b"f,prediction\n1,0\n", metrics={"auc": 0.8}, note="api")
    assert open(v.path, "rb").read() == b"uploaded" and open(v.reference_path).read().startswith("f,prediction")
    assert error_code(reg.push_bytes, "iris", b"x", reference_csv=b"\xff\xfe") == "REFERENCE_INVALID"


def test_default_root_is_under_strato_home(strato_home):
    reg = ModelRegistry()
    assert reg.root == os.path.join(str(strato_home), "models")


def test_mlflow_refs_without_mlflow_installed_say_what_to_install(tmp_path, monkeypatch):
    for module in ("mlflow", "mlflow.artifacts", "mlflow.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)     # import fails as if the extra were not installed
    reg = ModelRegistry(str(tmp_path / "models"), mlflow_uri="http://127.0.0.1:9")
    with pytest.raises(RegistryError) as info:
        reg.resolve("models:/iris@champion")
    assert info.value.code == "MLFLOW_MISSING" and "strato[mlflow]" in info.value.message
    assert error_code(reg.resolve, "models:/iris@9x") == "ALIAS_INVALID"
