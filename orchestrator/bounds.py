"""Instance-count bounds: a node's min/max_instances and Strato's per-node ceiling, checked before anything is allocated.

Every path that sets a count (the descriptor's default_instances, an input such as `-i replicas=50`,
`strato scale`, the API's scale call, the maintain loop) goes through these functions, so the rule
and its message are the same wherever the count comes from.
"""

from __future__ import annotations

import os

from descriptors.diagnostics import Diagnostic, DescriptorError, Position
from descriptors.template import NodeTemplate, Template
from descriptors.yamlpos import position_of

CEILING_ENV = "STRATO_MAX_INSTANCES_PER_NODE"
DEFAULT_CEILING = 1000


def ceiling() -> int:
    """The most instances any one node may have (a guard against typos such as 100000000000)."""
    raw = os.environ.get(CEILING_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_CEILING
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise DescriptorError([Diagnostic("CEILING_BAD", f"{CEILING_ENV} must be a whole number of 1 or more, "
                                                         f"got '{raw}'", Position(f"${CEILING_ENV}"))])
    return value


def _scaling_props(node: NodeTemplate):
    caps = node.capabilities if isinstance(node.capabilities, dict) else {}
    scalable = caps.get("scalable") if isinstance(caps.get("scalable"), dict) else {}
    props = scalable.get("properties")
    return props if isinstance(props, dict) else {}


def bound_position(node: NodeTemplate, key: str) -> Position:
    """Where min_instances / max_instances / default_instances of a node is written."""
    return position_of(_scaling_props(node), key, node.position or Position("<descriptor>"))


def node_bounds(node: NodeTemplate, inputs: dict | None = None) -> tuple[int, int | None]:
    """(min, max) instances of a node, taking either from an input when the descriptor says so."""
    inputs = inputs or {}
    lo, hi = node.min_instances, node.max_instances
    for key in ("min_instances", "max_instances"):
        name = node.count_inputs.get(key)
        value = inputs.get(name) if name is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            if key == "min_instances":
                lo = value
            else:
                hi = value
    return lo, hi


def may_have_several(node: NodeTemplate, inputs: dict | None = None) -> bool:
    """Whether the descriptor lets a node have more than one instance: a `scalable` capability (or a count
    from an input) whose max_instances is unbounded or above 1, or a default above 1."""
    if not _scaling_props(node) and not node.count_inputs:
        return node.default_instances > 1
    _, high = node_bounds(node, inputs)
    return high is None or high > 1


def count_problem(template: Template, node_name: str, count: int, inputs: dict | None, source: str,
                  origin: Position | None = None) -> Diagnostic | None:
    """A diagnostic when `count` instances of a node break a bound, naming the bound and where it is written.

    `source` says where the count came from (e.g. "input 'replicas' = 50", "strato scale"); `origin`
    is that source's position when it has one (an input's definition, the command line).
    """
    node = template.node_templates[node_name]
    path = f"topology_template.node_templates.{node_name}.capabilities.scalable.properties"
    limit = ceiling()
    where = f" ({origin})" if origin is not None and origin.line else ""
    if count > limit:
        return Diagnostic("INSTANCES_OVER_CEILING",
                          f"{source}{where} asks for {count} instances of '{node_name}', above Strato's per-node "
                          f"ceiling of {limit}", origin or bound_position(node, "default_instances"), path,
                          f"raise ${CEILING_ENV} if you really mean it")
    lo, hi = node_bounds(node, inputs)
    if hi is not None and count > hi:
        pos = bound_position(node, "max_instances")
        return Diagnostic("INSTANCES_ABOVE_MAX", f"{source}{where} asks for {count} instances of '{node_name}', "
                          f"above its max_instances {hi} (set at {pos})", pos, f"{path}.max_instances")
    if count < lo:
        pos = bound_position(node, "min_instances")
        return Diagnostic("INSTANCES_BELOW_MIN", f"{source}{where} asks for {count} instances of '{node_name}', "
                          f"below its min_instances {lo} (set at {pos})", pos, f"{path}.min_instances")
    return None


def check_template(template: Template) -> None:
    """Static counts written in the descriptor (default/min_instances) must stay under the ceiling."""
    limit = ceiling()
    problems = []
    for name, node in template.node_templates.items():
        for key in ("default_instances", "min_instances"):
            if key in node.count_inputs:
                continue
            value = getattr(node, key)
            if isinstance(value, int) and value > limit:
                problems.append(Diagnostic(
                    "INSTANCES_OVER_CEILING", f"{key} {value} of '{name}' is above Strato's per-node ceiling "
                    f"of {limit}", bound_position(node, key),
                    f"topology_template.node_templates.{name}.capabilities.scalable.properties.{key}",
                    f"raise ${CEILING_ENV} if you really mean it"))
    if problems:
        raise DescriptorError(problems)


def check_counts(template: Template, inputs: dict, counts: dict[str, int], scaled: dict[str, int | None],
                 given: dict | None = None) -> None:
    """Every node's wanted count within its bounds; called by plan and build before any instance is planned.

    `scaled` holds counts set by `strato scale` (they win over the descriptor); `given` the inputs
    given on this command line (to say so in the message).
    """
    given = given or {}
    problems = []
    for name, node in template.node_templates.items():
        count = counts.get(name)
        if count is None:
            continue
        if scaled.get(name) is not None:
            source, origin = f"the count {count} set by `strato scale`", None
        elif "default_instances" in node.count_inputs:
            iname = node.count_inputs["default_instances"]
            idef = template.inputs.get(iname)
            if iname in given:
                source, origin = f"input {iname}={given[iname]} (from the command line)", None
            else:
                source, origin = f"input '{iname}' = {count}", idef.position if idef else None
        else:
            source, origin = f"default_instances {count}", None
        problem = count_problem(template, name, count, inputs, source, origin)
        if problem:
            problems.append(problem)
    if problems:
        raise DescriptorError(problems)


def dependents(dependencies: dict[str, list[str]], node: str) -> list[str]:
    """Nodes that depend on `node`, from the stored {node: [its dependencies]} map."""
    return sorted(n for n, deps in dependencies.items() if node in deps and n != node)
