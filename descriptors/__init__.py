"""Strato's descriptor language: YAML loading with positions, types, functions and validation."""

from descriptors.diagnostics import DescriptorError, Diagnostic, Position
from descriptors.loader import load_template, load_template_text, resolve_inputs
from descriptors.template import InputDef, NodeTemplate, OutputDef, Requirement, Template

__all__ = ["DescriptorError", "Diagnostic", "Position", "load_template", "load_template_text",
           "resolve_inputs", "InputDef", "NodeTemplate", "OutputDef", "Requirement", "Template"]
