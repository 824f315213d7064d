"""Helpers for descriptor tests: load text and collect diagnostic codes."""

import textwrap

import pytest

from descriptors import DescriptorError, load_template_text

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"


def load(text: str, file: str = "t.yaml"):
    return load_template_text(HEADER + textwrap.dedent(text), file)


def codes(text: str, file: str = "t.yaml") -> list[str]:
    """Error codes of a descriptor that must fail."""
    with pytest.raises(DescriptorError) as info:
        load(text, file)
    return [d.code for d in info.value.diagnostics if d.severity == "error"]


def errors(text: str, file: str = "t.yaml"):
    with pytest.raises(DescriptorError) as info:
        load(text, file)
    return [d for d in info.value.diagnostics if d.severity == "error"]
