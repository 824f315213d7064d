"""Diagnostics: every user-caused descriptor error with a code, file:line:col, document path and one sentence."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Iterable


@dataclass(frozen=True)
class Position:
    """Where a value stands in its file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass
class Diagnostic:
    """One problem found in a descriptor."""

    code: str
    message: str
    position: Position
    path: str = ""
    hint: str = ""
    severity: str = "error"  # or "warning"

    def format(self) -> str:
        text = f"{self.position}: {self.code}: {self.message}"
        if self.path:
            text += f" (at {self.path})"
        if self.hint:
            text += f"; {self.hint}"
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["file"] = self.position.file
        data["line"] = self.position.line
        data["col"] = self.position.col
        del data["position"]
        return data


class DescriptorError(Exception):
    """Raised when a descriptor cannot be used; carries all diagnostics found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class DiagnosticSink:
    """Collects diagnostics so that all errors of a file are reported in one run."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, code: str, message: str, position: Position, path: str = "", hint: str = "") -> None:
        self.items.append(Diagnostic(code, message, position, path, hint))

    def warning(self, code: str, message: str, position: Position, path: str = "", hint: str = "") -> None:
        self.items.append(Diagnostic(code, message, position, path, hint, severity="warning"))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise DescriptorError(self.items)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest known word, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.75)
    return f"did you mean '{close[0]}'?" if close else ""


def join_path(base: str, key) -> str:
    """Extend a document path: a.b + c -> a.b.c, a.b + 0 -> a.b[0]."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else str(key)
