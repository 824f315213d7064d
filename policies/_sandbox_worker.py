"""Child process of policies.sandbox: evaluates scaling rules with asteval under memory, CPU and file limits.

Run as `python -I _sandbox_worker.py MEMORY_BYTES CPU_SECONDS`; one JSON request per stdin line
({"rule", "variables", "outputs"}), one JSON answer per stdout line. It imports nothing of Strato.
"""
import json
import math
import os
import resource
import sys

import asteval


def _limit(kind, value):
    try:
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, hard if hard != resource.RLIM_INFINITY else value))
    except (ValueError, OSError):
        pass  # not allowed here: the parent's wall-time limit still applies


def _plain(value, depth=0):
    """The value as JSON data, or raise TypeError."""
    if depth > 20:
        raise TypeError("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def evaluate(request, sink):
    # Python's control flow, comprehensions and functions; no imports and no `with` (asteval's defaults
    # already refuse imports and unsafe attributes; the worker's limits bound the rest).
    interp = asteval.Interpreter(use_numpy=False, max_statement_length=20000, writer=sink, err_writer=sink,
                                 config={"import": False, "importfrom": False, "with": False})
    for unsafe in ("open", "dir", "type", "getattr", "hasattr"):
        interp.symtable.pop(unsafe, None)
    interp.symtable.update(request.get("variables") or {})
    try:
        interp.eval(request["rule"], show_errors=False, raise_errors=False)
    except MemoryError:
        return {"ok": False, "kind": "memory", "error": "the rule ran out of its memory limit"}
    if interp.error:
        name, message = interp.error[0].get_error()
        kind = "memory" if name == "MemoryError" else "error"
        lines = [text for text in str(message).splitlines() if text.strip()]
        message = lines[-1].strip() if lines else name  # asteval's message ends with "Name: what happened"
        if message.startswith(name + ":"):
            message = message[len(name) + 1:].strip()
        line = getattr(interp.error[0], "lineno", None)
        return {"ok": False, "kind": kind, "error": f"{name}: {message}".strip(), "line": line}
    values, unreadable = {}, []
    for name in request.get("outputs") or []:
        if name in interp.symtable:
            try:
                values[name] = _plain(interp.symtable[name])
            except TypeError:
                unreadable.append(name)
    return {"ok": True, "values": values, "unreadable": unreadable}


def main():
    memory, cpu = int(sys.argv[1]), int(sys.argv[2])
    # Everything the worker needs is imported above; from here on it may not open a file
    # (no new descriptors beyond stdin/stdout/stderr), write one, or use more memory or CPU.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the interpreters' print() goes nowhere
    os.chdir("/")
    _limit(resource.RLIMIT_AS, memory)
    _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_NOFILE, devnull.fileno() + 1)
    for line in sys.stdin:
        try:
            answer = evaluate(json.loads(line), devnull)
        except MemoryError:
            answer = {"ok": False, "kind": "memory", "error": "the rule ran out of its memory limit"}
        except Exception as error:  # noqa: BLE001 - reported to the parent, which names the policy
            answer = {"ok": False, "kind": "error", "error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
