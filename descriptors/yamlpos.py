"""YAML loading that keeps every value's file:line:col and refuses hostile documents (alias bombs, deep nesting)."""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.events import (DocumentEndEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent,
                         SequenceStartEvent, StreamEndEvent)

from descriptors.diagnostics import DescriptorError, Diagnostic, Position

try:  # libyaml's C parser is ~10x faster; positions are the same
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python fallback
    _Loader = yaml.SafeLoader

MAX_DEPTH = 100
# Expanding aliases may cost at most this many nodes beyond the document's own nodes:
# enough for any honest use of anchors, far below a "billion laughs" expansion.
MAX_ALIAS_EXPANSION = 100_000
MAX_BYTES = 64 * 1024 * 1024


_COL_BITS = 27  # MAX_BYTES < 2**27, so a column always fits
_COL_MASK = (1 << _COL_BITS) - 1


def _pack(mark) -> int:
    """A parser mark as one int (line and column, 0-based).

    Ints are invisible to the cyclic garbage collector, unlike the parser's Mark objects;
    keeping hundreds of thousands of those alive made every collection slow.
    """
    return (mark.line << _COL_BITS) | mark.column


def _mark_position(file: str, mark: int) -> Position:
    return Position(file, (mark >> _COL_BITS) + 1, (mark & _COL_MASK) + 1)


class YMap(dict):
    """A mapping that remembers where it, its keys and its scalar values stand.

    Positions are kept as packed ints (see _pack) and turned into Position objects only when
    asked for: a descriptor has hundreds of thousands of values, few of which are ever
    reported, and building a Position for each one was most of the cost of loading.
    """

    __slots__ = ("_pos", "_mark", "file", "key_marks", "val_marks")

    def __init__(self, pos: Position | None = None, file: str = "", mark=None):
        super().__init__()
        self._pos = pos
        self._mark = mark
        self.file = pos.file if pos is not None else file
        self.key_marks: dict = {}
        self.val_marks: dict = {}

    @property
    def pos(self) -> Position:
        if self._pos is None:
            self._pos = _mark_position(self.file, self._mark) if self._mark is not None else Position(self.file)
        return self._pos

    def position_of(self, key) -> Position:
        value = self.get(key)
        if isinstance(value, (YMap, YList)):
            return value.pos
        mark = self.val_marks.get(key) or self.key_marks.get(key)
        return _mark_position(self.file, mark) if mark is not None else self.pos

    def key_position(self, key) -> Position:
        mark = self.key_marks.get(key)
        return _mark_position(self.file, mark) if mark is not None else self.pos


class YList(list):
    """A sequence that remembers where it and each item stand."""

    __slots__ = ("_pos", "_mark", "file", "item_marks")

    def __init__(self, pos: Position | None = None, file: str = "", mark=None):
        super().__init__()
        self._pos = pos
        self._mark = mark
        self.file = pos.file if pos is not None else file
        self.item_marks: list = []

    @property
    def pos(self) -> Position:
        if self._pos is None:
            self._pos = _mark_position(self.file, self._mark) if self._mark is not None else Position(self.file)
        return self._pos

    def position_of(self, index: int) -> Position:
        if isinstance(index, int) and 0 <= index < len(self.item_marks):
            return _mark_position(self.file, self.item_marks[index])
        return self.pos


def position_of(container, key, default: Position | None = None) -> Position:
    """Position of container[key] when known, else of the container, else default."""
    if isinstance(container, (YMap, YList)):
        return container.position_of(key)
    return default or Position("<unknown>")


