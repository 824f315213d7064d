"""Intrinsic functions (get_input, get_property, get_attribute, get_operation_output, concat, join, token): finding and resolving them."""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterator

from descriptors.secrets import secret_input_names

FUNCTION_NAMES = frozenset({"get_input", "get_property", "get_attribute", "get_operation_output", "concat", "join",
                            "token", "get_artifact", "get_nodes_of_type"})
# Validated (arguments and references) but not evaluated by Strato's builds: they name deployment
# artifacts and type queries that only an orchestrator with an artifact store would answer.
VALIDATED_ONLY = frozenset({"get_artifact", "get_nodes_of_type"})
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


def contains_call(value: Any, depth: int = 0) -> bool:
    """Whether value holds a function call anywhere (a quick test before walking it for paths)."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in FUNCTION_NAMES:
            return True
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    if depth > 200:
        return True  # let iter_calls walk it; it does not recurse
    for item in items:
        if isinstance(item, (dict, list)) and contains_call(item, depth + 1):
            return True
    return False


def iter_calls(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any, str, Any]]:
    """Every function call inside value: (name, args, container, key, path)."""
    if not contains_call(value):
        return
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

    `attribute_lookup(node, name)` returns the attribute value (a list in instance order
    when the node has several instances) or raises Unresolved; `property_lookup(node, name)`
    returns the node template's raw property value; `host_lookup(node)` names the node it
    is hosted on. The optional lookups add TOSCA's finer forms:
    `requirement_lookup(node, requirement)` -> target node name (or (target, capability
    name)) or None, for
    [SELF, host, ip_address]; `capability_lookup(node, capability, name)` -> value, raising
    KeyError when the node has no such capability property; `operation_output_lookup(node,
    interface, operation, output)` -> value or Unresolved (default: the node's attribute
    named like the output, which is how Strato's jobs report what their operations produced).
    `secret_inputs` names the inputs whose use `resolve_traced` reports.
    """

    _secrets_used: set | None = None  # set only on the copy resolve_traced works with

    def __init__(self, inputs: dict[str, Any], property_lookup: Callable[[str, str], Any],
                 attribute_lookup: Callable[[str, str], Any], host_lookup: Callable[[str], str | None] = None,
                 requirement_lookup: Callable[[str, str], str | None] = None,
                 capability_lookup: Callable[[str, str, str], Any] = None,
                 operation_output_lookup: Callable[[str, str, str, str], Any] = None,
                 secret_inputs: frozenset[str] = frozenset()):
        self.inputs = inputs
        self.secret_inputs = secret_inputs
        self.property_lookup = property_lookup
        self.attribute_lookup = attribute_lookup
        self.host_lookup = host_lookup or (lambda node: None)
        self.requirement_lookup = requirement_lookup or (lambda node, req: None)
        self.capability_lookup = capability_lookup
        self.operation_output_lookup = operation_output_lookup or (
            lambda node, interface, operation, output: self.attribute_lookup(node, output))

    def resolve(self, value: Any, self_node: str, depth: int = 0, source: str | None = None,
                target: str | None = None) -> Any:
        """Value with every function evaluated; `source`/`target` give SOURCE and TARGET their meaning
        in a relationship's context (SOURCE defaults to the node itself)."""
        if depth > 50:
            raise FunctionError("functions refer to each other too deeply (a property loop?)")
        call = function_call(value)
        if call:
            return self._call(call[0], call[1], self_node, depth, source, target)
        if isinstance(value, dict):
            return {k: self.resolve(v, self_node, depth, source, target) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, self_node, depth, source, target) for v in value]
        return value

    def resolve_traced(self, value: Any, self_node: str) -> tuple[Any, frozenset[str]]:
        """(value resolved, the secret inputs it was computed from): through get_input, concat, join, token and
        get_property of properties that take a secret input, at any depth."""
        tracer = copy.copy(self)  # its own record, so resolvers shared between threads stay correct
        tracer._secrets_used = set()
        value = tracer.resolve(value, self_node)
        return value, frozenset(tracer._secrets_used)

    def _node(self, ref: Any, self_node: str, source: str | None = None, target: str | None = None) -> str:
        if ref == "SELF":
            return self_node
        if ref == "SOURCE":
            return source or self_node
        if ref == "TARGET":
            if target is None:
                raise FunctionError("TARGET means something only in a relationship or requirement")
            return target
        if ref == "HOST":
            host = self.host_lookup(self_node)
            if host is None:
                raise FunctionError(f"node '{self_node}' has no host requirement, so HOST means nothing here")
            return host
        return str(ref)

    def _entity_value(self, name: str, args: list, self_node: str, depth: int, source, target) -> tuple[str, Any, int]:
        """(node, value, index of the first nested-path step) for get_property/get_attribute."""
        if args[0] == "HOST":  # the first node down the hosted-on chain that has it (TOSCA 1.3, 4.4.1.1)
            return self._down_the_hosts(name, args, self_node, depth, source, target)
        node = self._node(args[0], self_node, source, target)
        key = args[1]
        # [entity, requirement_or_capability, name, ...]: a requirement leads to its target,
        # a capability to the capability's own properties
        if len(args) >= 3 and isinstance(key, str):
            via = self.requirement_lookup(node, key)
            if via is not None:
                via, via_cap = via if isinstance(via, tuple) else (via, None)
                try:
                    return via, self._plain(name, via, args[2], depth), 3
                except FunctionError:
                    # not a property of the target node: then of the capability that fulfils the requirement
                    if via_cap is None or self.capability_lookup is None:
                        raise
                    try:
                        return via, self.capability_lookup(via, via_cap, args[2]), 3
                    except KeyError:
                        raise FunctionError(f"node '{via}' has no property '{args[2]}'") from None
            if self.capability_lookup is not None:
                try:
                    return node, self.capability_lookup(node, key, args[2]), 3
                except KeyError:
                    pass
        return node, self._plain(name, node, key, depth), 2

    def _down_the_hosts(self, name: str, args: list, self_node: str, depth: int, source, target) -> tuple:
        node, seen, first_error = self._node("HOST", self_node, source, target), set(), None
        while node is not None and node not in seen:
            seen.add(node)
            try:
                return self._entity_value(name, [node] + list(args[1:]), self_node, depth, source, target)
            except FunctionError as exc:
                first_error = first_error or exc
            node = self.host_lookup(node)
        raise first_error

    def _plain(self, name: str, node: str, key: Any, depth: int) -> Any:
        """A property as written (the caller resolves the part it asks for), or an attribute's value."""
        if name == "get_property":
            return self.property_lookup(node, key)
        return self.attribute_lookup(node, key)

    def _call(self, name: str, args: Any, self_node: str, depth: int, source=None, target=None) -> Any:
        if name == "get_input":
            key = args[0] if isinstance(args, list) and args else args
            if not isinstance(key, str) or key not in self.inputs:
                raise FunctionError(f"get_input names unknown input '{key}'")
            value = self.inputs[key]
            if self._secrets_used is not None and key in self.secret_inputs:
                self._secrets_used.add(key)
            for step in (args[1:] if isinstance(args, list) else []):
                value = _step(value, step, f"input '{key}'")
            return value
        if name in ("get_property", "get_attribute"):
            if not isinstance(args, list) or len(args) < 2:
                raise FunctionError(f"{name} needs a list: [node, name, ...]")
            node, value, first = self._entity_value(name, args, self_node, depth, source, target)
            steps = list(args[first:])
            if name == "get_property":
                # step into the property as written first: only the part asked for is evaluated (and traced)
                while steps and isinstance(value, (dict, list)) and function_call(value) is None:
                    value = _step(value, steps.pop(0), f"{name} of '{node}'")
                value = self.resolve(value, node, depth + 1)
            for step in steps:
                value = _step(value, step, f"{name} of '{node}'")
            return value
        if name == "get_operation_output":
            if not isinstance(args, list) or len(args) != 4:
                raise FunctionError("get_operation_output needs [node, interface, operation, output]")
            node = self._node(args[0], self_node, source, target)
            return self.operation_output_lookup(node, str(args[1]), str(args[2]), str(args[3]))
        if name == "concat":
            parts = self.resolve(args if isinstance(args, list) else [args], self_node, depth + 1, source, target)
            return "".join("" if p is None else str(p) for p in _flatten(parts))
        if name == "join":
            if not isinstance(args, list) or not args:
                raise FunctionError("join needs [list_of_strings] or [list_of_strings, delimiter]")
            items = self.resolve(args[0], self_node, depth + 1, source, target)
            delim = str(args[1]) if len(args) > 1 else ""
            return delim.join(str(p) for p in _flatten(items if isinstance(items, list) else [items]))
        if name == "token":
            if not isinstance(args, list) or len(args) != 3:
                raise FunctionError("token needs [string, separators, index]")
            text = str(self.resolve(args[0], self_node, depth + 1, source, target))
            seps, index = str(args[1]), args[2]
            pieces = re.split("[" + re.escape(seps) + "]", text) if seps else [text]
            try:
                return pieces[int(index)]
            except (IndexError, ValueError, TypeError):
                raise FunctionError(f"token index {index} is out of range for '{text}'") from None
        if name in VALIDATED_ONLY:
            raise FunctionError(f"{name} is checked by validate but not evaluated by Strato's builds; give the value "
                                "itself instead")
        raise FunctionError(f"unknown function '{name}'")


