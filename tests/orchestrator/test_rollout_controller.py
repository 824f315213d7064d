"""The rollout controller's parts that need no backend: the model env, the canary view, weights, window counts,
and the autoscaler held while a rollout step moves weights (and the reverse)."""

from types import SimpleNamespace

from descriptors.template import NodeTemplate, Template
from descriptors.types import builtin_registry
from orchestrator.autoscale import Decisions
from orchestrator.mlops import pinning, traffic
from orchestrator.mlops.rollout import RolloutController, canary_node, with_canary
from policies.rollout import RolloutSpec

V2 = {"name": "iris", "version": 2, "ref": "iris:2", "path": "/blobs/v2", "digest": "sha256:x"}


def test_a_pinned_version_becomes_env_and_placeholders_and_the_rollout_block_never_reaches_the_server():
    props = {"command": ["serve", "--model", "{model_path}", "--tag", "v={model_version}"], "env": {"A": "{model_path}"},
             "model": V2, "rollout": {"strategy": "canary"}}
    out = pinning.with_model(props, V2)
    assert out["command"] == ["serve", "--model", "/blobs/v2", "--tag", "v=iris:2"]
    assert out["env"] == {"A": "/blobs/v2", "STRATO_MODEL_PATH": "/blobs/v2", "STRATO_MODEL_VERSION": "iris:2",
                          "STRATO_MODEL_NAME": "iris"}
    assert "model" not in out and "rollout" not in out


def record(node, index, port, status="ready"):
    return SimpleNamespace(node=node, index=index, status=status, key=f"x/{node}/{index}@u", spec_hash="h",
                           attributes={"host": "127.0.0.1", "port": port, "url": f"http://127.0.0.1:{port}"})


def test_weights_split_each_tracks_share_among_its_servers():
    stable = [record("server", i, 9000 + i) for i in range(4)]
    canary = [record("server~canary", 0, 9100)]
    slots = traffic.split(stable, canary, 10)
    weights = {s.name: s.weight for s in slots}
    assert weights["server_canary-0"] == 26 and weights["server-0"] == 58
    assert abs(traffic.achieved(slots) - 10) < 0.5
    assert traffic.achieved(traffic.split(stable, [], 10)) == 0        # no canary server: nothing to give it
    assert {s.weight for s in traffic.split(stable, canary, 100) if s.track == "stable"} == {0}


def test_a_window_counts_deltas_per_track_and_survives_a_counter_reset():
    base = traffic.Counters({"server-0": [100, 1, 2], "server_canary-0": [50, 0, 2]},
                            {"server_canary-0": {"0.01": 40, "0.1": 50, "inf": 50}})
    now = traffic.Counters({"server-0": [200, 1, 2], "server_canary-0": [20, 10, 2]},   # the canary restarted
                           {"server_canary-0": {"0.01": 0, "0.1": 20, "inf": 20}})
    stats = traffic.window(now, base, {"server-0": "stable", "server_canary-0": "canary"})
    assert (stats["stable"].requests, stats["stable"].errors) == (100, 0)
    assert (stats["canary"].requests, stats["canary"].errors) == (20, 10)
    assert 10 < stats["canary"].latency_ms["latency_p95_ms"] <= 100


def test_the_view_adds_a_canary_node_sized_by_its_weight():
    types = builtin_registry()
    node = NodeTemplate("server", "strato.nodes.ai.ModelServer", properties={"model": "iris@champion"},
                        default_instances=4, min_instances=2)
    template = Template("x.yaml", "1.3", node_templates={"server": node}, types=types)
    state = {"phase": "progressing", "step": 0, "stable": dict(V2, ref="iris:1", version=1), "canary": V2}
    view = with_canary(template, {("rollout", "server"): state}, lambda n: 4,
                       {"server": RolloutSpec.parse({"steps": [{"weight": 30}]})})
    canary = view.node_templates[canary_node("server")]
    assert canary.default_instances == 2 and canary.min_instances == 0     # ceil(4 x 30 %)
    assert canary.properties["model"] == V2 and view.node_templates["server"].properties["model"]["ref"] == "iris:1"
    assert "server~canary" not in template.node_templates                 # the descriptor itself is untouched


def test_the_autoscaler_is_held_while_a_rollout_step_moves_weights():
    controller = RolloutController(store=None, name="x")
    controller.frozen = {"server": "rollout of server moved to 50 % on the canary"}
    out = Decisions()
    out.scaled = [{"node": "server", "from": 2, "desired": 4, "policy": "hpa", "reason": "cpu 90 %"},
                  {"node": "other", "from": 1, "desired": 2, "policy": "hpa", "reason": "cpu 80 %"}]
    counts = {"server": 4, "other": 2}
    controller.hold_scaling(out, counts)
    assert [a["node"] for a in out.scaled] == ["other"] and counts == {"server": 2, "other": 2}
    held = out.events[0]
    assert held.kind == "decision" and held.detail["action"] == "hold" and "held: rollout of server" in \
        held.detail["reason"]


def test_the_rollout_holds_its_weights_while_the_node_is_scaling():
    controller = RolloutController(store=None, name="x")
    records = [record("server", 0, 1), record("server", 1, 2, status="creating")]
    assert "scaling" in controller._scaling_in_flight("server", records, {"server": 2})
    assert controller._scaling_in_flight("server", records[:1], {"server": 1}) is None