class _FastLoader(_Loader):
    """libyaml's loader with a memo on implicit tag resolution.

    PyYAML resolves every plain scalar's tag in Python with regular expressions; a
    descriptor repeats the same few keys and values thousands of times, so remembering the
    answer halves the cost of composing a large document.
    """

    _memo: dict = {}

    def resolve(self, kind, value, implicit):
        key = (kind, value, implicit)
        try:
            return self._memo[key]
        except KeyError:
            tag = _Loader.resolve(self, kind, value, implicit)
            if len(self._memo) > 50_000:  # bounded: a hostile document must not grow it forever
                self._memo.clear()
            self._memo[key] = tag
            return tag
        except TypeError:  # unhashable value: resolve without the memo
            return _Loader.resolve(self, kind, value, implicit)


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Converter:
    def __init__(self, file: str):
        self.file = file
        # Expanding an alias of a mapping or sequence converts it again; those repeats are
        # what a "billion laughs" document multiplies, so they are what is budgeted.
        self.budget = MAX_ALIAS_EXPANSION
        self.converted: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()
        self.diagnostics: list[Diagnostic] = []

    def pos(self, node) -> Position:
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)

    def fail(self, code: str, message: str, node, path: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(code, message, self.pos(node), path, hint))

    def _count(self, node, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Refused("YAML_TOO_DEEP", f"values are nested more than {MAX_DEPTH} levels deep",
                           self.pos(node), path)
        ident = id(node)
        if ident in self.converted:
            self.budget -= 1 + len(node.value)
            if self.budget < 0:
                raise _Refused("YAML_ALIAS_BOMB", "the document expands to too many values through aliases "
                               "(an 'alias bomb'); refusing to expand it", self.pos(node), path)
        else:
            self.converted.add(ident)

    def convert(self, node, path: str, depth: int) -> Any:
        cls = node.__class__
        if cls is yaml.ScalarNode:
            return self._scalar(node, path)
        self._count(node, path, depth)
        if cls is yaml.MappingNode:
            return self._mapping(node, path, depth)
        result = YList(None, self.file, _pack(node.start_mark))
        marks = result.item_marks
        for i, item in enumerate(node.value):
            result.append(self.convert(item, f"{path}[{i}]", depth + 1))
            marks.append(_pack(item.start_mark))
        return result

    def _mapping(self, node, path: str, depth: int) -> YMap:
        mark = node.start_mark
        result = YMap(None, self.file, (mark.line << _COL_BITS) | mark.column)
        key_marks, val_marks = result.key_marks, result.val_marks
        prefix = f"{path}." if path else ""
        scalar = yaml.ScalarNode
        for key_node, value_node in node.value:
            if key_node.__class__ is not scalar:
                self.fail("YAML_BAD_KEY", "a mapping key must be a plain value, not a list or mapping",
                          key_node, path)
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == _MERGE:
                return self._merged_mapping(node, path, depth)
            if key in result:
                self.fail("YAML_DUPLICATE_KEY", f"key '{key}' appears more than once in this mapping",
                          key_node, prefix + key)
                continue
            if value_node.__class__ is scalar:
                result[key] = self._scalar(value_node, prefix + key)
                mark = value_node.start_mark
                val_marks[key] = (mark.line << _COL_BITS) | mark.column
            else:
                result[key] = self.convert(value_node, prefix + key, depth + 1)
            mark = key_node.start_mark
            key_marks[key] = (mark.line << _COL_BITS) | mark.column
        return result

    def _merged_mapping(self, node, path: str, depth: int) -> YMap:
        """A mapping with '<<' merge keys: explicit keys win over merged ones."""
        result = YMap(None, self.file, _pack(node.start_mark))
        key_marks, val_marks = result.key_marks, result.val_marks
        prefix = f"{path}." if path else ""
        for key_node, value_node in self._merged(node.value, path):
            if key_node.__class__ is not yaml.ScalarNode:
                self.fail("YAML_BAD_KEY", "a mapping key must be a plain value, not a list or mapping",
                          key_node, path)
                continue
            key = key_node.value
            merged = getattr(key_node, "_strato_merged", False)
            if key in result:
                if not merged:
                    self.fail("YAML_DUPLICATE_KEY", f"key '{key}' appears more than once in this mapping",
                              key_node, prefix + key)
                continue
            if value_node.__class__ is yaml.ScalarNode:
                result[key] = self._scalar(value_node, prefix + key)
                val_marks[key] = _pack(value_node.start_mark)
            else:
                result[key] = self.convert(value_node, prefix + key, depth + 1)
            key_marks[key] = _pack(key_node.start_mark)
        return result

    def _merged(self, pairs, path: str) -> list:
        """YAML merge keys ('<<: *base'), the usual honest use of aliases in configs: explicit keys first."""
        explicit, merged = [], []
        for key_node, value_node in pairs:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if isinstance(src, yaml.MappingNode):
                    self.budget -= len(src.value)
                    if self.budget < 0:
                        raise _Refused("YAML_ALIAS_BOMB", "the document expands to too many values through "
                                       "merge keys; refusing to expand it", self.pos(src), path)
                    for k, v in src.value:
                        if isinstance(k, yaml.ScalarNode):
                            k = yaml.ScalarNode(k.tag, k.value, k.start_mark, k.end_mark, k.style)
                            k._strato_merged = True
                        merged.append((k, v))
                else:
                    self.fail("YAML_BAD_MERGE", "a '<<' merge key needs a mapping to merge", src, path)
        return explicit + merged

    def _scalar(self, node, path: str) -> Any:
        tag = node.tag
        if tag == _STR or tag == _TIMESTAMP:
            return node.value
        if tag == _INT:
            value = node.value.replace("_", "")
            if len(value) > 4000:
                self.fail("YAML_HUGE_NUMBER", "this number has too many digits", node, path)
                return 0
            return self.constructor.construct_yaml_int(node)
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self.constructor.construct_yaml_bool(node)
        if tag == _FLOAT:
            return self.constructor.construct_yaml_float(node)
        self.fail("YAML_UNKNOWN_TAG", f"unsupported YAML tag '{tag}'", node, path)
        return node.value


class _Refused(Exception):
    def __init__(self, code, message, position, path):
        super().__init__(message)
        self.diagnostic = Diagnostic(code, message, position, path)


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise DescriptorError([Diagnostic("YAML_ENCODING", "the file is not valid UTF-8 text "
                                          f"(byte 0x{data[exc.start]:02x})", Position(file, line, col))])


@contextmanager
def no_gc():
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Loading creates hundreds of thousands of containers that are all still alive, so every
    collection the allocations trigger scans them all in vain: with the collector on, loading
    time grows with the square of the document's size.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        settle_young_objects()
        if was_enabled:
            gc.enable()


def settle_young_objects() -> None:
    """Hand the objects just built straight to the collector's oldest generation.

    A loaded descriptor is long-lived data with no cycles to find; left in the youngest
    generation, the first allocation after loading would make the collector scan all of it
    (then again in the middle generation), a cost that grows with the document. gc.freeze()
    followed by gc.unfreeze() moves every tracked object into the oldest generation at once,
    without scanning anything. Skipped when the application keeps frozen objects of its own.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def parse_yaml(text: str | bytes, file: str = "<string>") -> Any:
    """Parse one YAML document into YMap/YList/scalars with positions; raise DescriptorError on bad YAML."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise DescriptorError([Diagnostic("YAML_TOO_LARGE", f"the file is larger than {MAX_BYTES} bytes",
                                              Position(file))])
        text = _decode(text, file)
    with no_gc():
        return _parse_text(text, file)


