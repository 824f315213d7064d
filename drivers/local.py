"""The `local` driver: a node instance is a real OS process on this machine, detached from the CLI.

Each process runs in its own session/process group, logs to a file under the state directory and
carries STRATO_INSTANCE_KEY in its environment, which is how `find` adopts a process started by a
build that crashed before recording it. A process is identified by pid *and* start time, so a
reused pid is never mistaken for ours.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from descriptors.values import duration_seconds
from drivers.base import FREE, Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import (http_ok, make_private_dir, make_private_file, process_start_time, read_attributes,
                            tcp_ok)

KEY_ENV = "STRATO_INSTANCE_KEY"
_PLACEHOLDER = re.compile(r"\{(python|port|shared_port|host|instance|work_dir|infra_dir|descriptor_dir)\}")
LOOPBACK = "127.0.0.1"
# What a process gets from the CLI's environment by default: enough to run programs and pick a
# locale, nothing else (the CLI's may hold cloud credentials). `inherit_env: true` passes all.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME")


def process_environment(declared: dict[str, str], inherit: bool = False) -> dict[str, str]:
    """A process's environment: the CLI's PATH, HOME, locale (LANG, LC_*)..., or all of it when asked, then the node's."""
    if inherit:
        env = dict(os.environ)
    else:
        env = {k: v for k, v in os.environ.items() if k in BASE_ENV or k.startswith("LC_")}
    env.update(declared)
    return env


