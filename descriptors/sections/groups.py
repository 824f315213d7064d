"""topology_template.groups: typed sets of node templates."""

from __future__ import annotations

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.sections.common import check_property_map, section, typed_entry, written_nodes
from descriptors.template import Group, Template
from descriptors.yamlpos import position_of

GROUP_KEYS = ("type", "description", "metadata", "properties", "members", "interfaces", "capabilities",
              "requirements")

def parse_groups(template: Template, topo: dict, sink: DiagnosticSink) -> None:
    base = "topology_template.groups"
    groups = section(topo, "groups", sink, base)
    types = template.types
    for name, body in groups.items():
        path = join_path(base, name)
        pos = groups.key_position(name)
        gdef = typed_entry(template, "group", name, body, GROUP_KEYS, pos, path, sink)
        if gdef is None:
            continue
        members = body.get("members") or []
        if not isinstance(members, list):
            sink.error("GROUP_BAD", "'members' must be a list of node template names", body.position_of("members"),
                       join_path(path, "members"))
            members = []
        good = []
        for i, member in enumerate(members):
            mpos = position_of(members, i, pos)
            mpath = f"{join_path(path, 'members')}[{i}]"
            if not isinstance(member, str) or member not in template.node_templates:
                if isinstance(member, str) and member in written_nodes(template):
                    continue  # a member whose own definition is broken: reported there, once
                sink.error("GROUP_UNKNOWN_MEMBER", f"group '{name}' names unknown node template '{member}'", mpos,
                           mpath, did_you_mean(member, template.node_templates))
                continue
            mtype = template.node_templates[member].type
            if gdef.members and not any(types.is_a(mtype, t) for t in gdef.members):
                sink.error("GROUP_BAD_MEMBER", f"group type {gdef.name} cannot hold '{member}' ({mtype})", mpos, mpath,
                           f"its members must be {', '.join(gdef.members)}")
                continue
            good.append(member)
        props = body.get("properties") or {}
        check_property_map(template, props, gdef.properties, sink, join_path(path, "properties"), pos,
                            f"group type {gdef.name}")
        template.groups[name] = Group(name, gdef.name, good, props if isinstance(props, dict) else {},
                                      dict(body.get("metadata") or {}), pos, path)
