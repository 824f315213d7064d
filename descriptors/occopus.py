"""Occopus compatibility: turn an Occopus infrastructure description plus node definitions into a Strato descriptor.

Occopus describes an infrastructure (`infra_name`, `nodes` with `type`, `scaling {min,max}`
and `variables`, `dependencies` between nodes) and, separately, node definitions
(`'node_def:<type>'`: a list of alternative implementations, each with a `resource` of type
ec2, nova, docker, azure_vm, azure_aci, cloudsigma or cloudbroker, a `contextualisation` such as
cloudinit with its template, and a `health_check`). A Strato node keeps all alternatives as the
`implementations` of a strato.nodes.VM, tried in order (Azure, CloudSigma and CloudBroker through
the `libcloud` driver). A node whose resources have no Strato backend becomes a
strato.nodes.Placeholder that validates and refuses to build. Features Strato does not carry
over become warnings (Chef: naming the cookbooks to port).
"""

from __future__ import annotations

import os
from typing import Any

from descriptors.diagnostics import DescriptorError, DiagnosticSink, Position, did_you_mean, join_path
from descriptors.yamlpos import YList, YMap, load_yaml_file, to_plain

INFRA_KEYS = ("infra_name", "user_id", "nodes", "dependencies", "variables")
NODE_KEYS = ("name", "type", "scaling", "variables")
NODEDEF_KEYS = ("resource", "contextualisation", "health_check", "config_management", "variables")
VM_RESOURCES = {"ec2": "ec2", "nova": "openstack"}
# Occopus resources that Strato builds through Apache Libcloud (driver `libcloud`): resource type -> provider
LIBCLOUD_RESOURCES = {"azure_vm": "azure_arm", "azure_aci": "azure_aci", "cloudsigma": "cloudsigma",
                      "cloudbroker": "cloudbroker"}
DRIVER_REGION_KEY = {"ec2": "regionname", "nova": "region"}
# Occopus resource keys -> the property names of Strato's ec2 / openstack drivers
RESOURCE_KEYS = {
    "ec2": {"image_id": "image", "instance_type": "instance_type", "key_name": "key_name",
            "security_group_ids": "security_group_ids", "subnet_id": "subnet_id", "regionname": "region",
            "tags": "tags"},
    "nova": {"image_id": "image", "flavor_name": "flavor", "key_name": "key_name", "region": "region_name",
             "server_name": "name"},
}
# Where the credentials and service endpoint come from in Strato instead (so one descriptor runs
# against the real cloud, a private one or an emulator without edits).
CREDENTIAL_KEYS = {"endpoint", "project_id", "user_domain_name", "project_domain_name", "tenant_name"}


def _driver_properties(rtype: str, resource: dict, sink: DiagnosticSink, pos: Position, path: str) -> dict:
    """Rename an Occopus resource's keys to the driver's property names; say what is not carried over."""
    names = RESOURCE_KEYS[rtype]
    props: dict[str, Any] = {}
    dropped = []
    for key, value in resource.items():
        if key in names:
            props[names[key]] = value
        elif key == "network_id":
            props["networks"] = [value]
        elif key in CREDENTIAL_KEYS:
            if rtype == "ec2" and key == "endpoint" and isinstance(value, str) \
                    and not value.rstrip("/").endswith(".amazonaws.com"):
                props["endpoint_url"] = value  # a private AWS-compatible cloud
            else:
                dropped.append(key)
        else:
            props[key] = value
    if dropped:
        where = "the AWS credential chain (AWS_* variables, profiles)" if rtype == "ec2" else \
            "clouds.yaml (OS_CLOUD) or the OS_* variables"
        sink.warning("OCCOPUS_CREDENTIALS", f"{', '.join(sorted(dropped))} of this {rtype} resource are taken "
                     f"from {where} in Strato, not from the descriptor", pos, path)
    return props
SUPPORTED_CONTEXT = ("cloudinit", "docker")
# A cloud-init template named by `!yaml_import {url: file://...}` must be a regular file inside the
# infrastructure's directory (or the node definitions'), at most this big: no /dev/zero, no /etc/passwd.
MAX_CONTEXT_BYTES = 1024 * 1024


