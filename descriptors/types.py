"""Node types: loaded from profile YAML (shipped under descriptors/profiles) and from descriptors, with inheritance."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from descriptors.diagnostics import DiagnosticSink, Position, did_you_mean, join_path
from descriptors.yamlpos import YMap, load_yaml_file, position_of

PROFILE_DIR = os.path.join(os.path.dirname(__file__), "profiles")
PROFILE_FILES = ("tosca-core.yaml", "strato.yaml")

SCALAR_TYPES = {"string", "integer", "float", "boolean", "list", "map", "timestamp", "version", "any",
                "scalar-unit.size", "scalar-unit.time", "scalar-unit.frequency", "range"}


@dataclass
class PropertyDef:
    name: str
    type: str = "any"
    required: bool = True
    default: Any = None
    has_default: bool = False
    description: str = ""
    position: Position | None = None


@dataclass
class NodeType:
    name: str
    derived_from: str | None = None
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    attributes: dict[str, PropertyDef] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    position: Position | None = None


class TypeRegistry:
    """All node types known to one template: the shipped profiles plus the template's own."""

    def __init__(self, types: dict[str, NodeType] | None = None):
        self.types: dict[str, NodeType] = dict(types or {})
        self._resolved: dict[str, NodeType] = {}

    def copy(self) -> "TypeRegistry":
        return TypeRegistry(self.types)

    def add_from_document(self, node_types: Any, sink: DiagnosticSink, path: str, file_pos: Position) -> None:
        if node_types is None:
            return
        if not isinstance(node_types, dict):
            sink.error("TYPE_BAD_SECTION", "'node_types' must be a mapping of type names to definitions",
                       file_pos, path)
            return
        for name, body in node_types.items():
            tpath = join_path(path, name)
            tpos = position_of(node_types, name, file_pos)
            if not isinstance(body, dict):
                sink.error("TYPE_BAD_DEFINITION", f"node type '{name}' must be a mapping", tpos, tpath)
                continue
            self.types[name] = _parse_node_type(name, body, sink, tpath, tpos)
        self._resolved.clear()

    def check_hierarchy(self, sink: DiagnosticSink) -> None:
        for name, ntype in self.types.items():
            seen = [name]
            parent = ntype.derived_from
            while parent is not None:
                if parent not in self.types:
                    sink.error("TYPE_UNKNOWN_PARENT", f"node type '{name}' derives from unknown type '{parent}'",
                               ntype.position or Position("<types>"), f"node_types.{name}.derived_from",
                               did_you_mean(parent, self.types))
                    break
                if parent in seen:
                    sink.error("TYPE_CYCLE", "node types derive from each other in a cycle: "
                               + " -> ".join(seen + [parent]), ntype.position or Position("<types>"),
                               f"node_types.{name}.derived_from")
                    break
                seen.append(parent)
                parent = self.types[parent].derived_from

    def __contains__(self, name: str) -> bool:
        return name in self.types

    def lineage(self, name: str) -> list[str]:
        """The type and its ancestors, most derived first."""
        chain, seen = [], set()
        while name and name in self.types and name not in seen:
            chain.append(name)
            seen.add(name)
            name = self.types[name].derived_from
        return chain

    def is_a(self, name: str, ancestor: str) -> bool:
        return ancestor in self.lineage(name)

    def resolved(self, name: str) -> NodeType:
        """The type with everything it inherits merged in (a derived definition overrides its parent's)."""
        if name in self._resolved:
            return self._resolved[name]
        merged = NodeType(name=name)
        for tname in reversed(self.lineage(name)):
            t = self.types[tname]
            merged.properties.update(t.properties)
            merged.attributes.update(t.attributes)
            merged.metadata.update(t.metadata)
            merged.description = t.description or merged.description
            merged.position = t.position
        merged.derived_from = self.types[name].derived_from if name in self.types else None
        self._resolved[name] = merged
        return merged


def _parse_defs(section: Any, sink: DiagnosticSink, path: str, pos: Position) -> dict[str, PropertyDef]:
    defs: dict[str, PropertyDef] = {}
    if section is None:
        return defs
    if not isinstance(section, dict):
        sink.error("TYPE_BAD_SECTION", "this section must be a mapping of names to definitions", pos, path)
        return defs
    for pname, pbody in section.items():
        ppos = position_of(section, pname, pos)
        if not isinstance(pbody, dict):
            sink.error("TYPE_BAD_PROPERTY", f"definition of '{pname}' must be a mapping with at least 'type'",
                       ppos, join_path(path, pname))
            continue
        ptype = pbody.get("type", "any")
        defs[pname] = PropertyDef(
            name=pname, type=str(ptype), required=bool(pbody.get("required", True)),
            default=pbody.get("default"), has_default="default" in pbody,
            description=str(pbody.get("description", "")), position=ppos)
    return defs


def _parse_node_type(name: str, body: dict, sink: DiagnosticSink, path: str, pos: Position) -> NodeType:
    metadata = body.get("metadata") or {}
    return NodeType(
        name=name,
        derived_from=body.get("derived_from"),
        properties=_parse_defs(body.get("properties"), sink, join_path(path, "properties"), pos),
        attributes=_parse_defs(body.get("attributes"), sink, join_path(path, "attributes"), pos),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        description=str(body.get("description", "") or ""),
        position=pos,
    )


@lru_cache(maxsize=1)
def builtin_registry() -> TypeRegistry:
    """The registry of the shipped profiles (parsed once per process)."""
    registry = TypeRegistry()
    sink = DiagnosticSink()
    for fname in PROFILE_FILES:
        doc = load_yaml_file(os.path.join(PROFILE_DIR, fname))
        registry.add_from_document(doc.get("node_types"), sink, "node_types", doc.pos)
    sink.raise_if_errors()
    return registry
