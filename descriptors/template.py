"""The parsed descriptor: Template, its inputs, node templates, requirements and outputs (positions kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from descriptors.diagnostics import Position
from descriptors.types import TypeRegistry


@dataclass
class InputDef:
    name: str
    type: str = "string"
    required: bool = True
    default: Any = None
    has_default: bool = False
    description: str = ""
    position: Position | None = None
    path: str = ""


@dataclass
class Requirement:
    name: str
    target: str
    relationship: str | None = None
    position: Position | None = None
    path: str = ""


@dataclass
class NodeTemplate:
    name: str
    type: str
    properties: dict = field(default_factory=dict)
    requirements: list[Requirement] = field(default_factory=list)
    capabilities: dict = field(default_factory=dict)
    interfaces: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    default_instances: int = 1
    min_instances: int = 0
    max_instances: int | None = None
    count_inputs: dict = field(default_factory=dict)  # e.g. {"default_instances": "replicas"}
    position: Position | None = None
    path: str = ""

    def instance_count(self, inputs: dict) -> int:
        """default_instances, taking it from an input when the descriptor says so."""
        name = self.count_inputs.get("default_instances")
        if name is not None and isinstance(inputs.get(name), int):
            return inputs[name]
        return self.default_instances

    @property
    def dependencies(self) -> list[str]:
        return [r.target for r in self.requirements]

    @property
    def host(self) -> str | None:
        for r in self.requirements:
            if r.name == "host":
                return r.target
        return None


@dataclass
class OutputDef:
    name: str
    value: Any
    description: str = ""
    position: Position | None = None
    path: str = ""


@dataclass
class Template:
    file: str
    version: str
    description: str = ""
    inputs: dict[str, InputDef] = field(default_factory=dict)
    node_templates: dict[str, NodeTemplate] = field(default_factory=dict)
    outputs: dict[str, OutputDef] = field(default_factory=dict)
    types: TypeRegistry | None = None
    document: Any = None
    warnings: list = field(default_factory=list)

    @property
    def directory(self) -> str:
        import os
        return os.path.dirname(os.path.abspath(self.file))

    def node_metadata(self, name: str) -> dict:
        """Metadata of a node: its type's (inherited) overridden by the template's own."""
        node = self.node_templates[name]
        merged = dict(self.types.resolved(node.type).metadata) if self.types else {}
        merged.update(node.metadata or {})
        return merged

    def driver_name(self, name: str) -> str | None:
        return self.node_metadata(name).get("strato.driver")
