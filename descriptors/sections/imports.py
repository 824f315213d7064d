"""The document level: tosca_definitions_version, top-level keys and imports (with their confinement)."""

from __future__ import annotations

import os
from typing import Any

from descriptors.diagnostics import DescriptorError, DiagnosticSink, Position, did_you_mean
from descriptors.sections.common import path_inside, unknown_keys
from descriptors.types import TypeRegistry, builtin_registry
from descriptors.yamlpos import load_yaml_file, position_of

VERSIONS = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_1", "tosca_simple_yaml_1_2",
            "tosca_simple_yaml_1_3", "tosca_2_0", "tosca_simple_profile_for_nfv_1_0_0")
TOP_KEYS = ("tosca_definitions_version", "description", "metadata", "imports", "repositories",
            "dsl_definitions", "topology_template", "node_types", "relationship_types", "capability_types",
            "data_types", "policy_types", "group_types", "interface_types", "artifact_types", "namespace")

MAX_IMPORTS = 200
ALLOW_IMPORTS_ENV = "STRATO_IMPORT_PATH"  # extra directories imports may read from (os.pathsep-separated)

class DocumentLoader:
    """One load: the sink, the type registry and the template being filled."""

    def __init__(self, file: str, import_roots: list[str] | None, confined: bool = True):
        self.file = file
        self.confined = confined
        self.sink = DiagnosticSink()
        self.types: TypeRegistry = builtin_registry().copy()
        roots = [os.path.dirname(os.path.abspath(file))] + list(import_roots or [])
        roots += [p for p in os.environ.get(ALLOW_IMPORTS_ENV, "").split(os.pathsep) if p]
        self.roots = [os.path.realpath(r) for r in roots]
        self.imported: list[str] = []
        self.root_dir = os.path.dirname(os.path.abspath(file))

    # --- documents and imports ----------------------------------------------------------
    def document(self, doc: Any, file: str, chain: tuple[str, ...], is_main: bool) -> None:
        sink = self.sink
        file_pos = Position(file, 1, 1)
        unknown_keys(doc, TOP_KEYS, sink, "", "the descriptor" if is_main else f"imported file {file}")
        version = doc.get("tosca_definitions_version")
        if version is None and not is_main:  # type files imported by TOSCA 1.0 templates often omit it
            sink.warning("IMPORT_VERSION_MISSING", f"imported file {os.path.basename(file)} has no "
                         "'tosca_definitions_version'; it is read as the importing template's version", file_pos,
                         "tosca_definitions_version")
        elif version is None:
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
        repositories = doc.get("repositories") if isinstance(doc.get("repositories"), dict) else {}
        for i, item in enumerate(items):
            pos = position_of(items, i, Position(file))
            path = f"imports[{i}]"
            spec = _import_spec(item, sink, path)
            target = spec.get("file")
            if not isinstance(target, str) or not target:
                sink.error("IMPORT_BAD", "each import must be a file name or a mapping with 'file'", pos, path)
                continue
            prefix = spec.get("namespace_prefix")
            if prefix is not None and (not isinstance(prefix, str) or not prefix):
                sink.error("IMPORT_BAD", "'namespace_prefix' must be a name", pos, path)
                continue
            full = self._locate(target, spec.get("repository"), repositories, base, pos, path)
            if full is None:
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
            first = len(self.types.local)
            self.document(sub, full, chain + (full,), is_main=False)
            if prefix:
                self.types.add_prefix(prefix, self.types.local[first:])

    def _locate(self, target: str, repository: Any, repositories: dict, base: str, pos: Position,
                path: str) -> str | None:
        """The real path of an import: relative to the importing file, then to the root template's directory
        (as other TOSCA tools do); a repository given as a local directory is searched first."""
        sink = self.sink
        bases = [os.path.realpath(base), os.path.realpath(self.root_dir)]  # Strato's own directories
        if repository is not None and not isinstance(repository, str):
            sink.error("IMPORT_BAD", "'repository' must name a repository of 'repositories'", pos, path)
            return None
        if repository is not None:
            if repository not in repositories:
                sink.error("IMPORT_UNKNOWN_REPOSITORY", f"import '{target}' names unknown repository "
                           f"'{repository}'", pos, path, did_you_mean(repository, repositories) or
                           "declare it under 'repositories'")
                return None
            url = repositories[repository]
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url.startswith("file://"):
                url = url[len("file://"):]
            if isinstance(url, str) and "://" not in url:
                bases.insert(0, os.path.join(bases[0], url))
        elif "://" in target:  # Strato downloads nothing; a copy saved beside the descriptor stands in
            name = target.rstrip("/").rsplit("/", 1)[-1]
            if not any(os.path.isfile(os.path.join(b, name)) for b in bases):
                sink.error("IMPORT_REMOTE", f"import '{target}' is a URL; only local files can be imported", pos,
                           path, f"download it next to the descriptor as {name}")
                return None
            sink.warning("IMPORT_REMOTE_LOCAL_COPY", f"import '{target}' is a URL; the copy '{name}' beside the "
                         "descriptor is used", pos, path)
            target = name
        if "://" in target:
            target = target.split("://", 1)[1].lstrip("/")
        if self.confined:  # decided from the names alone: whether a file outside exists must not show
            inside = [path_inside(target, b, self.roots) for b in dict.fromkeys(bases)]
            if not any(inside) or (repository is not None and inside[0] is None):
                return self._outside(target, pos, path)
            candidates = [os.path.realpath(c) for c in inside if c]
        else:
            candidates = [os.path.realpath(os.path.join(b, target)) for b in dict.fromkeys(bases)]
        candidates += _written_from_parent(target, candidates, bases)
        if not any(os.path.isfile(c) for c in candidates) and not self.confined and repository is None:
            found = _beside_a_parent(target, self.root_dir)
            if found:
                self.sink.warning("IMPORT_FROM_PARENT", f"import '{target}' is not beside the importing file; "
                                  f"'{found}' (written from a parent directory) is used",
                                  pos, path, "write the path relative to the importing file")
                return found
        full = next((c for c in candidates if os.path.isfile(c)), candidates[0])
        if repository is not None and not os.path.isfile(full):
            sink.error("IMPORT_REMOTE", f"import '{target}' comes from repository '{repository}', which is not a "
                       "local directory, and no such file lies beside the descriptor", pos, path,
                       "download the repository's file next to the descriptor")
            return None
        if self.confined and not any(full == r or full.startswith(r + os.sep) for r in self.roots):
            return self._outside(target, pos, path)  # a link inside the tree that leads out of it
        return full

    def _outside(self, target: str, pos: Position, path: str) -> None:
        self.sink.error("IMPORT_OUTSIDE", f"import '{target}' lies outside the descriptor's directory tree", pos,
                        path, f"move it under {self.roots[0]} or allow its directory in ${ALLOW_IMPORTS_ENV}")


