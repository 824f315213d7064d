"""`strato types [NAME]` and docs/types.md: the types reference, generated from Strato's profiles so it cannot drift."""

import json
import os

from descriptors import reference
from descriptors.types import builtin_registry


def test_the_types_page_is_generated_from_the_profiles():
    with open(reference.DOCS_PATH, encoding="utf-8") as fh:
        written = fh.read()
    assert written == reference.markdown(), \
        f"docs/types.md is out of date with descriptors/profiles: regenerate it with `{reference.REGENERATE}`"


def test_the_page_lists_every_strato_type_with_its_attributes_and_the_health_check_keys():
    page = reference.markdown()
    registry = builtin_registry()
    for kind, name in reference.strato_types():
        assert f"### {name}\n" in page
    assert ("node", "strato.nodes.Process") in reference.strato_types()
    process = page[page.index("### strato.nodes.Process\n"):page.index("### strato.nodes.Job\n")]
    for attribute in ("url", "port", "pid"):
        assert f"| `{attribute}` |" in process
    checks = page[page.index("### strato.datatypes.HealthCheck\n"):]
    for key in registry.resolved("strato.datatypes.HealthCheck", "data").properties:
        assert f"| `{key}` |" in checks


def test_types_lists_and_shows_one_type_with_its_health_check_keys(strato):
    listing = strato("types", "--json", check=True)
    names = {t["name"] for t in json.loads(listing.stdout)["types"]}
    assert {"strato.nodes.Process", "strato.datatypes.HealthCheck", "strato.policies.Scaling"} <= names
    shown = strato("types", "Process", check=True).stdout
    assert shown.startswith("strato.nodes.Process (node type, derived from tosca.nodes.Root; driver local)")
    assert "health_check.http: string" in shown and "health_check.timeout: strato.datatypes.Seconds" in shown
    assert "  url " in shown and "  port " in shown
    doc = json.loads(strato("types", "strato.nodes.Process", "--json", check=True).stdout)
    assert doc["type"]["attributes"]["url"]["type"] == "string"
    assert doc["type"]["properties"]["command"] == {"type": "list", "required": True,
                                                    "description": "argv of the process"}
    assert "timeout" in doc["data_types"]["health_check"]["properties"]


def test_an_unknown_type_name_is_an_error_with_did_you_mean(strato):
    proc = strato("types", "Proces")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no Strato type 'Proces'; did you mean 'Process'?" in proc.stderr
    doc = json.loads(strato("types", "Job", "--json").stdout)  # strato.nodes.Job and strato.nodes.kubernetes.Job
    assert doc["ok"] is False and doc["error"]["code"] == "TYPE_AMBIGUOUS"


def test_readme_names_the_process_type_the_health_check_keys_and_the_types_page():
    with open(os.path.join(os.path.dirname(reference.DOCS_PATH), os.pardir, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    section = readme[readme.index("### Writing descriptors"):]
    section = section[:section.index("\n### ", 5)] if "\n### " in section[5:] else section
    assert "strato.nodes.Process" in section and "docs/types.md" in section and "strato types" in section
    for key in ("http", "tcp", "command", "timeout", "grace_period", "expect_status"):
        assert f"`{key}`" in section, key
