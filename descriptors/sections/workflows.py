"""topology_template.workflows (TOSCA 1.3 imperative workflows): checked, not executed (builds follow the graph)."""

from __future__ import annotations

from typing import Any

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.sections.common import unknown_keys, written_nodes
from descriptors.template import Template

WORKFLOW_KEYS = ("description", "metadata", "inputs", "preconditions", "steps", "implementation", "outputs")
STEP_KEYS = ("target", "target_relationship", "operation_host", "filter", "activities", "on_success", "on_failure")
ACTIVITIES = ("delegate", "set_state", "call_operation", "inline")


def check_workflows(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    workflows = topo.get("workflows")
    if workflows is None:
        return
    base = "topology_template.workflows"
    pos = topo.position_of("workflows")
    if not isinstance(workflows, dict):
        sink.error("WORKFLOW_BAD", "'workflows' must be a mapping of workflow names to definitions", pos, base)
        return
    sink.warning("WORKFLOWS_NOT_EXECUTED", "workflows are checked but not run: Strato builds and destroys nodes in "
                 "the order of their requirements", pos, base)
    for name, body in workflows.items():
        path = join_path(base, name)
        wpos = workflows.key_position(name)
        if not isinstance(body, dict):
            sink.error("WORKFLOW_BAD", f"workflow '{name}' must be a mapping with 'steps'", wpos, path)
            continue
        unknown_keys(body, WORKFLOW_KEYS, sink, path, f"workflow '{name}'")
        steps = body.get("steps") or {}
        if not isinstance(steps, dict):
            sink.error("WORKFLOW_BAD", f"'steps' of workflow '{name}' must be a mapping", wpos,
                       join_path(path, "steps"))
            continue
        for sname, step in steps.items():
            _check_step(template, workflows, steps, sname, step, sink, join_path(join_path(path, "steps"), sname),
                        steps.key_position(sname) if hasattr(steps, "key_position") else wpos)


def _check_step(template: Template, workflows: dict, steps: dict, name: str, step: Any, sink: DiagnosticSink,
                path: str, pos) -> None:
    if not isinstance(step, dict):
        sink.error("WORKFLOW_BAD", f"step '{name}' must be a mapping with 'target' and 'activities'", pos, path)
        return
    unknown_keys(step, STEP_KEYS, sink, path, f"step '{name}'")
    target = step.get("target")
    nodes, groups = template.node_templates, template.groups
    if isinstance(target, str) and target not in nodes and target in written_nodes(template):
        target = None  # a node whose own definition is broken: reported there, once
    elif not isinstance(target, str) or (target not in nodes and target not in groups):
        sink.error("WORKFLOW_UNKNOWN_TARGET", f"step '{name}' targets unknown node template or group '{target}'", pos,
                   join_path(path, "target"), did_you_mean(target, list(nodes) + list(groups))
                   if isinstance(target, str) else "")
        target = None
    for key in ("on_success", "on_failure"):
        nexts = step.get(key)
        for nxt in (nexts if isinstance(nexts, list) else [] if nexts is None else [nexts]):
            if not isinstance(nxt, str) or nxt not in steps:
                sink.error("WORKFLOW_UNKNOWN_STEP", f"'{key}' of step '{name}' names unknown step '{nxt}'", pos,
                           join_path(path, key), did_you_mean(nxt, steps) if isinstance(nxt, str) else "")
    activities = step.get("activities")
    if not isinstance(activities, list) or not activities:
        sink.error("WORKFLOW_BAD", f"step '{name}' needs a list of 'activities'", pos, join_path(path, "activities"))
        return
    for i, activity in enumerate(activities):
        apath = f"{join_path(path, 'activities')}[{i}]"
        if not isinstance(activity, dict) or len(activity) != 1 or next(iter(activity)) not in ACTIVITIES:
            sink.error("WORKFLOW_BAD_ACTIVITY", f"each activity must be one of {', '.join(ACTIVITIES)} (a one-key "
                       "mapping)", pos, apath)
            continue
        kind, value = next(iter(activity.items()))
        if kind in ("delegate", "inline"):
            wf = value.get("workflow") if isinstance(value, dict) else value
            if kind == "inline" and (not isinstance(wf, str) or wf not in workflows):
                sink.error("WORKFLOW_UNKNOWN", f"inline activity names unknown workflow '{wf}'", pos, apath,
                           did_you_mean(wf, workflows) if isinstance(wf, str) else "")
            elif not isinstance(wf, str):
                sink.error("WORKFLOW_BAD_ACTIVITY", f"{kind} needs a workflow name", pos, apath)
        elif kind == "set_state":
            if not isinstance(value, str):
                sink.error("WORKFLOW_BAD_ACTIVITY", "set_state needs a state name", pos, apath)
        elif target in nodes:
            _check_operation(template, target, value, sink, pos, apath)


def _check_operation(template: Template, target: str, value: Any, sink: DiagnosticSink, pos, path: str) -> None:
    """call_operation: 'Interface.operation' (or {operation: ...}) that the target's type defines."""
    ref = value.get("operation") if isinstance(value, dict) else value
    if not isinstance(ref, str) or "." not in ref:
        sink.error("WORKFLOW_BAD_ACTIVITY", "call_operation needs 'interface.operation'", pos, path)
        return
    iname, _, oname = ref.rpartition(".")
    types = template.types
    ntype = types.resolved(template.node_templates[target].type)
    iface = ntype.interfaces.get(iname)
    if iface is None:
        sink.error("WORKFLOW_UNKNOWN_OPERATION", f"node '{target}' has no interface '{iname}'", pos, path,
                   did_you_mean(iname, ntype.interfaces))
        return
    ops = dict(types.interface_operations(iface.type))
    ops.update(iface.operations)
    if oname not in ops:
        sink.error("WORKFLOW_UNKNOWN_OPERATION", f"interface '{iname}' of node '{target}' has no operation '{oname}'",
                   pos, path, did_you_mean(oname, ops))