def free_port(reuse: bool = False) -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _environ_of(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def processes_with_key(key: str) -> list[int]:
    """Pids of live processes whose environment carries this instance key."""
    needle = f"{KEY_ENV}={key}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read() + b"\0" and process_start_time(int(entry)) is not None:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def instance_dir(spec: InstanceSpec) -> str:
    """The private working directory of one instance (its {work_dir})."""
    return os.path.join(spec.infra_dir, "instances", f"{spec.node}.{spec.index}")


def _reap(pid: int) -> None:
    """Collect a child's exit status so it does not linger as a zombie of this process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _alive(handle: dict) -> bool:
    pid = handle.get("pid")
    if not pid:
        return False
    _reap(pid)
    return process_start_time(pid) == handle.get("start_time")


def _log_tail(path: str | None, lines: int = 8) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4000))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail)


class LocalDriver(Driver):
    name = "local"
    pricing = FREE
    cheap_observe = True
    runs_on_server_host = "starts a process on this machine"
    path_properties = ("cwd",)

    def __init__(self) -> None:
        # Popen objects of processes started by this driver object, until wait_ready collects them
        # (keeping them lets the wait read the exit code instead of a stray reaper taking it).
        self._procs: dict[str, subprocess.Popen] = {}

    # -- node level -------------------------------------------------------
    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        if spec.node_attributes:
            return dict(spec.node_attributes)
        shared = spec.properties.get("shared_port")
        if shared == "auto":
            return {"shared_port": free_port(reuse=True)}
        if isinstance(shared, int):
            return {"shared_port": shared}
        return {}

    # -- instances --------------------------------------------------------
    def _substitutions(self, spec: InstanceSpec, port: int | None, work_dir: str) -> dict[str, str]:
        return {"python": sys.executable, "port": "" if port is None else str(port),
                "shared_port": str(spec.node_attributes.get("shared_port", "")), "host": LOOPBACK,
                "instance": str(spec.index), "work_dir": work_dir, "infra_dir": spec.infra_dir,
                "descriptor_dir": spec.descriptor_dir}

    def start(self, spec: InstanceSpec) -> dict:
        props = spec.properties
        key = spec.key
        command = props.get("command")
        if isinstance(command, str):
            command = ["/bin/sh", "-c", command]
        if not command or not isinstance(command, list):
            raise DriverError(f"node '{spec.node}' has no command to run", backend=self.name)
        port = props.get("port")
        if port == "auto":
            port = free_port()
        elif port is not None and not isinstance(port, int):
            raise DriverError(f"port must be 'auto' or a number, got {port!r}", backend=self.name)
        work_dir = instance_dir(spec)
        make_private_dir(work_dir)
        subs = self._substitutions(spec, port, work_dir)

        def fill(text: Any) -> str:
            return _PLACEHOLDER.sub(lambda m: subs[m.group(1)], str(text))

        argv = [fill(a) for a in command]
        log_path = os.path.join(spec.infra_dir, "logs", f"{spec.node}.{spec.index}.log")
        make_private_dir(os.path.dirname(log_path))
        make_private_file(log_path)
        attrs_file = os.path.join(work_dir, "attributes.json")
        if os.path.exists(attrs_file):
            os.unlink(attrs_file)
        env = process_environment({k: fill(v) for k, v in (props.get("env") or {}).items()},
                                  inherit=props.get("inherit_env") is True)
        env.update({KEY_ENV: key, "STRATO_INSTANCE_INDEX": str(spec.index), "STRATO_LOG_FILE": log_path,
                    "STRATO_ATTRIBUTES_FILE": attrs_file, "STRATO_WORK_DIR": work_dir,
                    "STRATO_PORT": subs["port"], "STRATO_SHARED_PORT": subs["shared_port"]})
        cwd = os.path.join(spec.descriptor_dir, props.get("cwd") or ".")
        one_shot = bool(spec.metadata.get("strato.one_shot"))
        with open(log_path, "ab") as log:
            log.write(f"--- strato: starting {key}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=cwd, env=env, start_new_session=True, close_fds=True)
            except OSError as exc:
                raise DriverError(f"cannot start {argv[0]!r}: {exc.strerror}", backend=self.name) from None
        self._procs[key] = proc
        return {"pid": proc.pid, "pgid": proc.pid, "start_time": process_start_time(proc.pid),
                "log": log_path, "host": LOOPBACK, "port": port,
                "shared_port": spec.node_attributes.get("shared_port"), "one_shot": one_shot,
                "attributes_file": attrs_file, "key": key,
                "grace": float(props.get("stop_grace_period") or 5)}

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        # No Popen for a process `find` adopted (a crashed build started it): its exit is read from /proc.
        proc = self._procs.pop(handle["key"], None)
        timeout = min(float(spec.properties.get("start_timeout") or 60), spec.timeout)
        if handle["one_shot"] and proc is not None:
            return self._wait_job(proc, handle, timeout)
        self._wait_healthy(proc, handle, spec.properties.get("health_check"), timeout)
        return handle

    def _wait_job(self, proc: subprocess.Popen, handle: dict, timeout: float) -> dict:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DriverError(f"one-shot process did not finish within {timeout:g} s (log: {handle['log']})",
                              retryable=False, backend=self.name) from None
        if code != 0:
            raise DriverError(f"one-shot process exited with code {code}: {_log_tail(handle['log'])} "
                              f"(log: {handle['log']})", backend=self.name)
        handle["completed"] = True
        handle["exit_code"] = 0
        handle["result"] = read_attributes(handle.get("attributes_file"), self.name)
        return handle

    @staticmethod
    def _exited(proc: subprocess.Popen | None, handle: dict) -> str | None:
        """How the process ended, or None while it runs."""
        if proc is None:
            return None if _alive(handle) else "exited"
        return None if proc.poll() is None else f"exited with code {proc.returncode}"

    def _wait_healthy(self, proc: subprocess.Popen | None, handle: dict, check: Any, timeout: float) -> None:
        check = dict(check or {})
        port = handle.get("port")
        http_path = check.get("http")
        tcp = check.get("tcp", port is not None and not http_path)
        check_timeout = duration_seconds(check.get("timeout"), timeout)
        deadline = time.monotonic() + check_timeout
        settle_until = time.monotonic() + 0.2
        while True:
            exited = self._exited(proc, handle)
            if exited:
                raise DriverError(f"process {exited} while starting: "
                                  f"{_log_tail(handle['log'])} (log: {handle['log']})", backend=self.name)
            if http_path and port:
                if http_ok(f"http://{LOOPBACK}:{port}{http_path}"):
                    return
            elif tcp and port:
                if tcp_ok(LOOPBACK, port):
                    return
            elif time.monotonic() >= settle_until:
                return  # no check asked for: running a moment without exiting is all we can tell
            if time.monotonic() >= deadline:
                what = f"HTTP {http_path}" if http_path else f"TCP port {port}"
                raise DriverError(f"not healthy within {check_timeout:g} s ({what} did not answer; "
                                  f"log: {handle['log']})", retryable=True, backend=self.name)
            time.sleep(0.05)

    def observe(self, handle: dict) -> Observed:
        attrs = {"host": handle.get("host"), "pid": handle.get("pid"), "start_time": handle.get("start_time")}
        if handle.get("port"):
            attrs["port"] = handle["port"]
            attrs["url"] = f"http://{LOOPBACK}:{handle['port']}"
        if handle.get("shared_port"):
            attrs["shared_port"] = handle["shared_port"]
        if handle.get("one_shot"):
            if handle.get("completed"):
                attrs.update(handle.get("result") or {})
                return Observed(ObservedStatus.COMPLETED, attrs)
            return Observed(ObservedStatus.RUNNING if _alive(handle) else "missing", attrs)
        if _alive(handle):
            return Observed(ObservedStatus.RUNNING, attrs)
        return Observed(ObservedStatus.MISSING, attrs, f"process {handle.get('pid')} is gone")

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        for pid in processes_with_key(key):
            try:
                if os.getpgid(pid) != pid:
                    continue  # a child of the instance; the group leader is the instance itself
            except ProcessLookupError:
                continue
            env = _environ_of(pid) or {}
            port = env.get("STRATO_PORT")
            shared = env.get("STRATO_SHARED_PORT")
            return {"pid": pid, "pgid": pid, "start_time": process_start_time(pid), "log": env.get("STRATO_LOG_FILE"),
                    "host": LOOPBACK, "port": int(port) if port else None,
                    "shared_port": int(shared) if shared else None, "adopted": True, "key": key,
                    "one_shot": False, "attributes_file": env.get("STRATO_ATTRIBUTES_FILE"), "grace": 5.0}
        return None

    def delete(self, handle: dict) -> None:
        grace = float(handle.get("grace") or 5)
        key = handle.get("key")
        # SIGCONT after SIGTERM: a stopped process (SIGSTOP, a debugger let go) acts on SIGTERM only once it
        # runs again; without it every stopped replica costs the whole grace period before SIGKILL.
        if _alive(handle):
            try:
                os.killpg(handle["pgid"], signal.SIGTERM)
                os.killpg(handle["pgid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
        # Anything else carrying our key (children that left the group, a process adopted by a
        # crashed build) goes too.
        stragglers = processes_with_key(key) if key else []
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(handle) and not (key and processes_with_key(key)):
                return
            time.sleep(0.05)
        if _alive(handle):
            try:
                os.killpg(handle["pgid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in processes_with_key(key) if key else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 2
        while time.monotonic() < end and (_alive(handle) or (key and processes_with_key(key))):
            time.sleep(0.02)
