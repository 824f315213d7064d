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
    constraints: list = field(default_factory=list)
    entry_schema: Any = None
    secret: bool | None = None  # None: decided by descriptors.secrets.is_secret_input (its name and type)


@dataclass
class Requirement:
    """A requirement assignment; `target` is always a node template name once loaded."""

    name: str
    target: str
    relationship: str | None = None
    position: Position | None = None
    path: str = ""
    capability: str | None = None  # the target's capability (name) that fulfils it
    relationship_properties: dict = field(default_factory=dict)
    relationship_interfaces: dict = field(default_factory=dict)
    node_filter: Any = None


@dataclass
class Operation:
    """An interface operation of a node template, with its implementation artifact and inputs."""

    interface: str
    name: str
    implementation: str | None = None
    dependencies: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
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
    attributes: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    operations: dict = field(default_factory=dict)  # {(interface, operation): Operation}
    directives: list = field(default_factory=list)
    description: str = ""

    def operation(self, interface: str, name: str) -> "Operation | None":
        return self.operations.get((interface, name))

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
    secret: bool | None = None  # None: masked when its value derives from a secret input; False: never masked


@dataclass
class Group:
    name: str
    type: str
    members: list[str] = field(default_factory=list)
    properties: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    position: Position | None = None
    path: str = ""


@dataclass
class Policy:
    name: str
    type: str
    targets: list[str] = field(default_factory=list)  # node template or group names
    properties: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    triggers: dict = field(default_factory=dict)
    position: Position | None = None
    path: str = ""

    def target_nodes(self, template: "Template") -> list[str]:
        """Targets with groups expanded to their member node templates."""
        names: list[str] = []
        for t in self.targets:
            members = template.groups[t].members if t in template.groups else [t]
            names += [m for m in members if m not in names]
        return names


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
    groups: dict[str, Group] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    relationship_templates: dict = field(default_factory=dict)
    imports: list[str] = field(default_factory=list)  # absolute paths of every imported file
    metadata: dict = field(default_factory=dict)
    is_library: bool = False  # no topology_template: only types (validates; cannot be built)
    confined: bool = True     # files it names must lie in its directory tree (a descriptor received over HTTP)

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
