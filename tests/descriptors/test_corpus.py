"""The TOSCA corpus: Strato's verdict on each template matches the expected one, and no checker crash."""

import glob
import os
import sys

import pytest

from orchestrator.service import validate

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
sys.path.insert(0, CORPUS)

from generate import corpus_files  # noqa: E402

FILES = sorted(glob.glob(os.path.join(CORPUS, "valid", "*.yaml")) + glob.glob(os.path.join(CORPUS, "invalid", "*.yaml")))


def test_corpus_is_large_and_matches_its_generator():
    assert len(FILES) >= 150
    written = {rel: text for rel, text in corpus_files().items()}
    on_disk = {os.path.relpath(p, CORPUS): open(p, encoding="utf-8").read() for p in FILES}
    on_disk.update({rel: open(os.path.join(CORPUS, rel), encoding="utf-8").read()
                    for rel in written if rel.startswith("lib/")})
    assert on_disk == written, "run tests/descriptors/corpus/generate.py"
    kinds = {os.path.basename(p).split("__")[0] for p in FILES}
    assert len(kinds) >= 100
    assert 0.3 < len(glob.glob(os.path.join(CORPUS, "valid", "*.yaml"))) / len(FILES) < 0.7


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, CORPUS) for p in FILES])
def test_verdict(path):
    result = validate([path], confined=False)[0]
    errors = [d for d in result["diagnostics"] if d.get("severity", "error") == "error"]
    assert not [d for d in errors if d["code"] == "INTERNAL_ERROR"]
    expected = os.path.basename(os.path.dirname(path)) == "valid"
    assert result["ok"] == expected, [f"{d['code']}: {d['message']}" for d in errors] or "accepted"
    for d in errors:  # every refusal is a diagnostic with a place and a sentence
        assert d["code"] and d["message"] and d["file"]