def default_node_definitions(infra_path: str) -> str:
    """Where Occopus users keep node definitions: nodes/node_definitions.yaml beside the infrastructure file."""
    return os.path.join(os.path.dirname(os.path.abspath(infra_path)), "nodes", "node_definitions.yaml")


def _pos(container: Any, key: Any, file: str) -> Position:
    if isinstance(container, YMap):
        return container.key_position(key) if key in container else container.pos
    if isinstance(container, YList):
        return container.position_of(key)
    return Position(file)


def import_occopus(infra_path: str, node_definitions: str | None = None) -> tuple[dict, list]:
    """(Strato descriptor as plain data, warnings); raises DescriptorError when the input cannot be converted."""
    sink = DiagnosticSink()
    defs_path = node_definitions or default_node_definitions(infra_path)
    infra = load_yaml_file(infra_path)
    defs_doc = load_yaml_file(defs_path)
    file_pos = Position(infra_path, 1, 1)
    if not isinstance(infra, dict):
        raise DescriptorError([_diag("OCCOPUS_BAD_INFRA", "an Occopus infrastructure description must be a mapping "
                                     "with 'infra_name' and 'nodes'", file_pos)])
    if not isinstance(defs_doc, dict):
        raise DescriptorError([_diag("OCCOPUS_BAD_NODEDEFS", "node definitions must be a mapping of "
                                     "'node_def:<type>' keys", Position(defs_path, 1, 1))])
    for key in infra:
        if key not in INFRA_KEYS:
            sink.warning("OCCOPUS_IGNORED", f"'{key}' is not carried over to the Strato descriptor",
                         _pos(infra, key, infra_path), key, did_you_mean(key, INFRA_KEYS))
    name = infra.get("infra_name")
    if not isinstance(name, str) or not name:
        sink.error("OCCOPUS_NO_NAME", "'infra_name' is missing", file_pos, "infra_name")
        name = "infrastructure"
    nodes = infra.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        sink.error("OCCOPUS_NO_NODES", "'nodes' must be a non-empty list of nodes", _pos(infra, "nodes", infra_path),
                   "nodes")
        raise DescriptorError(sink.items)
    global_vars = infra.get("variables") if isinstance(infra.get("variables"), dict) else {}

    defs_dir = os.path.dirname(os.path.abspath(defs_path))
    templates: dict[str, dict] = {}
    names: list[str] = []
    for i, node in enumerate(nodes):
        path = f"nodes[{i}]"
        npos = _pos(nodes, i, infra_path)
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or not isinstance(node.get("type"), str):
            sink.error("OCCOPUS_BAD_NODE", "each node needs a 'name' and a 'type'", npos, path)
            continue
        for key in node:
            if key not in NODE_KEYS:
                sink.warning("OCCOPUS_IGNORED", f"node key '{key}' is not carried over", _pos(node, key, infra_path),
                             join_path(path, key), did_you_mean(key, NODE_KEYS))
        nname, ntype = node["name"], node["type"]
        if nname in templates:
            sink.error("OCCOPUS_DUPLICATE_NODE", f"node '{nname}' is defined twice", npos, join_path(path, "name"))
            continue
        alternatives = defs_doc.get(f"node_def:{ntype}")
        if not isinstance(alternatives, list) or not alternatives:
            known = [k[len("node_def:"):] for k in defs_doc if isinstance(k, str) and k.startswith("node_def:")]
            sink.error("OCCOPUS_NO_NODEDEF", f"node '{nname}' has type '{ntype}', but {os.path.basename(defs_path)} "
                       f"has no 'node_def:{ntype}' list", _pos(node, "type", infra_path), join_path(path, "type"),
                       did_you_mean(ntype, known) or (f"defined: {', '.join(known)}" if known else ""))
            continue
        variables = dict(global_vars)
        if isinstance(node.get("variables"), dict):
            variables.update(node["variables"])
        template = _node_template(nname, ntype, alternatives, variables, defs_path, defs_dir, sink,
                                  roots=(os.path.dirname(os.path.abspath(infra_path)), defs_dir))
        scaling = node.get("scaling")
        if scaling is not None:
            template.setdefault("capabilities", {})["scalable"] = {
                "properties": _scaling(scaling, sink, infra_path, _pos(node, "scaling", infra_path),
                                       join_path(path, "scaling"))}
        templates[nname] = template
        names.append(nname)

    dependencies = infra.get("dependencies")
    if dependencies is not None and not isinstance(dependencies, list):
        sink.error("OCCOPUS_BAD_DEPENDENCY", "'dependencies' must be a list of [dependent node, node it needs] "
                   "pairs", _pos(infra, "dependencies", infra_path), "dependencies")
        dependencies = []
    edges: list[tuple[str, str, Position]] = []
    for i, dep in enumerate(dependencies or []):
        path = f"dependencies[{i}]"
        dpos = _pos(infra.get("dependencies"), i, infra_path)
        pair = dep
        mappings = None
        if isinstance(dep, dict) and isinstance(dep.get("connection"), list):
            # '- connection: [*A, *B]' also means A needs B; its mappings pass B's attributes to A
            pair, mappings = dep["connection"], dep.get("mappings")
            for key in dep:
                if key not in ("connection", "mappings"):
                    sink.warning("OCCOPUS_IGNORED", f"dependency key '{key}' is not carried over", dpos,
                                 join_path(path, key))
        elif isinstance(dep, dict):
            if len(dep) == 1 and isinstance(next(iter(dep.values())), list):
                kind, pair = next(iter(dep.items()))
                sink.warning("OCCOPUS_IGNORED", f"dependency kind '{kind}' is treated as a plain dependency",
                             dpos, path)
            else:
                pair = None
        if not isinstance(pair, list) or len(pair) != 2:
            sink.error("OCCOPUS_BAD_DEPENDENCY", "a dependency must be a pair [dependent node, node it needs]", dpos,
                       path)
            continue
        a, b = (x.get("name") if isinstance(x, dict) else x for x in pair)
        if not all(isinstance(x, str) for x in (a, b)):
            sink.error("OCCOPUS_BAD_DEPENDENCY", "a dependency must name two nodes", dpos, path)
            continue
        if a not in templates or b not in templates:
            missing = a if a not in templates else b
            sink.error("OCCOPUS_UNKNOWN_NODE", f"dependency names unknown node '{missing}'", dpos, path,
                       did_you_mean(missing, templates))
            continue
        templates[a].setdefault("requirements", []).append({"dependency": b})
        edges.append((a, b, dpos))
        if mappings is not None:
            _mappings(templates[a], b, mappings, sink, _pos(dep, "mappings", infra_path), join_path(path, "mappings"))
    _check_cycles(edges, sink)

    if sink.errors:
        raise DescriptorError(sink.items)
    document = {
        "tosca_definitions_version": "tosca_simple_yaml_1_3",
        "description": f"Imported from the Occopus infrastructure '{name}' ({os.path.basename(infra_path)}).",
        "metadata": {"template_name": name, "imported_from": "occopus"},
        "topology_template": {"node_templates": {n: templates[n] for n in names}},
    }
    return document, sink.warnings


