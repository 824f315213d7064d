"""The `ssh` driver: a pool of machines you already own, reached over SSH; an instance is a claim on one of them.

The inventory (address, port, user, key file or ssh-agent, labels such as `gpu: 2`) comes from
the node's `hosts` property or from a YAML file named by `inventory` (`hosts: [...]`). Creating
an instance claims a free host whose labels satisfy `require` (numbers: at least that much;
anything else: equal) in the state database's host_claims table, so two builds never get one
host, then runs the node's Standard create/configure/start playbooks on it (drivers/playbooks.py).
Deleting runs stop/delete and frees the host. Health is the SSH port answering with an SSH
banner, or `health_check: {command: ...}` exiting 0 over SSH (paramiko).
"""

from __future__ import annotations

import os
import socket
import time

import yaml

from descriptors.values import duration_seconds
from drivers import playbooks
from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import ClaimStore, open_claim_store, optional_module, strato_home

BACKEND = "ssh"
POOL = "ssh"  # one claim space for every pool: a machine listed by two descriptors is still one machine
OPERATIONS_META = "strato.operations"


def state_path_for(infra_dir: str | None) -> str:
    """The state database the claims live in: $STRATO_STATE, $STRATO_STATE_URL, else the one beside the
    infrastructure directories."""
    for variable in ("STRATO_STATE", "STRATO_STATE_URL"):
        if os.environ.get(variable):
            return os.environ[variable]
    if infra_dir and os.path.basename(os.path.dirname(os.path.abspath(infra_dir))) == "infrastructures":
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(infra_dir))), "state.db")
    return os.path.join(strato_home(), "state.db")


_claims: dict[str, ClaimStore] = {}


def claims_at(path: str) -> ClaimStore:
    """The host_claims table of the state database at `path` (the orchestrator's state store provides it)."""
    if path not in _claims:
        _claims[path] = open_claim_store(path, BACKEND)
    return _claims[path]


def host_id(entry: dict) -> str:
    return f"{entry['address']}:{int(entry.get('port') or 22)}"


def load_inventory(props: dict, descriptor_dir: str, node: str) -> list[dict]:
    """The pool's hosts, from `hosts` and/or the YAML file `inventory`; each checked and normalised."""
    raw: list = list(props.get("hosts") or [])
    if props.get("inventory"):
        path = os.path.join(descriptor_dir, os.path.expanduser(str(props["inventory"])))
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise DriverError(f"node '{node}': cannot read the host inventory {path}: {exc.strerror}",
                              backend=BACKEND) from None
        except yaml.YAMLError as exc:
            raise DriverError(f"node '{node}': the host inventory {path} is not valid YAML: {exc}",
                              backend=BACKEND) from None
        listed = data.get("hosts") if isinstance(data, dict) else data
        if not isinstance(listed, list):
            raise DriverError(f"node '{node}': the host inventory {path} must hold a list `hosts:`", backend=BACKEND)
        raw += listed
    hosts = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, dict) or not entry.get("address"):
            raise DriverError(f"node '{node}': host #{i + 1} of the pool needs an `address`", backend=BACKEND)
        out = {"address": str(entry["address"]), "port": int(entry.get("port") or 22),
               "user": str(entry.get("user") or os.environ.get("USER") or "root"),
               "labels": dict(entry.get("labels") or {}), "agent": bool(entry.get("agent", not entry.get("key_file"))),
               "python": entry.get("python") or "/usr/bin/python3"}
        if entry.get("key_file"):
            key = os.path.expanduser(str(entry["key_file"]))
            out["key_file"] = key if os.path.isabs(key) else os.path.join(descriptor_dir, key)
        out["name"] = str(entry.get("name") or host_id(out))
        hosts.append(out)
    if not hosts:
        raise DriverError(f"node '{node}': the host pool is empty (give `hosts` or an `inventory` file)",
                          backend=BACKEND)
    return hosts


def matches(labels: dict, require: dict) -> bool:
    for name, want in (require or {}).items():
        have = labels.get(name)
        if have is None:
            return False
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            try:
                if float(have) < float(want):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(have) != str(want):
            return False
    return True


def _describe_require(require: dict) -> str:
    if not require:
        return "any host"
    return ", ".join(f"{k}>={v}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k}={v}"
                     for k, v in require.items())


