"""The dependency graph of a template's nodes (networkx), with cycle diagnostics that name the cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from descriptors.diagnostics import DescriptorError, Diagnostic, Position
from descriptors.functions import SELF_NAMES, contains_call, iter_calls
from descriptors.template import Template
from descriptors.yamlpos import settle_young_objects

if TYPE_CHECKING:  # networkx is imported where a graph is built: `strato validate` checks cycles without it
    import networkx as nx


def dependency_edges(template: Template) -> Iterator[tuple[str, str, dict]]:
    """(node, node it needs, {position, path, kind}) for every dependency; a later edge between the same
    nodes replaces an earlier one's data.

    Requirements make edges; so does a property that reads another node's attribute,
    because its value only exists once that node is built.
    """
    nodes = template.node_templates
    seen: set[tuple[str, str]] = set()
    for node in nodes.values():
        name = node.name
        for req in node.requirements:
            target = req.target
            if target in nodes:
                seen.add((name, target))
                yield name, target, {"position": req.position, "path": req.path, "kind": req.name}
    for node in nodes.values():
        if not node.properties or not contains_call(node.properties):
            continue  # nothing to find: skip building the path and walking
        for fname, args, container, key, path in iter_calls(node.properties, node.path + ".properties"):
            if fname == "get_attribute" and isinstance(args, list) and args and args[0] not in SELF_NAMES \
                    and args[0] in nodes and args[0] != node.name and (node.name, args[0]) not in seen:
                seen.add((node.name, args[0]))
                pos = container.position_of(key) if hasattr(container, "position_of") else node.position
                yield node.name, args[0], {"position": pos, "path": path, "kind": "get_attribute"}


def dependency_graph(template: Template) -> nx.DiGraph:
    """Edges point from a node to the nodes it needs: web -> db means db is built before web."""
    import networkx as nx
    graph = nx.DiGraph()
    graph.add_nodes_from(template.node_templates)
    # What graph.add_edges_from does (a later edge between the same nodes updates the earlier
    # one's data), straight on its adjacency dicts: all nodes are in already, so the per-edge
    # checks and the copy of each edge's data are not needed.
    succ, pred = graph._succ, graph._pred
    for name, target, data in dependency_edges(template):
        out = succ[name]
        if target in out:
            out[target].update(data)
        else:
            out[target] = pred[target][name] = data
    settle_young_objects()  # the graph lives as long as the template (see there)
    return graph


def is_acyclic(template: Template) -> bool:
    """Whether the template's dependencies have no cycle, without building a networkx graph."""
    succ: dict[str, set[str]] = {name: set() for name in template.node_templates}
    for name, target, _ in dependency_edges(template):
        succ[name].add(target)
    indegree = dict.fromkeys(succ, 0)
    for targets in succ.values():
        for target in targets:
            indegree[target] += 1
    return _kahn(succ, indegree)


def check_acyclic(template: Template, graph: nx.DiGraph) -> None:
    """Raise a diagnostic naming each dependency cycle (web -> db -> web) with its positions."""
    import networkx as nx
    if _is_acyclic(graph):
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


def _is_acyclic(graph: nx.DiGraph) -> bool:
    """Whether the graph has no cycle (a self-loop counts as one), like nx.is_directed_acyclic_graph.

    Kahn's algorithm straight on the adjacency dicts: several times cheaper than networkx's
    generic version on the large, nearly linear graphs descriptors make.
    """
    succ = graph._succ  # networkx's own dict of dicts: its views cost a wrapper per lookup
    return _kahn(succ, {node: len(preds) for node, preds in graph._pred.items()})


def _kahn(succ, indegree: dict) -> bool:
    """Kahn's algorithm: True when every node can be ordered after what it needs (indegree is consumed)."""
    ready = [node for node, count in indegree.items() if not count]
    done = 0
    while ready:
        node = ready.pop()
        done += 1
        for nxt in succ[node]:
            count = indegree[nxt] - 1
            indegree[nxt] = count
            if not count:
                ready.append(nxt)
    return done == len(indegree)


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
