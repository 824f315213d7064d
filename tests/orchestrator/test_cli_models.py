"""`strato models push|list|show|promote|rollback|mark` through the real CLI (a subprocess with its own STRATO_HOME):
JSON for scripts, one-line errors with a code, exit 64 for usage mistakes, and the history that says why."""

from __future__ import annotations

import json
import os


def test_push_promote_rollback_show_as_a_user_would(strato, strato_home, tmp_path):
    (tmp_path / "v1.pkl").write_bytes(b"model one")
    (tmp_path / "v2.pkl").write_bytes(b"model two")
    (tmp_path / "train.csv").write_text("sepal,petal,prediction\n1,2,setosa\n")
    out = strato("models", "push", "iris", str(tmp_path / "v1.pkl"), "--metric", "accuracy=0.9", "--reference",
                 str(tmp_path / "train.csv"), "--note", "first", "--json", check=True)
    first = json.loads(out.stdout)
    assert first["ok"] and first["created"] and first["version"]["ref"] == "iris:1"
    assert first["version"]["metadata"]["metrics"] == {"accuracy": 0.9}
    assert first["version"]["path"].startswith(os.path.join(str(strato_home), "models", "blobs", "sha256"))
    again = json.loads(strato("models", "push", "iris", str(tmp_path / "v1.pkl"), "--json", check=True).stdout)
    assert not again["created"] and again["version"]["version"] == 1
    assert "iris:2" in strato("models", "push", "iris", str(tmp_path / "v2.pkl"), "--parent", "1", check=True).stdout
    strato("models", "promote", "iris", "1", check=True)
    promoted = strato("models", "promote", "iris", "2", "--reason", "better on holdout", check=True)
    assert promoted.stdout.startswith("iris@champion -> 2")
    back = json.loads(strato("models", "rollback", "iris", "--reason", "5xx after rollout", "--json",
                             check=True).stdout)
    assert back["version"]["version"] == 1 and back["alias"] == "champion"
    shown = json.loads(strato("models", "show", "iris", "--json", check=True).stdout)
    assert shown["aliases"] == {"champion": 1, "latest": 2}
    assert [(e["event"], e["version"]) for e in shown["history"]] == [
        ("push", 1), ("push", 2), ("promote", 1), ("promote", 2), ("mark", 2), ("rollback", 1)]
    assert shown["history"][-1]["reason"] == "5xx after rollout"
    text = strato("models", "show", "iris", check=True).stdout
    assert "rollback  champion -> 1 (was 2)" in text and "5xx after rollout" in text and "bad" in text
    one = json.loads(strato("models", "show", "iris@champion", "--json", check=True).stdout)["version"]
    assert one["ref"] == "iris:1" and one["reference_path"]
    listed = json.loads(strato("models", "list", "--json", check=True).stdout)
    assert listed["models"] == [{"name": "iris", "versions": 2, "aliases": {"champion": 1, "latest": 2}}]
    assert "iris" in strato("models", "list", check=True).stdout


def test_mark_and_refusals_exit_1_with_a_code(strato, tmp_path):
    (tmp_path / "m").write_bytes(b"m")
    strato("models", "push", "iris", str(tmp_path / "m"), check=True)
    assert "marked bad" in strato("models", "mark", "iris", "1", "bad", "--reason", "leaks", check=True).stdout
    refused = strato("models", "promote", "iris", "1", "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["code"] == "VERSION_BAD"
    for args, code in ((("rollback", "iris"), "ALIAS_NOT_FOUND"), (("show", "ghost"), "MODEL_NOT_FOUND"),
                       (("show", "iris:9"), "VERSION_NOT_FOUND"), (("push", "../x", str(tmp_path / "m")),
                                                                   "MODEL_NAME_INVALID")):
        proc = strato("models", *args, "--json")
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["error"]["code"] == code
        assert "Traceback" not in proc.stderr
        plain = strato("models", *args)
        assert plain.returncode == 1 and plain.stderr.startswith("error: ") and len(plain.stderr.splitlines()) == 1


def test_usage_mistakes_exit_64(strato, tmp_path):
    (tmp_path / "m").write_bytes(b"m")
    bad_metric = strato("models", "push", "iris", str(tmp_path / "m"), "--metric", "accuracy")
    assert bad_metric.returncode == 64 and "NAME=NUMBER" in bad_metric.stderr
    assert strato("models", "push", "iris", str(tmp_path / "missing")).returncode == 64
    assert strato("models", "promote", "iris", "zero").returncode == 64
    assert strato("models", "mark", "iris", "1", "meh").returncode == 64


def test_help_teaches_with_examples(strato):
    text = strato("models", "--help", check=True).stdout
    assert "strato models push iris model.pkl" in text and "rollback" in text
    assert "strato models rollback iris --reason" in strato("models", "rollback", "--help", check=True).stdout
    assert "models" in strato("--help", check=True).stdout


def test_empty_registry_lists_nothing(strato):
    assert "no models yet" in strato("models", "list", check=True).stdout
    assert json.loads(strato("models", "list", "--json", check=True).stdout) == {"ok": True, "models": []}