def _parse_text(text: str, file: str) -> Any:
    try:
        return _parse_events(text, file)
    except (_Fallback, yaml.YAMLError, RecursionError):
        pass  # not a plain document, or a broken one: compose and convert it, diagnostics and all
    return _parse_composed(text, file)


class _Fallback(Exception):
    """The document needs the general path (anchors, aliases, merge keys, tags, deep nesting, problems)."""


_NONE = object()  # no pending key
_BAD = object()  # a plain scalar the general path must handle (and report)
_plain_memo: dict = {}  # plain scalar text -> its value (the same few keys and values repeat a lot)
_resolver = _Loader("")


def _plain_value(value: str) -> Any:
    """The value of a plain (unquoted, untagged) scalar, exactly as _Converter._scalar gives it, or _BAD."""
    tag = _Loader.resolve(_resolver, yaml.ScalarNode, value, (True, False))
    if tag == _STR or tag == _TIMESTAMP:
        return value
    if tag == _NULL:
        return None
    node = yaml.ScalarNode(tag, value)
    constructor = yaml.constructor.SafeConstructor()
    if tag == _INT:
        if len(value.replace("_", "")) > 4000:
            return _BAD
        return constructor.construct_yaml_int(node)
    if tag == _BOOL:
        return constructor.construct_yaml_bool(node)
    if tag == _FLOAT:
        return constructor.construct_yaml_float(node)
    return _BAD


