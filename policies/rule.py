"""MiCADO-compatible rule policy: constants and query values feed a sandboxed Python `scaling_rule` that sets the count.

The rule sees MiCADO's variables: its constants and queries by name, `m_node_count` and
`m_container_count` (the current count; the rule sets either to scale), `m_nodes` (the
instances as {"ID", "Addr"}), `m_nodes_todrop` (the rule may list instance IDs to drop),
`m_time_since_node_count_changed` / `m_time_since_container_count_changed` (seconds) and
`m_userdata` (kept between evaluations). Strato adds `m_ready_count` and `m_now`.
"""
from __future__ import annotations

import json
import keyword
import math
from typing import Any

from policies.base import MetricSpec, Observation, PolicyError, ScalingDecision, ScalingPolicy
from policies.rulecheck import check_rule
from policies.sandbox import DEFAULT_TIMEOUT_S, Sandbox, SandboxPool, shared_sandbox

OUTPUTS = ["m_node_count", "m_container_count", "m_nodes_todrop", "m_userdata"]
# m_userdata is stored with the policy's state after every evaluation: a rule that doubles it each
# time would grow the state database without end.
MAX_USERDATA_BYTES = 64 * 1024


def userdata_size(value: Any) -> int:
    """The size of m_userdata as stored (compact JSON)."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


def _checked_userdata(value: Any, whose: str, instead: str) -> Any:
    size = userdata_size(value)
    if size > MAX_USERDATA_BYTES:
        raise PolicyError(f"{whose} m_userdata is {size} bytes, over its {MAX_USERDATA_BYTES // 1024} KiB limit; "
                          f"{instead}")
    return value


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise PolicyError(f"{what} name {name!r} must be a Python identifier")
    if name.startswith(("m_", "_")):
        raise PolicyError(f"{what} name {name!r} may not start with 'm_' or '_' (reserved for the rule's own variables)")
    return name


class RulePolicy(ScalingPolicy):
    """Evaluates `scaling_rule` in the sandbox each time it decides; a broken rule raises PolicyError."""

    name = "rule"

    def __init__(self, scaling_rule: str, *, constants: dict[str, Any] | None = None,
                 queries: dict[str, MetricSpec] | None = None, min_instances: int = 1,
                 max_instances: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 sandbox: Sandbox | SandboxPool | None = None, node: str = ""):
        check_rule(scaling_rule)  # refuse imports, dunders, open() ... at load time, not first use
        self.rule = scaling_rule
        self.constants = {_check_name(k, "constant"): v for k, v in (constants or {}).items()}
        self.queries = {_check_name(k, "query"): v for k, v in (queries or {}).items()}
        both = set(self.constants) & set(self.queries)
        if both:
            raise PolicyError(f"{', '.join(sorted(both))} is both a constant and a query")
        if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 60:
            raise PolicyError(f"the rule's timeout must be between 0 and 60 s (got {timeout_s!r})")
        self.min_instances, self.max_instances = min_instances, max_instances
        self.timeout_s = float(timeout_s)
        self.node = node
        self._sandbox = sandbox
        self._last_count: int | None = None
        self._changed_at: float | None = None
        self._userdata: Any = None

    @property
    def sandbox(self) -> Sandbox | SandboxPool:
        return self._sandbox if self._sandbox is not None else shared_sandbox()

    def metrics_needed(self) -> list[MetricSpec]:
        return list(self.queries.values())

    def _variables(self, o: Observation) -> dict[str, Any]:
        if self._last_count != o.instances or self._changed_at is None:
            self._last_count, self._changed_at = o.instances, o.now
        since = max(0.0, o.now - self._changed_at)
        variables: dict[str, Any] = dict(self.constants)
        for name, spec in self.queries.items():
            value = o.metrics.get(spec.name)
            if value is None:
                raise PolicyError(f"query '{name}' ({spec.query}) has no value in this observation")
            variables[name] = value
        addresses = o.extra.get("addresses", {}) if isinstance(o.extra.get("addresses"), dict) else {}
        variables.update(
            m_node_count=o.instances, m_container_count=o.instances, m_ready_count=o.ready, m_now=o.now,
            m_nodes=[{"ID": i, "Addr": addresses.get(i, "")} for i in o.instance_ids], m_nodes_todrop=[],
            m_time_since_node_count_changed=since, m_time_since_container_count_changed=since,
            m_userdata=self._userdata)
        return variables

    @staticmethod
    def _count(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PolicyError(f"the scaling rule set {name} to {value!r}, not a number")
        return int(value)

    def decide(self, observation: Observation) -> ScalingDecision:
        o = observation
        values = self.sandbox.evaluate(self.rule, self._variables(o), OUTPUTS, self.timeout_s, o.deadline)
        self._userdata = _checked_userdata(values.get("m_userdata"), "the scaling rule's",
                                            "the previous m_userdata is kept")
        node_count = self._count(values.get("m_node_count", o.instances), "m_node_count")
        container_count = self._count(values.get("m_container_count", o.instances), "m_container_count")
        count, by = o.instances, None
        if node_count != o.instances:
            count, by = node_count, "m_node_count"
        elif container_count != o.instances:
            count, by = container_count, "m_container_count"
        todrop = values.get("m_nodes_todrop") or []
        if not isinstance(todrop, list):
            raise PolicyError(f"the scaling rule set m_nodes_todrop to {todrop!r}, not a list of instance IDs")
        wanted = [d.get("ID") if isinstance(d, dict) else d for d in todrop]
        known = [d for d in dict.fromkeys(wanted) if d in o.instance_ids]
        notes = []
        unknown = [str(d) for d in wanted if d not in o.instance_ids]
        if unknown:
            notes.append(f"ignored unknown instance(s) to drop: {', '.join(unknown[:5])}")
        if known and by is None:
            count, by = o.instances - len(known), "m_nodes_todrop"
        final = self.bounded(count, o)
        if final != count:
            notes.append(f"bounded to {final} by min/max")
        drop = tuple(known[:max(0, o.instances - final)])
        reason = f"rule: {by} set to {count}" if by else f"rule: count kept at {o.instances}"
        if drop:
            reason += f", dropping {', '.join(drop)}"
        if notes:
            reason += " (" + "; ".join(notes) + ")"
        return ScalingDecision(final, reason, self.name, drop, detail={"set_by": by})

    def state(self) -> dict:
        return {"last_count": self._last_count, "changed_at": self._changed_at, "userdata": self._userdata}

    def restore(self, state: dict) -> None:
        state = state or {}
        self._last_count = state.get("last_count")
        self._changed_at = state.get("changed_at")
        self._userdata = None   # a state stored before the limit may hold megabytes: not carried on
        self._userdata = _checked_userdata(state.get("userdata"), "the stored", "the rule starts without it")


def _query_spec(name: str, raw: Any) -> MetricSpec:
    """A MiCADO query: a PromQL string, or {query, aggregation, quantile}."""
    if isinstance(raw, str):
        return MetricSpec(name, raw)
    if isinstance(raw, dict) and isinstance(raw.get("query"), str):
        unknown = set(raw) - {"query", "aggregation", "quantile"}
        if unknown:
            raise PolicyError(f"query '{name}' has unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        return MetricSpec(name, raw["query"], raw.get("aggregation") or "mean", raw.get("quantile"))
    raise PolicyError(f"query '{name}' must be a PromQL string or a map with 'query'")


def rule_policy_from_settings(settings, node: str) -> RulePolicy:
    """A RulePolicy from a template policy's settings (policies.factory.PolicySettings)."""
    low, high = settings.bounds()
    try:
        rule = settings.get("scaling_rule") or settings.get("rule")
        if rule is None:
            raise PolicyError("needs a 'scaling_rule'")
        constants = settings.get("constants", {})
        queries = settings.get("queries", {})
        if not isinstance(constants, dict) or not isinstance(queries, dict):
            raise PolicyError("'constants' and 'queries' must be maps of name -> value")
        specs = {_check_name(k, "query"): _query_spec(k, v) for k, v in queries.items()}
        if settings.get("metric") is not None and "metric" not in specs:  # strato.policies.Scaling's own metric
            specs["metric"] = settings.metric("metric")
        return RulePolicy(rule, constants=constants, queries=specs, min_instances=low, max_instances=high,
                          timeout_s=settings.seconds("timeout", DEFAULT_TIMEOUT_S), node=node)
    except PolicyError as error:
        if str(error).startswith(settings.prefix):
            raise
        raise settings.error(str(error)) from None
