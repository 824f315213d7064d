"""`strato status` of every infrastructure observes them at once (bounded threads), not one after another: three
infrastructures' observation passes are all under way together (they met at a barrier), in their listed order."""

import threading
import textwrap

from orchestrator import service

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        a: {type: strato.nodes.Noop}
    """)


def test_status_of_all_observes_the_infrastructures_in_parallel(strato, strato_home, tmp_path, monkeypatch):
    path = tmp_path / "d.yaml"
    path.write_text(DOC)
    names = ["par-a", "par-b", "par-c"]
    for name in names:
        strato("build", str(path), "--name", name, "-q", check=True)
    barrier = threading.Barrier(len(names), timeout=10)
    met, real = [], service._refresh

    def refresh(store, name, instances, record=True):
        try:
            barrier.wait()  # returns only once every infrastructure's pass has started
            met.append(name)
        except threading.BrokenBarrierError:
            pass
        return real(store, name, instances, record)
    monkeypatch.setattr(service, "_refresh", refresh)
    data = service.status(service.open_store(str(strato_home / "state.db")))
    assert sorted(met) == names, f"passes that overlapped: {met}"
    assert [i["name"] for i in data["infrastructures"]] == names
    assert all(i["status"] == "ready" and i["healthy"] for i in data["infrastructures"])
