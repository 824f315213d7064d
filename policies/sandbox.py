"""The scaling-rule sandbox: a static check, then asteval in a child process with wall-time, memory and file limits.

A rule is refused before it runs when it imports, reaches a dunder name, or calls something
that opens files or evaluates code; at run time the child process (policies/_sandbox_worker.py)
has no file access (no new file descriptors, no file writes) and a bounded address space and
CPU time, and the parent kills it when a rule outlives its wall-time limit. Every failure is
a PolicyError saying why; the caller keeps running and the next evaluation gets a new child.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

from policies.base import PolicyError
from policies.rulecheck import FORBIDDEN_CALLS, MAX_RULE_CHARS, check_rule  # noqa: F401

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_worker.py")
DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT_S = 2.0
POOL_SIZE = 4               # rules evaluated side by side (one child process each)
MAX_ANSWER_BYTES = 4 * 2 ** 20  # a rule's outputs are counts, instance IDs and a small m_userdata
_live: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


class Sandbox:
    """One long-lived child process evaluating rules one at a time (thread-safe; restarted after a failure)."""

    def __init__(self, memory_mb: int = DEFAULT_MEMORY_MB, cpu_s: int = 60):
        self.memory_mb, self.cpu_s = int(memory_mb), int(cpu_s)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._buffer = b""
        _live.add(self)

    def _start(self) -> subprocess.Popen:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        proc = subprocess.Popen([sys.executable, "-I", WORKER, str(self.memory_mb * 2 ** 20), str(self.cpu_s)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, cwd="/", close_fds=True, start_new_session=True)
        self._buffer = b""
        return proc

    def close(self) -> None:
        """Stop the child process (it also exits by itself when this process closes its stdin)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def evaluate(self, rule: str, variables: dict[str, Any], outputs: list[str],
                 timeout_s: float = DEFAULT_TIMEOUT_S, deadline: float | None = None) -> dict[str, Any]:
        """Run `rule` with `variables` and return the values of `outputs` it left (missing ones absent).

        The run stops at its own `timeout_s` or at `deadline` (time.monotonic(), the loop's one
        deadline for all its policies), whichever comes first; so does a wait for this sandbox."""
        check_rule(rule)
        try:
            request = json.dumps({"rule": rule, "variables": variables, "outputs": outputs}).encode() + b"\n"
        except (TypeError, ValueError) as error:
            raise PolicyError(f"the rule's variables are not plain data: {error}") from None
        wait_end = time.monotonic() + timeout_s if deadline is None else deadline
        if not self._lock.acquire(timeout=max(0.0, wait_end - time.monotonic())):
            raise PolicyError("the scaling rule was not run: its sandbox stayed busy with other rules "
                              "until its deadline")
        try:
            answer = self._ask(request, timeout_s, deadline)
        finally:
            self._lock.release()
        if not answer.get("ok"):
            if answer.get("kind") == "memory":
                raise PolicyError(f"the scaling rule tried to use more than its {self.memory_mb} MB memory limit")
            where = f" (line {answer['line']})" if answer.get("line") else ""
            raise PolicyError(f"the scaling rule failed{where}: {answer.get('error')}")
        if answer.get("unreadable"):
            raise PolicyError(f"the scaling rule left {', '.join(answer['unreadable'])} as something other than "
                              "numbers, strings, lists or maps")
        return answer.get("values", {})

    def _ask(self, request: bytes, timeout_s: float, deadline: float | None) -> dict:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._proc = self._start()
        proc = self._proc
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
        except OSError:
            self.close()
            raise PolicyError("the rule sandbox process could not be reached (it was restarted)") from None
        own_end = time.monotonic() + timeout_s
        end = own_end if deadline is None else min(own_end, deadline)
        line = self._read_line(proc, end)
        if line is None:
            self.close()
            if end < own_end:
                raise PolicyError("the scaling rule was stopped at the loop's deadline for all policies "
                                  f"(before its own {timeout_s:g} s limit)")
            raise PolicyError(f"the scaling rule ran longer than its {timeout_s:g} s limit and was stopped "
                              "(an endless loop?)")
        return json.loads(line)

    def _read_line(self, proc: subprocess.Popen, end: float) -> bytes | None:
        """The child's next answer line, or None when `end` (time.monotonic()) came first."""
        fd = proc.stdout.fileno()
        buffer = bytearray(self._buffer)
        newline = buffer.find(b"\n")
        while newline < 0:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = proc.wait(timeout=5)
                self.close()
                if code is not None and code < 0:
                    raise PolicyError(f"the scaling rule's sandbox process was killed by signal {-code} "
                                      "(a CPU or memory limit)")
                raise PolicyError(f"the scaling rule's sandbox process exited ({code})")
            found = chunk.find(b"\n")
            newline = len(buffer) + found if found >= 0 else -1
            buffer += chunk
            if newline < 0 and len(buffer) > MAX_ANSWER_BYTES:
                self.close()
                raise PolicyError(f"the scaling rule's outputs are larger than {MAX_ANSWER_BYTES // 2 ** 20} MiB "
                                  "and were refused")
        self._buffer = bytes(buffer[newline + 1:])
        return bytes(buffer[:newline])


class SandboxPool:
    """Up to `size` sandboxes, so that rules run side by side: one rule held until its time limit
    (an endless loop) no longer holds up every other policy of the pass. Same `evaluate` as Sandbox."""

    def __init__(self, size: int = POOL_SIZE, memory_mb: int = DEFAULT_MEMORY_MB, cpu_s: int = 60):
        self.size, self.memory_mb, self.cpu_s = max(1, int(size)), memory_mb, cpu_s
        self._idle: list[Sandbox] = []
        self._made = 0
        self._free = threading.Condition()

    def evaluate(self, rule: str, variables: dict[str, Any], outputs: list[str],
                 timeout_s: float = DEFAULT_TIMEOUT_S, deadline: float | None = None) -> dict[str, Any]:
        check_rule(rule)  # a refused rule waits for nothing
        box = self._take(time.monotonic() + timeout_s if deadline is None else deadline)
        try:
            return box.evaluate(rule, variables, outputs, timeout_s, deadline)
        finally:
            with self._free:
                self._idle.append(box)
                self._free.notify()

    def _take(self, until: float) -> Sandbox:
        with self._free:
            while not self._idle and self._made >= self.size:
                left = until - time.monotonic()
                if left <= 0:
                    raise PolicyError(f"the scaling rule was not run: all {self.size} sandboxes stayed busy with "
                                      "other rules until its deadline")
                self._free.wait(left)
            if self._idle:
                return self._idle.pop()
            self._made += 1
        return Sandbox(self.memory_mb, self.cpu_s)

    def close(self) -> None:
        with self._free:
            boxes, self._idle = self._idle, []
        for box in boxes:
            box.close()


_shared: SandboxPool | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> SandboxPool:
    """The process-wide sandboxes rule policies use unless given their own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SandboxPool()
        return _shared


@atexit.register
def _close_all() -> None:
    for sandbox in list(_live):
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