def _check_cycles(edges: list[tuple[str, str, Position]], sink: DiagnosticSink) -> None:
    """A dependency cycle cannot be built in any order: name it, at the dependency that closes it."""
    import networkx as nx
    graph = nx.DiGraph()
    for a, b, pos in edges:
        graph.add_edge(a, b, pos=pos)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    names = [a for a, _ in cycle] + [cycle[0][0]]
    last = cycle[-1]
    sink.error("OCCOPUS_DEPENDENCY_CYCLE", f"the dependencies form a cycle: {' -> '.join(names)}",
               graph.edges[last]["pos"], "dependencies", "remove one of these dependencies")
# Occopus's names of a node's addresses (as its getip/getprivip give them) -> the attributes Strato's drivers report.
# Other mapped attributes come from the node's config management, which Strato does not run: validate says so.
OCCOPUS_ADDRESSES = {"ip": "public_address", "public_ip": "public_address", "private_ip": "private_address",
                     "privip": "private_address"}


def _mappings(template: dict, source: str, mappings: Any, sink: DiagnosticSink, pos: Position, path: str) -> None:
    """A connection's attribute mappings, each [attribute of the source node, name on the dependent node], become
    get_attribute values: cloud-init variables of a VM, environment variables of a container."""
    pairs = []
    for i, item in enumerate(mappings if isinstance(mappings, list) else [mappings]):
        pair = item.get("attributes") if isinstance(item, dict) and "attributes" in item else item
        if isinstance(pair, dict) and len(pair) == 1:
            pair = list(next(iter(pair.items())))
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x for x in pair)):
            sink.error("OCCOPUS_BAD_MAPPING", "each mapping must be 'attributes: [attribute of the node needed, "
                       "name on the dependent node]'", pos, f"{path}[{i}]")
            continue
        pairs.append(pair)
    if not pairs:
        return
    props = template.setdefault("properties", {})
    if template.get("type") == "strato.nodes.Container":
        target = props.setdefault("env", {})
    elif template.get("type") == "strato.nodes.VM":
        target = props.setdefault("cloud_init_variables", {})
    else:
        target = template.setdefault("metadata", {}).setdefault("occopus.mappings", {})
    for src, dst in pairs:
        target[dst] = {"get_attribute": [source, OCCOPUS_ADDRESSES.get(src, src)]}


