"""Which attributes a node built by a Strato driver reports, read from the shipped profile's declarations.

A driver reports the same attributes whatever type the node has: a tosca.nodes.Compute with
`metadata: {strato.driver: ec2}` has an EC2 instance's instance_id. The shipped Strato types bound
to a driver declare what it reports, so that declaration is the one list, used by validate (and
shown by `strato types`). A node placed among several `implementations` may be built by any of
them, so it may report what any driver does.
"""

from __future__ import annotations

from functools import lru_cache

from descriptors.types import builtin_registry

DRIVER_META = "strato.driver"
OPEN_META = "strato.open_attributes"
PLACED_PROPERTY = "implementations"  # a node with this property is built by whichever implementation accepts


@lru_cache(maxsize=None)
def driver_attributes(driver: str) -> frozenset[str]:
    """Attributes that the shipped base types of `driver` declare themselves (not via properties). A base type is
    the most general Strato type the driver builds (strato.nodes.Process for `local`): what its derived types add
    (a Trainer's model_path) is theirs, not every local node's."""
    registry = builtin_registry()
    found: set[str] = set()
    for name in registry.kinds["node"]:
        if name.startswith("strato.") and _driver_of(registry, name) == driver \
                and _driver_of(registry, registry.kinds["node"][name].derived_from) != driver \
                and PLACED_PROPERTY not in registry.resolved(name).properties:  # placed: any driver builds it
            found.update(declared_attributes(registry, name))
    return frozenset(found)


def _driver_of(registry, type_name) -> str | None:
    if not registry.has("node", type_name):
        return None
    return registry.resolved(registry.canonical(type_name)).metadata.get(DRIVER_META)


@lru_cache(maxsize=1)
def any_driver_attributes() -> frozenset[str]:
    """What a node placed among several implementations may report: any driver's attributes."""
    registry = builtin_registry()
    drivers = {registry.resolved(name).metadata.get(DRIVER_META) for name in registry.kinds["node"]}
    return frozenset().union(*(driver_attributes(d) for d in drivers if isinstance(d, str)))


def declared_attributes(registry, type_name: str) -> set[str]:
    """Attributes the type and its ancestors declare under `attributes` (properties are attributes too; not here)."""
    names: set[str] = set()
    for tname in registry.lineage(type_name):
        names.update(registry.kinds["node"][tname].attributes)
    return names


def known_attributes(template, node_name: str) -> set[str] | None:
    """Names get_attribute may ask of a node: its type's attributes (properties included, as TOSCA 1.3 says) and
    what its driver reports; None when the node reports attributes of its own choosing (strato.open_attributes, or
    operations that it implements)."""
    node = template.node_templates[node_name]
    metadata = template.node_metadata(node_name)
    if metadata.get(OPEN_META) or any(op.implementation for op in node.operations.values()):
        return None  # its own choice, or its operations' (a playbook's set_stats becomes attributes)
    ntype = template.types.resolved(node.type)
    known = set(ntype.attributes)
    driver = metadata.get(DRIVER_META)
    if isinstance(driver, str):
        known |= driver_attributes(driver)
    if PLACED_PROPERTY in ntype.properties:
        known |= any_driver_attributes()
    return known
