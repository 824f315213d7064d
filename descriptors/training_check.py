"""Checks of a ContinuousTraining policy beyond its types: its trainer is a one-shot job node of the descriptor,
and every target is a model server whose `monitoring` raises the alerts that start a retraining."""

from __future__ import annotations

from descriptors.diagnostics import DiagnosticSink, join_path
from descriptors.template import Template
from descriptors.yamlpos import position_of

CONTINUOUS_TRAINING = "strato.policies.ContinuousTraining"
MODEL_SERVER = "strato.nodes.ai.ModelServer"


def check_continuous_training(template: Template, sink: DiagnosticSink) -> None:
    """TRAINING_INVALID for each ContinuousTraining policy whose trainer or targets cannot work (all at once)."""
    types = template.types
    if types is None:
        return
    for name, policy in template.policies.items():
        if not types.has("policy", policy.type) or not types.is_a(policy.type, CONTINUOUS_TRAINING, "policy"):
            continue
        props = policy.properties if isinstance(policy.properties, dict) else {}
        trainer = props.get("trainer")
        where = join_path(join_path(policy.path, "properties"), "trainer")
        at = position_of(props, "trainer", policy.position)
        if isinstance(trainer, str) and trainer not in template.node_templates:
            sink.error("TRAINING_INVALID", f"policy '{name}': trainer '{trainer}' is not a node of this descriptor",
                       at, where, hint=f"nodes: {', '.join(sorted(template.node_templates))}")
        elif isinstance(trainer, str) and not template.node_metadata(trainer).get("strato.one_shot"):
            sink.error("TRAINING_INVALID", f"policy '{name}': trainer '{trainer}' is a "
                       f"{template.node_templates[trainer].type}, not a one-shot job (strato.nodes.Job, "
                       "strato.nodes.ai.Trainer, a ContainerJob or a kubernetes.Job)", at, where)
        for target in policy.target_nodes(template):
            node = template.node_templates.get(target)
            if node is None:
                continue   # the policy section reports unknown targets
            if not types.is_a(node.type, MODEL_SERVER) or not isinstance(node.properties.get("monitoring"), dict):
                sink.error("TRAINING_INVALID", f"policy '{name}': target '{target}' has no `monitoring` (a "
                           f"{MODEL_SERVER} with a monitoring block raises the alerts that retrain)",
                           policy.position, join_path(policy.path, "targets"))