def _libcloud_installed() -> bool:
    from drivers.providers import known_drivers  # read only when a libcloud resource is met
    return "libcloud" in known_drivers()


def _cookbooks(value: Any) -> set:
    """Chef cookbooks named by run_list entries ('recipe[name::part]', 'role[name]', 'name::part') in a value."""
    found: set = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "run_list" and isinstance(item, (list, str)):
                for entry in item if isinstance(item, list) else item.split(","):
                    text = str(entry).strip()
                    if "[" in text and text.endswith("]"):
                        text = text[text.index("[") + 1:-1]
                    if text:
                        found.add(text.split("::")[0])
            else:
                found |= _cookbooks(item)
    elif isinstance(value, list):
        for item in value:
            found |= _cookbooks(item)
    elif isinstance(value, str) and value.startswith("recipe[") and value.endswith("]"):
        found.add(value[len("recipe["):-1].split("::")[0])
    return found


def _diag(code: str, message: str, pos: Position):
    from descriptors.diagnostics import Diagnostic
    return Diagnostic(code, message, pos)


def _scaling(scaling: Any, sink: DiagnosticSink, file: str, pos: Position, path: str) -> dict:
    if not isinstance(scaling, dict):
        sink.error("OCCOPUS_BAD_SCALING", "'scaling' must be a mapping with 'min' and 'max'", pos, path)
        return {}
    low, high = scaling.get("min", 1), scaling.get("max", scaling.get("min", 1))
    for key, value in (("min", low), ("max", high)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            sink.error("OCCOPUS_BAD_SCALING", f"scaling '{key}' must be a whole number of 0 or more",
                       _pos(scaling, key, file), join_path(path, key))
            return {}
    if high < low:
        sink.error("OCCOPUS_BAD_SCALING", "scaling 'max' is smaller than 'min'", pos, path)
        return {}
    return {"min_instances": low, "max_instances": high, "default_instances": max(low, 1) if high >= 1 else 0}


def _node_template(name: str, ntype: str, alternatives: list, variables: dict, defs_path: str, defs_dir: str,
                   sink: DiagnosticSink, roots: tuple[str, ...] = ()) -> dict:
    implementations: list[dict] = []
    unsupported: list[dict] = []  # resources of kinds Strato cannot build, kept for a placeholder
    waiting: list[dict] = []  # libcloud implementations, for when that driver is installed
    containers: list[dict] = []
    cloud_init = None
    health = None
    base = f"node_def:{ntype}"
    for j, alt in enumerate(alternatives):
        path = f"{base}[{j}]"
        apos = _pos(alternatives, j, defs_path)
        if not isinstance(alt, dict) or not isinstance(alt.get("resource"), dict):
            sink.error("OCCOPUS_BAD_NODEDEF", "each node definition needs a 'resource' mapping", apos, path)
            continue
        for key in alt:
            if key not in NODEDEF_KEYS:
                sink.warning("OCCOPUS_IGNORED", f"'{key}' is not carried over", _pos(alt, key, defs_path),
                             join_path(path, key), did_you_mean(key, NODEDEF_KEYS))
        resource = to_plain(alt["resource"])
        rtype = resource.pop("type", None)
        cm = alt.get("config_management")
        if isinstance(cm, dict) and cm.get("type") not in (None, "none"):
            cookbooks = sorted(_cookbooks(to_plain(alt)) | _cookbooks(to_plain(variables)))
            port = (f"; cookbooks to port: {', '.join(cookbooks)}" if cookbooks else
                    "; no run_list names its cookbooks") if cm.get("type") == "chef" else ""
            sink.warning("OCCOPUS_UNSUPPORTED", f"config manager '{cm.get('type')}' is not supported; configure the "
                         f"node with cloud-init or an interface operation instead{port}",
                         _pos(alt, "config_management", defs_path), join_path(path, "config_management"))
        ctx = alt.get("contextualisation")
        ctx_type = ctx.get("type") if isinstance(ctx, dict) else None
        if rtype in VM_RESOURCES:
            entry: dict[str, Any] = {"driver": VM_RESOURCES[rtype]}
            region = resource.get(DRIVER_REGION_KEY[rtype])
            if isinstance(region, str):
                entry["region"] = region
            entry["properties"] = _driver_properties(rtype, resource, sink, _pos(alt, "resource", defs_path),
                                                     join_path(path, "resource"))
            implementations.append(entry)
            if ctx_type == "cloudinit":
                text = _context_template(ctx, defs_dir, sink, defs_path, join_path(path, "contextualisation"),
                                         roots or (defs_dir,))
                if text is not None and cloud_init is None:
                    cloud_init = text
                elif text is not None and text != cloud_init:
                    sink.warning("OCCOPUS_CLOUDINIT_DIFFERS", f"implementation {j} of '{ntype}' has its own "
                                 "cloud-init; Strato keeps the first one for all implementations",
                                 _pos(alt, "contextualisation", defs_path), join_path(path, "contextualisation"))
            elif ctx_type is not None:
                sink.warning("OCCOPUS_UNSUPPORTED", f"contextualisation '{ctx_type}' is not supported for "
                             f"{rtype} resources", _pos(alt, "contextualisation", defs_path),
                             join_path(path, "contextualisation"))
        elif rtype == "docker":
            spec = {k: v for k, v in to_plain(ctx).items() if k != "type"} if ctx_type == "docker" else {}
            if ctx_type not in (None, "docker"):
                sink.warning("OCCOPUS_UNSUPPORTED", f"contextualisation '{ctx_type}' is not supported for docker "
                             "resources", _pos(alt, "contextualisation", defs_path), join_path(path, "contextualisation"))
            image = spec.pop("image", None)
            tag = spec.pop("tag", None)
            if isinstance(image, str) and tag is not None:
                image = f"{image}:{tag}"
            container = {"image": image, "resource": resource, **spec}
            containers.append(container)
            implementations.append({"driver": "docker", "properties": {k: v for k, v in container.items()
                                                                        if v is not None}})
        elif rtype in LIBCLOUD_RESOURCES:
            provider = LIBCLOUD_RESOURCES[rtype]
            entry = {"driver": "libcloud", "properties": {"provider": provider, **resource}}
            if ctx_type == "cloudinit":
                text = _context_template(ctx, defs_dir, sink, defs_path, join_path(path, "contextualisation"),
                                         roots or (defs_dir,))
                cloud_init = text if cloud_init is None else cloud_init
            elif ctx_type == "docker":  # a container service (Azure ACI): the image and its settings
                spec = {k: v for k, v in to_plain(ctx).items() if k != "type"}
                if spec.get("tag") is not None and isinstance(spec.get("image"), str):
                    spec["image"] = f"{spec['image']}:{spec.pop('tag')}"
                entry["properties"].update(spec)
            elif ctx_type is not None:
                sink.warning("OCCOPUS_UNSUPPORTED", f"contextualisation '{ctx_type}' is not supported for "
                             f"{rtype} resources", _pos(alt, "contextualisation", defs_path),
                             join_path(path, "contextualisation"))
            rpos = _pos(alt["resource"], "type", defs_path)
            if _libcloud_installed():
                implementations.append(entry)
                sink.warning("OCCOPUS_LIBCLOUD", f"the {rtype} resource is built through Apache Libcloud's "
                             f"'{provider}' provider (driver 'libcloud')", rpos, join_path(path, "resource.type"))
            else:  # kept, ready to use, for when the driver is installed
                sink.warning("OCCOPUS_LIBCLOUD", f"the {rtype} resource needs Strato's 'libcloud' driver, which is not "
                             "installed; this implementation is kept under the node's metadata", rpos,
                             join_path(path, "resource.type"))
                unsupported.append({"type": rtype, **resource})
                waiting.append(entry)
                continue
        else:
            sink.warning("OCCOPUS_UNSUPPORTED", f"resource type '{rtype}' has no Strato backend (ec2, nova, docker "
                         f"and {', '.join(LIBCLOUD_RESOURCES)} have); this implementation is skipped",
                         _pos(alt["resource"], "type", defs_path), join_path(path, "resource.type"))
            unsupported.append({"type": rtype, **resource})
            continue
        hc = alt.get("health_check")
        if isinstance(hc, dict) and health is None:
            health = _health_check(hc, sink, defs_path, join_path(path, "health_check"))
    if containers and len(containers) != len(implementations):
        from drivers.providers import known_drivers
        if "docker" not in known_drivers():  # a VM's implementations must name installed drivers
            implementations = [i for i in implementations if i["driver"] != "docker"]
            sink.warning("OCCOPUS_UNSUPPORTED", f"node '{name}' mixes VM and docker definitions and no docker "
                         "driver is installed; the docker ones are left out", Position(defs_path), base)
    if not implementations and unsupported:
        kinds = ", ".join(dict.fromkeys(str(r.get("type")) for r in unsupported))
        sink.warning("OCCOPUS_PLACEHOLDER", f"node '{name}' has only {kinds} resources, which Strato has no backend "
                     "for: it becomes a placeholder that validates but refuses to build", Position(defs_path), base,
                     "add an implementation on ec2, nova, docker or a Libcloud provider")
        todo = f"the Occopus node type '{ntype}' uses {kinds}; replace it with a strato.nodes.VM whose " \
               "implementations name a Strato driver (ec2, openstack, libcloud) or a strato.nodes.Container"
        if waiting:
            todo += "; install the libcloud driver and use the implementations kept under metadata " \
                    "'occopus.libcloud_implementations'"
        metadata = {"occopus.node_type": ntype, "occopus.resources": unsupported}
        if waiting:
            metadata["occopus.libcloud_implementations"] = waiting
        if variables:
            metadata["occopus.variables"] = to_plain(variables)
        return {"type": "strato.nodes.Placeholder", "properties": {"resource_type": kinds, "todo": todo},
                "metadata": metadata}
    if not implementations:
        sink.error("OCCOPUS_NO_IMPLEMENTATION", f"node '{name}' (type '{ntype}') has no implementation Strato "
                   "supports", Position(defs_path), base)
        return {"type": "strato.nodes.VM", "properties": {"implementations": []}}
    if containers and len(containers) == len(implementations):
        first = containers[0]
        props: dict[str, Any] = {"image": first.get("image") or "unknown"}
        env = first.get("env")
        if isinstance(env, list):  # Occopus/Docker style ["KEY=value", ...]
            env = dict(str(e).partition("=")[::2] for e in env)
        if isinstance(env, dict):
            props["env"] = {str(k): str(v) for k, v in env.items()}
        command = first.get("command")
        if isinstance(command, str):
            command = command.split()
        if isinstance(command, list):
            props["command"] = [str(c) for c in command]
        if health:
            props["health_check"] = health
        # The Occopus docker resource names its engine and network: the docker driver's docker_host / network
        # (the usual local socket and bridge are left to DOCKER_HOST and the engine's default).
        resource = first.get("resource") if isinstance(first.get("resource"), dict) else {}
        endpoint = resource.get("endpoint")
        if isinstance(endpoint, str) and "://" in endpoint and endpoint != "unix:///var/run/docker.sock":
            props["docker_host"] = endpoint
        if isinstance(resource.get("network_mode"), str) and resource["network_mode"] != "bridge":
            props["network"] = resource["network_mode"]
        if len(containers) > 1:
            sink.warning("OCCOPUS_ALTERNATIVES", f"node '{name}' has {len(containers)} docker definitions; Strato's "
                         "container node keeps the first", Position(defs_path), base)
        return {"type": "strato.nodes.Container", "properties": props,
                "metadata": {"occopus.node_type": ntype}}
    props = {"implementations": implementations}
    if cloud_init is not None:
        props["cloud_init"] = cloud_init
    if variables:
        props["cloud_init_variables"] = to_plain(variables)
    if health:
        props["health_check"] = health
    return {"type": "strato.nodes.VM", "properties": props, "metadata": {"occopus.node_type": ntype}}


def _context_template(ctx: dict, defs_dir: str, sink: DiagnosticSink, file: str, path: str,
                      roots: tuple[str, ...]) -> str | None:
    """The cloud-init text: inline, or from the file a `!yaml_import`/`!text_import {url: file://...}` names."""
    template = ctx.get("context_template")
    if template is None:
        return None
    if isinstance(template, str):
        return template
    if isinstance(template, dict) and isinstance(template.get("url"), str):
        url = template["url"]
        rel = url[len("file://"):] if url.startswith("file://") else url
        if "://" in rel:
            sink.warning("OCCOPUS_UNSUPPORTED", f"context template URL '{url}' is not a local file; it is not "
                         "imported", _pos(template, "url", file), join_path(path, "context_template.url"))
            return None
        where = (_pos(template, "url", file), join_path(path, "context_template.url"))
        full = os.path.realpath(os.path.join(defs_dir, rel))
        inside = [r for r in roots if os.path.commonpath([full, os.path.realpath(r)]) == os.path.realpath(r)]
        if not inside:
            sink.error("OCCOPUS_CONTEXT_OUTSIDE", f"the cloud-init template '{rel}' is outside the infrastructure's "
                       f"directory ({roots[0]}); only files there are imported", *where,
                       "copy the template next to the node definitions")
            return None
        if not os.path.isfile(full):
            sink.error("OCCOPUS_CONTEXT_NOT_FOUND", f"the cloud-init template '{rel}' is not a regular file "
                       "that can be read", *where)
            return None
        try:
            with open(full, "rb") as fh:
                data = fh.read(MAX_CONTEXT_BYTES + 1)
            if len(data) > MAX_CONTEXT_BYTES:
                sink.error("OCCOPUS_CONTEXT_TOO_BIG", f"the cloud-init template '{rel}' is larger than "
                           f"{MAX_CONTEXT_BYTES // 1024} KiB", *where)
                return None
            return data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            sink.error("OCCOPUS_CONTEXT_NOT_FOUND", f"the cloud-init template '{rel}' cannot be read", *where)
            return None
    if isinstance(template, dict):
        import yaml
        return "#cloud-config\n" + yaml.safe_dump(to_plain(template), sort_keys=False)
    sink.error("OCCOPUS_BAD_CONTEXT", "'context_template' must be text or an import of a file", Position(file), path)
    return None


def _health_check(hc: dict, sink: DiagnosticSink, file: str, path: str) -> dict:
    result: dict[str, Any] = {}
    for key, value in hc.items():
        if key == "ping":
            result["ping"] = bool(value)
        elif key == "ports" and isinstance(value, list):
            result["ports"] = [int(p) for p in value if isinstance(p, int) and not isinstance(p, bool)]
        elif key == "urls" and isinstance(value, list):
            result["urls"] = [str(u) for u in value]
        elif key == "timeout" and isinstance(value, (int, float)) and not isinstance(value, bool):
            result["timeout"] = value
        else:
            sink.warning("OCCOPUS_IGNORED", f"health check '{key}' is not carried over", _pos(hc, key, file),
                         join_path(path, key), did_you_mean(key, ("ping", "ports", "urls", "timeout")))
    return result


def dump_descriptor(document: dict) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, value):  # cloud-init text stays readable as a literal block
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    header = "# Generated by `strato import` from an Occopus infrastructure description.\n"
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=100)
