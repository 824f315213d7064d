"""YAML loading that keeps every value's file:line:col and refuses hostile documents (alias bombs, deep nesting)."""

from __future__ import annotations

from typing import Any

import yaml

from descriptors.diagnostics import DescriptorError, Diagnostic, Position, join_path

try:  # libyaml's C parser is ~10x faster; positions are the same
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python fallback
    _Loader = yaml.SafeLoader

MAX_DEPTH = 100
# Expanding aliases may cost at most this many nodes beyond the document's own nodes:
# enough for any honest use of anchors, far below a "billion laughs" expansion.
MAX_ALIAS_EXPANSION = 100_000
MAX_BYTES = 64 * 1024 * 1024


class YMap(dict):
    """A mapping that remembers where it, its keys and its scalar values stand."""

    __slots__ = ("pos", "key_pos", "val_pos")

    def __init__(self, pos: Position):
        super().__init__()
        self.pos = pos
        self.key_pos: dict[str, Position] = {}
        self.val_pos: dict[str, Position] = {}

    def position_of(self, key) -> Position:
        value = self.get(key)
        if isinstance(value, (YMap, YList)):
            return value.pos
        return self.val_pos.get(key) or self.key_pos.get(key) or self.pos

    def key_position(self, key) -> Position:
        return self.key_pos.get(key, self.pos)


class YList(list):
    """A sequence that remembers where it and each item stand."""

    __slots__ = ("pos", "item_pos")

    def __init__(self, pos: Position):
        super().__init__()
        self.pos = pos
        self.item_pos: list[Position] = []

    def position_of(self, index: int) -> Position:
        if 0 <= index < len(self.item_pos):
            return self.item_pos[index]
        return self.pos


def position_of(container, key, default: Position | None = None) -> Position:
    """Position of container[key] when known, else of the container, else default."""
    if isinstance(container, (YMap, YList)):
        return container.position_of(key)
    return default or Position("<unknown>")


class _Converter:
    def __init__(self, file: str, distinct_nodes: int):
        self.file = file
        self.budget = distinct_nodes + MAX_ALIAS_EXPANSION
        self.seen = 0
        self.constructor = yaml.constructor.SafeConstructor()
        self.diagnostics: list[Diagnostic] = []

    def pos(self, node) -> Position:
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)

    def fail(self, code: str, message: str, node, path: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(code, message, self.pos(node), path, hint))

    def convert(self, node, path: str, depth: int) -> Any:
        self.seen += 1
        if self.seen > self.budget:
            raise _Refused("YAML_ALIAS_BOMB", "the document expands to too many values through aliases "
                           "(an 'alias bomb'); refusing to expand it", self.pos(node), path)
        if depth > MAX_DEPTH:
            raise _Refused("YAML_TOO_DEEP", f"values are nested more than {MAX_DEPTH} levels deep",
                           self.pos(node), path)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            result = YList(self.pos(node))
            for i, item in enumerate(node.value):
                result.append(self.convert(item, join_path(path, i), depth + 1))
                result.item_pos.append(self.pos(item))
            return result
        return self._scalar(node, path)

    def _mapping(self, node, path: str, depth: int) -> YMap:
        result = YMap(self.pos(node))
        pairs = list(node.value)
        # YAML merge keys ('<<: *base') are the usual honest use of aliases in configs.
        merged: list[tuple] = []
        for key_node, value_node in pairs:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        merged.extend(src.value)
                    else:
                        self.fail("YAML_BAD_MERGE", "a '<<' merge key needs a mapping to merge", src, path)
            else:
                merged.append((key_node, value_node))
        explicit = {k.value for k, _ in merged[len(merged) - len(pairs):] if isinstance(k, yaml.ScalarNode)}
        for key_node, value_node in merged:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail("YAML_BAD_KEY", "a mapping key must be a plain value, not a list or mapping",
                          key_node, path)
                continue
            key = key_node.value
            if key in result:
                if key_node.start_mark is not None and key in explicit and key in result.key_pos \
                        and result.key_pos[key].line != key_node.start_mark.line + 1:
                    self.fail("YAML_DUPLICATE_KEY", f"key '{key}' appears more than once in this mapping",
                              key_node, join_path(path, key))
                    continue
            child_path = join_path(path, key)
            result[key] = self.convert(value_node, child_path, depth + 1)
            result.key_pos[key] = self.pos(key_node)
            if isinstance(value_node, yaml.ScalarNode):
                result.val_pos[key] = self.pos(value_node)
        return result

    def _scalar(self, node, path: str) -> Any:
        tag = node.tag
        if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            return node.value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return self.constructor.construct_yaml_bool(node)
        if tag == "tag:yaml.org,2002:int":
            value = node.value.replace("_", "")
            if len(value) > 4000:
                self.fail("YAML_HUGE_NUMBER", "this number has too many digits", node, path)
                return 0
            return self.constructor.construct_yaml_int(node)
        if tag == "tag:yaml.org,2002:float":
            return self.constructor.construct_yaml_float(node)
        self.fail("YAML_UNKNOWN_TAG", f"unsupported YAML tag '{tag}'", node, path)
        return node.value


class _Refused(Exception):
    def __init__(self, code, message, position, path):
        super().__init__(message)
        self.diagnostic = Diagnostic(code, message, position, path)


def _count_nodes(root) -> int:
    """Number of distinct YAML nodes (aliases point at nodes already counted)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append(k)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise DescriptorError([Diagnostic("YAML_ENCODING", "the file is not valid UTF-8 text "
                                          f"(byte 0x{data[exc.start]:02x})", Position(file, line, col))])


def parse_yaml(text: str | bytes, file: str = "<string>") -> Any:
    """Parse one YAML document into YMap/YList/scalars with positions; raise DescriptorError on bad YAML."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise DescriptorError([Diagnostic("YAML_TOO_LARGE", f"the file is larger than {MAX_BYTES} bytes",
                                              Position(file))])
        text = _decode(text, file)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file)
        problem = exc.problem or exc.context or "invalid YAML"
        raise DescriptorError([Diagnostic("YAML_SYNTAX", f"YAML syntax error: {problem}", pos)]) from None
    except yaml.YAMLError as exc:
        raise DescriptorError([Diagnostic("YAML_SYNTAX", f"YAML error: {exc}".splitlines()[0],
                                          Position(file))]) from None
    except RecursionError:
        raise DescriptorError([Diagnostic("YAML_TOO_DEEP", "values are nested too deeply", Position(file))]) from None
    if root is None:
        return None
    converter = _Converter(file, _count_nodes(root))
    try:
        value = converter.convert(root, "", 0)
    except _Refused as exc:
        raise DescriptorError(converter.diagnostics + [exc.diagnostic]) from None
    if converter.diagnostics:
        raise DescriptorError(converter.diagnostics)
    return value


def load_yaml_file(path: str) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a diagnostic, not a traceback."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise DescriptorError([Diagnostic("FILE_NOT_FOUND", "file not found", Position(path))]) from None
    except IsADirectoryError:
        raise DescriptorError([Diagnostic("FILE_UNREADABLE", "this is a directory, not a file",
                                          Position(path))]) from None
    except OSError as exc:
        raise DescriptorError([Diagnostic("FILE_UNREADABLE", f"cannot read the file: {exc.strerror}",
                                          Position(path))]) from None
    return parse_yaml(data, path)


def to_plain(value: Any) -> Any:
    """Strip positions: YMap/YList -> dict/list (for JSON and hashing)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
