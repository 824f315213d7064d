"""Load a descriptor file (and its imports) into a validated Template, collecting every diagnostic of the file at once."""

from __future__ import annotations

import json
import os
from typing import Any

from descriptors.checks import validate_value
from descriptors.diagnostics import DescriptorError, Diagnostic, DiagnosticSink, Position, did_you_mean, join_path
from descriptors.functions import SELF_NAMES, contains_call, function_call, iter_calls
from descriptors.template import (Group, InputDef, NodeTemplate, Operation, OutputDef, Policy, Requirement,
                                  Template)
from descriptors.types import (SCALAR_TYPES, STANDARD_OPERATIONS, PropertyDef, Schema, TypeRegistry,
                               builtin_registry, parse_constraints, parse_operation, parse_schema)
from descriptors.values import check_value
from descriptors.yamlpos import YList, YMap, load_yaml_file, no_gc, parse_yaml, position_of

VERSIONS = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_1", "tosca_simple_yaml_1_2",
            "tosca_simple_yaml_1_3", "tosca_2_0")
TOP_KEYS = ("tosca_definitions_version", "description", "metadata", "imports", "repositories",
            "dsl_definitions", "topology_template", "node_types", "relationship_types", "capability_types",
            "data_types", "policy_types", "group_types", "interface_types", "artifact_types", "namespace")
TOPOLOGY_KEYS = ("description", "inputs", "node_templates", "outputs", "groups", "policies",
                 "relationship_templates", "substitution_mappings", "workflows")
NODE_KEYS = ("type", "description", "metadata", "properties", "attributes", "requirements", "capabilities",
             "interfaces", "artifacts", "node_filter", "directives", "copy")
INPUT_KEYS = ("type", "description", "required", "default", "constraints", "entry_schema", "status",
              "metadata", "key_schema", "value")
REQUIREMENT_KEYS = ("node", "capability", "relationship", "node_filter", "occurrences", "description")
CAPABILITY_KEYS = ("properties", "attributes", "occurrences", "description")
GROUP_KEYS = ("type", "description", "metadata", "properties", "members", "interfaces", "capabilities",
              "requirements")
POLICY_KEYS = ("type", "description", "metadata", "properties", "targets", "triggers")
OUTPUT_KEYS = ("value", "description", "type", "required", "status", "metadata", "constraints", "entry_schema")
ARTIFACT_KEYS = ("type", "file", "repository", "description", "deploy_path", "artifact_version", "checksum",
                 "checksum_algorithm", "properties")
_NODE_KEY_SET = frozenset(NODE_KEYS)
_CAPABILITY_KEY_SET = frozenset(CAPABILITY_KEYS)
# Scaling properties that name instance counts, which may come from inputs (see NodeTemplate.count_inputs).
SCALING_KEYS = ("min_instances", "max_instances", "default_instances")
MAX_IMPORTS = 200
ALLOW_IMPORTS_ENV = "STRATO_IMPORT_PATH"  # extra directories imports may read from (os.pathsep-separated)


def load_template(path: str, import_roots: list[str] | None = None) -> Template:
    """Parse and validate a descriptor file; raise DescriptorError listing all problems.

    Imports may only read files inside the descriptor's directory tree, the directories in
    `import_roots` and those in $STRATO_IMPORT_PATH.
    """
    with no_gc():
        return _guarded(lambda: _build(load_yaml_file(path), path, import_roots), path)


def load_template_text(text: str, file: str = "<string>", import_roots: list[str] | None = None) -> Template:
    with no_gc():
        return _guarded(lambda: _build(parse_yaml(text, file), file, import_roots), file)


def _guarded(load, file: str) -> Template:
    """A checker bug must still reach the user as a diagnostic, not a traceback (the fuzz tests hunt these)."""
    try:
        return load()
    except (DescriptorError, KeyboardInterrupt):
        raise
    except RecursionError:
        raise DescriptorError([Diagnostic("YAML_TOO_DEEP", "values are nested too deeply", Position(file))]) from None
    except Exception as exc:  # noqa: BLE001 - reported, with what to send us
        raise DescriptorError([Diagnostic("INTERNAL_ERROR", f"the checker failed on this file: "
                                          f"{type(exc).__name__}: {exc}", Position(file), "",
                                          "please report this with the file")]) from exc


def _key_pos(mapping: Any, key: Any, default: Position) -> Position:
    return mapping.key_position(key) if isinstance(mapping, YMap) else default


def _unknown_keys(mapping: dict, allowed, sink: DiagnosticSink, path: str, what: str) -> None:
    for key in mapping:
        if key not in allowed:
            pos = mapping.key_position(key) if isinstance(mapping, YMap) else Position("<unknown>")
            sink.error("UNKNOWN_KEY", f"unknown key '{key}' in {what}", pos, join_path(path, key),
                       did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}")


class _Loader:
    """One load: the sink, the type registry and the template being filled."""

    def __init__(self, file: str, import_roots: list[str] | None):
        self.file = file
        self.sink = DiagnosticSink()
        self.types: TypeRegistry = builtin_registry().copy()
        roots = [os.path.dirname(os.path.abspath(file))] + list(import_roots or [])
        roots += [p for p in os.environ.get(ALLOW_IMPORTS_ENV, "").split(os.pathsep) if p]
        self.roots = [os.path.realpath(r) for r in roots]
        self.imported: list[str] = []

    # --- documents and imports ----------------------------------------------------------
    def document(self, doc: Any, file: str, chain: tuple[str, ...], is_main: bool) -> None:
        sink = self.sink
        file_pos = Position(file, 1, 1)
        _unknown_keys(doc, TOP_KEYS, sink, "", "the descriptor" if is_main else f"imported file {file}")
        version = doc.get("tosca_definitions_version")
        if version is None:
            sink.error("VERSION_MISSING", "'tosca_definitions_version' is missing", file_pos,
                       "tosca_definitions_version", "add 'tosca_definitions_version: tosca_simple_yaml_1_3'")
        elif version not in VERSIONS:
            sink.error("VERSION_UNKNOWN", f"unsupported tosca_definitions_version '{version}'",
                       doc.position_of("tosca_definitions_version"), "tosca_definitions_version",
                       did_you_mean(version, VERSIONS) or f"use one of {', '.join(VERSIONS)}")
        self.imports(doc, file, chain)
        self.types.add_document(doc, sink, file_pos)
        if not is_main and doc.get("topology_template") is not None:
            sink.warning("IMPORT_TOPOLOGY_IGNORED", "the topology_template of an imported file is ignored; only "
                         "its types are used", doc.position_of("topology_template"), "topology_template")

    def imports(self, doc: dict, file: str, chain: tuple[str, ...]) -> None:
        items = doc.get("imports")
        if items is None:
            return
        sink = self.sink
        if not isinstance(items, list):
            sink.error("IMPORTS_NOT_LIST", "'imports' must be a list of files", doc.position_of("imports"), "imports")
            return
        base = os.path.dirname(os.path.abspath(file))
        for i, item in enumerate(items):
            pos = position_of(items, i, Position(file))
            path = f"imports[{i}]"
            target = item
            if isinstance(item, dict):
                if "file" in item:
                    target = item.get("file")
                    _unknown_keys(item, ("file", "repository", "namespace_prefix", "namespace_uri"), sink, path,
                                  "an import")
                elif len(item) == 1:  # TOSCA 1.0 style: '- name: file.yaml'
                    target = next(iter(item.values()))
                    if isinstance(target, dict):
                        target = target.get("file")
            if not isinstance(target, str) or not target:
                sink.error("IMPORT_BAD", "each import must be a file name or a mapping with 'file'", pos, path)
                continue
            if "://" in target:
                sink.error("IMPORT_REMOTE", f"import '{target}' is a URL; only local files can be imported", pos,
                           path, "download it next to the descriptor and import it by relative path")
                continue
            full = os.path.realpath(os.path.join(base, target))
            if not any(full == r or full.startswith(r + os.sep) for r in self.roots):
                sink.error("IMPORT_OUTSIDE", f"import '{target}' lies outside the descriptor's directory tree", pos,
                           path, f"move it under {self.roots[0]} or allow its directory in ${ALLOW_IMPORTS_ENV}")
                continue
            if full in chain:
                cycle = " -> ".join(os.path.basename(c) for c in chain + (full,))
                sink.error("IMPORT_CYCLE", f"files import each other in a cycle: {cycle}", pos, path)
                continue
            if full in self.imported:
                continue  # already imported through another file; types are the same
            if len(self.imported) >= MAX_IMPORTS:
                sink.error("IMPORT_TOO_MANY", f"more than {MAX_IMPORTS} files are imported", pos, path)
                return
            self.imported.append(full)
            try:
                sub = load_yaml_file(full)
            except DescriptorError as exc:
                for d in exc.diagnostics:
                    if d.code == "FILE_NOT_FOUND":
                        sink.error("IMPORT_NOT_FOUND", f"imported file '{target}' does not exist", pos, path)
                    else:
                        sink.items.append(d)
                continue
            if not isinstance(sub, dict):
                sink.error("IMPORT_BAD", f"imported file '{target}' is not a TOSCA document (a mapping)", pos, path)
                continue
            self.document(sub, full, chain + (full,), is_main=False)


