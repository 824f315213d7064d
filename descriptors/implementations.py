"""Checks of what nodes hand to backends: driver names in `implementations` and port numbers, with positions.

A node's properties are typed only as far as its type says; `implementations` entries and many
port-like values (`port: any`, health-check ports, a driver's own properties) are free-form, so a
typo there would only surface when the build reaches that backend. These checks run at validate time.
"""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.template import Template
from descriptors.yamlpos import YMap, position_of

# Names people use for a backend whose Strato driver is called differently (e.g. Occopus's `nova`).
DRIVER_ALIASES = {"nova": "openstack", "os": "openstack", "aws": "ec2", "amazon": "ec2", "process": "local",
                  "aws_lambda": "lambda", "awslambda": "lambda"}
PORT_MIN, PORT_MAX = 1, 65535
# Strato's keys in a node template's `metadata` and the kind of value each takes.
STRATO_METADATA = {"strato.driver": str, "strato.one_shot": bool, "strato.open_attributes": bool}
# Property types the type system does not look inside; typed values (PortDef, data types) it checks itself.
FREE_FORM_TYPES = ("any", "map", "list", "json")


def _known_drivers() -> list[str]:
    from drivers.providers import known_drivers  # the registry (entry points), read only when needed
    return known_drivers()


def _is_port_key(key: Any) -> bool:
    return isinstance(key, str) and (key in ("port", "ports") or key.endswith("_port") or key.endswith("_ports"))


def _check_ports(value: Any, sink: DiagnosticSink, path: str, container: Any, key: Any, portish: bool) -> None:
    """Walk a property value; whole numbers under a port-like key must lie in 1-65535 ('auto' etc. pass)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_ports(v, sink, join_path(path, k), value, k, _is_port_key(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_ports(v, sink, join_path(path, i), value, i, portish)
    elif portish and isinstance(value, int) and not isinstance(value, bool) and not PORT_MIN <= value <= PORT_MAX:
        sink.error("PORT_OUT_OF_RANGE", f"port {value} is outside {PORT_MIN}-{PORT_MAX}",
                   position_of(container, key), path, "use a port between 1 and 65535, or 'auto'")


def check_implementations(template: Template, sink: DiagnosticSink) -> None:
    """Unknown driver names in `implementations` (with a did-you-mean) and out-of-range ports."""
    known: list[str] | None = None
    for name, node in template.node_templates.items():
        props = node.properties
        if not isinstance(props, dict):
            continue
        known = _check_metadata(template, node, sink, known)
        base = join_path(node.path, "properties")
        try:
            defs = template.types.resolved(node.type).properties
        except (AttributeError, LookupError):  # an unknown type is reported by the node section already
            defs = {}
        for key, value in props.items():
            if key != "implementations":
                if key not in defs or defs[key].type in FREE_FORM_TYPES:
                    _check_ports(value, sink, join_path(base, key), props, key, _is_port_key(key))
                continue
            if not isinstance(value, list):
                continue  # the placement step reports a malformed list
            for i, impl in enumerate(value):
                if not isinstance(impl, dict):
                    continue
                path = join_path(join_path(base, key), i)
                driver = impl.get("driver")
                if isinstance(driver, str):
                    known = known if known is not None else _known_drivers()
                    if driver not in known:
                        hint = _driver_hint(driver, known)
                        sink.error("IMPLEMENTATION_UNKNOWN_DRIVER",
                                   f"implementation {i} of '{name}' names driver '{driver}', which is not installed",
                                   position_of(impl, "driver"), join_path(path, "driver"), hint)
                _check_ports(impl.get("properties"), sink, join_path(path, "properties"), impl, "properties", False)


def _check_metadata(template: Template, node, sink: DiagnosticSink, known: list[str] | None) -> list[str] | None:
    """Strato's own keys in a node template's metadata (strato.driver, ...): known names, values of their kind, a
    driver that is installed. Other metadata is free. Returns the known drivers when it had to read them."""
    written = _written_metadata(template, node.name)
    for key, value in (node.metadata or {}).items():
        if not isinstance(key, str) or not key.startswith("strato."):
            continue
        path = join_path(join_path(node.path, "metadata"), key)
        pos = written.key_position(key) if isinstance(written, YMap) and key in written else node.position
        kind = STRATO_METADATA.get(key)
        if kind is None:
            sink.error("METADATA_UNKNOWN_KEY", f"node '{node.name}' has unknown Strato metadata '{key}'", pos, path,
                       did_you_mean(key, STRATO_METADATA) or f"Strato's metadata keys: {', '.join(STRATO_METADATA)}")
        elif not isinstance(value, kind):
            sink.error("METADATA_BAD_VALUE", f"metadata '{key}' of node '{node.name}' must be "
                       f"{'true or false' if kind is bool else 'a driver name'}", pos, path)
        elif key == "strato.driver":
            known = known if known is not None else _known_drivers()
            if value not in known:
                sink.error("METADATA_UNKNOWN_DRIVER", f"node '{node.name}' names driver '{value}', which is not "
                           "installed", pos, path, _driver_hint(value, known))
    return known


def _written_metadata(template: Template, name: str) -> Any:
    """The node template's metadata as written (with positions), or None."""
    try:
        return template.document["topology_template"]["node_templates"][name]["metadata"]
    except (KeyError, TypeError):
        return None


def _driver_hint(driver: str, known: list[str]) -> str:
    return (f"did you mean '{DRIVER_ALIASES[driver]}'?" if DRIVER_ALIASES.get(driver) in known
            else did_you_mean(driver, known)) or f"known drivers: {', '.join(known)}"
