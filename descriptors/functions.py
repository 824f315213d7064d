"""Intrinsic functions (get_input, get_property, get_attribute, concat, join, token): finding and resolving them."""

from __future__ import annotations

from typing import Any, Callable, Iterator

FUNCTION_NAMES = frozenset({"get_input", "get_property", "get_attribute", "concat", "join", "token"})
SELF_NAMES = frozenset({"SELF", "SOURCE", "TARGET", "HOST"})


class Unresolved(Exception):
    """A value depends on an attribute that is not known yet (its node is not built)."""

    def __init__(self, node: str, attribute: str):
        super().__init__(f"attribute '{attribute}' of node '{node}' is not known yet")
        self.node = node
        self.attribute = attribute


class FunctionError(Exception):
    """A function call that cannot be evaluated (wrong arguments, missing value)."""


def function_call(value: Any) -> tuple[str, Any] | None:
    """(name, args) when value is a function call like {get_input: x}, else None."""
    if isinstance(value, dict) and len(value) == 1:
        name = next(iter(value))
        if name in FUNCTION_NAMES:
            return name, value[name]
    return None


def iter_calls(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any, str, Any]]:
    """Every function call inside value: (name, args, container, key, path)."""
    stack = [(value, None, None, path)]
    while stack:
        item, container, key, p = stack.pop()
        call = function_call(item)
        if call:
            yield call[0], call[1], container, key, p
            args = call[1] if isinstance(call[1], list) else [call[1]]
            for i, arg in enumerate(args):
                stack.append((arg, args, i, f"{p}.{call[0]}[{i}]"))
            continue
        if isinstance(item, dict):
            for k, v in item.items():
                stack.append((v, item, k, f"{p}.{k}" if p else str(k)))
        elif isinstance(item, list):
            for i, v in enumerate(item):
                stack.append((v, item, i, f"{p}[{i}]"))


def has_calls(value: Any) -> bool:
    return next(iter_calls(value), None) is not None


class Resolver:
    """Evaluates functions against inputs, node properties and (once known) attributes.

    `attribute_lookup(node, name)` returns the attribute value or raises Unresolved;
    `property_lookup(node, name)` returns the node template's raw property value.
    """

    def __init__(self, inputs: dict[str, Any], property_lookup: Callable[[str, str], Any],
                 attribute_lookup: Callable[[str, str], Any], host_lookup: Callable[[str], str | None] = None):
        self.inputs = inputs
        self.property_lookup = property_lookup
        self.attribute_lookup = attribute_lookup
        self.host_lookup = host_lookup or (lambda node: None)

    def resolve(self, value: Any, self_node: str, depth: int = 0) -> Any:
        if depth > 50:
            raise FunctionError("functions refer to each other too deeply (a property loop?)")
        call = function_call(value)
        if call:
            return self._call(call[0], call[1], self_node, depth)
        if isinstance(value, dict):
            return {k: self.resolve(v, self_node, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, self_node, depth) for v in value]
        return value

    def _node(self, ref: Any, self_node: str) -> str:
        if ref in ("SELF", "SOURCE"):
            return self_node
        if ref == "HOST":
            host = self.host_lookup(self_node)
            if host is None:
                raise FunctionError(f"node '{self_node}' has no host requirement, so HOST means nothing here")
            return host
        return str(ref)

    def _call(self, name: str, args: Any, self_node: str, depth: int) -> Any:
        if name == "get_input":
            key = args[0] if isinstance(args, list) else args
            if key not in self.inputs:
                raise FunctionError(f"get_input names unknown input '{key}'")
            value = self.inputs[key]
            for step in (args[1:] if isinstance(args, list) else []):
                value = _step(value, step, f"input '{key}'")
            return value
        if name in ("get_property", "get_attribute"):
            if not isinstance(args, list) or len(args) < 2:
                raise FunctionError(f"{name} needs a list: [node, name, ...]")
            node = self._node(args[0], self_node)
            if name == "get_property":
                value = self.resolve(self.property_lookup(node, args[1]), node, depth + 1)
            else:
                value = self.attribute_lookup(node, args[1])
            for step in args[2:]:
                value = _step(value, step, f"{name} of '{node}'")
            return value
        if name == "concat":
            parts = self.resolve(args if isinstance(args, list) else [args], self_node, depth + 1)
            return "".join("" if p is None else str(p) for p in _flatten(parts))
        if name == "join":
            if not isinstance(args, list) or not args:
                raise FunctionError("join needs [list_of_strings] or [list_of_strings, delimiter]")
            items = self.resolve(args[0], self_node, depth + 1)
            delim = str(args[1]) if len(args) > 1 else ""
            return delim.join(str(p) for p in _flatten(items if isinstance(items, list) else [items]))
        if name == "token":
            if not isinstance(args, list) or len(args) != 3:
                raise FunctionError("token needs [string, separators, index]")
            text = str(self.resolve(args[0], self_node, depth + 1))
            seps, index = str(args[1]), args[2]
            import re
            pieces = re.split("[" + re.escape(seps) + "]", text) if seps else [text]
            try:
                return pieces[int(index)]
            except (IndexError, ValueError):
                raise FunctionError(f"token index {index} is out of range for '{text}'") from None
        raise FunctionError(f"unknown function '{name}'")


def _flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _step(value: Any, step: Any, what: str) -> Any:
    try:
        if isinstance(value, list):
            return value[int(step)]
        if isinstance(value, dict):
            return value[step]
    except (IndexError, KeyError, ValueError, TypeError):
        pass
    raise FunctionError(f"{what} has no element '{step}'")