def _build(doc: Any, file: str, import_roots: list[str] | None = None) -> Template:
    file_pos = Position(file, 1, 1)
    if not isinstance(doc, dict):
        raise DescriptorError([Diagnostic("DOC_NOT_MAPPING", "a descriptor must be a YAML mapping with "
                                          "'tosca_definitions_version' and 'topology_template'", file_pos)])
    ld = _Loader(file, import_roots)
    sink = ld.sink
    ld.document(doc, file, (os.path.realpath(file),), is_main=True)
    types = ld.types
    types.check_hierarchy(sink)

    metadata = doc.get("metadata")
    template = Template(file=file, version=str(doc.get("tosca_definitions_version")),
                        description=str(doc.get("description") or ""), types=types, document=doc,
                        imports=list(ld.imported), metadata=dict(metadata) if isinstance(metadata, dict) else {})
    topo = doc.get("topology_template")
    if topo is None:
        sink.error("TOPOLOGY_MISSING", "'topology_template' is missing", file_pos, "topology_template")
        template.warnings = sink.warnings
        sink.raise_if_errors()
        return template
    if not isinstance(topo, dict):
        sink.error("TOPOLOGY_NOT_MAPPING", "'topology_template' must be a mapping",
                   doc.position_of("topology_template"), "topology_template")
        raise DescriptorError(sink.items)
    _unknown_keys(topo, TOPOLOGY_KEYS, sink, "topology_template", "topology_template")
    for key in ("substitution_mappings", "workflows"):
        if key in topo:
            sink.warning("UNSUPPORTED", f"'{key}' is not supported by Strato and is ignored",
                         topo.key_position(key), join_path("topology_template", key))

    _parse_inputs(template, topo, sink)
    raw_nodes = _parse_nodes(template, topo, sink)
    _parse_relationship_templates(template, topo, sink)
    _resolve_requirements(template, raw_nodes, sink)
    _parse_groups(template, topo, sink)
    _parse_policies(template, topo, sink)
    _parse_outputs(template, topo, sink)
    _check_functions(template, sink)
    template.warnings = sink.warnings
    sink.raise_if_errors()
    return template


def _section(parent: dict, key: str, sink: DiagnosticSink, path: str) -> dict:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        sink.error("SECTION_NOT_MAPPING", f"'{key}' must be a mapping", parent.position_of(key), path)
        return {}
    return value


_SCALARS = (str, int, float, bool)


def _check_assigned(value: Any, pdef: PropertyDef, types: TypeRegistry, sink: DiagnosticSink, code: str,
                    what: str, pos: Position, path: str) -> None:
    _report_assigned(_assigned_problems(value, pdef, types), sink, code, what, pos, path)


def _assigned_problems(value: Any, pdef: PropertyDef, types: TypeRegistry) -> list:
    """validate_value's problems of a value assigned to pdef; [] when it fits."""
    if value.__class__ in _SCALARS:
        # the same scalar is often assigned to the same property thousands of times
        memo = types.value_memo
        key = (id(pdef), value.__class__, value)
        problems = memo.get(key)
        if problems is None:
            problems = memo[key] = validate_value(value, pdef.schema, types)
            memo.setdefault("_pin", []).append(pdef)  # keeps id(pdef) unique while memoised
        return problems
    return validate_value(value, pdef.schema, types)


def _report_assigned(problems: list, sink: DiagnosticSink, code: str, what: str, pos: Position, path: str) -> None:
    for subpath, problem in problems:
        # "property 'endpoint'" + ".host" -> "property 'endpoint.host'"
        label = f"{what[:-1]}{subpath}'" if subpath and what.endswith("'") else what + subpath
        sink.error(code, f"{label} {problem}", pos, path + subpath)


# --- inputs ---------------------------------------------------------------------------------

def _parse_inputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.inputs"
    inputs = _section(topo, "inputs", sink, base)
    types = template.types
    for name, body in inputs.items():
        path = join_path(base, name)
        pos = inputs.key_position(name)
        if not isinstance(body, dict):
            sink.error("INPUT_BAD_DEFINITION", f"input '{name}' must be a mapping with at least 'type'", pos, path)
            continue
        _unknown_keys(body, INPUT_KEYS, sink, path, f"input '{name}'")
        itype = body.get("type", "string")
        if not isinstance(itype, str) or not types.is_value_type(itype):
            sink.error("INPUT_UNKNOWN_TYPE", f"input '{name}' has unknown type '{itype}'",
                       body.position_of("type"), join_path(path, "type"),
                       did_you_mean(itype, list(SCALAR_TYPES) + list(types.kinds["data"])))
            itype = "any"
        required = body.get("required", True)
        idef = InputDef(name=name, type=itype, required=required if isinstance(required, bool) else True,
                        default=body.get("default"), has_default="default" in body,
                        description=str(body.get("description") or ""), position=pos, path=path,
                        constraints=parse_constraints(body.get("constraints"), itype, sink,
                                                      join_path(path, "constraints"), pos),
                        entry_schema=parse_schema(body.get("entry_schema"), sink, join_path(path, "entry_schema"),
                                                  pos))
        if idef.has_default and idef.default is not None:
            for subpath, problem in validate_value(idef.default, _input_schema(idef), types):
                sink.error("INPUT_BAD_DEFAULT", f"default of input '{name}{subpath}' {problem}",
                           body.position_of("default"), join_path(path, "default") + subpath)
        template.inputs[name] = idef


def _input_schema(idef: InputDef) -> Schema:
    return Schema(idef.type, idef.constraints, idef.entry_schema)


# --- node templates -------------------------------------------------------------------------

def _parse_nodes(template: Template, topo: dict, sink: DiagnosticSink) -> dict:
    base = "topology_template.node_templates"
    nodes = _section(topo, "node_templates", sink, base)
    if not nodes and "node_templates" not in topo:
        sink.error("NODES_MISSING", "'topology_template' has no 'node_templates'", topo.pos, base)
    types = template.types
    node_type_names = types.kinds["node"]
    for name, body in nodes.items():
        path = f"{base}.{name}"
        pos = nodes.key_position(name)
        if not isinstance(body, dict):
            sink.error("NODE_BAD_DEFINITION", f"node template '{name}' must be a mapping with a 'type'", pos, path)
            continue
        for key in body:
            if key not in _NODE_KEY_SET:
                _unknown_keys(body, NODE_KEYS, sink, path, f"node template '{name}'")
                break
        if "copy" in body:
            sink.warning("UNSUPPORTED", "'copy' is not supported; the template is used as written",
                         body.key_position("copy"), join_path(path, "copy"))
        ntype = body.get("type")
        if ntype is None:
            sink.error("NODE_TYPE_MISSING", f"node template '{name}' has no 'type'", pos, join_path(path, "type"))
            continue
        if not isinstance(ntype, str):
            sink.error("NODE_TYPE_BAD", f"the type of node template '{name}' must be a type name",
                       body.position_of("type"), join_path(path, "type"))
            continue
        if ntype not in node_type_names:
            if not types.has("node", ntype):
                other = [k for k in ("capability", "relationship", "policy", "group", "data") if types.has(k, ntype)]
                sink.error("NODE_TYPE_UNKNOWN", f"node template '{name}' has unknown type '{ntype}'",
                           body.position_of("type"), join_path(path, "type"),
                           f"'{ntype}' is a {other[0]} type, not a node type" if other
                           else did_you_mean(ntype, node_type_names))
                continue
            ntype = types.canonical(ntype)
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            sink.error("SECTION_NOT_MAPPING", "'metadata' must be a mapping", body.position_of("metadata"),
                       join_path(path, "metadata"))
            metadata = None
        caps = body.get("capabilities")
        node = NodeTemplate(name=name, type=ntype, position=pos, path=path,
                            properties=body.get("properties") or YMap(pos),
                            capabilities=caps if isinstance(caps, dict) else {},
                            interfaces=body.get("interfaces") or {},
                            metadata=dict(metadata or {}),
                            description=str(body.get("description") or ""))
        resolved = types.resolved(ntype)
        _check_properties(template, node, resolved, body, sink)
        _check_attributes(template, node, resolved, body, sink)
        _check_capabilities(template, node, resolved, body, sink)
        _parse_interfaces(template, node, resolved, body, sink)
        _parse_artifacts(template, node, body, sink)
        directives = body.get("directives")
        if isinstance(directives, list):
            node.directives = [d for d in directives if isinstance(d, str)]
        _parse_scaling(node, sink)
        template.node_templates[name] = node
    return nodes