def ssh_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """The port accepts a connection and speaks SSH (its banner starts with 'SSH-')."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def run_command(handle: dict, command: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run a command on the host over SSH (paramiko); return (exit status, combined output)."""
    paramiko = optional_module("paramiko", "SSH health commands need paramiko", "hosts", BACKEND)
    client = paramiko.SSHClient()
    # The pool's hosts are declared by their owner; their host keys are not pinned here (as Ansible's
    # host_key_checking=False for the same hosts).
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(handle["address"], port=int(handle["port"]), username=handle["user"],
                       key_filename=handle.get("key_file"), allow_agent=bool(handle.get("agent")),
                       look_for_keys=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode(errors="replace") + stderr.read().decode(errors="replace")
        return stdout.channel.recv_exit_status(), out
    except (paramiko.SSHException, OSError) as exc:
        return 255, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


class SshDriver(Driver):
    name = BACKEND
    runs_operations = True  # Standard operations run on the claimed host itself (not on this machine)
    path_properties = ("inventory",)

    @classmethod
    def server_paths(cls, properties: dict) -> list[tuple[str, object]]:
        """The inventory file and every host's private key file."""
        hosts = properties.get("hosts")
        keys = [(f"hosts[{i}].key_file", h["key_file"]) for i, h in enumerate(hosts if isinstance(hosts, list) else [])
                if isinstance(h, dict) and h.get("key_file") is not None]
        return super().server_paths(properties) + keys

    # -- create = start (claim) + wait_ready (reachable, configured) ------------------------------------------
    def start(self, spec: InstanceSpec) -> dict:
        props = spec.properties
        hosts = load_inventory(props, spec.descriptor_dir, spec.node)
        require = dict(props.get("require") or {})
        fitting = [h for h in hosts if matches(h["labels"], require)]
        if not fitting:
            raise DriverError(f"node '{spec.node}': no host of the pool has {_describe_require(require)} "
                              f"(hosts: {', '.join(h['name'] for h in hosts)})", backend=BACKEND)
        path = state_path_for(spec.infra_dir)
        claims = claims_at(path)
        by_id = {host_id(h): h for h in fitting}
        got = claims.claim(POOL, list(by_id), spec.key, spec.infra)
        if got is None:
            holders = {c["host"]: c["key"] for c in claims.claims(POOL) if c["host"] in by_id}
            raise DriverError(f"node '{spec.node}': the host pool is exhausted: all {len(fitting)} host(s) with "
                              f"{_describe_require(require)} are in use ("
                              + "; ".join(f"{by_id[h]['name']} by {k}" for h, k in sorted(holders.items()))
                              + ")", backend=BACKEND)
        if got not in by_id:  # this key already held a host the inventory no longer lists as fitting
            claims.release(POOL, got, spec.key)
            return self.start(spec)
        entry = by_id[got]
        log_path = os.path.join(spec.infra_dir, "logs", f"{spec.node}.{spec.index}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        return {"key": spec.key, "node": spec.node, "host_id": got, "name": entry["name"],
                "address": entry["address"], "port": entry["port"], "user": entry["user"],
                "key_file": entry.get("key_file"), "agent": entry["agent"], "python": entry["python"],
                "labels": entry["labels"], "claims_db": path, "log": log_path,
                "health_check": dict(props.get("health_check") or {}),
                "operations": dict(spec.metadata.get(OPERATIONS_META) or {}),
                "descriptor_dir": spec.descriptor_dir, "work_root": os.path.join(spec.infra_dir, "ansible"),
                "configured": False, "result": {}}

    def _wait_ssh(self, handle: dict, spec: InstanceSpec) -> None:
        timeout = min(duration_seconds((handle.get("health_check") or {}).get("timeout"), 60.0) or 60.0, spec.timeout)
        deadline = time.monotonic() + timeout
        while not ssh_answers(handle["address"], handle["port"]):
            if time.monotonic() >= deadline:
                raise DriverError(f"node '{spec.node}': host {handle['name']} ({handle['host_id']}) does not answer "
                                  f"SSH within {timeout:g} s", retryable=True, backend=BACKEND)
            time.sleep(0.2)

    def wait_adopted(self, handle: dict, spec: InstanceSpec) -> dict:
        """A found host the crashed run finished configuring is ready once SSH answers and its health command
        passes: its playbooks do not run twice (one it did not finish observes failed and is redone)."""
        if not handle.get("configured"):
            return self.wait_ready(handle, spec)
        self._wait_ssh(handle, spec)
        self._check_command(handle, spec.node)
        return handle

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        self._wait_ssh(handle, spec)
        ops = playbooks.operations_from(handle["operations"], handle["descriptor_dir"])
        handle["result"] = playbooks.run_lifecycle(ops, ("create", "configure", "start"), self._target(handle),
                                                   handle["log"], spec.timeout, handle["work_root"], spec.node)
        self._check_command(handle, spec.node)
        handle["configured"] = True
        claims_at(handle["claims_db"]).mark_ready(POOL, handle["host_id"], handle["key"], handle["result"])
        return handle

    def _check_command(self, handle: dict, node: str) -> None:
        command = (handle.get("health_check") or {}).get("command")
        if command:
            code, out = run_command(handle, str(command))
            if code != 0:
                raise DriverError(f"node '{node}': health command {command!r} on {handle['name']} exited {code}: "
                                  f"{' '.join(out.split())[:300]}", backend=BACKEND)

    @staticmethod
    def _target(handle: dict) -> playbooks.Target:
        # Per-instance values are host variables (not extra vars), so one run can serve several instances.
        controller_dir = os.path.join(os.path.dirname(os.path.dirname(handle["log"])), "instances",
                                      os.path.basename(handle["log"])[:-len(".log")])
        return playbooks.Target(playbooks.inventory_name(handle["name"]), "ssh", handle["address"], handle["port"],
                                handle["user"], handle.get("key_file"), handle.get("python"),
                                {"strato_instance_key": handle["key"], "strato_controller_dir": controller_dir,
                                 "strato_host_labels": handle.get("labels") or {}})

    # -- observe / find / delete ---------------------------------------------------------------------------
    def observe(self, handle: dict) -> Observed:
        attrs = {"address": handle["address"], "private_address": handle["address"],
                 "public_address": handle["address"], "ssh_port": handle["port"], "ssh_user": handle["user"],
                 "ssh_key_file": handle.get("key_file"), "host": handle["name"], "host_id": handle["host_id"],
                 "labels": handle.get("labels") or {}, "python": handle.get("python"), "backend": BACKEND,
                 **(handle.get("result") or {})}
        holder = claims_at(handle["claims_db"]).held_by(POOL, handle["key"])
        if holder != handle["host_id"]:
            return Observed(ObservedStatus.MISSING, attrs,
                            f"host {handle['name']} is no longer claimed by this instance")
        if not handle.get("configured"):
            return Observed(ObservedStatus.FAILED, attrs, "its create/configure/start did not finish")
        if not ssh_answers(handle["address"], handle["port"]):
            return Observed(ObservedStatus.FAILED, attrs, f"SSH on {handle['host_id']} does not answer")
        command = (handle.get("health_check") or {}).get("command")
        if command and (handle.get("health_check") or {}).get("observe", True):
            code, out = run_command(handle, str(command))
            if code != 0:
                return Observed(ObservedStatus.FAILED, attrs,
                                f"health command exited {code}: {' '.join(out.split())[:200]}")
        return Observed(ObservedStatus.RUNNING, attrs)

    def find(self, key: str, spec: InstanceSpec | None = None) -> dict | None:
        """The host this key holds. A claim whose configuration never finished (a crash mid-playbook) comes back
        unconfigured: it observes as failed, so the executor deletes it (delete playbook, host freed) and creates
        anew; a create for the same key would anyway get the same host back and run the playbooks again."""
        path = state_path_for(spec.infra_dir if spec else None)
        claims = claims_at(path)
        held = claims.held_by(POOL, key)
        if held is None:
            return None
        ready, result = claims.readiness(POOL, key)
        entry = None
        if spec is not None:
            try:
                entry = next((h for h in load_inventory(spec.properties, spec.descriptor_dir, spec.node)
                              if host_id(h) == held), None)
            except DriverError:
                entry = None
        if entry is None:  # only the claim is known: enough to free it
            address, _, port = held.rpartition(":")
            entry = {"address": address, "port": int(port), "user": os.environ.get("USER") or "root",
                     "agent": True, "python": "/usr/bin/python3", "labels": {}, "name": held}
        infra_dir = spec.infra_dir if spec else os.path.dirname(path)
        node = spec.node if spec else key
        return {"key": key, "node": node, "host_id": held, "name": entry["name"], "address": entry["address"],
                "port": entry["port"], "user": entry["user"], "key_file": entry.get("key_file"),
                "agent": entry["agent"], "python": entry["python"], "labels": entry["labels"], "claims_db": path,
                "log": os.path.join(infra_dir, "logs", f"{node}.log") if not spec else
                os.path.join(spec.infra_dir, "logs", f"{spec.node}.{spec.index}.log"),
                "health_check": dict((spec.properties.get("health_check") if spec else None) or {}),
                "operations": dict((spec.metadata.get(OPERATIONS_META) if spec else None) or {}),
                "descriptor_dir": spec.descriptor_dir if spec else ".",
                "work_root": os.path.join(infra_dir, "ansible"), "configured": ready, "result": result,
                "adopted": True}

    def delete(self, handle: dict) -> None:
        claims = claims_at(handle["claims_db"])
        if claims.held_by(POOL, handle["key"]) != handle["host_id"]:
            return  # already freed (deleting twice is harmless)
        ops = playbooks.operations_from(handle.get("operations"), handle.get("descriptor_dir") or ".")
        phases = tuple(p for p in ("stop", "delete") if p in ops)
        if phases:
            os.makedirs(os.path.dirname(handle["log"]), exist_ok=True)
            try:
                playbooks.run_lifecycle(ops, phases, self._target(handle), handle["log"], 300,
                                        handle.get("work_root"), handle.get("node", ""))
            except DriverError:
                if handle.get("configured"):
                    raise  # the host keeps its claim: it is not clean, someone has to look
                # A create that failed half-way: best effort, the host goes back to the pool.
        claims.release(POOL, handle["host_id"], handle["key"])
