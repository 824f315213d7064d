"""A damaged state file gives one clear error (file, what, what to do) and is never changed; state is private."""

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import textwrap

import pytest
from click.testing import CliRunner

from orchestrator import service
from orchestrator.cli import main
from orchestrator.executor import RunOptions

DOC = "tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n  node_templates:\n" + "".join(
    f"    n{i}: {{type: strato.nodes.Noop, capabilities: {{scalable: {{properties: {{default_instances: 3}}}}}}}}\n"
    for i in range(30))


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    """A state file with one built infrastructure (several pages), closed."""
    base = tmp_path_factory.mktemp("sound")
    doc = base / "d.yaml"
    doc.write_text(DOC)
    path = str(base / "state.db")
    store = service.open_store(path)
    assert service.build(str(doc), "good", {}, store, RunOptions())["ok"]
    store.close()
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    return path, str(doc)


def _rewrite(path, fn):
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(fn(data))


def _sql(path, statement):
    db = sqlite3.connect(path)
    db.execute(statement)
    db.commit()
    db.close()


DAMAGE = {
    "random-bytes": lambda p: _rewrite(p, lambda d: os.urandom(len(d))),
    "text-file": lambda p: _rewrite(p, lambda d: b"hello, not a database\n"),
    "truncated-in-header": lambda p: _rewrite(p, lambda d: d[:50]),
    "truncated-to-first-page": lambda p: _rewrite(p, lambda d: d[:4096]),
    "truncated-half": lambda p: _rewrite(p, lambda d: d[:len(d) // 2]),
    "garbled-pages": lambda p: _rewrite(p, lambda d: d[:4096] + bytes((b * 7 + 3) % 256 for b in d[4096:])),
    "garbled-schema-page": lambda p: _rewrite(p, lambda d: d[:100] + b"\xff" * 3996 + d[4096:]),
    "zeroed-pages": lambda p: _rewrite(p, lambda d: d[:8192] + b"\0" * (len(d) - 8192)),
    "bad-json-inputs": lambda p: _sql(p, "UPDATE infrastructures SET inputs='{not json'"),
    "bad-json-outputs": lambda p: _sql(p, "UPDATE infrastructures SET outputs='['"),
    "bad-json-instance": lambda p: _sql(p, "UPDATE instances SET attributes='{' WHERE idx=1"),
    "bad-json-node": lambda p: _sql(p, "UPDATE nodes SET dependencies='nope' WHERE node='n3'"),
}


def digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.mark.parametrize("kind", sorted(DAMAGE) + ["directory"])
def test_damaged_state_gives_one_clear_error_and_is_left_alone(sound, tmp_path, kind):
    path = str(tmp_path / "state.db")
    if kind == "directory":
        os.mkdir(path)
        before = None
    else:
        shutil.copy(sound[0], path)
        DAMAGE[kind](path)
        before = digest(path)
    runner = CliRunner()
    for args in (["status", "--state", path], ["status", "good", "--state", path, "--json"],
                 ["build", sound[1], "--name", "good", "--state", path, "-q"], ["outputs", "good", "--state", path]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        text = result.output
        assert path in text and "Strato has not changed it" in text and "strato state backup" in text, text
        if "--json" in args:
            assert json.loads(result.stdout)["error"]["code"] == "STATE_DAMAGED"
        if before is not None:
            assert digest(path) == before, f"{args} changed the damaged file"
    check = runner.invoke(main, ["state", "check", "--state", path, "--json"])
    assert check.exit_code == 1 and json.loads(check.stdout)["problems"]
    if kind != "directory":
        backup = runner.invoke(main, ["state", "backup", "--state", path, "-o", str(tmp_path / "copy.db")])
        assert backup.exit_code == 0 and digest(str(tmp_path / "copy.db")) == before


def test_sound_state_checks_ok_and_backs_up(sound, tmp_path):
    path = str(tmp_path / "state.db")
    shutil.copy(sound[0], path)
    runner = CliRunner()
    assert runner.invoke(main, ["state", "check", "--state", path]).exit_code == 0
    result = runner.invoke(main, ["state", "backup", "--state", path, "--json"])
    copy = json.loads(result.stdout)["backup"]
    assert result.exit_code == 0 and runner.invoke(main, ["state", "check", "--state", copy]).exit_code == 0
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600


def test_state_home_and_files_are_private(strato_home, tmp_path):
    home = strato_home / "fresh"
    os.environ["STRATO_HOME"] = str(home)  # the fixture restores it
    doc = tmp_path / "p.yaml"
    doc.write_text(textwrap.dedent("""\
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            p:
              type: strato.nodes.Job
              properties: {command: ["{python}", "-c", "print('hi')"]}
        """))
    runner = CliRunner()
    build = runner.invoke(main, ["build", str(doc), "--name", "priv", "-q"])
    try:
        store = service.open_store()  # keeps the database open, so -wal and -shm exist
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(str(home / "state.db") + suffix).st_mode) == 0o600, suffix
        logs = [os.path.join(root, f) for root, _, files in os.walk(home) for f in files if f.endswith(".log")]
        assert logs and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in logs), logs
        store.close()
    finally:
        runner.invoke(main, ["destroy", "priv", "--yes", "-q"])
    assert build.exit_code == 0, build.output