def template_resolver(template, inputs: dict[str, Any], attribute_lookup: Callable[[str, str], Any]) -> Resolver:
    """A Resolver wired to a loaded Template: property defaults, hosts, requirement and capability forms."""
    nodes = template.node_templates

    def prop(node: str, name: str) -> Any:
        tmpl = nodes.get(node)
        if tmpl is None:
            raise FunctionError(f"unknown node '{node}'")
        if name in tmpl.properties:
            return tmpl.properties[name]
        pdef = template.types.resolved(tmpl.type).properties.get(name)
        if pdef is not None and pdef.has_default:
            return pdef.default
        raise FunctionError(f"node '{node}' has no property '{name}'")

    def host(node: str) -> str | None:
        return nodes[node].host if node in nodes else None

    def requirement(node: str, req: str) -> str | None:
        tmpl = nodes.get(node)
        if tmpl is None:
            return None
        for r in tmpl.requirements:
            if r.name == req:
                return r.target, r.capability
        return None

    def capability(node: str, cap: str, name: str) -> Any:
        tmpl = nodes.get(node)
        if tmpl is None:
            raise KeyError(cap)
        cdef = template.types.resolved(tmpl.type).capabilities.get(cap)
        if cdef is None:
            raise KeyError(cap)
        assigned = tmpl.capabilities.get(cap) if isinstance(tmpl.capabilities, dict) else None
        props = assigned.get("properties") if isinstance(assigned, dict) else None
        if isinstance(props, dict) and name in props:
            return props[name]
        ctype = template.types.resolved(template.types.canonical(cdef.type, "capability"), "capability")
        pdef = cdef.properties.get(name) or ctype.properties.get(name)
        if pdef is not None and pdef.has_default:
            return pdef.default
        raise FunctionError(f"capability '{cap}' of node '{node}' has no value for '{name}'")

    return Resolver(inputs, prop, attribute_lookup, host, requirement, capability,
                    secret_inputs=secret_input_names(template))


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