def _check_properties(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    props = node.properties
    ppath = node.path + ".properties"
    if not isinstance(props, dict):
        sink.error("PROPERTIES_NOT_MAPPING", "'properties' must be a mapping", body.position_of("properties"), ppath)
        node.properties = YMap(node.position)
        return
    defs = ntype.properties
    types = template.types
    for pname, value in props.items():
        pdef = defs.get(pname)
        if pdef is None:
            sink.error("PROPERTY_UNKNOWN", f"node type '{node.type}' has no property '{pname}'",
                       props.key_position(pname), f"{ppath}.{pname}",
                       did_you_mean(pname, defs) or (f"its properties are: {', '.join(defs)}" if defs else
                                                     "this type has no properties"))
            continue
        problems = _assigned_problems(value, pdef, types)
        if problems:
            _report_assigned(problems, sink, "PROPERTY_TYPE", f"property '{pname}'", props.position_of(pname),
                             f"{ppath}.{pname}")
    for pname, pdef in _required_properties(types, ntype):
        if pname not in props:
            sink.error("PROPERTY_MISSING", f"node '{node.name}' of type '{node.type}' needs property '{pname}'",
                       node.position, ppath, f"add '{pname}' ({pdef.type}) under properties")


def _required_properties(types: TypeRegistry, ntype) -> list:
    """(name, definition) of the properties of a resolved type that must be assigned (required, no default)."""
    key = ("required-properties", id(ntype))
    found = types.value_memo.get(key)
    if found is None:
        found = types.value_memo[key] = [(pname, pdef) for pname, pdef in ntype.properties.items()
                                         if pdef.required and not pdef.has_default]
        types.value_memo.setdefault("_pin", []).append(ntype)  # keeps id(ntype) unique while memoised
    return found


def _check_attributes(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    attrs = body.get("attributes")
    if attrs is None:
        return
    apath = node.path + ".attributes"
    if not isinstance(attrs, dict):
        sink.error("SECTION_NOT_MAPPING", "'attributes' must be a mapping", body.position_of("attributes"), apath)
        return
    node.attributes = attrs
    for aname, value in attrs.items():
        adef = ntype.attributes.get(aname)
        if adef is None:
            if not ntype.metadata.get("strato.open_attributes"):
                sink.error("ATTRIBUTE_UNKNOWN", f"node type '{node.type}' has no attribute '{aname}'",
                           attrs.key_position(aname), join_path(apath, aname), did_you_mean(aname, ntype.attributes))
            continue
        _check_assigned(value, adef, template.types, sink, "ATTRIBUTE_TYPE", f"attribute '{aname}'",
                        attrs.position_of(aname), join_path(apath, aname))


def _check_capabilities(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    caps = body.get("capabilities")
    if caps is None:
        return
    cpath = node.path + ".capabilities"
    if not isinstance(caps, dict):
        sink.error("SECTION_NOT_MAPPING", "'capabilities' must be a mapping", body.position_of("capabilities"), cpath)
        return
    types = template.types
    cap_memo = types.value_memo.get("capability-definitions")
    if cap_memo is None:
        cap_memo = types.value_memo["capability-definitions"] = {}
    for cname, cbody in caps.items():
        cdef = ntype.capabilities.get(cname)
        if cdef is not None and cbody.__class__ is YMap:
            # the common case, fast: known keys and property values that check out
            found = cap_memo.get(id(cdef))
            if found is None:
                found = cap_memo[id(cdef)] = _capability_definitions(types, cdef)
            ctype, merged = found
            if ctype is not None and _capability_fits(types, cname, cbody, merged):
                continue
        path = f"{cpath}.{cname}"
        if cdef is None:
            sink.error("CAPABILITY_UNKNOWN", f"node type '{node.type}' has no capability '{cname}'",
                       caps.key_position(cname), path,
                       did_you_mean(cname, ntype.capabilities) or
                       (f"its capabilities are: {', '.join(ntype.capabilities)}" if ntype.capabilities else ""))
            continue
        if cbody is None:
            continue
        if not isinstance(cbody, dict):
            sink.error("CAPABILITY_BAD", f"capability '{cname}' must be a mapping with 'properties'",
                       caps.position_of(cname), path)
            continue
        for key in cbody:
            if key not in _CAPABILITY_KEY_SET:
                _unknown_keys(cbody, CAPABILITY_KEYS, sink, path, f"capability '{cname}'")
                break
        if not types.has("capability", cdef.type):
            continue
        ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability")
        for section, defs_attr in (("properties", "properties"), ("attributes", "attributes")):
            values = cbody.get(section)
            if values is None:
                continue
            if not isinstance(values, dict):
                sink.error("SECTION_NOT_MAPPING", f"'{section}' must be a mapping", cbody.position_of(section),
                           f"{path}.{section}")
                continue
            own = getattr(cdef, defs_attr)
            inherited = getattr(ctype, defs_attr)
            spath = f"{path}.{section}"
            for pname, value in values.items():
                pdef = own.get(pname) or inherited.get(pname)
                if pdef is None:
                    if section == "properties" and cname == "scalable" and pname in SCALING_KEYS:
                        continue
                    known = list(own) + list(inherited)
                    sink.error("PROPERTY_UNKNOWN", f"capability '{cname}' ({ctype.name}) has no "
                               f"{section[:-1] if section == 'attributes' else 'property'} '{pname}'",
                               values.key_position(pname), f"{spath}.{pname}", did_you_mean(pname, known))
                    continue
                if cname == "scalable" and pname in SCALING_KEYS:
                    continue  # checked with the instance counts (_parse_scaling)
                _check_assigned(value, pdef, types, sink, "PROPERTY_TYPE", f"property '{pname}' of capability "
                                f"'{cname}'", values.position_of(pname), f"{spath}.{pname}")


def _capability_definitions(types: TypeRegistry, cdef) -> tuple:
    """(resolved capability type or None, {section: {name: definition}}) of a capability definition.

    The node type's own definitions win over the capability type's, as in _check_capabilities.
    """
    if not types.has("capability", cdef.type):
        return None, {}
    ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability")
    merged = {}
    for section in ("properties", "attributes"):
        defs = dict(getattr(ctype, section))
        defs.update(getattr(cdef, section))
        merged[section] = defs
    return ctype, merged


def _capability_fits(types: TypeRegistry, cname: str, cbody: YMap, merged: dict) -> bool:
    """Whether a capability assignment surely has nothing to report: only known keys and sections,
    and scalar values that check out (anything else goes through the full check)."""
    if cname == "scalable":
        return False
    for key, values in cbody.items():
        if key not in _CAPABILITY_KEY_SET:
            return False
        defs = merged.get(key)
        if defs is None or values is None:
            continue
        if values.__class__ is not YMap:
            return False
        for pname, value in values.items():
            pdef = defs.get(pname)
            if pdef is None or value.__class__ not in _SCALARS or _assigned_problems(value, pdef, types):
                return False
    return True


def _parse_interfaces(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    ifaces = body.get("interfaces")
    ipath = node.path + ".interfaces"
    if ifaces is None:
        return
    if not isinstance(ifaces, dict):
        sink.error("SECTION_NOT_MAPPING", "'interfaces' must be a mapping", body.position_of("interfaces"), ipath)
        node.interfaces = {}
        return
    types = template.types
    base_dir = template.directory
    for iname, ibody in ifaces.items():
        path = join_path(ipath, iname)
        ipos = ifaces.key_position(iname)
        idef = ntype.interfaces.get(iname)
        if idef is None:
            sink.error("INTERFACE_UNKNOWN", f"node type '{node.type}' has no interface '{iname}'", ipos, path,
                       did_you_mean(iname, ntype.interfaces) or "the lifecycle interface is called 'Standard'")
            continue
        if not isinstance(ibody, dict):
            sink.error("INTERFACE_BAD", f"interface '{iname}' must be a mapping of operations", ipos, path)
            continue
        known_ops = dict(types.interface_operations(idef.type))
        known_ops.update(idef.operations)
        ops = ibody.get("operations") if isinstance(ibody.get("operations"), dict) else {
            k: v for k, v in ibody.items() if k not in ("inputs", "type", "notifications")}
        ops_path = join_path(path, "operations") if "operations" in ibody else path
        for oname, obody in ops.items():
            opath = join_path(ops_path, oname)
            opos = ops.key_position(oname) if isinstance(ops, YMap) else ipos
            if oname not in known_ops:
                sink.error("OPERATION_UNKNOWN", f"interface '{iname}' ({idef.type}) has no operation '{oname}'",
                           opos, opath, did_you_mean(oname, known_ops) or
                           (f"its operations are: {', '.join(known_ops)}" if known_ops else ""))
                continue
            op = parse_operation(oname, obody, sink, opath, opos)
            defined = known_ops[oname]
            inputs = dict(idef.inputs)
            inputs.update(defined.inputs)
            inputs.update(op.inputs)
            operation = Operation(iname, oname, op.implementation or defined.implementation,
                                  op.dependencies or defined.dependencies, inputs,
                                  op.outputs or defined.outputs, opos, opath)
            node.operations[(iname, oname)] = operation
            impl = operation.implementation
            if isinstance(impl, str) and impl not in node.artifacts and impl not in (body.get("artifacts") or {}) \
                    and "://" not in impl and not os.path.isabs(impl) and os.path.isdir(base_dir) \
                    and not os.path.exists(os.path.join(base_dir, impl)):
                sink.warning("ARTIFACT_NOT_FOUND", f"the implementation '{impl}' of {iname}.{oname} does not exist "
                             "beside the descriptor", opos, opath)


def _parse_artifacts(template: Template, node: NodeTemplate, body: dict, sink: DiagnosticSink) -> None:
    arts = body.get("artifacts")
    if arts is None:
        return
    apath = node.path + ".artifacts"
    if not isinstance(arts, dict):
        sink.error("SECTION_NOT_MAPPING", "'artifacts' must be a mapping", body.position_of("artifacts"), apath)
        return
    types = template.types
    for aname, abody in arts.items():
        path = join_path(apath, aname)
        if isinstance(abody, str):
            node.artifacts[aname] = {"file": abody}
            continue
        if not isinstance(abody, dict) or "file" not in abody:
            sink.error("ARTIFACT_BAD", f"artifact '{aname}' must be a file name or a mapping with 'file'",
                       arts.key_position(aname), path)
            continue
        _unknown_keys(abody, ARTIFACT_KEYS, sink, path, f"artifact '{aname}'")
        atype = abody.get("type")
        if atype is not None and not types.has("artifact", atype):
            sink.error("ARTIFACT_UNKNOWN_TYPE", f"artifact '{aname}' has unknown type '{atype}'",
                       abody.position_of("type"), join_path(path, "type"), did_you_mean(atype, types.kinds["artifact"]))
        node.artifacts[aname] = dict(abody)


def _parse_scaling(node: NodeTemplate, sink: DiagnosticSink) -> None:
    caps = node.capabilities
    if not isinstance(caps, dict):
        return
    scalable = caps.get("scalable")
    if not isinstance(scalable, dict):
        return
    props = scalable.get("properties") or {}
    if not isinstance(props, dict):
        return
    path = node.path + ".capabilities.scalable.properties"
    values = {}
    for key in SCALING_KEYS:
        if key in props:
            v = props[key]
            call = function_call(v)
            if call and call[0] == "get_input":
                # resolved with the build's inputs (see orchestrator.plan.desired_counts)
                node.count_inputs[key] = call[1][0] if isinstance(call[1], list) and call[1] else call[1]
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                if key == "max_instances" and v == "UNBOUNDED":
                    continue
                sink.error("SCALING_BAD_VALUE", f"{key} must be a whole number of 0 or more",
                           position_of(props, key, node.position), join_path(path, key))
                continue
            values[key] = v
    node.min_instances = values.get("min_instances", 0)
    node.max_instances = values.get("max_instances")
    node.default_instances = values.get("default_instances", max(1, node.min_instances))
    if node.default_instances < node.min_instances or (
            node.max_instances is not None and not node.min_instances <= node.default_instances <= node.max_instances):
        sink.error("SCALING_BAD_RANGE", "default_instances must lie between min_instances and max_instances",
                   position_of(props, "default_instances", node.position), path)


# --- relationship templates and requirements ----------------------------------------------------

def _parse_relationship_templates(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.relationship_templates"
    rels = _section(topo, "relationship_templates", sink, base)
    types = template.types
    for name, body in rels.items():
        path = join_path(base, name)
        pos = rels.key_position(name)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            sink.error("RELATIONSHIP_BAD", f"relationship template '{name}' must be a mapping with a 'type'", pos, path)
            continue
        _unknown_keys(body, ("type", "description", "metadata", "properties", "attributes", "interfaces", "copy"),
                      sink, path, f"relationship template '{name}'")
        rtype = body["type"]
        if not types.has("relationship", rtype):
            sink.error("RELATIONSHIP_UNKNOWN_TYPE", f"relationship template '{name}' has unknown type '{rtype}'",
                       body.position_of("type"), join_path(path, "type"),
                       did_you_mean(rtype, types.kinds["relationship"]))
            continue
        rdef = types.resolved(types.canonical(rtype, "relationship"), "relationship")
        props = body.get("properties") or {}
        _check_property_map(template, props, rdef.properties, sink, join_path(path, "properties"), pos,
                            f"relationship type '{rdef.name}'")
        template.relationship_templates[name] = {"type": rdef.name, "properties": props,
                                                 "interfaces": body.get("interfaces") or {}}


def _check_property_map(template: Template, props: Any, defs: dict, sink: DiagnosticSink, path: str,
                        pos: Position, owner: str, check_missing: bool = True) -> None:
    if not isinstance(props, dict):
        sink.error("PROPERTIES_NOT_MAPPING", "'properties' must be a mapping", pos, path)
        return
    for pname, value in props.items():
        pdef = defs.get(pname)
        ppos = props.position_of(pname) if isinstance(props, YMap) else pos
        if pdef is None:
            sink.error("PROPERTY_UNKNOWN", f"{owner} has no property '{pname}'", _key_pos(props, pname, pos),
                       join_path(path, pname), did_you_mean(pname, defs))
            continue
        _check_assigned(value, pdef, template.types, sink, "PROPERTY_TYPE", f"property '{pname}'", ppos,
                        join_path(path, pname))
    if check_missing:
        for pname, pdef in defs.items():
            if pdef.required and not pdef.has_default and pname not in props:
                sink.error("PROPERTY_MISSING", f"{owner} needs property '{pname}'", pos, path)


def _resolve_requirements(template: Template, raw_nodes: dict, sink: DiagnosticSink) -> None:
    types = template.types
    nodes = template.node_templates
    for node in nodes.values():
        body = raw_nodes[node.name]
        reqs = body.get("requirements")
        if reqs is None:
            continue
        base = node.path + ".requirements"
        if not isinstance(reqs, list):
            sink.error("REQUIREMENTS_NOT_LIST", "'requirements' must be a list of one-key mappings like "
                       "'- host: server'", body.position_of("requirements"), base)
            continue
        ntype = types.resolved(node.type)
        counts: dict[str, int] = {}
        for i, item in enumerate(reqs):
            req = _requirement(template, node, ntype, item, i, reqs, raw_nodes, sink, f"{base}[{i}]")
            if req is not None:
                node.requirements.append(req)
                counts[req.name] = counts.get(req.name, 0) + 1
        for rname, count in counts.items():
            rdef = ntype.requirements.get(rname)
            high = rdef.occurrences[1] if rdef else None
            if high is not None and count > high:
                sink.error("REQUIREMENT_TOO_MANY", f"node '{node.name}' has {count} '{rname}' requirements, but its "
                           f"type allows at most {high}", body.position_of("requirements"), base)
    expected: dict = {}  # node type -> its requirements that must occur at least once
    for node in nodes.values():
        needed = expected.get(node.type)
        if needed is None:
            needed = expected[node.type] = [(rname, rdef) for rname, rdef in
                                            types.resolved(node.type).requirements.items() if rdef.occurrences[0] >= 1]
        if not needed or node.directives:
            continue
        have = {r.name for r in node.requirements}
        for rname, rdef in needed:
            if rname not in have:
                sink.warning("REQUIREMENT_MISSING", f"node '{node.name}' ({node.type}) has no '{rname}' "
                             "requirement, which its type expects", node.position, node.path + ".requirements",
                             f"add '- {rname}: <node template>'")


def _requirement(template: Template, node: NodeTemplate, ntype, item: Any, index: int, reqs: list,
                 raw_nodes: dict, sink: DiagnosticSink, path: str) -> Requirement | None:
    types = template.types
    nodes = template.node_templates
    if item.__class__ is YMap and len(item) == 1:
        # the common '- dependency: other_node' form: once it checked out for a (node type,
        # requirement, target type), it checks out again the same way with no diagnostics
        rname, body = next(iter(item.items()))
        tnode = nodes.get(body) if body.__class__ is str else None
        if tnode is not None and body != node.name:
            found = types.value_memo.get(("requirement-ok", node.type, rname, tnode.type))
            if found is not None:
                node_filter, cap_name, relationship = found
                return Requirement(name=rname, target=body, relationship=relationship,
                                   position=item.key_position(rname), path=f"{path}.{rname}", capability=cap_name,
                                   relationship_properties={}, relationship_interfaces={}, node_filter=node_filter)
    pos = position_of(reqs, index)
    if not isinstance(item, dict) or len(item) != 1:
        sink.error("REQUIREMENT_BAD", "each requirement must be a one-key mapping like '- dependency: db'", pos, path)
        return None
    rname, body = next(iter(item.items()))
    rpath = f"{path}.{rname}"
    rdef = ntype.requirements.get(rname)
    if rdef is None:
        sink.error("REQUIREMENT_UNKNOWN", f"node type '{node.type}' has no requirement '{rname}'",
                   _key_pos(item, rname, pos), rpath,
                   did_you_mean(rname, ntype.requirements) or
                   f"its requirements are: {', '.join(ntype.requirements)}; use 'dependency' for a plain ordering")
        return None
    capability = rdef.capability
    relationship = rdef.relationship
    rel_props: Any = {}
    rel_ifaces: Any = {}
    node_filter = rdef.node_filter
    target_ref = None
    tpos = _key_pos(item, rname, pos)
    target_path = rpath
    if isinstance(body, dict):
        _unknown_keys(body, REQUIREMENT_KEYS, sink, rpath, f"requirement '{rname}'")
        target_ref = body.get("node")
        tpos = body.position_of("node") if "node" in body else tpos
        target_path = join_path(rpath, "node") if "node" in body else rpath
        capability = body.get("capability", capability)
        if capability is not None and not isinstance(capability, str):
            sink.error("REQUIREMENT_BAD", f"'capability' of requirement '{rname}' must name a capability",
                       body.position_of("capability"), join_path(rpath, "capability"))
            return None
        node_filter = body.get("node_filter", node_filter)
        rel = body.get("relationship")
        if isinstance(rel, dict):
            rel_props = rel.get("properties") or {}
            rel_ifaces = rel.get("interfaces") or {}
            rel = rel.get("type")
        if isinstance(rel, str):
            if rel in template.relationship_templates:
                rt = template.relationship_templates[rel]
                relationship, rel_props, rel_ifaces = rt["type"], rt["properties"], rt["interfaces"]
            elif types.has("relationship", rel):
                relationship = types.canonical(rel, "relationship")
            else:
                sink.error("RELATIONSHIP_UNKNOWN", f"requirement '{rname}' names unknown relationship '{rel}'",
                           body.position_of("relationship"), join_path(rpath, "relationship"),
                           did_you_mean(rel, list(types.kinds["relationship"]) + list(template.relationship_templates)))
                return None
    elif isinstance(body, str):
        target_ref = body
    elif body is not None:
        sink.error("REQUIREMENT_BAD_TARGET", f"requirement '{rname}' of node '{node.name}' must name a node template",
                   tpos, rpath)
        return None
    req_node_type = rdef.node
    if target_ref is not None and not isinstance(target_ref, str):
        sink.error("REQUIREMENT_BAD_TARGET", f"requirement '{rname}' of node '{node.name}' must name a node template",
                   tpos, target_path)
        return None
    target = None
    if target_ref is not None and target_ref in raw_nodes:
        if target_ref not in nodes:
            return None  # the target had its own errors, already reported
        target = target_ref
    elif target_ref is not None and types.has("node", target_ref):
        req_node_type = types.canonical(target_ref)  # a node type: pick a template of it
    elif target_ref is not None:
        sink.error("REQUIREMENT_UNKNOWN_NODE",
                   f"requirement '{rname}' of node '{node.name}' names unknown node '{target_ref}'",
                   tpos, target_path, did_you_mean(target_ref, raw_nodes))
        return None
    if target == node.name:
        sink.error("REQUIREMENT_SELF", f"node '{node.name}' requires itself", tpos, target_path)
        return None
    if target is not None:
        tnode = nodes[target]
        if req_node_type and types.has("node", req_node_type) and not types.is_a(tnode.type, req_node_type):
            sink.error("REQUIREMENT_WRONG_NODE_TYPE", f"requirement '{rname}' of node '{node.name}' needs a "
                       f"{types.canonical(req_node_type)}, but '{target}' is a {tnode.type}", tpos, target_path)
            return None
        cap_name = _matching_capability(types, tnode, capability)
        if cap_name is None:
            sink.error("REQUIREMENT_NO_CAPABILITY", f"node '{target}' ({tnode.type}) has no capability "
                       f"'{capability}' that requirement '{rname}' of node '{node.name}' needs", tpos, target_path,
                       _capability_hint(types, tnode))
            return None
        if node_filter is not None and isinstance(body, dict) and "node_filter" in body:
            why = _filter_mismatch(template, tnode, node_filter)
            if why:
                sink.error("REQUIREMENT_FILTER", f"node '{target}' does not satisfy the node_filter of requirement "
                           f"'{rname}': {why}", tpos, target_path)
                return None
    else:
        if node_filter is not None and not isinstance(node_filter, dict):
            sink.error("NODE_FILTER_BAD", "'node_filter' must be a mapping with 'properties' and/or 'capabilities'",
                       tpos, join_path(rpath, "node_filter"))
            return None
        candidates = []
        for cand in nodes.values():
            if cand.name == node.name:
                continue
            if req_node_type and types.has("node", req_node_type) and not types.is_a(cand.type, req_node_type):
                continue
            cap_name = _matching_capability(types, cand, capability)
            if cap_name is None:
                continue
            if node_filter is not None and _filter_mismatch(template, cand, node_filter):
                continue
            candidates.append((cand.name, cap_name))
        if not candidates:
            what = " and ".join(x for x in (f"of type {req_node_type}" if req_node_type else "",
                                            f"with capability {capability}" if capability else "",
                                            "matching its node_filter" if node_filter else "") if x)
            sink.error("REQUIREMENT_UNSATISFIED", f"no node template {what} can fulfil requirement '{rname}' of "
                       f"node '{node.name}'", tpos, rpath, "add such a node or name one with 'node: <template>'")
            return None
        target, cap_name = candidates[0]
        if len(candidates) > 1:
            sink.warning("REQUIREMENT_AMBIGUOUS", f"requirement '{rname}' of node '{node.name}' matches "
                         f"{len(candidates)} node templates; '{target}' was chosen",
                         tpos, rpath, "name the one you mean with 'node: <template>'")
    if relationship is not None and types.has("relationship", relationship):
        rtype = types.resolved(types.canonical(relationship, "relationship"), "relationship")
        tcap = types.resolved(nodes[target].type).capabilities.get(cap_name)
        if rtype.valid_target_types and tcap is not None and not _valid_target(types, rtype, tcap):
            sink.error("RELATIONSHIP_INVALID_TARGET", f"relationship {rtype.name} of requirement '{rname}' cannot "
                       f"target capability '{cap_name}' ({tcap.type})", tpos, rpath,
                       f"it targets {', '.join(rtype.valid_target_types)}")
            return None
        if rel_props:
            _check_property_map(template, rel_props, rtype.properties, sink, join_path(rpath, "relationship.properties"),
                                tpos, f"relationship {rtype.name}", check_missing=False)
    if body.__class__ is str and target == body and item.__class__ is YMap:  # named straight, no diagnostics
        types.value_memo[("requirement-ok", node.type, rname, nodes[target].type)] = (node_filter, cap_name,
                                                                                      relationship)
    return Requirement(name=rname, target=target, relationship=relationship, position=tpos, path=target_path,
                       capability=cap_name, relationship_properties=rel_props if isinstance(rel_props, dict) else {},
                       relationship_interfaces=rel_ifaces if isinstance(rel_ifaces, dict) else {},
                       node_filter=node_filter)


def _matching_capability(types: TypeRegistry, node: NodeTemplate, capability: str | None) -> str | None:
    """Name of node's capability that fulfils `capability` (a capability name or type), or None."""
    key = ("capability-match", node.type, capability)
    memo = types.value_memo
    if key in memo:
        return memo[key]
    memo[key] = found = _find_capability(types, node, capability)
    return found


def _find_capability(types: TypeRegistry, node: NodeTemplate, capability: str | None) -> str | None:
    caps = types.resolved(node.type).capabilities
    if capability is None:
        return "feature" if "feature" in caps else next(iter(caps), "feature")
    if capability in caps:
        return capability
    if not types.has("capability", capability):
        return None
    for cname, cdef in caps.items():
        if types.is_a(types.canonical(cdef.type, "capability"), capability, "capability"):
            return cname
    return None


def _valid_target(types: TypeRegistry, rtype, tcap) -> bool:
    key = ("valid-target", rtype.name, tcap.type)
    memo = types.value_memo
    if key not in memo:
        memo[key] = any(types.is_a(types.canonical(tcap.type, "capability"), v, "capability")
                        for v in rtype.valid_target_types)
    return memo[key]


def _capability_hint(types: TypeRegistry, node: NodeTemplate) -> str:
    caps = types.resolved(node.type).capabilities
    return "its capabilities are: " + ", ".join(f"{n} ({c.type})" for n, c in caps.items()) if caps else ""


def _filter_mismatch(template: Template, node: NodeTemplate, node_filter: Any) -> str | None:
    """Why node fails node_filter (properties and capabilities' properties with constraint clauses), or None."""
    if not isinstance(node_filter, dict):
        return "the node_filter is not a mapping"
    types = template.types
    ntype = types.resolved(node.type)
    checks = [("", node_filter.get("properties"), node.properties, ntype.properties)]
    caps = node_filter.get("capabilities")
    if isinstance(caps, list):
        for item in caps:
            if isinstance(item, dict) and len(item) == 1:
                cname, cfilter = next(iter(item.items()))
                actual = _matching_capability(types, node, cname)
                if actual is None:
                    return f"it has no capability '{cname}'"
                assigned = node.capabilities.get(actual) if isinstance(node.capabilities, dict) else None
                values = assigned.get("properties") if isinstance(assigned, dict) else None
                cdef = ntype.capabilities[actual]
                ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability") \
                    if types.has("capability", cdef.type) else None
                defs = dict(ctype.properties) if ctype else {}
                defs.update(cdef.properties)
                checks.append((f"capability {actual}: ", cfilter.get("properties") if isinstance(cfilter, dict)
                               else None, values if isinstance(values, dict) else {}, defs))
    for prefix, clauses, values, defs in checks:
        if clauses is None:
            continue
        items = clauses if isinstance(clauses, list) else [{k: v} for k, v in clauses.items()] \
            if isinstance(clauses, dict) else []
        for clause in items:
            if not isinstance(clause, dict) or len(clause) != 1:
                return "each node_filter property must be a one-key mapping"
            pname, cond = next(iter(clause.items()))
            pdef = defs.get(pname)
            value = values.get(pname) if pname in values else (pdef.default if pdef and pdef.has_default else None)
            vtype = pdef.type if pdef else "any"
            conds = cond if isinstance(cond, list) else [cond]
            for c in conds:
                if not (isinstance(c, dict) and len(c) == 1):
                    c = {"equal": c}
                from descriptors.values import parse_constraint
                constraint, problem = parse_constraint(c, vtype)
                if problem:
                    return f"{prefix}{pname}: {problem}"
                if value is None or function_call(value) is not None:
                    return f"{prefix}{pname} has no value to compare"
                why = constraint.check(value)
                if why:
                    return f"{prefix}{pname} {why}"
    return None


# --- groups, policies, outputs ----------------------------------------------------------------

def _typed_entry(template: Template, kind: str, name: str, body: Any, allowed, pos: Position, path: str,
                 sink: DiagnosticSink):
    """The resolved type of a group/policy entry, or None after reporting why it cannot be used."""
    code = kind.upper()
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        sink.error(f"{code}_BAD", f"{kind} '{name}' must be a mapping with a 'type'", pos, path)
        return None
    _unknown_keys(body, allowed, sink, path, f"{kind} '{name}'")
    tname, types = body["type"], template.types
    if not types.has(kind, tname):
        sink.error(f"{code}_UNKNOWN_TYPE", f"{kind} '{name}' has unknown type '{tname}'", body.position_of("type"),
                   join_path(path, "type"), did_you_mean(tname, types.kinds[kind]))
        return None
    return types.resolved(types.canonical(tname, kind), kind)


def _parse_groups(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.groups"
    groups = _section(topo, "groups", sink, base)
    types = template.types
    for name, body in groups.items():
        path = join_path(base, name)
        pos = groups.key_position(name)
        gdef = _typed_entry(template, "group", name, body, GROUP_KEYS, pos, path, sink)
        if gdef is None:
            continue
        members = body.get("members") or []
        if not isinstance(members, list):
            sink.error("GROUP_BAD", "'members' must be a list of node template names", body.position_of("members"),
                       join_path(path, "members"))
            members = []
        good = []
        for i, member in enumerate(members):
            mpos = position_of(members, i, pos)
            mpath = f"{join_path(path, 'members')}[{i}]"
            if not isinstance(member, str) or member not in template.node_templates:
                sink.error("GROUP_UNKNOWN_MEMBER", f"group '{name}' names unknown node template '{member}'", mpos,
                           mpath, did_you_mean(member, template.node_templates))
                continue
            mtype = template.node_templates[member].type
            if gdef.members and not any(types.is_a(mtype, t) for t in gdef.members):
                sink.error("GROUP_BAD_MEMBER", f"group type {gdef.name} cannot hold '{member}' ({mtype})", mpos, mpath,
                           f"its members must be {', '.join(gdef.members)}")
                continue
            good.append(member)
        props = body.get("properties") or {}
        _check_property_map(template, props, gdef.properties, sink, join_path(path, "properties"), pos,
                            f"group type {gdef.name}")
        template.groups[name] = Group(name, gdef.name, good, props if isinstance(props, dict) else {},
                                      dict(body.get("metadata") or {}), pos, path)


def _parse_policies(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.policies"
    raw = topo.get("policies")
    if raw is None:
        return
    entries: list[tuple[str, Any, Position, str]] = []
    if isinstance(raw, list):  # TOSCA 1.3: a list of one-key mappings
        for i, item in enumerate(raw):
            ipos = position_of(raw, i)
            if not isinstance(item, dict) or len(item) != 1:
                sink.error("POLICY_BAD", "each policy must be a one-key mapping like '- scale_web: {type: ...}'",
                           ipos, f"{base}[{i}]")
                continue
            pname, pbody = next(iter(item.items()))
            entries.append((pname, pbody, _key_pos(item, pname, ipos), f"{base}[{i}].{pname}"))
    elif isinstance(raw, dict):
        entries = [(k, v, raw.key_position(k), join_path(base, k)) for k, v in raw.items()]
    else:
        sink.error("POLICY_BAD", "'policies' must be a list of one-key mappings", topo.position_of("policies"), base)
        return
    types = template.types
    for name, body, pos, path in entries:
        if name in template.policies:
            sink.error("POLICY_DUPLICATE", f"policy '{name}' is defined twice", pos, path)
            continue
        pdef = _typed_entry(template, "policy", name, body, POLICY_KEYS, pos, path, sink)
        if pdef is None:
            continue
        targets = body.get("targets") or []
        if not isinstance(targets, list):
            sink.error("POLICY_BAD", "'targets' must be a list of node template or group names",
                       body.position_of("targets"), join_path(path, "targets"))
            targets = []
        good = []
        for i, target in enumerate(targets):
            tpos = position_of(targets, i, pos)
            tpath = f"{join_path(path, 'targets')}[{i}]"
            if not isinstance(target, str):
                sink.error("POLICY_BAD", "each policy target must be a node template or group name", tpos, tpath)
                continue
            if target in template.groups:
                ttype, tkind = template.groups[target].type, "group"
            elif target in template.node_templates:
                ttype, tkind = template.node_templates[target].type, "node"
            else:
                sink.error("POLICY_UNKNOWN_TARGET", f"policy '{name}' targets unknown node template or group "
                           f"'{target}'", tpos, tpath,
                           did_you_mean(target, list(template.node_templates) + list(template.groups)))
                continue
            allowed = pdef.targets
            if tkind == "group":  # a group fits when its type does, or when all its members do
                fits = any(types.has("group", a) and types.is_a(ttype, a, "group") for a in allowed or []) or all(
                    any(types.has("node", a) and types.is_a(template.node_templates[m].type, a) for a in allowed)
                    for m in template.groups[target].members)
            else:
                fits = any(types.has("node", a) and types.is_a(ttype, a) for a in allowed or [])
            if allowed and not fits:
                sink.error("POLICY_BAD_TARGET", f"policy type {pdef.name} cannot target '{target}' ({ttype})", tpos,
                           tpath, f"its targets must be {', '.join(allowed)}")
                continue
            good.append(target)
        props = body.get("properties") or {}
        _check_property_map(template, props, pdef.properties, sink, join_path(path, "properties"), pos,
                            f"policy type {pdef.name}")
        triggers = body.get("triggers")
        template.policies[name] = Policy(name, pdef.name, good, props if isinstance(props, dict) else {},
                                         dict(body.get("metadata") or {}),
                                         triggers if isinstance(triggers, dict) else {}, pos, path)


def _parse_outputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.outputs"
    outputs = _section(topo, "outputs", sink, base)
    for name, body in outputs.items():
        path = join_path(base, name)
        pos = outputs.key_position(name)
        if not isinstance(body, dict) or "value" not in body:
            sink.error("OUTPUT_NO_VALUE", f"output '{name}' needs a 'value'", pos, path)
            continue
        _unknown_keys(body, OUTPUT_KEYS, sink, path, f"output '{name}'")
        template.outputs[name] = OutputDef(name=name, value=body["value"],
                                           description=str(body.get("description") or ""), position=pos, path=path)


# --- functions ---------------------------------------------------------------------------------

def _function_places(template: Template):
    """(self node, value, document path, source, target) of every place functions may appear.

    Node and capability properties without any call are left out (before their paths are
    built): there would be nothing to check in them.
    """
    for n in template.node_templates.values():
        if n.properties and contains_call(n.properties):
            yield n.name, n.properties, n.path + ".properties", None
        if isinstance(n.capabilities, dict):
            for cname, cbody in n.capabilities.items():
                if isinstance(cbody, dict) and isinstance(cbody.get("properties"), dict) \
                        and contains_call(cbody["properties"]):
                    yield n.name, cbody["properties"], f"{n.path}.capabilities.{cname}.properties", None
        for (iname, oname), op in n.operations.items():
            if op.inputs:
                yield n.name, op.inputs, f"{op.path}.inputs", None
        for req in n.requirements:
            if req.relationship_properties:
                yield n.name, req.relationship_properties, f"{req.path}.relationship.properties", req.target
        if n.attributes:
            yield n.name, n.attributes, n.path + ".attributes", None
    for g in template.groups.values():
        yield None, g.properties, g.path + ".properties", None
    for p in template.policies.values():
        yield None, p.properties, p.path + ".properties", None
    for o in template.outputs.values():
        yield None, o.value, o.path + ".value", None


def _check_functions(template: Template, sink: DiagnosticSink) -> None:
    """Check every function's references and types that can be checked before deployment."""
    nodes = template.node_templates
    types = template.types
    for self_node, value, base, target in _function_places(template):
        if not isinstance(value, (dict, list)):
            continue
        for fname, args, container, key, path in iter_calls(value, base):
            pos = position_of(container, key) if container is not None else Position(template.file)
            if container is None and isinstance(value, (YMap, YList)):
                pos = value.pos
            _check_call(template, fname, args, self_node, target, pos, path, sink)
    # a property set straight from an input or another property must be of a compatible type
    for node in nodes.values():
        if not node.properties:
            continue
        ntype = types.resolved(node.type)
        for pname, value in node.properties.items():
            call = function_call(value)
            pdef = ntype.properties.get(pname)
            if call is None or pdef is None:
                continue
            source_type = _call_type(template, call, node.name)
            if source_type and not _compatible(source_type, pdef.type, types):
                sink.error("FUNCTION_TYPE", f"property '{pname}' is of type {pdef.type}, but {call[0]} gives a "
                           f"value of type {source_type}", node.properties.position_of(pname),
                           f"{node.path}.properties.{pname}")


def _call_type(template: Template, call: tuple, self_node: str) -> str | None:
    name, args = call
    if name == "get_input":
        key = args[0] if isinstance(args, list) and args else args
        idef = template.inputs.get(key) if isinstance(key, str) else None
        if idef is None or (isinstance(args, list) and len(args) > 1):
            return None
        return idef.type
    if name in ("concat", "join", "token"):
        return "string"
    if name == "get_property" and isinstance(args, list) and len(args) == 2:
        ref = self_node if args[0] in ("SELF", "SOURCE") else args[0]
        node = template.node_templates.get(ref)
        if node is None:
            return None
        pdef = template.types.resolved(node.type).properties.get(args[1])
        return pdef.type if pdef else None
    return None


def _compatible(source: str, dest: str, types: TypeRegistry) -> bool:
    if source == dest or "any" in (source, dest):
        return True
    if dest == "float" and source == "integer":
        return True
    if dest == "string" and source in ("version", "timestamp") or (source == "string" and dest in (
            "version", "timestamp", "scalar-unit.size", "scalar-unit.time", "scalar-unit.frequency",
            "scalar-unit.bitrate")):
        return True
    for a, b in ((source, dest), (dest, source)):
        if types.has("data", a):
            dtype = types.resolved(types.canonical(a, "data"), "data")
            if dtype.primitive == b or types.is_a(types.canonical(a, "data"), b, "data"):
                return True
            if dtype.primitive is None and b == "map":
                return True
    return False


def _entity(template: Template, ref: Any, self_node: str | None, target: str | None, fname: str, pos: Position,
            path: str, sink: DiagnosticSink) -> str | None:
    nodes = template.node_templates
    if ref in SELF_NAMES:
        if self_node is None:
            sink.error("FUNCTION_NO_SELF", f"{ref} means nothing here; name a node template", pos, path)
            return None
        if ref in ("SELF", "SOURCE"):
            return self_node
        if ref == "TARGET":
            if target is None:
                sink.error("FUNCTION_NO_TARGET", "TARGET means something only in a requirement's relationship",
                           pos, path, "name the node template instead")
            return target
        host = nodes[self_node].host if self_node in nodes else None
        if host is None:
            sink.error("FUNCTION_NO_HOST", f"node '{self_node}' has no 'host' requirement, so HOST means nothing "
                       "here", pos, path)
        return host
    if not isinstance(ref, str) or ref not in nodes:
        sink.error("FUNCTION_UNKNOWN_NODE", f"{fname} names unknown node '{ref}'", pos, path,
                   did_you_mean(ref, nodes))
        return None
    return ref


def _check_call(template: Template, fname: str, args: Any, self_node: str | None, target: str | None,
                pos: Position, path: str, sink: DiagnosticSink) -> None:
    nodes = template.node_templates
    types = template.types
    if fname == "get_input":
        name = args[0] if isinstance(args, list) and args else args
        if not isinstance(name, str) or name not in template.inputs:
            sink.error("FUNCTION_UNKNOWN_INPUT", f"get_input names unknown input '{name}'", pos, path,
                       did_you_mean(name, template.inputs) or
                       (f"declared inputs: {', '.join(template.inputs)}" if template.inputs else
                        "declare it under topology_template.inputs"))
        return
    if fname in ("get_property", "get_attribute"):
        if not isinstance(args, list) or len(args) < 2 or not all(isinstance(a, str) for a in args[:2]) \
                or not all(isinstance(a, (str, int)) for a in args[2:]):
            sink.error("FUNCTION_BAD_ARGS", f"{fname} needs a list: [node, name, nested names or indexes...]",
                       pos, path)
            return
        entity = _entity(template, args[0], self_node, target, fname, pos, path, sink)
        if entity is None:
            return
        node = nodes[entity]
        ntype = types.resolved(node.type)
        name = args[1]
        rest = args[2:]
        if len(args) >= 3 and isinstance(name, str):
            via = next((r.target for r in node.requirements if r.name == name), None)
            if via is not None:
                entity, node = via, nodes[via]
                ntype = types.resolved(node.type)
                name, rest = args[2], args[3:]
            elif name in ntype.capabilities and name not in ntype.properties and name not in ntype.attributes:
                cdef = ntype.capabilities[name]
                ctype = types.resolved(types.canonical(cdef.type, "capability"), "capability") \
                    if types.has("capability", cdef.type) else None
                known = dict(ctype.properties if ctype else {})
                known.update(cdef.properties)
                if fname == "get_attribute" and ctype:
                    known.update(ctype.attributes)
                if args[2] not in known:
                    sink.error("FUNCTION_UNKNOWN_PROPERTY", f"{fname}: capability '{name}' of node '{entity}' has no "
                               f"{'property' if fname == 'get_property' else 'attribute'} '{args[2]}'", pos, path,
                               did_you_mean(args[2], known))
                return
        if fname == "get_property":
            pdef = ntype.properties.get(name)
            if pdef is None:
                sink.error("FUNCTION_UNKNOWN_PROPERTY", f"get_property: node '{entity}' has no property '{name}'",
                           pos, path, did_you_mean(name, ntype.properties))
                return
            _check_nested(template, pdef, rest, f"property '{name}' of node '{entity}'", pos, path, sink)
        else:
            if name not in ntype.attributes and not ntype.metadata.get("strato.open_attributes"):
                sink.warning("FUNCTION_UNKNOWN_ATTRIBUTE", f"get_attribute: node type '{node.type}' declares no "
                             f"attribute '{name}'; its value is known only if the backend reports it", pos, path,
                             did_you_mean(name, ntype.attributes))
        return
    if fname == "get_operation_output":
        if not isinstance(args, list) or len(args) != 4 or not all(isinstance(a, str) for a in args):
            sink.error("FUNCTION_BAD_ARGS", "get_operation_output needs [node, interface, operation, output]",
                       pos, path)
            return
        entity = _entity(template, args[0], self_node, target, fname, pos, path, sink)
        if entity is None:
            return
        ntype = types.resolved(nodes[entity].type)
        iface = ntype.interfaces.get(args[1])
        if iface is None:
            sink.error("FUNCTION_UNKNOWN_INTERFACE", f"get_operation_output: node '{entity}' has no interface "
                       f"'{args[1]}'", pos, path, did_you_mean(args[1], ntype.interfaces))
            return
        ops = dict(types.interface_operations(iface.type))
        ops.update(iface.operations)
        if args[2] not in ops:
            sink.error("FUNCTION_UNKNOWN_OPERATION", f"get_operation_output: interface '{args[1]}' of node "
                       f"'{entity}' has no operation '{args[2]}'", pos, path, did_you_mean(args[2], ops))
            return
        if (args[1], args[2]) not in nodes[entity].operations and not ops[args[2]].implementation:
            sink.warning("FUNCTION_NO_OPERATION", f"get_operation_output: node '{entity}' does not implement "
                         f"{args[1]}.{args[2]}, so it produces no outputs", pos, path)
        return
    if fname == "concat":
        if not isinstance(args, list):
            sink.error("FUNCTION_BAD_ARGS", "concat needs a list of values", pos, path)
        return
    if fname == "join":
        if not isinstance(args, list) or not 1 <= len(args) <= 2 or not isinstance(args[0], (list, dict)) \
                or (len(args) == 2 and not isinstance(args[1], str)):
            sink.error("FUNCTION_BAD_ARGS", "join needs [list_of_strings] or [list_of_strings, delimiter]", pos, path)
        return
    if fname == "token":
        if not isinstance(args, list) or len(args) != 3 or not isinstance(args[1], str) \
                or not (isinstance(args[2], int) and not isinstance(args[2], bool)):
            sink.error("FUNCTION_BAD_ARGS", "token needs [string, separators, index]", pos, path)


def _check_nested(template: Template, pdef: PropertyDef, steps: list, what: str, pos: Position, path: str,
                  sink: DiagnosticSink) -> None:
    """A nested path into a property whose data type is known: each field must exist."""
    types = template.types
    schema: Any = pdef.schema
    for step in steps:
        if schema is None:
            return
        vtype = schema.type
        if vtype == "list":
            if not (isinstance(step, int) and not isinstance(step, bool)):
                sink.error("FUNCTION_BAD_PATH", f"{what} is a list; '{step}' is not an index", pos, path)
                return
            schema = schema.entry_schema
        elif vtype == "map":
            schema = schema.entry_schema
        elif types.has("data", vtype):
            dtype = types.resolved(types.canonical(vtype, "data"), "data")
            if dtype.primitive or not dtype.properties:
                return
            field = dtype.properties.get(step)
            if field is None:
                sink.error("FUNCTION_BAD_PATH", f"{what} ({vtype}) has no field '{step}'", pos, path,
                           did_you_mean(step, dtype.properties))
                return
            schema = field.schema
            what = f"field '{step}' of {what}"
        else:
            if vtype not in ("any",):
                sink.error("FUNCTION_BAD_PATH", f"{what} is a {vtype}; it has no element '{step}'", pos, path)
            return


# --- inputs for a build ------------------------------------------------------------------------

def parse_input_value(raw: str, itype: str) -> Any:
    """Convert a command-line `--input K=V` string to the input's declared type."""
    if itype == "integer":
        return int(raw)
    if itype == "float":
        return float(raw)
    if itype == "boolean":
        low = raw.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(raw)
    if itype in ("list", "map", "range"):
        return json.loads(raw)
    return raw


def resolve_inputs(template: Template, given: dict[str, Any], source: str = "<command line>") -> dict[str, Any]:
    """Input values for a build: given ones converted and checked against types and constraints, defaults for the rest."""
    sink = DiagnosticSink()
    values: dict[str, Any] = {}
    cli_pos = Position(source)
    types = template.types
    for name, raw in given.items():
        idef = template.inputs.get(name)
        if idef is None:
            sink.error("INPUT_UNKNOWN", f"the descriptor declares no input '{name}'", cli_pos,
                       f"topology_template.inputs.{name}", did_you_mean(name, template.inputs))
            continue
        value = raw
        itype = idef.type
        if types is not None and types.has("data", itype):
            dtype = types.resolved(types.canonical(itype, "data"), "data")
            itype = dtype.primitive or "map"
        if isinstance(raw, str) and itype not in ("string", "any", "version", "timestamp") \
                and not itype.startswith("scalar-unit."):
            try:
                value = parse_input_value(raw, itype)
            except (ValueError, TypeError):
                sink.error("INPUT_TYPE", f"input '{name}' must be of type {idef.type}, got '{raw}'",
                           idef.position or cli_pos, idef.path)
                continue
        problems = validate_value(value, _input_schema(idef), types) if types is not None else \
            [("", p) for p in [check_value(value, idef.type)] if p]
        if problems:
            for subpath, problem in problems:
                sink.error("INPUT_TYPE", f"input '{name}'{subpath} {problem}", idef.position or cli_pos, idef.path)
            continue
        values[name] = value
    for name, idef in template.inputs.items():
        if name in values or name in given:
            continue
        if idef.has_default:
            values[name] = idef.default
        elif idef.required:
            sink.error("INPUT_MISSING", f"input '{name}' is required and has no default; pass --input {name}=VALUE",
                       idef.position or cli_pos, idef.path)
        else:
            values[name] = None
    sink.raise_if_errors()
    return values


def descriptor_dir(template: Template) -> str:
    return os.path.dirname(os.path.abspath(template.file))


__all__ = ["load_template", "load_template_text", "resolve_inputs", "parse_input_value", "STANDARD_OPERATIONS"]
