"""Bad input: mutated descriptors, alias bombs, deep nesting, huge scalars and bad bytes only ever give diagnostics."""

import time

from hypothesis import HealthCheck, given, settings, strategies as st

from descriptors import DescriptorError, load_template_text
from descriptors.yamlpos import parse_yaml, to_plain

import yaml

VALID = {
    "tosca_definitions_version": "tosca_simple_yaml_1_3",
    "topology_template": {
        "inputs": {"n": {"type": "integer", "default": 2, "constraints": [{"in_range": [1, 5]}]}},
        "node_templates": {
            "vm": {"type": "tosca.nodes.Compute",
                   "capabilities": {"host": {"properties": {"num_cpus": 1, "mem_size": "1 GB"}}}},
            "web": {"type": "strato.nodes.Process",
                    "properties": {"command": ["x", {"get_input": "n"}], "env": {"A": {"get_attribute": ["vm", "private_address"]}}},
                    "requirements": [{"dependency": "vm"}],
                    "capabilities": {"scalable": {"properties": {"default_instances": {"get_input": "n"}}}}},
        },
        "policies": [{"p": {"type": "strato.policies.Scaling", "targets": ["web"]}}],
        "outputs": {"o": {"value": {"concat": ["a", {"get_attribute": ["web", "url"]}]}}},
    },
}

JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID) if p]


def _mutate(doc, path, action, junk):
    import copy
    doc = copy.deepcopy(doc)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif action == "replace":
        parent[last] = junk
    elif action == "unknown_key" and isinstance(parent, dict):
        parent[str(junk) + "_x"] = junk
    elif action == "nest":
        value = parent[last]
        for _ in range(150):
            value = [value]
        parent[last] = value
    return doc


def _only_diagnostics(text):
    try:
        load_template_text(text, "fuzz.yaml")
    except DescriptorError as exc:
        for d in exc.diagnostics:
            assert d.code != "INTERNAL_ERROR", d.format()
            assert d.code and d.message and d.format()


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), st.sampled_from(["delete", "replace", "unknown_key", "nest"]), JUNK)
def test_mutations_give_only_diagnostics(path, action, junk):
    doc = _mutate(VALID, path, action, junk)
    _only_diagnostics(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_give_only_diagnostics(data):
    try:
        value = parse_yaml(yaml.safe_dump(VALID).encode() + data, "bytes.yaml")
    except DescriptorError:
        return
    _only_diagnostics(yaml.safe_dump(to_plain(value)) if isinstance(value, (dict, list)) else "x")


def test_valid_base_document_loads():
    t = load_template_text(yaml.safe_dump(VALID), "ok.yaml")
    assert set(t.node_templates) == {"vm", "web"}


def test_billion_laughs_is_refused_quickly():
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    start = time.monotonic()
    try:
        parse_yaml("\n".join(lines), "bomb.yaml")
        raise AssertionError("an alias bomb was expanded")
    except DescriptorError as exc:
        assert exc.diagnostics[0].code == "YAML_ALIAS_BOMB"
    assert time.monotonic() - start < 2


def test_deep_nesting_huge_numbers_and_bad_utf8():
    # 150 levels: past Strato's own limit (100) but under libyaml's; 5000: past libyaml's own limit in
    # PyYAML >= 6.0.4, which must come out as the same code whatever PyYAML version is installed.
    block = "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "leaf: 1\n"
    for text, code in [("a: " + "[" * 150 + "]" * 150, "YAML_TOO_DEEP"),
                       (block, "YAML_TOO_DEEP"),
                       ("a: " + "[" * 5000 + "]" * 5000, "YAML_TOO_DEEP"),
                       ("a: " + "{x: " * 5000 + "1" + "}" * 5000, "YAML_TOO_DEEP"),
                       ("a: " + "9" * 5000, "YAML_HUGE_NUMBER")]:
        try:
            parse_yaml(text, "x.yaml")
            raise AssertionError(code)
        except DescriptorError as exc:
            assert exc.diagnostics[0].code == code
    try:
        parse_yaml(b"a: \xff\xfe", "x.yaml")
        raise AssertionError("bad UTF-8 accepted")
    except DescriptorError as exc:
        assert exc.diagnostics[0].code == "YAML_ENCODING" and exc.diagnostics[0].position.col == 4


def test_merge_keys_and_duplicates():
    value = parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n", "m.yaml")
    assert to_plain(value["d"]) == {"x": 1, "y": 3}
    try:
        parse_yaml("a: 1\na: 2\n", "d.yaml")
        raise AssertionError("duplicate key accepted")
    except DescriptorError as exc:
        assert exc.diagnostics[0].code == "YAML_DUPLICATE_KEY"


def test_json_schema_is_valid_and_accepts_examples():
    import json
    import os
    import jsonschema
    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "..", "descriptors", "descriptor.schema.json")) as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(VALID, schema)
    bad = dict(VALID, topology_template={"node_templates": {"a": {"typ": "x"}}})
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
