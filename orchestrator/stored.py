"""What an infrastructure was built from, read back from the state store: its record, descriptor and inputs."""

from __future__ import annotations

import os

from descriptors.diagnostics import DescriptorError
from descriptors.loader import load_template, resolve_inputs
from descriptors.template import Template
from orchestrator.errors import NotFound
from orchestrator.state import InfraRecord, StateStore


def require_infra(store: StateStore, name: str) -> InfraRecord:
    """The infrastructure's record, with every row of it readable: a command that would write refuses damaged
    state (StateDamaged naming the row) before it writes anything."""
    infra = store.get_infra(name)
    if infra is None:
        known = ", ".join(i.name for i in store.list_infras()) or "none"
        raise NotFound(f"no infrastructure named '{name}' in {store.path} (known: {known})")
    store.instances(name)
    return infra


def stored_template(infra: InfraRecord) -> Template | None:
    """The descriptor an infrastructure was built from, when it is still there and valid."""
    if not infra.descriptor or not os.path.isfile(infra.descriptor):
        return None
    try:
        # Strato accepted this descriptor when it was built (confined then if it came over HTTP), so
        # its `../` imports from a CLI build are read again as they were then.
        return load_template(infra.descriptor, confined=False)
    except DescriptorError:
        return None


def stored_inputs(template: Template, infra: InfraRecord, strict: bool = False) -> dict:
    """The inputs an infrastructure was built with; `strict`: raise what is wrong with them (a secret input
    whose sealed value cannot be opened) rather than take them as stored."""
    try:
        return resolve_inputs(template, {k: v for k, v in infra.inputs.items() if k in template.inputs})
    except DescriptorError:
        if strict:
            raise
        return dict(infra.inputs)
