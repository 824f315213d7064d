"""Ansible lifecycle operations: run a node's Standard operations (create, configure, start, stop, delete) as playbooks.

Through ansible-runner (`pip install 'strato[hosts]'`). The inventory is made from the
instances' attributes (a local connection for processes and containers, SSH for hosts and
VMs); the operation's inputs, functions already resolved, become extra vars; values a play
records with `set_stats` come back per host and become the instance's attributes; a failure
names the failing task, the host and Ansible's message; the output goes to the instance's log.

Instances of one node usually run the same operation with the same inputs at the same moment
(the executor starts them together): such calls are gathered for a moment and run as ONE
ansible-playbook over all their hosts, which is what an Ansible user would do by hand and
costs one Ansible start-up instead of one per host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DriverError
from drivers.common import optional_module

BACKEND = "ansible"
LIFECYCLE = ("create", "configure", "start", "stop", "delete")
BATCH_WINDOW_S = 0.3     # a run starts once no instance has joined for this long...
BATCH_MAX_WAIT_S = 2.0   # ...or this long after the first one asked
# Settings an Ansible user would put in ansible.cfg for machines Strato hands out: no interactive
# host-key prompt (the pool's hosts are declared by their owner), pipelining and a persistent
# SSH connection per host (fewer round trips per task).
ENVIRONMENT = {
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=10s -o UserKnownHostsFile=/dev/null "
                        "-o StrictHostKeyChecking=no -o BatchMode=yes",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_GATHERING": "explicit",
    "ANSIBLE_FORKS": "50",
    "ANSIBLE_NOCOLOR": "True",
}


@dataclass
class Target:
    """One host a playbook runs on, as Ansible's inventory sees it."""

    name: str
    connection: str = "local"           # local | ssh
    address: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    python: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    def host_vars(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ansible_connection": self.connection}
        if self.connection == "ssh":
            out["ansible_host"] = self.address
            if self.port:
                out["ansible_port"] = int(self.port)
            if self.user:
                out["ansible_user"] = self.user
            if self.key_file:
                out["ansible_ssh_private_key_file"] = self.key_file
        # Over a non-login shell `python3` may be a shim that fails: use what the host entry names.
        out["ansible_python_interpreter"] = self.python or ("/usr/bin/python3" if self.connection == "ssh"
                                                            else _local_python())
        out.update(self.variables)
        return out


def inventory_name(text: str) -> str:
    """A host name Ansible's inventory keeps as given (it would read 'address:port' as a port)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))


def _local_python() -> str:
    import sys
    return sys.executable


def target_from_attributes(name: str, attrs: dict[str, Any]) -> Target:
    """Inventory entry from an instance's attributes: SSH when it has an address to log in to, else local."""
    if attrs.get("ssh_port") or attrs.get("ssh_user"):
        return Target(name, "ssh", attrs.get("address") or attrs.get("private_address"), attrs.get("ssh_port"),
                      attrs.get("ssh_user"), attrs.get("ssh_key_file"), attrs.get("python"))
    return Target(name, "local")


@dataclass
class Operation:
    """A lifecycle operation implemented by a playbook (a path relative to the descriptor, or absolute)."""

    name: str
    playbook: str
    inputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_value(cls, name: str, value: Any, base_dir: str) -> "Operation | None":
        """From a resolved operation: `{implementation, inputs}` or a bare implementation string."""
        if isinstance(value, str):
            impl, inputs = value, {}
        elif isinstance(value, dict):
            impl = value.get("implementation")
            if isinstance(impl, dict):
                impl = impl.get("primary")
            inputs = dict(value.get("inputs") or {})
        else:
            return None
        if not isinstance(impl, str) or not impl.endswith((".yaml", ".yml")):
            return None  # not a playbook: some other artifact kind
        path = impl if os.path.isabs(impl) else os.path.join(base_dir, impl)
        return cls(name, os.path.abspath(path), inputs)

    def to_dict(self) -> dict:
        return {"implementation": self.playbook, "inputs": self.inputs}


class PlaybookFailed(DriverError):
    def __init__(self, message: str, host: str | None = None):
        super().__init__(message, backend=BACKEND)
        self.host = host


@dataclass
class HostResult:
    """What one host's run produced: `set_stats` data, or the failure that stopped it."""

    stats: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


def _ansible_runner():
    ansible_runner = optional_module("ansible_runner", "Ansible operations need ansible-runner and ansible-core",
                                     "hosts", BACKEND)
    if shutil.which("ansible-playbook") is None and not os.path.exists(
            os.path.join(os.path.dirname(os.path.realpath(_python_exe())), "ansible-playbook")):
        raise DriverError("ansible-playbook is not on PATH: pip install 'strato[hosts]' (ansible-core)",
                          backend=BACKEND)
    return ansible_runner


def _python_exe() -> str:
    import sys
    return sys.executable


def _failure_text(event: dict) -> str:
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    if not (res.get("msg") or res.get("stderr")) and res.get("results"):  # a loop: the first failed item
        res = next((i for i in res["results"] if isinstance(i, dict) and i.get("failed")), res)
    msg = str(res.get("msg") or res.get("reason") or "")
    stderr = str(res.get("stderr") or "").strip()
    if stderr and stderr not in msg:  # a command's own complaint says more than "non-zero return code"
        msg = f"{msg} (rc {res.get('rc')}): {stderr}" if msg else stderr
    msg = " ".join(msg.split())
    if len(msg) > 400:
        msg = msg[:400] + "..."
    kind = "unreachable" if event.get("event") == "runner_on_unreachable" else "failed"
    return f"task '{data.get('task', '?')}' {kind} on host {data.get('host', '?')}: {msg or 'no message'}"


def run_playbook(playbook: str, targets: list[Target], extravars: dict[str, Any], log_paths: dict[str, str],
                 timeout: float, work_root: str | None = None, operation: str = "") -> dict[str, HostResult]:
    """Run one playbook over `targets`; return each host's result (never raises for a host's own failure).

    `log_paths` maps a host name to the log file its output lines are appended to (lines that
    concern no single host go to every log).
    """
    runner_mod = _ansible_runner()
    if not os.path.exists(playbook):
        raise DriverError(f"playbook {playbook} does not exist", backend=BACKEND)
    results = {t.name: HostResult() for t in targets}
    os.makedirs(work_root or tempfile.gettempdir(), exist_ok=True)
    private = tempfile.mkdtemp(prefix="ansible-", dir=work_root)
    logs = {name: open(path, "a", buffering=1) for name, path in log_paths.items()}
    lock = threading.Lock()

    def on_event(event: dict) -> bool:
        data = event.get("event_data") or {}
        host = data.get("host")
        text = event.get("stdout") or ""
        with lock:
            if text:
                for name, fh in logs.items():
                    if host is None or host == name:
                        fh.write(text + "\n")
            if host in results:
                kind = event.get("event")
                if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                    if results[host].failure is None:
                        results[host].failure = _failure_text(event)
                elif kind == "runner_on_ok":
                    stats = (data.get("res") or {}).get("ansible_stats")
                    if isinstance(stats, dict) and isinstance(stats.get("data"), dict):
                        results[host].stats.update(stats["data"])
        return False  # nothing to keep in memory: every event's useful part was taken here

    for fh in logs.values():
        fh.write(f"--- strato: ansible {operation or 'playbook'} {os.path.basename(playbook)} "
                 f"on {', '.join(t.name for t in targets)}\n")
    inventory = {"all": {"hosts": {t.name: t.host_vars() for t in targets}}}
    env = dict(ENVIRONMENT)
    env["ANSIBLE_LOCAL_TEMP"] = os.path.join(private, "tmp")
    # SSH connections are shared within one run only: a master left by a run that was killed (its remote task
    # still running) must not hold up the next one. A short path: a unix socket's name is at most 108 bytes.
    control_dir = tempfile.mkdtemp(prefix="strato-cp-")
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control_dir
    try:
        runner = runner_mod.run(private_data_dir=private, playbook=playbook, inventory=inventory,
                                extravars=extravars, envvars=env, quiet=True, event_handler=on_event,
                                cancel_callback=lambda: False, timeout=int(max(1, timeout)),
                                project_dir=os.path.dirname(playbook), suppress_env_files=True)
        status, rc = runner.status, runner.rc
    except Exception as exc:  # noqa: BLE001 - ansible-runner's own errors (bad playbook path, no ansible)
        raise DriverError(f"ansible-runner could not run {playbook}: {exc}", backend=BACKEND) from None
    finally:
        for fh in logs.values():
            fh.close()
        shutil.rmtree(private, ignore_errors=True)  # holds the inventory (key paths) and extra vars
        shutil.rmtree(control_dir, ignore_errors=True)  # its masters exit once idle for ControlPersist
    if status == "timeout":
        for r in results.values():
            r.failure = r.failure or f"playbook {os.path.basename(playbook)} did not finish within {timeout:g} s"
    elif rc != 0 and not any(r.failure for r in results.values()):
        # A syntax error or an undefined variable fails before any host event.
        for r in results.values():
            r.failure = f"ansible-playbook {os.path.basename(playbook)} exited {rc} (see the instance log)"
    return results


def _one_line(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class _Batch:
    def __init__(self) -> None:
        self.last_arrival = time.monotonic()
        self.members: list[tuple[Target, str]] = []
        self.done = threading.Event()
        self.results: dict[str, HostResult] = {}
        self.error: BaseException | None = None


class Batcher:
    """Gathers calls of the same playbook with the same extra vars arriving close together into one run."""

    def __init__(self, window: float = BATCH_WINDOW_S) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._open: dict[str, _Batch] = {}

    def run(self, op: Operation, target: Target, log_path: str, timeout: float, work_root: str | None,
            extra: dict[str, Any] | None = None) -> HostResult:
        extravars = {**op.inputs, **(extra or {})}
        group = _one_line([op.playbook, extravars])
        with self._lock:
            batch = self._open.get(group)
            leader = batch is None
            if leader:
                batch = self._open[group] = _Batch()
            batch.members.append((target, log_path))
            batch.last_arrival = time.monotonic()
        if leader:
            # Wait until no one has joined for `window` seconds (instances reach this point a little apart:
            # each first claims its host and checks it answers), but never longer than BATCH_MAX_WAIT_S.
            started = time.monotonic()
            while True:
                with self._lock:
                    quiet_until = batch.last_arrival + self.window
                    now = time.monotonic()
                    if now >= quiet_until or now - started >= BATCH_MAX_WAIT_S:
                        del self._open[group]
                        break
                time.sleep(min(quiet_until - now, 0.05) if quiet_until > now else 0.01)
            try:
                batch.results = run_playbook(op.playbook, [t for t, _ in batch.members], extravars,
                                             {t.name: log for t, log in batch.members}, timeout, work_root, op.name)
            except BaseException as exc:  # noqa: BLE001 - handed to every member
                batch.error = exc
            finally:
                batch.done.set()
        elif not batch.done.wait(timeout + self.window + 30):
            raise DriverError(f"ansible {op.name} did not finish within {timeout:g} s", backend=BACKEND)
        if batch.error is not None:
            raise batch.error
        return batch.results.get(target.name) or HostResult(failure="the host took no part in the run")


_BATCHER = Batcher()


def run_operation(op: Operation, target: Target, log_path: str, timeout: float, work_root: str | None = None,
                  node: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one lifecycle operation for one instance; return its set_stats values or raise naming task, host, message."""
    result = _BATCHER.run(op, target, log_path, timeout, work_root, extra)
    if result.failure:
        raise PlaybookFailed(f"node '{node}': {op.name} playbook {os.path.basename(op.playbook)}: {result.failure}"
                             f" (log: {log_path})", host=target.name)
    return result.stats


def operations_from(value: Any, base_dir: str) -> dict[str, Operation]:
    """Playbook operations from a resolved `{name: {implementation, inputs}}` mapping (others are ignored)."""
    out: dict[str, Operation] = {}
    for name, body in (value or {}).items():
        if name in LIFECYCLE:
            op = Operation.from_value(name, body, base_dir)
            if op is not None:
                out[name] = op
    return out


def run_lifecycle(ops: dict[str, Operation], phases: tuple[str, ...], target: Target, log_path: str,
                  timeout: float, work_root: str | None = None, node: str = "",
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the given phases in order (those the node defines); return the merged set_stats values."""
    attrs: dict[str, Any] = {}
    for phase in phases:
        if phase in ops:
            attrs.update(run_operation(ops[phase], target, log_path, timeout, work_root, node, extra))
    return attrs
