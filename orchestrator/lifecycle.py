"""Node lifecycle operations around the driver calls: Standard create/configure/start after an instance exists,
stop/delete before it goes, when the descriptor implements them with Ansible playbooks (drivers/playbooks.py).

Drivers that run operations on the machine they hand out (`runs_operations = True`, e.g. `ssh`)
get the resolved operations in `spec.metadata["strato.operations"]` and run them themselves;
for every other node the playbooks run here, on an inventory made from the instance's
attributes (a local connection unless the attributes name an SSH login).
"""

from __future__ import annotations

import os
from typing import Any

from descriptors.yamlpos import to_plain
from drivers import playbooks
from drivers.common import DEPENDENCIES_META

OPERATIONS_META = "strato.operations"
HANDLE_KEY = "strato_operations"  # in a handle: what stop/delete need later, in another process


def resolved_operations(template, node: str, resolver) -> dict[str, dict]:
    """The node's Standard operations with their inputs' functions resolved: {name: {implementation, inputs}}."""
    tmpl = template.node_templates[node]
    out: dict[str, dict] = {}
    for (iface, name), op in (getattr(tmpl, "operations", None) or {}).items():
        if iface != "Standard" or not op.implementation:
            continue
        inputs = {}
        for iname, raw in (op.inputs or {}).items():
            value = to_plain(raw)
            if isinstance(value, dict) and "type" in value and ("default" in value or "value" in value):
                value = value.get("value", value.get("default"))  # an input definition, not an assignment
            inputs[iname] = to_plain(resolver.resolve(value, node))
        impl = to_plain(op.implementation)
        out[name] = {"implementation": impl, "inputs": inputs}
    return out


def spec_metadata(metadata: dict, operations: dict, dependencies: dict[str, list[dict]]) -> dict:
    """The node's metadata plus what its drivers may need: resolved operations, and its dependencies' instance
    attributes (cloud-init templates ask for their addresses: Occopus's getip/getprivip)."""
    # These keys are Strato's to fill: a descriptor's own `metadata: {strato.operations: ...}` would have playbooks
    # run that its interfaces do not show (and that the REST API's check never sees).
    out = {k: v for k, v in metadata.items() if k not in (OPERATIONS_META, DEPENDENCIES_META)}
    if operations:
        out[OPERATIONS_META] = operations
    if dependencies:
        out[DEPENDENCIES_META] = dependencies
    return out


def after_create(driver, spec, handle: dict, attributes: dict) -> tuple[dict, dict]:
    """Run create/configure/start playbooks for a node whose driver does not run them; return (handle, attributes)."""
    ops_value = (spec.metadata or {}).get(OPERATIONS_META)
    if not ops_value or getattr(driver, "runs_operations", False):
        return handle, attributes
    ops = playbooks.operations_from(ops_value, spec.descriptor_dir)
    if not ops:
        return handle, attributes
    log_path = os.path.join(spec.infra_dir, "logs", f"{spec.node}.{spec.index}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    target = playbooks.target_from_attributes(playbooks.inventory_name(f"{spec.node}-{spec.index}"), attributes)
    stats = playbooks.run_lifecycle(ops, ("create", "configure", "start"), target, log_path, spec.timeout,
                                    os.path.join(spec.infra_dir, "ansible"), spec.node)
    later = {name: op.to_dict() for name, op in ops.items() if name in ("stop", "delete")}
    handle = {**handle, HANDLE_KEY: {"operations": later, "target": target.__dict__, "log": log_path,
                                     "work_root": os.path.join(spec.infra_dir, "ansible"), "node": spec.node,
                                     "attributes": stats}}
    return handle, {**attributes, **stats}


def before_delete(handle: dict | None) -> None:
    """Run the stop/delete playbooks recorded at create time (nothing when there are none)."""
    saved: dict[str, Any] = (handle or {}).get(HANDLE_KEY) or {}
    if not saved.get("operations"):
        return
    ops = {name: playbooks.Operation(name, body["implementation"], body.get("inputs") or {})
           for name, body in saved["operations"].items()}
    playbooks.run_lifecycle(ops, ("stop", "delete"), playbooks.Target(**saved["target"]), saved["log"], 300,
                            saved.get("work_root"), saved.get("node", ""))


def stored_attributes(handle: dict | None) -> dict:
    """Attributes the playbooks set (set_stats), kept in the handle so a later observe still reports them."""
    return dict(((handle or {}).get(HANDLE_KEY) or {}).get("attributes") or {})
