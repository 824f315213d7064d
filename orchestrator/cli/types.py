"""`strato types [NAME]`: the reference of Strato's node, data, capability and policy types, read from its profiles."""

import click

from orchestrator.cli.common import emit_json, fail, handle_errors, json_option


@click.command("types")
@click.argument("name", required=False)
@json_option
@handle_errors
def command(name, as_json):
    """List Strato's types, or show one: its properties (type, required, default), the attributes its driver
    reports (`url`, `port`, ...), capabilities, requirements, and the fields of the data types its properties
    take (the keys of `health_check`).

    \b
      strato types                      every type, one line each
      strato types Process              strato.nodes.Process (a unique last part is enough)
      strato types HealthCheck --json   the health_check keys, for scripts

    The same reference, as a page: docs/types.md.
    """
    from descriptors import reference
    if not name:
        listing = [{"name": n, "kind": k, "description": _first_sentence(reference.describe(k, n)["description"])}
                   for k, n in reference.strato_types()]
        if as_json:
            emit_json({"ok": True, "types": listing})
        else:
            width = max(len(t["name"]) for t in listing)
            for t in listing:
                click.echo(f"{t['name']:<{width}}  {t['kind']:<10}  {t['description']}")
        return
    found = reference.find(name)
    if len(found) != 1:
        _not_one(name, found, reference, as_json)
    kind, full = found[0]
    doc = reference.describe(kind, full)
    fields = {pname: reference.describe("data", p["type"]) for pname, p in doc["properties"].items()
              if ("data", p["type"]) in reference.strato_types()}
    if as_json:
        emit_json({"ok": True, "type": doc, "data_types": {p: d for p, d in fields.items()}})
    else:
        _show(doc, fields)


def _not_one(name, found, reference, as_json) -> None:
    from descriptors.diagnostics import did_you_mean
    if found:
        fail("TYPE_AMBIGUOUS", f"'{name}' names {len(found)} types: {', '.join(n for _, n in found)}", as_json)
    names = [n for _, n in reference.strato_types()]
    hint = did_you_mean(name, names) or did_you_mean(name, [n.rsplit(".", 1)[-1] for n in names])
    fail("TYPE_UNKNOWN", f"no Strato type '{name}'" + (f"; {hint}" if hint else "; `strato types` lists them"),
         as_json)


def _first_sentence(text: str, most: int = 100) -> str:
    head, dot, _ = text.partition(". ")
    head += "." if dot else ""
    return head if len(head) <= most else head[:most - 3].rstrip() + "..."


def _rows(title: str, rows: dict, fields: dict | None = None) -> None:
    if not rows:
        return
    click.echo(f"{title}:")
    width = max(len(r) for r in rows)
    for rname, r in rows.items():
        flags = [] if "required" not in r else ["required" if r["required"] else "optional"]
        if "default" in r:
            flags.append(f"default {r['default']!r}")
        click.echo(f"  {rname:<{width}}  {r['type']}  ({', '.join(flags)})" if flags else
                   f"  {rname:<{width}}  {r['type']}")
        if r.get("description"):
            click.echo(f"  {'':<{width}}    {r['description']}")
        for fname, f in ((fields or {}).get(rname) or {}).get("properties", {}).items():
            click.echo(f"  {'':<{width}}    {rname}.{fname}: {f['type']}" + (f"  {f['description']}"
                                                                            if f.get("description") else ""))


def _show(doc: dict, fields: dict) -> None:
    head = f"{doc['name']} ({doc['kind']} type, derived from {doc['derived_from']}"
    click.echo(head + (f"; driver {doc['driver']})" if doc.get("driver") else ")"))
    if doc["description"]:
        click.echo(f"  {doc['description']}")
    _rows("properties", doc["properties"], fields)
    _rows("attributes" + (" (and any its instances report)" if doc.get("open_attributes") else ""),
          {a: {"type": d["type"], **({"description": d["description"]} if d.get("description") else {})}
           for a, d in doc.get("attributes", {}).items()})
    if doc.get("capabilities"):
        click.echo("capabilities: " + ", ".join(f"{c} ({t})" for c, t in doc["capabilities"].items()))
    if doc.get("requirements"):
        click.echo("requirements: " + ", ".join(f"{r} ({d['node'] or d['capability']})"
                                                for r, d in doc["requirements"].items()))
