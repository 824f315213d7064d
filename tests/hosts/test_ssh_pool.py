"""The `ssh` host-pool driver against real sshd servers on loopback: claims, exhaustion, labels, playbooks, health."""

from __future__ import annotations

import multiprocessing
import os
import uuid

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.ssh import POOL, SshDriver, claims_at
from orchestrator.state import HostClaims
from tests.hosts.conftest import write_playbook


def make_spec(tmp_path, hosts, index=0, require=None, operations=None, infra=None, **props) -> InstanceSpec:
    infra = infra or f"pool-{uuid.uuid4().hex[:6]}"
    infra_dir = tmp_path / "home" / "infrastructures" / infra
    infra_dir.mkdir(parents=True, exist_ok=True)
    meta = {"strato.operations": operations} if operations else {}
    return InstanceSpec(key=f"{infra}/gpu/{index}@{uuid.uuid4().hex[:8]}", infra=infra, node="gpu", index=index,
                        type="strato.nodes.ssh.Host", properties={"hosts": hosts, "require": require or {}, **props},
                        metadata=meta, descriptor_dir=str(tmp_path), infra_dir=str(infra_dir), timeout=120)


def test_claims_are_exclusive_across_processes(tmp_path):
    db = str(tmp_path / "state.db")
    HostClaims(db).close()
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        got = pool.starmap(_claim_one, [(db, f"k{i}") for i in range(6)])
    winners = [g for g in got if g is not None]
    assert sorted(winners) == ["a:22", "b:22", "c:22"]  # three hosts, six claimants: each host once
    assert got.count(None) == 3


def _claim_one(db: str, key: str):
    return HostClaims(db).claim(POOL, ["a:22", "b:22", "c:22"], key, "x")


def test_create_configures_with_a_playbook_and_delete_frees(tmp_path, ssh_servers):
    servers = ssh_servers(2)
    hosts = [servers[0].host_entry(gpu=1), servers[1].host_entry(gpu=4)]
    write_playbook(tmp_path, "configure.yaml",
                   "    - ansible.builtin.shell: echo {{ model }} > {{ out }}\n"
                   "    - ansible.builtin.set_stats: {data: {cuda: '12.{{ ansible_port }}'}}\n")
    write_playbook(tmp_path, "delete.yaml", "    - ansible.builtin.file: {path: '{{ out }}', state: absent}\n")
    out = tmp_path / "configured.txt"
    ops = {"configure": {"implementation": "configure.yaml", "inputs": {"model": "resnet", "out": str(out)}},
           "delete": {"implementation": "delete.yaml", "inputs": {"out": str(out)}}}
    driver = SshDriver()
    spec = make_spec(tmp_path, hosts, require={"gpu": 2}, operations=ops)
    handle = driver.create(spec)
    assert handle["port"] == servers[1].port  # the only host with gpu >= 2
    assert out.read_text().strip() == "resnet"
    observed = driver.observe(handle)
    assert observed.status == "running"
    assert observed.attributes["cuda"] == f"12.{servers[1].port}" and observed.attributes["ssh_port"] == servers[1].port
    assert "TASK [ansible.builtin.shell]" in open(handle["log"]).read()
    # A second instance wanting gpu >= 2: the pool is exhausted, with the holder named.
    with pytest.raises(DriverError, match="exhausted.*gpu>=2.*in use") as err:
        driver.create(make_spec(tmp_path, hosts, index=1, require={"gpu": 2}, infra=spec.infra))
    assert spec.key in str(err.value)
    driver.delete(handle)
    assert not out.exists()  # the delete playbook ran on the host
    assert not driver.observe(handle).alive
    driver.delete(handle)  # twice is harmless
    again = driver.create(make_spec(tmp_path, hosts, index=1, require={"gpu": 2}, infra=spec.infra))
    assert again["port"] == servers[1].port  # freed, so it can be had again
    driver.delete(again)


def test_failing_task_is_named_and_the_host_is_freed(tmp_path, ssh_servers):
    server, = ssh_servers(1)
    write_playbook(tmp_path, "bad.yaml", "    - name: install the driver\n"
                                         "      ansible.builtin.command: /bin/sh -c 'echo missing package >&2; exit 3'\n")
    spec = make_spec(tmp_path, [server.host_entry()], operations={"create": {"implementation": "bad.yaml"}})
    with pytest.raises(DriverError) as err:
        SshDriver().create(spec)
    text = str(err.value)
    assert "task 'install the driver'" in text and f"host 127.0.0.1_{server.port}" in text and "missing package" in text
    assert claims_at(os.path.join(tmp_path, "home", "state.db")).held_by(POOL, spec.key) is None


def test_no_matching_host_and_health_command(tmp_path, ssh_servers):
    server, = ssh_servers(1)
    with pytest.raises(DriverError, match="no host of the pool has gpu>=8"):
        SshDriver().create(make_spec(tmp_path, [server.host_entry(gpu=2)], require={"gpu": 8}))
    spec = make_spec(tmp_path, [server.host_entry()], health_check={"command": "test -d /nonexistent-dir"})
    with pytest.raises(DriverError, match="health command .* exited 1"):
        SshDriver().create(spec)
    ok = make_spec(tmp_path, [server.host_entry()], health_check={"command": "true"})
    handle = SshDriver().create(ok)
    try:
        assert SshDriver().observe(handle).status == "running"
        server.stop()  # the machine goes away: observe tells
        assert SshDriver().observe(handle).status == "failed"
    finally:
        SshDriver().delete(handle)


def test_inventory_file_and_find_after_a_lost_handle(tmp_path, ssh_servers):
    server, = ssh_servers(1)
    (tmp_path / "hosts.yaml").write_text(
        f"hosts:\n  - {{address: 127.0.0.1, port: {server.port}, user: {server.user}, key_file: {server.key}, "
        f"labels: {{gpu: 2}}, name: box1}}\n")
    driver = SshDriver()
    spec = make_spec(tmp_path, [], inventory="hosts.yaml")
    assert driver.find(spec.key, spec) is None
    driver.create(spec)  # the handle is "lost"
    found = driver.find(spec.key, spec)
    assert found is not None and found["name"] == "box1"
    assert driver.observe(found).status == "running"
    driver.delete(found)
    assert driver.find(spec.key, spec) is None
    # A claim whose configuration never finished (a build killed mid-playbook) is found but not taken as ready.
    half = make_spec(tmp_path, [], inventory="hosts.yaml")
    driver.start(half)
    found = driver.find(half.key, half)
    assert found is not None and driver.observe(found).status == "failed"
    driver.delete(found)
    assert driver.find(half.key, half) is None
