"""What a descriptor received over HTTP may not make this server do: run code on its own machine (unless it was
started with --allow-local-processes) or read a file outside the descriptor's bundle.

A descriptor is code. What each backend runs or reads here is declared by its driver (`runs_on_server_host`,
`host_code`, `path_properties`, `server_paths` in drivers/base.py); what any node may carry besides is
decided here, once: Standard operations implemented by Ansible playbooks (Ansible's controller, with its
lookups and local actions, is this machine) and `health_check` commands (the maintain loop runs them here).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from descriptors.template import Template

LIFECYCLE_DELETE = ("stop", "delete")
MAX_SHOWN = 200  # characters of a client's own value repeated in a refusal


class Computed:
    """A property value known only at build time (it depends on attributes, or on an input not given)."""

    def __repr__(self) -> str:
        return "<computed at build time>"


COMPUTED = Computed()


def _input_values(template: Template, inputs: dict | None) -> dict:
    defaults = {name: d.default for name, d in template.inputs.items() if d.has_default}
    return {**defaults, **(inputs or {})}


def node_properties(template: Template, node: str, inputs: dict | None) -> dict[str, Any]:
    """The node's properties (type defaults included) with what can be known before a build resolved; the rest
    (attributes, missing inputs) is COMPUTED."""
    from descriptors.functions import Unresolved, template_resolver
    from descriptors.yamlpos import to_plain

    def no_attributes(owner: str, name: str):
        raise Unresolved(owner, name)
    resolver = template_resolver(template, _input_values(template, inputs), no_attributes)
    tmpl = template.node_templates[node]
    raw = {name: pdef.default for name, pdef in template.types.resolved(tmpl.type).properties.items()
           if pdef.has_default}
    raw.update(tmpl.properties or {})
    values = {}
    for name, value in raw.items():
        try:
            values[name] = to_plain(resolver.resolve(value, node))
        except Exception:  # noqa: BLE001 - whatever cannot be worked out now is judged as the worst it could be
            values[name] = COMPUTED
    return values


def backends(template: Template, node: str, props: dict[str, Any]) -> list[tuple[Any, dict]]:
    """(driver name, properties) of every backend the node may be built on: its own and each of its
    `implementations` (their properties merged over the node's, as placement does)."""
    found: list[tuple[Any, dict]] = [(template.driver_name(node), props)]
    impls = props.get("implementations")
    if impls is COMPUTED:
        return found + [(COMPUTED, props)]
    shared = {k: v for k, v in props.items() if k not in ("implementations", "placement")}
    for entry in impls if isinstance(impls, list) else []:
        if isinstance(entry, dict):
            own = entry.get("properties")
            found.append((entry.get("driver"), {**shared, **(own if isinstance(own, dict) else {})}))
    return found


@functools.lru_cache(maxsize=256)
def _driver_class(name: str):
    from drivers.providers import UnknownDriver, driver_class
    try:
        return driver_class(name)  # reads the entry-point table: once per name, not once per node
    except (UnknownDriver, ImportError, AttributeError):
        return None  # an unknown backend builds nothing: the build fails naming it


def warm_up() -> None:
    """Import every registered driver class and what the checks use, so no check pays for it."""
    from drivers import playbooks  # noqa: F401
    from drivers.providers import known_drivers
    for name in known_drivers():
        _driver_class(name)


def _playbooks(template: Template, node: str, deleting: bool) -> list[str]:
    """The playbook implementations Strato would run for the node's Standard operations."""
    from drivers.playbooks import LIFECYCLE, Operation
    wanted = LIFECYCLE_DELETE if deleting else LIFECYCLE
    found = []
    for (iface, name), op in sorted((template.node_templates[node].operations or {}).items()):
        if iface == "Standard" and name in wanted and op.implementation and \
                Operation.from_value(name, {"implementation": op.implementation}, template.directory) is not None:
            found.append(str(op.implementation))
    return found


def host_code(template: Template, inputs: dict | None = None, deleting: bool = False) -> list[dict]:
    """Every node that building (or, with `deleting`, removing) would run code on this machine for, and why:
    [{"node", "reason"}] in node order, one entry per node."""
    found = []
    for node in template.node_templates:
        reasons = []
        for driver, props in backends(template, node, node_properties(template, node, inputs)):
            check = props.get("health_check")
            if not deleting and (check is COMPUTED or (isinstance(check, dict) and check.get("command"))):
                reasons.append("runs its health_check command on this machine")
            if isinstance(driver, str):
                cls = _driver_class(driver)
                reasons.append(cls.host_code(props, deleting) if cls is not None else "")
            elif driver is not None:
                reasons.append("chooses its backend driver only at build time")
        reasons += [f"runs the Ansible playbook '{p}' with this machine as Ansible's controller"
                    for p in _playbooks(template, node, deleting)]
        reasons = [r for r in reasons if r]
        if reasons:
            found.append({"node": node, "reason": "; ".join(dict.fromkeys(reasons))})
    return found


def refusal_message(found: list[dict]) -> str:
    what = "; ".join(f"node '{f['node']}' {f['reason']}" for f in found[:5])
    more = f" (and {len(found) - 5} more nodes)" if len(found) > 5 else ""
    return (f"{what}{more}: this server runs nothing a descriptor supplies on its own machine unless it was "
            "started with --allow-local-processes")


def outside_paths(template: Template, root: str, inputs: dict | None = None) -> list[dict]:
    """Diagnostics for every file a node names outside `root` (its bundle), decided from the names alone.

    Without inputs (validate) a path computed from a missing input is left for the build's check."""
    from descriptors.diagnostics import Diagnostic
    from descriptors.sections.common import path_inside
    from descriptors.yamlpos import position_of
    root = os.path.realpath(root)
    base = os.path.realpath(template.directory)
    problems = []
    for node, tmpl in template.node_templates.items():
        props = node_properties(template, node, inputs)
        for driver, backend_props in backends(template, node, props):
            cls = _driver_class(driver) if isinstance(driver, str) else None
            for where, value in (cls.server_paths(backend_props) if cls is not None else []):
                if value is COMPUTED and inputs is None:
                    continue
                if isinstance(value, str) and path_inside(value, base, [root]) is not None:
                    continue
                shown = repr(value) if value is COMPUTED else f"'{str(value)[:MAX_SHOWN]}'"
                message = (f"node '{node}': {where} names {shown}, which is not a plain path inside the bundle; a "
                           "descriptor received over HTTP may only name files in its own bundle")
                top = where.split(".")[0].split("[")[0]
                problems.append(Diagnostic("PATH_OUTSIDE_BUNDLE", message,
                                           position_of(tmpl.properties, top, tmpl.position),
                                           f"{tmpl.path}.properties.{where}",
                                           "put the file in the bundle and name it relative to the descriptor"))
    unique = {(d.path, d.message): d for d in problems}
    return [d.to_dict() for d in unique.values()]


def stored_host_code(store, infra, deleting: bool = False) -> list[dict]:
    """host_code() of a stored infrastructure's descriptor, read as it was accepted (a CLI user's file may import
    from anywhere); when it cannot be read, judged from the drivers its instances were built with."""
    from descriptors.diagnostics import DescriptorError
    from descriptors.loader import load_template
    try:
        template = load_template(infra.descriptor, confined=False)
    except (DescriptorError, OSError, TypeError, ValueError):
        template = None
    if template is not None and not template.is_library:
        return host_code(template, infra.inputs, deleting)
    found = {}
    for rec in store.instances(infra.name):
        driver = (rec.handle or {}).get("backend") or rec.driver  # the placement composite names its backend
        cls = _driver_class(driver) if isinstance(driver, str) else None
        why = cls.host_code({}, deleting) if cls is not None else ""
        if why:
            found.setdefault(rec.node, why)
    return [{"node": node, "reason": why} for node, why in found.items()]
