"""topology_template.outputs."""

from __future__ import annotations

from descriptors.diagnostics import DiagnosticSink, join_path
from descriptors.sections.common import secret_flag, section, unknown_keys
from descriptors.template import OutputDef, Template

OUTPUT_KEYS = ("value", "description", "type", "required", "status", "metadata", "constraints", "entry_schema",
               "secret")

def parse_outputs(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.outputs"
    outputs = section(topo, "outputs", sink, base)
    for name, body in outputs.items():
        path = join_path(base, name)
        pos = outputs.key_position(name)
        if not isinstance(body, dict) or "value" not in body:
            sink.error("OUTPUT_NO_VALUE", f"output '{name}' needs a 'value'", pos, path)
            continue
        unknown_keys(body, OUTPUT_KEYS, sink, path, f"output '{name}'")
        template.outputs[name] = OutputDef(name=name, value=body["value"],
                                           description=str(body.get("description") or ""), position=pos, path=path,
                                           secret=secret_flag(body, sink, path, f"output '{name}'"))
