"""Crash test: a build killed during a replace must not leave the old process to be adopted as the new one."""

from __future__ import annotations

import signal
import textwrap
import time

from tests.e2e.test_local_e2e import processes_of, start_build, statuses, unique, wait_for

VERSION = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        svc:
          type: strato.nodes.Process
          properties:
            # ignores SIGTERM, so stopping it takes the whole grace period: the window the build is killed in
            command: ["{python}", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)", "VERSION"]
            stop_grace_period: 4
    """)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def versions(name: str) -> list[str]:
    return sorted(cmdline(pid).split()[-1] for pids in processes_of(name).values() for pid in pids)


def test_interrupted_replace_ends_with_v2_and_no_v1(strato, strato_home, tmp_path):
    path = tmp_path / "svc.yaml"
    name = unique("replace")
    path.write_text(VERSION.replace("VERSION", "v1"))
    try:
        assert strato("build", str(path), "--name", name, "-q", timeout=120).returncode == 0
        assert versions(name) == ["v1"]
        path.write_text(VERSION.replace("VERSION", "v2"))
        build = start_build(str(path), name, strato_home)
        try:
            assert wait_for(lambda: statuses(strato_home, name) == ["replacing"], timeout=60), \
                build.stderr.read() if build.poll() is not None else "the replace never started"
            time.sleep(0.5)  # the build is now waiting for v1 to stop
        finally:
            build.send_signal(signal.SIGKILL)
            build.wait(timeout=10)
        assert versions(name) == ["v1"], "precondition: the killed replace left v1 running"
        proc = strato("build", str(path), "--name", name, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert wait_for(lambda: versions(name) == ["v2"], timeout=15), versions(name)
        assert statuses(strato_home, name) == ["ready"]
        assert strato("plan", str(path), "--name", name).returncode == 0  # nothing left to change
    finally:
        strato("destroy", name, "--yes", "-q", timeout=60)
    assert wait_for(lambda: processes_of(name) == {}, timeout=15)
