"""The dependency graph of a template's nodes (networkx), with cycle diagnostics that name the cycle."""

from __future__ import annotations

import networkx as nx

from descriptors.diagnostics import DescriptorError, Diagnostic, Position
from descriptors.functions import SELF_NAMES, contains_call, iter_calls
from descriptors.template import Template
from descriptors.yamlpos import settle_young_objects


def dependency_graph(template: Template) -> nx.DiGraph:
    """Edges point from a node to the nodes it needs: web -> db means db is built before web.

    Requirements make edges; so does a property that reads another node's attribute,
    because its value only exists once that node is built.
    """
    graph = nx.DiGraph()
    nodes = template.node_templates
    graph.add_nodes_from(nodes)
    # What graph.add_edges_from does (a later edge between the same nodes updates the earlier
    # one's data), straight on its adjacency dicts: all nodes are in already, so the per-edge
    # checks and the copy of each edge's data are not needed.
    succ, pred = graph._succ, graph._pred
    for node in nodes.values():
        name = node.name
        out = succ[name]
        for req in node.requirements:
            target = req.target
            if target in nodes:
                data = out.get(target)
                if data is None:
                    out[target] = pred[target][name] = {"position": req.position, "path": req.path, "kind": req.name}
                else:
                    data.update(position=req.position, path=req.path, kind=req.name)
    for node in nodes.values():
        if not node.properties or not contains_call(node.properties):
            continue  # nothing to find: skip building the path and walking
        for fname, args, container, key, path in iter_calls(node.properties, node.path + ".properties"):
            if fname == "get_attribute" and isinstance(args, list) and args and args[0] not in SELF_NAMES \
                    and args[0] in nodes and args[0] != node.name and not graph.has_edge(node.name, args[0]):
                pos = container.position_of(key) if hasattr(container, "position_of") else node.position
                graph.add_edge(node.name, args[0], position=pos, path=path, kind="get_attribute")
    settle_young_objects()  # the graph lives as long as the template (see there)
    return graph


def check_acyclic(template: Template, graph: nx.DiGraph) -> None:
    """Raise a diagnostic naming each dependency cycle (web -> db -> web) with its positions."""
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
    indegree = {node: len(preds) for node, preds in graph._pred.items()}
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
