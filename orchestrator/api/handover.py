"""A descriptor the check worker loaded, handed to the server process as bytes, so a request parses it only once.

The shipped profiles' types are the same in both processes (each parsed them once at start), so they travel as
references, not copies: a template then pickles to a few tens of KB and unpickles far faster than it parses.
The bytes come only from Strato's own worker process (never from a client), which is what makes unpickling safe.
"""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any

from orchestrator.service import Loaded


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[Any, dict[int, tuple]]:
    """The process's registry of shipped types, and a reference name for each object of it a template shares."""
    from descriptors.types import builtin_registry
    registry = builtin_registry()
    names: dict[int, tuple] = {}
    for kind, types in registry.kinds.items():
        for name, typedef in types.items():
            names[id(typedef)] = ("type", kind, name)
            names.setdefault(id(registry.resolved(name, kind)), ("resolved", kind, name))
            names.setdefault(id(registry.ancestors(name, kind)), ("ancestors", kind, name))
    return registry, names


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> tuple | None:
        return _shipped()[1].get(id(obj))


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: tuple) -> Any:
        registry = _shipped()[0]
        what, kind, name = pid
        if what == "type":
            return registry.kinds[kind][name]
        return registry.resolved(name, kind) if what == "resolved" else registry.ancestors(name, kind)


def freeze(loaded: Loaded) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(loaded)
    return out.getvalue()


def thaw(data: bytes) -> Loaded:
    return _Unpickler(io.BytesIO(data)).load()
