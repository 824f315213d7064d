"""The scaling-rule sandbox: a static check, then asteval in a child process with wall-time, memory and file limits.

A rule is refused before it runs when it imports, reaches a dunder name, or calls something
that opens files or evaluates code; at run time the child process (policies/_sandbox_worker.py)
has no file access (no new file descriptors, no file writes) and a bounded address space and
CPU time, and the parent kills it when a rule outlives its wall-time limit. Every failure is
a PolicyError saying why; the caller keeps running and the next evaluation gets a new child.
"""
from __future__ import annotations

import ast
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

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_worker.py")
DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT_S = 2.0
MAX_RULE_CHARS = 20000
# Callables that would read files, evaluate code or reach objects' internals.
FORBIDDEN_CALLS = frozenset({"open", "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr",
                             "globals", "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "dir",
                             "type", "memoryview", "object", "super", "hasattr"})
_live: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


def check_rule(rule: str) -> ast.Module:
    """Parse a rule and refuse what the sandbox never runs; the PolicyError says what and where."""
    if not isinstance(rule, str) or not rule.strip():
        raise PolicyError("the scaling rule is empty")
    if len(rule) > MAX_RULE_CHARS:
        raise PolicyError(f"the scaling rule is longer than {MAX_RULE_CHARS} characters")
    try:
        tree = ast.parse(rule, "<scaling_rule>")
    except SyntaxError as error:
        raise PolicyError(f"the scaling rule has a syntax error at line {error.lineno}: {error.msg}") from None
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise PolicyError(f"the scaling rule may not import modules (line {line})")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise PolicyError(f"the scaling rule may not reach the private or dunder attribute "
                              f"'{node.attr}' (line {line})")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise PolicyError(f"the scaling rule may not use the dunder name '{node.id}' (line {line})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            why = "no file access" if node.func.id in ("open", "input") else "no code evaluation or introspection"
            raise PolicyError(f"the scaling rule may not call {node.func.id}() ({why}; line {line})")
        if isinstance(node, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await, ast.Yield, ast.YieldFrom)):
            raise PolicyError(f"the scaling rule may not use '{type(node).__name__.lower()}' (line {line})")
    return tree


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
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """Run `rule` with `variables` and return the values of `outputs` it left (missing ones absent)."""
        check_rule(rule)
        try:
            request = json.dumps({"rule": rule, "variables": variables, "outputs": outputs}).encode() + b"\n"
        except (TypeError, ValueError) as error:
            raise PolicyError(f"the rule's variables are not plain data: {error}") from None
        with self._lock:
            answer = self._ask(request, timeout_s)
        if not answer.get("ok"):
            if answer.get("kind") == "memory":
                raise PolicyError(f"the scaling rule tried to use more than its {self.memory_mb} MB memory limit")
            where = f" (line {answer['line']})" if answer.get("line") else ""
            raise PolicyError(f"the scaling rule failed{where}: {answer.get('error')}")
        if answer.get("unreadable"):
            raise PolicyError(f"the scaling rule left {', '.join(answer['unreadable'])} as something other than "
                              "numbers, strings, lists or maps")
        return answer.get("values", {})

    def _ask(self, request: bytes, timeout_s: float) -> dict:
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
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise PolicyError(f"the scaling rule ran longer than its {timeout_s:g} s limit and was stopped "
                                  "(an endless loop?)")
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
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox:
    """The process-wide sandbox rule policies use unless given their own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox()
        return _shared


@atexit.register
def _close_all() -> None:
    for sandbox in list(_live):
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
