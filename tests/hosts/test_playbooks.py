"""Ansible operations through ansible-runner on real targets: a local connection and sshd on loopback."""

from __future__ import annotations

import threading

import pytest

from drivers import playbooks
from tests.hosts.conftest import write_playbook

TASKS = """\
    - name: write a marker on the host
      ansible.builtin.shell: echo "{{ greeting }} from {{ inventory_hostname }}" > {{ marker_dir }}/{{ inventory_hostname }}.txt
    - name: report what was configured
      ansible.builtin.set_stats:
        data: {configured: "{{ greeting }}-{{ inventory_hostname }}"}
    - name: refuse the bad host
      ansible.builtin.fail: {msg: "no room on {{ inventory_hostname }}"}
      when: inventory_hostname == 'bad'
"""


def test_ssh_and_local_targets_set_stats_failure_and_logs(tmp_path, ssh_servers):
    server, = ssh_servers(1)
    book = write_playbook(tmp_path, "site.yaml", TASKS)
    targets = [playbooks.Target("h1", "ssh", server.address, server.port, server.user, server.key, "/usr/bin/python3"),
               playbooks.Target("bad", "local"), playbooks.Target("loc", "local")]
    logs = {t.name: str(tmp_path / f"{t.name}.log") for t in targets}
    results = playbooks.run_playbook(book, targets, {"greeting": "hi", "marker_dir": str(tmp_path)}, logs, 120)
    assert results["h1"].failure is None and results["h1"].stats == {"configured": "hi-h1"}
    assert results["loc"].failure is None
    assert (tmp_path / "h1.txt").read_text().strip() == "hi from h1"  # written over SSH
    failure = results["bad"].failure
    assert "refuse the bad host" in failure and "bad" in failure and "no room on bad" in failure
    assert "TASK [write a marker on the host]" in (tmp_path / "h1.log").read_text()
    assert "no room on bad" in (tmp_path / "bad.log").read_text()
    assert "no room on bad" not in (tmp_path / "h1.log").read_text()  # each instance's log has its own host


def test_unreachable_host_is_named(tmp_path):
    book = write_playbook(tmp_path, "ping.yaml", "    - ansible.builtin.ping:\n")
    closed = playbooks.Target("gone", "ssh", "127.0.0.1", 1, "root", None, "/usr/bin/python3")
    results = playbooks.run_playbook(book, [closed], {}, {"gone": str(tmp_path / "gone.log")}, 60)
    assert "unreachable on host gone" in results["gone"].failure


def test_concurrent_calls_share_one_ansible_run(tmp_path):
    book = write_playbook(tmp_path, "stats.yaml",
                          "    - ansible.builtin.set_stats: {data: {who: '{{ inventory_hostname }}'}}\n")
    op = playbooks.Operation("configure", book, {"x": 1})
    batcher = playbooks.Batcher(window=0.5)
    out: dict = {}

    def call(name):
        out[name] = batcher.run(op, playbooks.Target(name, "local"), str(tmp_path / f"{name}.log"), 60, str(tmp_path))

    threads = [threading.Thread(target=call, args=(f"n{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {n: r.stats["who"] for n, r in out.items()} == {"n0": "n0", "n1": "n1", "n2": "n2"}
    header = [ln for ln in (tmp_path / "n0.log").read_text().splitlines() if ln.startswith("--- strato")]
    assert len(header) == 1 and all(f"n{i}" in header[0] for i in range(3))  # one run over the three hosts


def test_operation_failure_raises_with_task_host_and_message(tmp_path):
    book = write_playbook(tmp_path, "fail.yaml", "    - name: broken step\n      ansible.builtin.command: /bin/false\n")
    op = playbooks.Operation("configure", book)
    with pytest.raises(playbooks.PlaybookFailed) as err:
        playbooks.run_operation(op, playbooks.Target("web-0", "local"), str(tmp_path / "w.log"), 60, str(tmp_path),
                                node="web")
    text = str(err.value)
    assert "node 'web'" in text and "task 'broken step'" in text and "host web-0" in text and "non-zero" in text
