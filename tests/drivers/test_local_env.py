"""Local processes get a clean environment (PATH, HOME, locale + the node's env); inheriting all is opt-in."""

import sys
import uuid

from drivers.base import InstanceSpec
from drivers.local import LocalDriver

DUMP = "import json, os; json.dump(dict(os.environ), open(os.environ['STRATO_ATTRIBUTES_FILE'], 'w'))"


def run_job(tmp_path, **props) -> dict:
    spec = InstanceSpec(key=f"envtest/{uuid.uuid4().hex[:8]}/0@x", infra="t", node="job", index=0,
                        type="strato.nodes.Job", properties={"command": [sys.executable, "-c", DUMP], **props},
                        metadata={"strato.one_shot": True}, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=30)
    driver = LocalDriver()
    handle = driver.create(spec)
    driver.delete(handle)
    return handle["result"]


def test_process_does_not_see_the_clis_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("OS_PASSWORD", "hunter2")
    monkeypatch.setenv("LC_TIME", "C")
    env = run_job(tmp_path, env={"MODEL": "m1"})
    assert "AWS_SECRET_ACCESS_KEY" not in env and "OS_PASSWORD" not in env
    assert env["MODEL"] == "m1" and env["LC_TIME"] == "C" and "PATH" in env
    assert env["STRATO_INSTANCE_KEY"].startswith("envtest/")
    assert not {k for k in env if not (k.startswith(("STRATO_", "LC_")) or k in (
        "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "MODEL"))} - {"PWD"}


def test_inherit_env_is_an_explicit_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    assert run_job(tmp_path, inherit_env=True)["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
