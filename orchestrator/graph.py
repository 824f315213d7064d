"""The dependency graph of a template's nodes (networkx), with cycle diagnostics that name the cycle."""

from __future__ import annotations

import networkx as nx

from descriptors.diagnostics import DescriptorError, Diagnostic, Position
from descriptors.functions import SELF_NAMES, iter_calls
from descriptors.template import Template


def dependency_graph(template: Template) -> nx.DiGraph:
    """Edges point from a node to the nodes it needs: web -> db means db is built before web.

    Requirements make edges; so does a property that reads another node's attribute,
    because its value only exists once that node is built.
    """
    graph = nx.DiGraph()
    nodes = template.node_templates
    graph.add_nodes_from(nodes)
    graph.add_edges_from((node.name, req.target, {"position": req.position, "path": req.path, "kind": req.name})
                         for node in nodes.values() for req in node.requirements if req.target in nodes)
    for node in nodes.values():
        for fname, args, container, key, path in iter_calls(node.properties, node.path + ".properties"):
            if fname == "get_attribute" and isinstance(args, list) and args and args[0] not in SELF_NAMES \
                    and args[0] in nodes and args[0] != node.name and not graph.has_edge(node.name, args[0]):
                pos = container.position_of(key) if hasattr(container, "position_of") else node.position
                graph.add_edge(node.name, args[0], position=pos, path=path, kind="get_attribute")
    return graph


def check_acyclic(template: Template, graph: nx.DiGraph) -> None:
    """Raise a diagnostic naming each dependency cycle (web -> db -> web) with its positions."""
    if nx.is_directed_acyclic_graph(graph):
        return
    diagnostics = []
    seen: set[frozenset] = set()
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        sub = graph.subgraph(component)
        cycle_edges = nx.find_cycle(sub)
        members = frozenset(component)
        if members in seen:
            continue
        seen.add(members)
        names = [u for u, _ in cycle_edges] + [cycle_edges[0][0]]
        first = graph.edges[cycle_edges[0]]
        where = "; ".join(f"{u} -> {v} at {graph.edges[u, v]['position']}" for u, v in cycle_edges)
        diagnostics.append(Diagnostic(
            "DEPENDENCY_CYCLE", "nodes depend on each other in a cycle: " + " -> ".join(names),
            first.get("position") or Position(template.file), first.get("path", ""), f"edges: {where}"))
    if diagnostics:
        raise DescriptorError(diagnostics)


def build_order(graph: nx.DiGraph) -> list[str]:
    """Dependencies first."""
    return list(reversed(list(nx.topological_sort(graph))))


def dependents_closure(graph: nx.DiGraph, name: str) -> set[str]:
    """All nodes that (transitively) need `name`."""
    return set(nx.ancestors(graph, name))


def _default_counts(template: Template) -> dict[str, int]:
    defaults = {name: i.default for name, i in template.inputs.items() if i.has_default}
    return {name: node.instance_count(defaults) for name, node in template.node_templates.items()}


def to_dot(graph: nx.DiGraph, template: Template) -> str:
    counts = _default_counts(template)
    lines = ["digraph strato {", "  rankdir=BT;", "  node [shape=box, style=rounded];"]
    for name in graph.nodes:
        node = template.node_templates[name]
        lines.append(f'  "{name}" [label="{name}\\n{node.type}\\nx{counts[name]}"];')
    for u, v, data in graph.edges(data=True):
        lines.append(f'  "{u}" -> "{v}" [label="{data.get("kind", "")}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: nx.DiGraph, template: Template) -> dict:
    counts = _default_counts(template)
    return {
        "nodes": [{"name": n, "type": template.node_templates[n].type,
                   "instances": counts[n]} for n in graph.nodes],
        "edges": [{"from": u, "to": v, "kind": d.get("kind")} for u, v, d in graph.edges(data=True)],
    }