def _written_from_parent(target: str, candidates: list[str], bases: list[str]) -> list[str]:
    """Where an import written relative to a parent of the importing file's directory points, as tosca-parser
    reads it: 'Definitions/types.yaml' from a file in .../Definitions/ is .../Definitions/types.yaml."""
    folder, name = os.path.split(os.path.normpath(target))
    if not folder or os.path.isabs(target) or folder.startswith(".."):
        return []
    found = []
    for base in dict.fromkeys(bases):
        if (os.sep + os.path.realpath(base)).endswith(os.sep + folder):
            found.append(os.path.join(os.path.realpath(base), name))
    return [c for c in found if c not in candidates]


PARENT_LEVELS = 2  # how far up from the root template's directory an import path may be written from


def _beside_a_parent(target: str, root_dir: str) -> str | None:
    """An import written relative to a parent of the root template's directory (as templates run from their
    collection's top directory are written, and as tosca-parser then finds them): the first that exists."""
    if os.path.isabs(target) or target.startswith(".."):
        return None
    here = os.path.realpath(root_dir)
    for _ in range(PARENT_LEVELS):
        here = os.path.dirname(here)
        full = os.path.join(here, target)
        if os.path.isfile(full):
            return os.path.realpath(full)
    return None


IMPORT_KEYS = ("file", "repository", "namespace_prefix", "namespace_uri")


def _import_spec(item: Any, sink: DiagnosticSink, path: str) -> dict:
    """An import in any of its forms ('file.yaml', {file: ...}, TOSCA 1.0's {name: file} or {name: {file: ...}})
    as a mapping with 'file' and maybe 'repository' and 'namespace_prefix'."""
    if isinstance(item, str):
        return {"file": item}
    if not isinstance(item, dict):
        return {}
    if "file" in item:
        unknown_keys(item, IMPORT_KEYS, sink, path, "an import")
        return item
    if len(item) == 1:
        name, body = next(iter(item.items()))
        if isinstance(body, dict):
            unknown_keys(body, IMPORT_KEYS, sink, f"{path}.{name}", "an import")
            return body
        return {"file": body}
    return {}
