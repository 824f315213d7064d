"""Secret inputs: which inputs are secret, and masking what derives from them (outputs, error texts, instance data)."""

from __future__ import annotations

import re
from typing import Any

# Names that say "credential". The REST API masks values under such keys too; an input so named is secret
# unless its definition says `secret: false`.
SECRET_NAME = re.compile(r"(password|passwd|secret|token|credential|private_key|access_key|api_key)", re.I)
MASK = "***"
# Shorter secret values are not searched for in free text: masking every "ab" in an error would garble it,
# and what flows through functions is masked by tracing, whatever its length.
MIN_SEARCHED = 4


def is_secret_input(idef) -> bool:
    """An input marked `secret: true`; unless marked `secret: false`, also a credential (a data type named
    like tosca.datatypes.Credential) and a string input named like one (db_password, api_token)."""
    if idef.secret is not None:
        return idef.secret
    if "credential" in str(idef.type).lower():
        return True
    return idef.type in ("string", "any") and bool(SECRET_NAME.search(idef.name))


def secret_input_names(template) -> frozenset[str]:
    return frozenset(name for name, idef in template.inputs.items() if is_secret_input(idef))


class Unreadable:
    """A stored secret input whose encrypted value cannot be opened (its key file is missing or another one)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return MASK


class Redactor:
    """Replaces the text of secret values wherever it appears in strings, mappings and lists."""

    def __init__(self, secret_values):
        found: set[str] = set()
        for value in secret_values:
            _strings(value, found)
        # longest first, so a secret that contains another is masked whole
        self.needles = sorted((s for s in found if len(s) >= MIN_SEARCHED), key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.needles)

    def text(self, text: str) -> str:
        for needle in self.needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return text

    def value(self, value: Any) -> Any:
        """A copy of value with every secret text masked (keys of mappings included)."""
        if not self.needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def found_in(self, value: Any) -> bool:
        return bool(self.needles) and self.value(value) != value


def redactor(inputs: dict, names) -> Redactor:
    """A Redactor for the values of the named inputs."""
    return Redactor(inputs.get(name) for name in names)


def redactor_for(template, inputs: dict) -> Redactor:
    """A Redactor for the values of the template's secret inputs."""
    return redactor(inputs, secret_input_names(template))


def output_value(output, resolver, redactor: Redactor, reveal: bool = False) -> Any:
    """An output's value; MASK when it derives from a secret input (traced through functions, or holding a
    secret's text, as an attribute an instance copied from a secret property does), or is marked `secret: true`.
    `secret: false` on the output shows it; `reveal` shows every value (for an explicit request)."""
    value, used = resolver.resolve_traced(output.value, "")
    if reveal or output.secret is False or value is None:
        return value
    if output.secret or used or redactor.found_in(value):
        return MASK
    return value


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.add(str(value))
