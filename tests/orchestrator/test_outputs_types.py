"""An output keeps its type: the attribute of a node the descriptor lets scale is a list at one replica too (it
was a bare value at 1 and a list at 2), and `outputs --get` prints a list as JSON, not a Python repr."""

import json
import textwrap

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    node_types:
      test.Keyed:
        derived_from: strato.nodes.Noop
        attributes:
          key: {type: string}
    topology_template:
      inputs:
        replicas: {type: integer, default: 1}
      node_templates:
        web:
          type: test.Keyed
          capabilities:
            scalable:
              properties: {min_instances: 1, max_instances: 5, default_instances: {get_input: replicas}}
        db: {type: test.Keyed}
      outputs:
        web_keys: {value: {get_attribute: [web, key]}}
        db_key: {value: {get_attribute: [db, key]}}
        joined: {value: {join: [{get_attribute: [web, key]}, ","]}}
    """)


def test_a_scalable_nodes_attribute_is_a_list_at_one_replica_too(strato, tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(DOC)
    for replicas in (1, 2):
        built = strato("build", str(path), "--name", "types", "-i", f"replicas={replicas}", "--json")
        assert built.returncode == 0, built.stdout + built.stderr
        outputs = json.loads(strato("outputs", "types", "--json", check=True).stdout)
        assert isinstance(outputs["web_keys"], list) and len(outputs["web_keys"]) == replicas, outputs
        assert isinstance(outputs["db_key"], str), outputs  # a node that cannot scale keeps a single value
        assert outputs["joined"] == ",".join(outputs["web_keys"])  # join sees a list, not a string's letters
        got = strato("outputs", "types", "--get", "web_keys", check=True).stdout
        assert json.loads(got) == outputs["web_keys"]  # JSON, not ['...'] (a Python repr)
        listing = strato("outputs", "types", check=True).stdout
        assert f"web_keys = {json.dumps(outputs['web_keys'])}" in listing
    assert strato("outputs", "types", "--get", "db_key", check=True).stdout.strip() == outputs["db_key"]
