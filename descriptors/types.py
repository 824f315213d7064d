"""The type system: node, relationship, capability, data, policy, group, interface and artifact types with inheritance.

Types come from the shipped profiles (PROFILE_FILES under descriptors/profiles, each a TOSCA
document, parsed once per process) and from each descriptor and its imports. A descriptor's
registry is a cheap copy of the shipped one: resolved (inheritance-merged) types are cached
and shared until a descriptor redefines a type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from descriptors.checks import validate_value
from descriptors.diagnostics import DescriptorError, DiagnosticSink, Position, did_you_mean, join_path
from descriptors.schema import Schema
from descriptors.values import (PRIMITIVE_TYPES, UNBOUNDED, Constraint, is_integer, parse_constraint,
                               value_type_name)
from descriptors.yamlpos import YMap, load_yaml_file, position_of

PROFILE_DIR = os.path.join(os.path.dirname(__file__), "profiles")
PROFILE_FILES = ["tosca-core.yaml", "tosca-simple-extra.yaml", "tosca-nonnormative.yaml", "tosca-nfv.yaml",
                 "strato.yaml", "strato-cloud.yaml", "strato-hosts.yaml"]

# Kept for callers of the core loader: the value types an input may declare without data types.
SCALAR_TYPES = set(PRIMITIVE_TYPES)

SECTIONS = {"node_types": "node", "relationship_types": "relationship", "capability_types": "capability",
            "data_types": "data", "policy_types": "policy", "group_types": "group",
            "interface_types": "interface", "artifact_types": "artifact"}
KIND_SECTION = {kind: section for section, kind in SECTIONS.items()}
# tosca.<prefix>.X may also be written X or tosca:X
_NORMATIVE_PREFIX = {"node": "tosca.nodes.", "relationship": "tosca.relationships.",
                     "capability": "tosca.capabilities.", "data": "tosca.datatypes.",
                     "policy": "tosca.policies.", "group": "tosca.groups.", "interface": "tosca.interfaces.",
                     "artifact": "tosca.artifacts."}
# Names from TOSCA 1.0/1.1 that 1.3 renamed.
_LEGACY = {"tosca.nodes.BlockStorage": "tosca.nodes.Storage.BlockStorage",
           "tosca.nodes.ObjectStorage": "tosca.nodes.Storage.ObjectStorage",
           "BlockStorage": "tosca.nodes.Storage.BlockStorage", "ObjectStorage": "tosca.nodes.Storage.ObjectStorage",
           "tosca.interfaces.node.lifecycle.Standard": "tosca.interfaces.node.lifecycle.Standard"}

TYPE_KEYS = {
    "common": ("derived_from", "version", "metadata", "description"),
    "node": ("properties", "attributes", "requirements", "capabilities", "interfaces", "artifacts"),
    "relationship": ("properties", "attributes", "interfaces", "valid_target_types", "valid_source_types"),
    "capability": ("properties", "attributes", "valid_source_types"),
    "data": ("properties", "constraints", "key_schema", "entry_schema"),
    "policy": ("properties", "targets", "triggers"),
    "group": ("properties", "attributes", "members", "requirements", "capabilities", "interfaces"),
    "interface": ("inputs", "operations", "notifications"),
    "artifact": ("mime_type", "file_ext", "properties"),
}
# Tacker's policy types carry 'action' (Failure.*) and 'reservation' (Reservation); kept, not used by Strato
TACKER_POLICY_KEYS = ("action", "reservation")
PROPERTY_KEYS = ("type", "description", "required", "default", "status", "constraints", "key_schema",
                 "entry_schema", "metadata", "external-schema", "value")
STANDARD_OPERATIONS = ("create", "configure", "start", "stop", "delete")


@dataclass
class PropertyDef:
    """A property, attribute, input or parameter definition."""

    name: str
    type: str = "any"
    required: bool = True
    default: Any = None
    has_default: bool = False
    description: str = ""
    position: Position | None = None
    constraints: list[Constraint] = field(default_factory=list)
    entry_schema: Schema | None = None
    key_schema: Schema | None = None
    status: str = "supported"
    path: str = ""
    refines_default: bool = False  # a value given where a definition goes: the inherited definition's default

    @property
    def schema(self) -> Schema:
        return Schema(self.type, self.constraints, self.entry_schema, self.key_schema)


@dataclass
class CapabilityDef:
    name: str
    type: str
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    attributes: dict[str, PropertyDef] = field(default_factory=dict)
    valid_source_types: list[str] | None = None
    occurrences: tuple[int, int | None] = (1, None)
    position: Position | None = None


@dataclass
class RequirementDef:
    name: str
    capability: str | None = None
    node: str | None = None
    relationship: str | None = None
    occurrences: tuple[int, int | None] = (1, 1)
    node_filter: Any = None
    position: Position | None = None
    declared_occurrences: bool = False  # written in the type, not TOSCA's default [1, 1]


@dataclass
class OperationDef:
    name: str
    implementation: str | None = None
    dependencies: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    position: Position | None = None


@dataclass
class InterfaceDef:
    name: str
    type: str
    operations: dict[str, OperationDef] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    position: Position | None = None


@dataclass
class TypeDef:
    """One type of any kind; fields that a kind does not use stay empty."""

    name: str
    kind: str = "node"
    derived_from: str | None = None
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    attributes: dict[str, PropertyDef] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    position: Position | None = None
    path: str = ""
    version: str = ""
    capabilities: dict[str, CapabilityDef] = field(default_factory=dict)
    requirements: dict[str, RequirementDef] = field(default_factory=dict)
    interfaces: dict[str, InterfaceDef] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, OperationDef] = field(default_factory=dict)  # interface types
    valid_target_types: list[str] | None = None
    valid_source_types: list[str] | None = None
    targets: list[str] | None = None  # policy types
    members: list[str] | None = None  # group types
    constraints: list[Constraint] = field(default_factory=list)  # data types derived from a primitive
    entry_schema: Schema | None = None
    key_schema: Schema | None = None
    mime_type: str = ""
    file_ext: list[str] = field(default_factory=list)
    primitive: str | None = None  # for data types: the primitive they derive from, if any
    raw: Any = None


NodeType = TypeDef  # the core loader's name


def _merge_property_defs(merged: dict, own: dict) -> None:
    """A derived type's property definitions over its parent's; a value in place of a definition only sets
    the inherited definition's default."""
    for pname, pdef in own.items():
        base = merged.get(pname)
        if pdef.refines_default and base is not None:
            pdef = replace(base, default=pdef.default, has_default=True, position=pdef.position, path=pdef.path)
        merged[pname] = pdef


