"""The types reference, generated from Strato's shipped profiles: `strato types [NAME]` and docs/types.md.

    python -m descriptors.reference      # rewrites docs/types.md (a test fails while it is out of date)

Every type defined in descriptors/profiles/strato*.yaml: its properties (type, required, default),
the attributes it declares (what its driver reports), capabilities, requirements, and the fields of
the data types its properties take (the keys of `health_check`, say).
"""

from __future__ import annotations

import os

from descriptors.driver_attributes import DRIVER_META, OPEN_META, declared_attributes
from descriptors.types import builtin_registry

KINDS = (("node", "Node types"), ("data", "Data types"), ("capability", "Capability types"),
         ("policy", "Policy types"))
DOCS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "types.md")
REGENERATE = "python -m descriptors.reference"


def _strato_defined(tdef) -> bool:
    file = tdef.position.file if tdef.position is not None else ""
    return os.path.basename(file).startswith("strato")


def strato_types() -> list[tuple[str, str]]:
    """(kind, name) of every type Strato's profiles define, in the profiles' order."""
    registry = builtin_registry()
    return [(kind, name) for kind, _ in KINDS for name, tdef in registry.kinds[kind].items() if _strato_defined(tdef)]


def _type_text(pdef) -> str:
    text = pdef.type
    if pdef.entry_schema is not None:
        text += f" of {pdef.entry_schema.type}"
    return text


def _property(pdef) -> dict:
    entry = {"type": _type_text(pdef), "required": bool(pdef.required and not pdef.has_default)}
    if pdef.has_default:
        entry["default"] = pdef.default
    if pdef.constraints:
        entry["constraints"] = [c.describe() for c in pdef.constraints]
    if pdef.description:
        entry["description"] = " ".join(pdef.description.split())
    return entry


def describe(kind: str, name: str) -> dict:
    """One type as plain data (what `strato types NAME --json` prints)."""
    registry = builtin_registry()
    tdef = registry.resolved(name, kind)
    doc = {"name": name, "kind": kind, "derived_from": registry.kinds[kind][name].derived_from,
           "description": " ".join(tdef.description.split()),
           "properties": {p: _property(d) for p, d in tdef.properties.items()}}
    if kind == "node":
        declared = declared_attributes(registry, name)
        doc["driver"] = tdef.metadata.get(DRIVER_META)
        doc["open_attributes"] = bool(tdef.metadata.get(OPEN_META))
        doc["attributes"] = {a: _property(d) for a, d in tdef.attributes.items() if a in declared}
        doc["capabilities"] = {c: cdef.type for c, cdef in tdef.capabilities.items()}
        doc["requirements"] = {r: {"capability": rdef.capability, "node": rdef.node, "relationship": rdef.relationship,
                                   "occurrences": [rdef.occurrences[0], rdef.occurrences[1] or "UNBOUNDED"]}
                               for r, rdef in tdef.requirements.items()}
    if kind == "policy":
        doc["targets"] = list(tdef.targets or [])
    return doc


def find(name: str) -> list[tuple[str, str]]:
    """(kind, full name) of the Strato types `name` names: in full, or by its last part(s) (Process, ai.Trainer)."""
    known = strato_types()
    exact = [(k, n) for k, n in known if n == name]
    return exact or [(k, n) for k, n in known if n.lower().endswith("." + name.lower())]


# -- Markdown ---------------------------------------------------------------------------------------------------

def _anchor(name: str) -> str:
    return "#" + "".join(ch for ch in name.lower() if ch.isalnum() or ch in "-_")


def _linked(text: str, names: set[str]) -> str:
    for word in sorted(names, key=len, reverse=True):
        if text == word or text.endswith(" of " + word):
            return text.replace(word, f"[{word}]({_anchor(word)})")
    return text


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: dict, names: set[str], with_required: bool = True) -> list[str]:
    head = "| name | type | required | default | description |" if with_required else "| name | type | description |"
    lines = [head, "|" + "---|" * (5 if with_required else 3)]
    for pname, p in rows.items():
        typ = _linked(p["type"], names)
        desc = _cell("; ".join(part for part in (p.get("description", ""), ", ".join(p.get("constraints", []))) if part))
        if with_required:
            default = f"`{_cell(p['default'])}`" if "default" in p else ""
            lines.append(f"| `{pname}` | {typ} | {'yes' if p['required'] else 'no'} | {default} | {desc} |")
        else:
            lines.append(f"| `{pname}` | {typ} | {desc} |")
    return lines


def _type_section(doc: dict, names: set[str]) -> list[str]:
    parent = doc["derived_from"]
    lines = [f"### {doc['name']}", "", doc["description"] or "", "",
             f"Derived from {_linked(parent, names) if parent else '(none)'}"
             + (f"; built by the `{doc['driver']}` driver" if doc.get("driver") else "") + "."]
    if doc.get("open_attributes"):
        lines[-1] += " Its instances report attributes of their own choosing too."
    lines.append("")
    for key, label, required in (("properties", "Properties", True), ("attributes", "Attributes", False)):
        if doc.get(key):
            lines += [f"{label}:", ""] + _table(doc[key], names, required) + [""]
    if doc.get("capabilities"):
        caps = ", ".join(f"`{c}` ({_linked(t, names)})" for c, t in doc["capabilities"].items())
        lines += [f"Capabilities: {caps}.", ""]
    if doc.get("requirements"):
        reqs = ", ".join(f"`{r}` ({d['node'] or d['capability']}, occurrences [{d['occurrences'][0]}, "
                         f"{d['occurrences'][1]}])"
                         for r, d in doc["requirements"].items())
        lines += [f"Requirements: {reqs}.", ""]
    if doc.get("targets"):
        lines += [f"Targets: {', '.join(doc['targets'])}.", ""]
    return lines


def markdown() -> str:
    """docs/types.md: every Strato type, from the profiles."""
    types = strato_types()
    names = {n for _, n in types}
    lines = ["# Strato types", "",
             f"Generated from `descriptors/profiles/strato*.yaml` by `{REGENERATE}`; `strato types NAME` shows the "
             "same. Do not edit by hand.", "",
             "Every property is also an attribute (TOSCA 1.3); the attributes listed are those the type declares "
             "besides, which its driver reports once an instance runs (`get_attribute: [node, url]`). Durations "
             "(`strato.datatypes.Seconds`) take a bare number of seconds or a time like `30 s`.", ""]
    for kind, title in KINDS:
        of_kind = [n for k, n in types if k == kind]
        if of_kind:
            lines += [f"## {title}", ""] + [f"- [{n}]({_anchor(n)})" for n in of_kind] + [""]
            for name in of_kind:
                lines += _type_section(describe(kind, name), names)
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def main() -> None:
    os.makedirs(os.path.dirname(DOCS_PATH), exist_ok=True)
    with open(DOCS_PATH, "w", encoding="utf-8") as fh:
        fh.write(markdown())
    print(DOCS_PATH)


if __name__ == "__main__":
    main()
