"""Reading `template.policies` into policy objects: which scaling policies steer which node, with which metrics.

Stays light: the rule sandbox and the optimizer (numpy, sklearn) are imported only when a
template asks for them.
"""
from __future__ import annotations

import math
from typing import Any

from policies.base import MetricSpec, PolicyError, ScalingPolicy
from policies.target_tracking import TargetTrackingConfig, TargetTrackingPolicy

SCALING = "strato.policies.Scaling"
RULE = "strato.policies.Scaling.Rule"
OPTIMIZER = "strato.policies.Optimizer"


class PolicySettings:
    """One template policy's properties (type defaults merged, functions resolved), with typed getters."""

    def __init__(self, template, policy, inputs: dict[str, Any] | None):
        from descriptors.functions import FunctionError, Unresolved, template_resolver

        self.policy = policy
        where = f"{policy.position}: " if policy.position else ""
        self.prefix = f"{where}policy '{policy.name}'"
        defaults = {}
        if template.types is not None and template.types.has("policy", policy.type):
            for name, pdef in template.types.resolved(policy.type, "policy").properties.items():
                if pdef.has_default:
                    defaults[name] = pdef.default

        def no_attributes(node, name):
            raise Unresolved(node, name)

        given = {n: d.default for n, d in template.inputs.items() if d.has_default}
        given.update(inputs or {})
        resolver = template_resolver(template, given, no_attributes)
        try:
            self.values = {**defaults, **resolver.resolve(dict(policy.properties or {}), "")}
        except (Unresolved, FunctionError) as error:
            raise PolicyError(f"{self.prefix}: {error}") from None

    def error(self, sentence: str) -> PolicyError:
        return PolicyError(f"{self.prefix}: {sentence}")

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def number(self, name: str, default: float | None = None, *, low: float | None = None,
               integer: bool = False) -> float | int | None:
        value = self.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(f"{name} must be a number (got {value!r})")
        if integer and value != int(value):
            raise self.error(f"{name} must be a whole number (got {value!r})")
        if low is not None and value < low:
            raise self.error(f"{name} must be >= {low:g} (got {value!r})")
        return int(value) if integer else float(value)

    def seconds(self, name: str, default: float | None = None) -> float | None:
        from descriptors.values import scalar_unit

        value = self.get(name, default)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            seconds = scalar_unit(value, "scalar-unit.time")
            if seconds is None:
                raise self.error(f"{name} must be a time like '30 s' or '5 m' (got {value!r})")
        if not math.isfinite(seconds) or seconds < 0:
            raise self.error(f"{name} must be a non-negative time (got {value!r})")
        return seconds

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self.error(f"needs '{name}'")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{name} must be a non-empty string (got {value!r})")
        return value

    def bounds(self) -> tuple[int, int | None]:
        low = self.number("min_instances", 1, low=0, integer=True)
        high = self.number("max_instances", None, low=1, integer=True)
        if high is not None and high < low:
            raise self.error(f"max_instances ({high}) is below min_instances ({low})")
        return low, high

    def metric(self, name: str, query_key: str = "metric") -> MetricSpec:
        query = self.text(query_key, required=True)
        aggregation = self.text("aggregation") or "mean"
        quantile = self.number("quantile") if aggregation == "quantile" else None
        try:
            return MetricSpec(name or query, query, aggregation, quantile)
        except PolicyError as error:
            raise self.error(str(error)) from None


def target_tracking_from(settings: PolicySettings, node: str) -> TargetTrackingPolicy:
    low, high = settings.bounds()
    if settings.get("target") is None:
        raise settings.error("target tracking needs 'metric' and 'target' (or a 'rule')")
    try:
        config = TargetTrackingConfig(
            target_value=settings.number("target", low=0),
            tolerance=settings.number("tolerance", 0.1, low=0),
            scale_down_stabilization_s=settings.seconds("scale_down_stabilization", 300.0),
            scale_up_stabilization_s=settings.seconds("scale_up_stabilization", 0.0),
            scale_up_percent=settings.number("scale_up_percent", 100.0, low=0),
            scale_up_instances=settings.number("scale_up_instances", 4, low=0, integer=True),
            scale_up_period_s=settings.seconds("scale_up_period", 15.0),
            min_instances=low, max_instances=high)
    except PolicyError as error:
        raise settings.error(str(error).removeprefix("target tracking: ")) from None
    unready = settings.get("unready_as_idle", False)
    if not isinstance(unready, bool):
        raise settings.error(f"unready_as_idle must be true or false (got {unready!r})")
    return TargetTrackingPolicy(settings.metric(""), config, node=node, unready_as_idle=unready)


def _rule_from(settings: PolicySettings, node: str) -> ScalingPolicy:
    from policies.rule import rule_policy_from_settings
    return rule_policy_from_settings(settings, node)


def _optimizer_from(settings: PolicySettings, node: str, **options) -> ScalingPolicy:
    from policies.optimizer import optimizer_policy_from_settings
    return optimizer_policy_from_settings(settings, node, **options)


def _scaling_from(settings: PolicySettings, node: str) -> ScalingPolicy:
    if settings.get("rule") is not None:
        return _rule_from(settings, node)
    if settings.get("metric") is None:
        raise settings.error("a scaling policy needs 'metric' and 'target' (target tracking) or a 'rule'")
    return target_tracking_from(settings, node)


def build_policy(template, policy, node: str, inputs: dict[str, Any] | None = None,
                 **options) -> ScalingPolicy | None:
    """The policy object for one template policy and one of its target nodes; None for non-scaling policies.

    `options` go to the optimizer policy (e.g. `sample_sink`, `infrastructure`)."""
    types = template.types
    if types is None or not types.has("policy", policy.type):
        return None
    settings = PolicySettings(template, policy, inputs)
    if types.is_a(policy.type, OPTIMIZER, "policy"):
        built = _optimizer_from(settings, node, **options)
    elif types.is_a(policy.type, RULE, "policy"):
        built = _rule_from(settings, node)
    elif types.is_a(policy.type, SCALING, "policy"):
        built = _scaling_from(settings, node)
    else:
        return None
    built.node, built.source = node, policy.name
    built.period_s = settings.seconds("period", None)
    built.cooldown_s = settings.seconds("cooldown", 0.0) or 0.0
    return built


def scaling_policies(template, inputs: dict[str, Any] | None = None, errors: list | None = None,
                     **options) -> dict[str, list[ScalingPolicy]]:
    """node name -> the scaling policy objects steering it, in template order (groups expanded).

    Raises PolicyError naming the policy, its position and the bad setting; with `errors`, a policy that
    cannot be built (a bad setting, a rule the sandbox refuses) goes there as (policy name, message)
    instead, and the others still steer their nodes (what the maintain loop wants)."""
    out: dict[str, list[ScalingPolicy]] = {}
    for policy in template.policies.values():
        for node in policy.target_nodes(template):
            try:
                built = build_policy(template, policy, node, inputs, **options)
            except Exception as exc:
                if errors is None:
                    raise
                errors.append((policy.name, f"{type(exc).__name__}: {exc}"))
                break
            if built is not None:
                out.setdefault(node, []).append(built)
    return out


def metrics_needed(policies: dict[str, list[ScalingPolicy]]) -> dict[str, list[MetricSpec]]:
    """node -> the distinct metrics its policies read (what the loop must collect for it)."""
    out: dict[str, list[MetricSpec]] = {}
    for node, items in policies.items():
        seen: list[MetricSpec] = []
        for item in items:
            for spec in item.metrics_needed():
                if spec not in seen:
                    seen.append(spec)
        out[node] = seen
    return out