class TypeRegistry:
    """All types known to one template: the shipped profiles plus the template's own and its imports'."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, TypeDef]] = {kind: {} for kind in KIND_SECTION}
        self.aliases: dict[str, dict[str, str]] = {kind: {} for kind in KIND_SECTION}
        self._resolved: dict[tuple[str, str], TypeDef] = {}
        self._ancestors: dict[tuple[str, str], frozenset] = {}
        self.local: list[tuple[str, str]] = []  # types defined by the descriptor (checked per load)
        self.value_memo: dict = {}  # per-load memo of checks that repeat (see loader._check_assigned)

    @property
    def types(self) -> dict[str, TypeDef]:
        """Node types by name."""
        return self.kinds["node"]

    def copy(self) -> "TypeRegistry":
        clone = TypeRegistry.__new__(TypeRegistry)
        clone.kinds = {kind: dict(types) for kind, types in self.kinds.items()}
        clone.aliases = {kind: dict(a) for kind, a in self.aliases.items()}
        # resolved shipped types stay valid until the descriptor redefines a type
        clone._resolved = dict(self._resolved)
        clone._ancestors = dict(self._ancestors)
        clone.local = []
        clone.value_memo = {}
        return clone

    # --- lookup -------------------------------------------------------------------------
    def canonical(self, name: Any, kind: str = "node") -> Any:
        """The full name of a type written in full, short (Compute) or prefixed (tosca:Compute) form."""
        if not isinstance(name, str) or name in self.kinds[kind]:
            return name
        return self.aliases[kind].get(name, _LEGACY.get(name, name))

    def has(self, kind: str, name: Any) -> bool:
        return isinstance(name, str) and self.canonical(name, kind) in self.kinds[kind]

    def get(self, kind: str, name: str) -> TypeDef | None:
        return self.kinds[kind].get(self.canonical(name, kind))

    def __contains__(self, name: str) -> bool:
        return self.has("node", name)

    def lineage(self, name: str, kind: str = "node") -> list[str]:
        """The type and its ancestors, most derived first."""
        types = self.kinds[kind]
        name = self.canonical(name, kind)
        chain, seen = [], set()
        while name and name in types and name not in seen:
            chain.append(name)
            seen.add(name)
            name = self.canonical(types[name].derived_from, kind)
        return chain

    def ancestors(self, name: str, kind: str = "node") -> frozenset:
        key = (kind, name)
        found = self._ancestors.get(key)
        if found is None:
            found = self._ancestors[key] = frozenset(self.lineage(name, kind))
        return found

    def is_a(self, name: str, ancestor: str, kind: str = "node") -> bool:
        return self.canonical(ancestor, kind) in self.ancestors(name, kind)

    def resolved(self, name: str, kind: str = "node") -> TypeDef:
        """The type with everything it inherits merged in (a derived definition overrides its parent's)."""
        key = (kind, name)
        found = self._resolved.get(key)
        if found is not None:
            return found
        merged = TypeDef(name=self.canonical(name, kind), kind=kind)
        types = self.kinds[kind]
        for tname in reversed(self.lineage(name, kind)):
            t = types[tname]
            _merge_property_defs(merged.properties, t.properties)
            merged.attributes.update(t.attributes)
            merged.metadata.update(t.metadata)
            merged.capabilities.update(t.capabilities)
            merged.requirements.update(t.requirements)
            merged.artifacts.update(t.artifacts)
            merged.operations.update(t.operations)
            for iname, idef in t.interfaces.items():
                base = merged.interfaces.get(iname)
                if base is None:
                    merged.interfaces[iname] = idef
                else:  # a derived type refines operations of the inherited interface
                    ops = dict(base.operations)
                    ops.update(idef.operations)
                    inputs = dict(base.inputs)
                    inputs.update(idef.inputs)
                    merged.interfaces[iname] = InterfaceDef(iname, idef.type or base.type, ops, inputs,
                                                            idef.position)
            merged.constraints = merged.constraints + t.constraints
            for attr in ("valid_target_types", "valid_source_types", "targets", "members", "entry_schema",
                         "key_schema"):
                if getattr(t, attr) is not None:
                    setattr(merged, attr, getattr(t, attr))
            merged.description = t.description or merged.description
            merged.mime_type = t.mime_type or merged.mime_type
            merged.file_ext = t.file_ext or merged.file_ext
            merged.primitive = t.primitive or merged.primitive
            merged.position = t.position
            merged.path = t.path
        merged.derived_from = types[merged.name].derived_from if merged.name in types else None
        if kind == "node":  # TOSCA 1.3: every property is also an attribute
            for pname, pdef in merged.properties.items():
                merged.attributes.setdefault(pname, pdef)
        self._resolved[key] = merged
        return merged

    def interface_operations(self, type_name: str) -> dict[str, OperationDef]:
        """Operations an interface type declares (inherited ones included)."""
        if not self.has("interface", type_name):
            return {}
        return self.resolved(type_name, "interface").operations

    # --- loading ------------------------------------------------------------------------
    def add_from_document(self, section: Any, sink: DiagnosticSink, path: str, file_pos: Position,
                          kind: str = "node") -> None:
        """Add the types of one `*_types` section of a document."""
        if section is None:
            return
        if not isinstance(section, dict):
            sink.error("TYPE_BAD_SECTION", f"'{path}' must be a mapping of type names to definitions",
                       file_pos, path)
            return
        for name, body in section.items():
            tpath = join_path(path, name)
            tpos = position_of(section, name, file_pos)
            if isinstance(section, YMap):
                tpos = section.key_position(name)
            if body is None:
                body = YMap(tpos)
            if not isinstance(body, dict):
                sink.error("TYPE_BAD_DEFINITION", f"{kind} type '{name}' must be a mapping", tpos, tpath)
                continue
            if name in self.kinds[kind]:
                # redefining a type invalidates what was resolved from the old definition
                self._resolved.clear()
                self._ancestors.clear()
            self.value_memo.clear()
            self.kinds[kind][name] = _parse_type(name, kind, body, sink, tpath, tpos)
            self.local.append((kind, name))
            prefix = _NORMATIVE_PREFIX[kind]
            if name.startswith(prefix):
                short = name[len(prefix):]
                self.aliases[kind].setdefault(short, name)
                self.aliases[kind].setdefault("tosca:" + short, name)

    def add_shorthand_names(self) -> None:
        """The Simple Profile's shorthand names: a normative type is also known by the last part of its name
        (PortDef for tosca.datatypes.network.PortDef) where that part names one type of its kind only."""
        for kind, types in self.kinds.items():
            owners: dict[str, list[str]] = {}
            for name in types:
                if name.startswith("tosca.") and name.count(".") > 2:
                    owners.setdefault(name.rsplit(".", 1)[1], []).append(name)
            for short, names in owners.items():
                if len(names) == 1 and short not in types:
                    self.aliases[kind].setdefault(short, names[0])
                    self.aliases[kind].setdefault("tosca:" + short, names[0])

    def add_prefix(self, prefix: str, names: list[tuple[str, str]]) -> None:
        """Make types imported with a namespace_prefix known as prefix.Name (and TOSCA 1.0's prefix:Name)."""
        for kind, name in names:
            for sep in (".", ":"):
                self.aliases[kind].setdefault(f"{prefix}{sep}{name}", name)

    def add_document(self, doc: dict, sink: DiagnosticSink, file_pos: Position) -> None:
        for section, kind in SECTIONS.items():
            if section in doc:
                self.add_from_document(doc.get(section), sink, section, file_pos, kind)

    def check_hierarchy(self, sink: DiagnosticSink) -> None:
        """Check the types the descriptor defined: parents, property types, references to other types."""
        local, self.local = self.local, []
        for kind, name in local:
            tdef = self.kinds[kind].get(name)
            if tdef is None:
                continue
            self._check_type(tdef, sink)

    def check_all(self, sink: DiagnosticSink) -> None:
        for kind, types in self.kinds.items():
            for tdef in types.values():
                self._check_type(tdef, sink)

    def _check_type(self, t: TypeDef, sink: DiagnosticSink) -> None:
        kind, name = t.kind, t.name
        pos = t.position or Position("<types>")
        parent = t.derived_from
        seen = [name]
        while parent is not None:
            if kind == "data" and parent in PRIMITIVE_TYPES:
                break
            cparent = self.canonical(parent, kind)
            if cparent not in self.kinds[kind]:
                other = [k for k in self.kinds if k != kind and self.has(k, parent)]
                hint = (f"'{parent}' is a {other[0]} type, not a {kind} type" if other
                        else did_you_mean(parent, self.kinds[kind]))
                sink.error("TYPE_UNKNOWN_PARENT", f"{kind} type '{name}' derives from unknown {kind} type "
                           f"'{parent}'", pos, join_path(t.path, "derived_from"), hint)
                break
            if cparent in seen:
                sink.error("TYPE_CYCLE", f"{kind} types derive from each other in a cycle: "
                           + " -> ".join(seen + [cparent]), pos, join_path(t.path, "derived_from"))
                break
            seen.append(cparent)
            parent = self.kinds[kind][cparent].derived_from
        for section in ("properties", "attributes"):
            for pdef in getattr(t, section).values():
                self.check_property_def(pdef, sink)
        for cdef in t.capabilities.values():
            if not self.has("capability", cdef.type):
                sink.error("TYPE_UNKNOWN_CAPABILITY_TYPE", f"capability '{cdef.name}' of {kind} type '{name}' has "
                           f"unknown type '{cdef.type}'", cdef.position or pos,
                           join_path(join_path(t.path, "capabilities"), cdef.name),
                           did_you_mean(cdef.type, self.kinds["capability"]))
        for rdef in t.requirements.values():
            rpath = join_path(join_path(t.path, "requirements"), rdef.name)
            for what, value in (("node", rdef.node), ("relationship", rdef.relationship)):
                if value is not None and not self.has(what, value):
                    sink.error("TYPE_UNKNOWN_REFERENCE", f"requirement '{rdef.name}' of {kind} type '{name}' names "
                               f"unknown {what} type '{value}'", rdef.position or pos, join_path(rpath, what),
                               did_you_mean(value, self.kinds[what]))
            if rdef.capability is not None and not self.has("capability", rdef.capability) and not (
                    rdef.node and self.has("node", rdef.node)
                    and rdef.capability in self.resolved(self.canonical(rdef.node)).capabilities):
                sink.error("TYPE_UNKNOWN_REFERENCE", f"requirement '{rdef.name}' of {kind} type '{name}' names "
                           f"unknown capability type '{rdef.capability}'", rdef.position or pos,
                           join_path(rpath, "capability"), did_you_mean(rdef.capability, self.kinds["capability"]))
        for idef in t.interfaces.values():
            if idef.type and not self.has("interface", idef.type):
                sink.error("TYPE_UNKNOWN_INTERFACE_TYPE", f"interface '{idef.name}' of {kind} type '{name}' has "
                           f"unknown type '{idef.type}'", idef.position or pos,
                           join_path(join_path(t.path, "interfaces"), idef.name),
                           did_you_mean(idef.type, self.kinds["interface"]))
        for attr, target_kind in (("valid_target_types", "capability"), ("targets", "node"), ("members", "node"),
                                  ("valid_source_types", "node")):
            for ref in getattr(t, attr) or []:
                if attr == "targets" and self.has("group", ref):
                    continue
                if not self.has(target_kind, ref):
                    sink.error("TYPE_UNKNOWN_REFERENCE", f"'{attr}' of {kind} type '{name}' names unknown "
                               f"{target_kind} type '{ref}'", pos, join_path(t.path, attr),
                               did_you_mean(ref, self.kinds[target_kind]))

    def check_property_def(self, pdef: PropertyDef, sink: DiagnosticSink) -> None:
        pos = pdef.position or Position("<types>")
        for schema, where in ((pdef, ""), (pdef.entry_schema, ".entry_schema"), (pdef.key_schema, ".key_schema")):
            if schema is None:
                continue
            if not self.is_value_type(schema.type):
                sink.error("TYPE_UNKNOWN_VALUE_TYPE", f"'{pdef.name}' has unknown type '{schema.type}'", pos,
                           pdef.path + where + ".type",
                           did_you_mean(schema.type, list(PRIMITIVE_TYPES) + list(self.kinds["data"])))
        if pdef.has_default and pdef.default is not None and self.is_value_type(pdef.type):
            for subpath, problem in validate_value(pdef.default, pdef.schema, self):
                sink.error("TYPE_BAD_DEFAULT", f"default of '{pdef.name}'{subpath} {problem}", pos,
                           pdef.path + ".default")

    def is_value_type(self, name: str) -> bool:
        return name in PRIMITIVE_TYPES or self.has("data", name)


# --- parsing one type ----------------------------------------------------------------------

def _occurrences(raw: Any, default: tuple, sink: DiagnosticSink, pos: Position, path: str) -> tuple:
    if raw is None:
        return default
    if isinstance(raw, list) and len(raw) == 2 and is_integer(raw[0]) and raw[0] >= 0 and \
            (raw[1] == UNBOUNDED or (is_integer(raw[1]) and raw[1] >= raw[0])):
        return (raw[0], None if raw[1] == UNBOUNDED else raw[1])
    sink.error("TYPE_BAD_OCCURRENCES", "occurrences must be [min, max] with 0 <= min <= max (max may be "
               "UNBOUNDED)", pos, path)
    return default


def parse_schema(raw: Any, sink: DiagnosticSink, path: str, pos: Position) -> Schema | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Schema(value_type_name(raw))
    if not isinstance(raw, dict):
        sink.error("TYPE_BAD_SCHEMA", "a schema must be a type name or a mapping with 'type'", pos, path)
        return None
    stype = value_type_name(str(raw.get("type", "any")))
    return Schema(stype, parse_constraints(raw.get("constraints"), stype, sink, join_path(path, "constraints"), pos),
                  parse_schema(raw.get("entry_schema"), sink, join_path(path, "entry_schema"), pos),
                  parse_schema(raw.get("key_schema"), sink, join_path(path, "key_schema"), pos))


def parse_constraints(raw: Any, vtype: str, sink: DiagnosticSink, path: str, pos: Position) -> list[Constraint]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        sink.error("CONSTRAINT_BAD", "'constraints' must be a list of clauses like '- greater_than: 0'", pos, path)
        return []
    result = []
    for i, item in enumerate(raw):
        constraint, problem = parse_constraint(item, vtype)
        if problem:
            sink.error("CONSTRAINT_BAD", problem, position_of(raw, i, pos), f"{path}[{i}]")
        else:
            result.append(constraint)
    return result


def parse_property_defs(section: Any, sink: DiagnosticSink, path: str, pos: Position,
                        default_type: str = "any") -> dict[str, PropertyDef]:
    defs: dict[str, PropertyDef] = {}
    if section is None:
        return defs
    if not isinstance(section, dict):
        sink.error("TYPE_BAD_SECTION", "this section must be a mapping of names to definitions", pos, path)
        return defs
    for pname, pbody in section.items():
        ppos = section.key_position(pname) if isinstance(section, YMap) else pos
        ppath = join_path(path, pname)
        if _is_value_not_definition(pbody):
            sink.warning("TYPE_PROPERTY_VALUE", f"'{pname}' is given a value where TOSCA expects a definition; "
                         "it is taken as the property's default", ppos, ppath,
                         "write it as {type: ..., default: ...}")
            defs[pname] = PropertyDef(name=pname, required=False, default=pbody, has_default=True,
                                      position=ppos, path=ppath, refines_default=True)
            continue
        if not isinstance(pbody, dict):
            sink.error("TYPE_BAD_PROPERTY", f"definition of '{pname}' must be a mapping with at least 'type'",
                       ppos, ppath)
            continue
        for key in pbody:
            if key not in PROPERTY_KEYS:
                sink.error("UNKNOWN_KEY", f"unknown key '{key}' in the definition of '{pname}'",
                           pbody.key_position(key) if isinstance(pbody, YMap) else ppos, join_path(ppath, key),
                           did_you_mean(key, PROPERTY_KEYS))
        ptype = value_type_name(pbody.get("type", default_type))
        if not isinstance(ptype, str):
            sink.error("TYPE_BAD_PROPERTY", f"the type of '{pname}' must be a type name", ppos,
                       join_path(ppath, "type"))
            ptype = "any"
        required = pbody.get("required", True)
        if not isinstance(required, bool):
            sink.error("TYPE_BAD_PROPERTY", f"'required' of '{pname}' must be true or false", ppos,
                       join_path(ppath, "required"))
            required = True
        defs[pname] = PropertyDef(
            name=pname, type=ptype, required=required, default=pbody.get("default"),
            has_default="default" in pbody, description=str(pbody.get("description") or ""), position=ppos,
            constraints=parse_constraints(pbody.get("constraints"), ptype, sink, join_path(ppath, "constraints"),
                                          ppos),
            entry_schema=parse_schema(pbody.get("entry_schema"), sink, join_path(ppath, "entry_schema"), ppos),
            key_schema=parse_schema(pbody.get("key_schema"), sink, join_path(ppath, "key_schema"), ppos),
            status=str(pbody.get("status", "supported")), path=ppath)
    return defs


def _is_value_not_definition(body: Any) -> bool:
    """Whether a property 'definition' is a value instead (TOSCA 1.0 types such as Tacker's and tosca-parser's
    examples write `name: noop` or `credential: {user: u, token: t}` to set a derived type's value)."""
    if body is None or isinstance(body, list) or (not isinstance(body, dict) and not isinstance(body, str)):
        return body is not None
    if isinstance(body, str):
        return True
    # a mapping none of whose keys is (or looks like a typo of) a definition key
    return bool(body) and not any(k in PROPERTY_KEYS or did_you_mean(str(k), PROPERTY_KEYS) for k in body)


def parse_operation(name: str, body: Any, sink: DiagnosticSink, path: str, pos: Position) -> OperationDef:
    """An operation definition or assignment: a bare implementation string or a mapping."""
    op = OperationDef(name=name, position=pos)
    if body is None or body == []:  # [] : declared with no implementation, as NFV templates write it
        return op
    if isinstance(body, str):
        op.implementation = body
        return op
    if not isinstance(body, dict):
        sink.error("OPERATION_BAD", f"operation '{name}' must be an implementation string or a mapping", pos, path)
        return op
    for key in body:
        if key not in ("implementation", "inputs", "outputs", "description"):
            sink.error("UNKNOWN_KEY", f"unknown key '{key}' in operation '{name}'",
                       body.key_position(key) if isinstance(body, YMap) else pos, join_path(path, key),
                       did_you_mean(key, ("implementation", "inputs", "outputs", "description")))
    impl = body.get("implementation")
    if isinstance(impl, dict):
        op.implementation = impl.get("primary")
        deps = impl.get("dependencies") or []
        op.dependencies = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
        for key in impl:
            if key not in ("primary", "dependencies", "timeout", "operation_host"):
                sink.error("UNKNOWN_KEY", f"unknown key '{key}' in the implementation of '{name}'",
                           impl.key_position(key) if isinstance(impl, YMap) else pos,
                           join_path(join_path(path, "implementation"), key))
    elif impl is not None and not isinstance(impl, str):
        sink.error("OPERATION_BAD", f"the implementation of '{name}' must be a file name or "
                   "{primary, dependencies}", pos, join_path(path, "implementation"))
    else:
        op.implementation = impl
    inputs = body.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        sink.error("OPERATION_BAD", f"the inputs of operation '{name}' must be a mapping", pos,
                   join_path(path, "inputs"))
        inputs = None
    op.inputs = inputs or {}
    outputs = body.get("outputs")
    op.outputs = outputs if isinstance(outputs, dict) else {}
    op.description = str(body.get("description") or "")
    return op


def parse_interface_defs(section: Any, sink: DiagnosticSink, path: str, pos: Position) -> dict[str, InterfaceDef]:
    result: dict[str, InterfaceDef] = {}
    if section is None:
        return result
    if not isinstance(section, dict):
        sink.error("TYPE_BAD_SECTION", "'interfaces' must be a mapping", pos, path)
        return result
    for iname, body in section.items():
        ipos = section.key_position(iname) if isinstance(section, YMap) else pos
        ipath = join_path(path, iname)
        if isinstance(body, str):
            body = {"type": body}
        if not isinstance(body, dict):
            sink.error("TYPE_BAD_INTERFACE", f"interface '{iname}' must be a mapping with 'type'", ipos, ipath)
            continue
        ops_section = body.get("operations")
        ops = {}
        if isinstance(ops_section, dict):
            items = ops_section.items()
        else:  # TOSCA 1.0-1.2 put operations beside 'type'
            items = [(k, v) for k, v in body.items() if k not in ("type", "inputs", "description", "notifications")]
        for oname, obody in items:
            ops[oname] = parse_operation(oname, obody, sink, join_path(ipath, oname), ipos)
        inputs = body.get("inputs")
        result[iname] = InterfaceDef(iname, str(body.get("type") or ""), ops,
                                     inputs if isinstance(inputs, dict) else {}, ipos)
    return result


def _str_list(raw: Any, sink: DiagnosticSink, pos: Position, path: str) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    sink.error("TYPE_BAD_LIST", "this must be a list of type names", pos, path)
    return None


def _parse_type(name: str, kind: str, body: dict, sink: DiagnosticSink, path: str, pos: Position) -> TypeDef:
    allowed = TYPE_KEYS["common"] + TYPE_KEYS[kind]
    # TOSCA 1.0-1.2 interface types list their operations directly, without 'operations:'
    legacy_ops = kind == "interface" and "operations" not in body
    for key in body:
        if kind == "policy" and key in TACKER_POLICY_KEYS:
            sink.warning("TYPE_KEY_EXTENSION", f"'{key}' of policy type '{name}' is a Tacker extension; Strato "
                         "keeps it but does not act on it", body.key_position(key) if isinstance(body, YMap) else pos,
                         join_path(path, key))
            continue
        if key not in allowed and not (legacy_ops and (body[key] is None or isinstance(body[key], (str, dict)))):
            sink.error("UNKNOWN_KEY", f"unknown key '{key}' in {kind} type '{name}'",
                       body.key_position(key) if isinstance(body, YMap) else pos, join_path(path, key),
                       did_you_mean(key, allowed))
    metadata = body.get("metadata") or {}
    derived = body.get("derived_from")
    if derived is not None and not isinstance(derived, str):
        sink.error("TYPE_BAD_PARENT", "'derived_from' must name one type", pos, join_path(path, "derived_from"))
        derived = None
    t = TypeDef(name=name, kind=kind, derived_from=derived, position=pos, path=path, raw=body,
                metadata=dict(metadata) if isinstance(metadata, dict) else {},
                description=str(body.get("description", "") or ""), version=str(body.get("version", "") or ""))
    t.properties = parse_property_defs(body.get("properties"), sink, join_path(path, "properties"), pos)
    t.attributes = parse_property_defs(body.get("attributes"), sink, join_path(path, "attributes"), pos)
    if kind == "data":
        if derived in PRIMITIVE_TYPES:
            t.primitive = derived
        t.constraints = parse_constraints(body.get("constraints"), derived or "any", sink,
                                          join_path(path, "constraints"), pos)
        t.entry_schema = parse_schema(body.get("entry_schema"), sink, join_path(path, "entry_schema"), pos)
        t.key_schema = parse_schema(body.get("key_schema"), sink, join_path(path, "key_schema"), pos)
    caps = body.get("capabilities")
    if isinstance(caps, dict):
        for cname, cbody in caps.items():
            cpos = caps.key_position(cname) if isinstance(caps, YMap) else pos
            cpath = join_path(join_path(path, "capabilities"), cname)
            if isinstance(cbody, str):
                t.capabilities[cname] = CapabilityDef(cname, cbody, position=cpos)
            elif isinstance(cbody, dict) and isinstance(cbody.get("type"), str):
                t.capabilities[cname] = CapabilityDef(
                    cname, cbody["type"],
                    parse_property_defs(cbody.get("properties"), sink, join_path(cpath, "properties"), cpos),
                    parse_property_defs(cbody.get("attributes"), sink, join_path(cpath, "attributes"), cpos),
                    _str_list(cbody.get("valid_source_types"), sink, cpos, join_path(cpath, "valid_source_types")),
                    _occurrences(cbody.get("occurrences"), (1, None), sink, cpos, join_path(cpath, "occurrences")),
                    cpos)
            else:
                sink.error("TYPE_BAD_CAPABILITY", f"capability '{cname}' must be a capability type name or a "
                           "mapping with 'type'", cpos, cpath)
    elif caps is not None:
        sink.error("TYPE_BAD_SECTION", "'capabilities' must be a mapping", pos, join_path(path, "capabilities"))
    reqs = body.get("requirements")
    if isinstance(reqs, list):
        for i, item in enumerate(reqs):
            rpos = position_of(reqs, i, pos)
            rpath = f"{join_path(path, 'requirements')}[{i}]"
            if not isinstance(item, dict) or len(item) != 1:
                sink.error("TYPE_BAD_REQUIREMENT", "each requirement definition must be a one-key mapping",
                           rpos, rpath)
                continue
            rname, rbody = next(iter(item.items()))
            if isinstance(rbody, str):
                t.requirements[rname] = RequirementDef(rname, capability=rbody, position=rpos)
            elif isinstance(rbody, dict):
                rel = rbody.get("relationship")
                if isinstance(rel, dict):
                    rel = rel.get("type")
                bad = [k for k in ("capability", "node", "relationship") if k in rbody and
                       not isinstance(rel if k == "relationship" else rbody[k], (str, type(None)))]
                if bad:
                    sink.error("TYPE_BAD_REQUIREMENT", f"'{bad[0]}' of requirement '{rname}' must name a type",
                               rpos, join_path(join_path(rpath, rname), bad[0]))
                    continue
                t.requirements[rname] = RequirementDef(
                    rname, capability=rbody.get("capability"), node=rbody.get("node"), relationship=rel,
                    occurrences=_occurrences(rbody.get("occurrences"), (1, 1), sink, rpos,
                                             join_path(join_path(rpath, rname), "occurrences")),
                    node_filter=rbody.get("node_filter"), position=rpos,
                    declared_occurrences=rbody.get("occurrences") is not None)
            else:
                sink.error("TYPE_BAD_REQUIREMENT", f"requirement '{rname}' must be a capability type name or a "
                           "mapping", rpos, rpath)
    elif reqs is not None:
        sink.error("TYPE_BAD_SECTION", "'requirements' must be a list", pos, join_path(path, "requirements"))
    t.interfaces = parse_interface_defs(body.get("interfaces"), sink, join_path(path, "interfaces"), pos)
    if kind == "interface":
        ops = body.get("operations")
        if isinstance(ops, dict):
            items = ops.items()
        else:  # TOSCA 1.0-1.2 listed operations directly in the type
            items = [(k, v) for k, v in body.items() if k not in TYPE_KEYS["common"] + TYPE_KEYS["interface"]]
        for oname, obody in items:
            t.operations[oname] = parse_operation(oname, obody, sink, join_path(path, oname), pos)
    arts = body.get("artifacts")
    if isinstance(arts, dict):
        t.artifacts = dict(arts)
    t.valid_target_types = _str_list(body.get("valid_target_types"), sink, pos, join_path(path, "valid_target_types"))
    t.valid_source_types = _str_list(body.get("valid_source_types"), sink, pos, join_path(path, "valid_source_types"))
    t.targets = _str_list(body.get("targets"), sink, pos, join_path(path, "targets"))
    t.members = _str_list(body.get("members"), sink, pos, join_path(path, "members"))
    t.mime_type = str(body.get("mime_type") or "")
    ext = body.get("file_ext")
    t.file_ext = [str(e) for e in ext] if isinstance(ext, list) else []
    return t


@lru_cache(maxsize=1)
def builtin_registry() -> TypeRegistry:
    """The registry of the shipped profiles (parsed once per process)."""
    registry = TypeRegistry()
    sink = DiagnosticSink()
    for fname in PROFILE_FILES:
        path = fname if os.path.isabs(fname) else os.path.join(PROFILE_DIR, fname)
        doc = load_yaml_file(path)
        registry.add_document(doc, sink, doc.pos)
    registry.check_all(sink)
    registry.local = []
    registry.add_shorthand_names()
    if sink.errors:
        raise DescriptorError(sink.items)
    # resolve every shipped type now, so each descriptor's copy starts with a full cache
    for kind, types in registry.kinds.items():
        for name in types:
            registry.resolved(name, kind)
            registry.ancestors(name, kind)
    return registry
