"""Fixtures for the host-pool, Ansible, Terraform and Libcloud tests: throwaway sshd servers on loopback ports."""

from __future__ import annotations

import os

import pytest

from tests.env import sshd

pytest.importorskip("ansible_runner", reason="Ansible tests need ansible-runner (pip install 'strato[hosts]')")
pytest.importorskip("paramiko", reason="SSH tests need paramiko (pip install 'strato[hosts]')")


@pytest.fixture
def ssh_servers(tmp_path):
    """start(n) -> n sshd servers on free 127.0.0.1 ports with fresh keys; all stopped after the test."""
    started: list[sshd.SshServer] = []

    def start(count: int = 2) -> list[sshd.SshServer]:
        try:
            servers = sshd.start_many(str(tmp_path / f"sshd-{len(started)}"), count)
        except sshd.SshdUnavailable as exc:
            pytest.skip(f"no OpenSSH server here: {exc}")
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.stop()


def write_playbook(directory, name: str, tasks: str) -> str:
    """A playbook over all hosts with the given tasks (YAML text, indented 4 spaces)."""
    path = os.path.join(str(directory), name)
    with open(path, "w") as fh:
        fh.write("- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks)
    return path
