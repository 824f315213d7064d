"""The type of a TOSCA value with its constraints (shared by the type registry and the value checks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from descriptors.values import Constraint


@dataclass
class Schema:
    """The type of a value with its constraints; entry_schema/key_schema for lists and maps."""

    type: str = "any"
    constraints: list[Constraint] = field(default_factory=list)
    entry_schema: "Schema | None" = None
    key_schema: "Schema | None" = None