def _parse_events(text: str, file: str) -> Any:
    """The fast path: build YMap/YList straight from libyaml's events, without composing nodes first.

    It handles the plain documents descriptors nearly always are; anything else (an anchor,
    alias, merge key, explicit tag other than str/map/seq, non-scalar or duplicate key, a
    scalar that needs a diagnostic, nesting deeper than MAX_DEPTH, a YAML error, more than
    one document) raises _Fallback or the parser's error, and the caller takes the general
    path, which composes the document and reports exactly as before.
    """
    parser = _Loader(text)
    get = parser.get_event
    scalar_event, map_start, seq_start, map_end, seq_end = (ScalarEvent, MappingStartEvent, SequenceStartEvent,
                                                            MappingEndEvent, SequenceEndEvent)
    ymap, ylist, new_map, new_list = YMap, YList, dict.__new__, list.__new__
    intern = sys.intern
    memo = _plain_memo
    none, bad = _NONE, _BAD
    try:
        get()  # stream start
        if get().__class__ is StreamEndEvent:
            return None  # no document at all
        stack: list = []
        container: Any = None  # the YMap or YList being filled
        is_map = False
        kmarks: Any = None  # the container's key_marks (a mapping)
        vmarks: Any = None  # its val_marks (a mapping) or item_marks (a sequence)
        key: Any = none  # a mapping's key waiting for its value
        kmark = 0
        root: Any = None
        while True:
            ev = get()
            cls = ev.__class__
            if cls is scalar_event:
                if ev.anchor is not None:
                    raise _Fallback
                value = ev.value
                if key is none and is_map:
                    if value in container or value == "<<":
                        raise _Fallback
                    # the same few keys repeat thousands of times: one string each (less memory,
                    # and later lookups with the same literal compare by identity)
                    key = intern(value)
                    mark = ev.start_mark
                    kmark = (mark.line << _COL_BITS) | mark.column
                    continue
                tag = ev.tag
                if tag is None or tag == "!":
                    if ev.implicit[0]:
                        value = memo.get(value, none)
                        if value is none:
                            value = _plain_value(ev.value)
                            if len(memo) > 50_000:  # bounded: a hostile document must not grow it forever
                                memo.clear()
                            memo[ev.value] = value
                        if value is bad:
                            raise _Fallback
                elif tag != _STR:
                    raise _Fallback
                mark = ev.start_mark
                if is_map:
                    container[key] = value
                    vmarks[key] = (mark.line << _COL_BITS) | mark.column
                    kmarks[key] = kmark
                    key = none
                elif container is not None:
                    container.append(value)
                    vmarks.append((mark.line << _COL_BITS) | mark.column)
                else:
                    root = value
            elif cls is map_start or cls is seq_start:
                tag = ev.tag
                if ev.anchor is not None or (tag is not None and tag != "!" and tag != (
                        _MAP if cls is map_start else _SEQ)) or (is_map and key is none) or len(stack) >= MAX_DEPTH:
                    raise _Fallback
                mark = ev.start_mark
                packed = (mark.line << _COL_BITS) | mark.column
                # what YMap(None, file, packed) / YList(None, file, packed) make, without calling __init__
                if cls is map_start:
                    new = new_map(ymap)
                    new.key_marks = new_kmarks = {}
                    new.val_marks = new_vmarks = {}
                else:
                    new = new_list(ylist)
                    new.item_marks = new_vmarks = []
                    new_kmarks = None
                new._pos = None
                new._mark = packed
                new.file = file
                if is_map:
                    container[key] = new
                    kmarks[key] = kmark
                elif container is not None:
                    container.append(new)
                    vmarks.append(packed)
                else:
                    root = new
                stack.append((container, is_map, kmarks, vmarks))
                container, kmarks, vmarks = new, new_kmarks, new_vmarks
                is_map = cls is map_start
                key = none
            elif cls is map_end or cls is seq_end:
                container, is_map, kmarks, vmarks = stack.pop()
                key = none
            elif cls is DocumentEndEvent:
                break
            else:  # an alias
                raise _Fallback
        if get().__class__ is not StreamEndEvent:
            raise _Fallback  # a second document: compose reports it
        return root
    finally:
        parser.dispose()


def _parse_composed(text: str, file: str) -> Any:
    try:
        root = yaml.compose(text, Loader=_FastLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file)
        problem = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in problem:
            # libyaml >= 0.2.5 (bundled with PyYAML >= 6.0.4) has its own nesting limit, reached in the
            # scanner before our converter sees the document: report it as the same refusal as ours.
            raise DescriptorError([Diagnostic("YAML_TOO_DEEP", f"values are nested more than {MAX_DEPTH} "
                                              "levels deep", pos)]) from None
        raise DescriptorError([Diagnostic("YAML_SYNTAX", f"YAML syntax error: {problem}", pos)]) from None
    except yaml.YAMLError as exc:
        raise DescriptorError([Diagnostic("YAML_SYNTAX", f"YAML error: {exc}".splitlines()[0],
                                          Position(file))]) from None
    except RecursionError:
        raise DescriptorError([Diagnostic("YAML_TOO_DEEP", "values are nested too deeply", Position(file))]) from None
    if root is None:
        return None
    converter = _Converter(file)
    try:
        value = converter.convert(root, "", 0)
    except RecursionError:
        raise DescriptorError([Diagnostic("YAML_TOO_DEEP", "values are nested too deeply", Position(file))]) from None
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
