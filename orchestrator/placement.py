"""Hybrid placement policy: order a node's `implementations`; the `placement` driver creates on the first that accepts.

A node lists several implementations (like Occopus node definitions with filters), each a map
with `driver` and optional `properties` (merged over the node's own), `cost_per_hour`, `region`
and `gpu`. The node's `placement` map picks the policy:

  policy: order        the declared order (default)
          cost         lowest estimated hourly price first (unknown prices last)
          inference    lowest monthly cost for `requests_per_month` (or `requests_per_second`) of
                       `duration_ms` each: Lambda priced per use, endpoints/VMs per hour
  region, gpu, max_price: constraints; implementations that fail them are excluded (with why)

The ordered candidates go to the composite `placement` driver (drivers/placement.py): when a
backend refuses (quota, capacity, API error, unreachable), it tries the next one, and the refusal
is recorded in the instance's `placement` attribute. Its handle names the backend used, so
observe/delete go to the right one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.base import DriverError
from orchestrator import cost

DRIVER = "placement"  # the composite driver (drivers/placement.py) that builds a node with implementations
POLICIES = ("order", "cost", "inference")
RESERVED = ("implementations", "placement")


@dataclass
class Candidate:
    label: str                  # "<position>:<driver>", stable across builds
    driver: str
    properties: dict[str, Any]
    cost_per_hour: float | None = None
    monthly: float | None = None
    region: str | None = None
    gpu: int | None = None

    def to_dict(self) -> dict:
        return {"label": self.label, "driver": self.driver, "cost_per_hour": self.cost_per_hour,
                "usd_per_month": None if self.monthly is None else round(self.monthly, 2),
                "region": self.region, "gpu": self.gpu}


@dataclass
class Choice:
    node: str
    policy: str
    ordered: list[Candidate]
    excluded: list[dict] = field(default_factory=list)
    estimates: dict = field(default_factory=dict)

    def report(self) -> dict:
        return {"policy": self.policy, "order": [c.label for c in self.ordered], "excluded": self.excluded,
                "estimates": self.estimates}


def _fail(node: str, message: str) -> DriverError:
    return DriverError(f"node '{node}': {message}", backend="placement")


def choose(node: str, props: dict[str, Any]) -> Choice | None:
    """The node's implementations in the order to try them, or None for a single-backend node."""
    impls = props.get("implementations")
    if not impls:
        return None
    if not isinstance(impls, list):
        raise _fail(node, "`implementations` must be a list of {driver, properties, ...} maps")
    policy_def = props.get("placement") or {}
    if not isinstance(policy_def, dict):
        raise _fail(node, "`placement` must be a map such as {policy: cost, max_price: 0.5}")
    policy = str(policy_def.get("policy") or "order")
    if policy not in POLICIES:
        raise _fail(node, f"unknown placement policy '{policy}' (use {', '.join(POLICIES)})")
    shared = {k: v for k, v in props.items() if k not in RESERVED}
    candidates = []
    for i, entry in enumerate(impls):
        if not isinstance(entry, dict) or not entry.get("driver"):
            raise _fail(node, f"implementations[{i}] must be a map with at least `driver`")
        merged = {**shared, **(entry.get("properties") or {})}
        region = entry.get("region") or merged.get("region") or merged.get("region_name")
        if entry.get("region") and "region" not in (entry.get("properties") or {}):
            merged["region"] = entry["region"]
        driver = str(entry["driver"])
        hourly = entry.get("cost_per_hour")
        hourly = float(hourly) if hourly is not None else cost.instance_hourly(driver, merged, region)
        gpu = entry.get("gpu")
        if gpu is None:
            gpu = cost.gpus_of(driver, merged.get("instance_type"))
        elif isinstance(gpu, bool):
            gpu = 1 if gpu else 0
        candidates.append(Candidate(f"{i}:{driver}", driver, merged, hourly, None, region,
                                    None if gpu is None else int(gpu)))
    choice = Choice(node, policy, [])
    kept = []
    for cand in candidates:
        why = _violates(cand, policy_def)
        if why:
            choice.excluded.append({"implementation": cand.label, "reason": why})
        else:
            kept.append(cand)
    if policy == "cost":
        kept.sort(key=lambda c: (c.cost_per_hour is None, c.cost_per_hour or 0.0))
    elif policy == "inference":
        _price_inference(node, kept, policy_def, choice)
        kept.sort(key=lambda c: (c.monthly is None, c.monthly or 0.0))
    if not kept:
        reasons = "; ".join(f"{e['implementation']}: {e['reason']}" for e in choice.excluded)
        raise _fail(node, f"no implementation satisfies the placement constraints ({reasons})")
    choice.ordered = kept
    return choice


def _violates(cand: Candidate, policy_def: dict) -> str | None:
    want_region = policy_def.get("region")
    if want_region and cand.region != want_region:
        return f"region {cand.region or 'unknown'} is not {want_region}"
    want_gpu = policy_def.get("gpu")
    if want_gpu:
        need = 1 if want_gpu is True else int(want_gpu)
        if (cand.gpu or 0) < need:
            return f"has {cand.gpu or 0} GPU(s), {need} wanted"
    max_price = policy_def.get("max_price")
    if max_price is not None:
        if cand.cost_per_hour is None:
            return "no known price, and max_price is set"
        if cand.cost_per_hour > float(max_price):
            return f"costs {cand.cost_per_hour:g}/h, above max_price {float(max_price):g}"
    return None


def _price_inference(node: str, cands: list[Candidate], policy_def: dict, choice: Choice) -> None:
    rate = policy_def.get("requests_per_month")
    if rate is None and policy_def.get("requests_per_second") is not None:
        rate = float(policy_def["requests_per_second"]) * cost.SECONDS_PER_MONTH
    duration = policy_def.get("duration_ms")
    if rate is None or duration is None:
        raise _fail(node, "placement policy 'inference' needs requests_per_month (or requests_per_second) "
                          "and duration_ms")
    rate, duration = float(rate), float(duration)
    for cand in cands:
        if cand.driver == "lambda":
            cand.monthly = cost.lambda_monthly(rate, duration, float(cand.properties.get("memory_mb") or 128),
                                               cand.region)
        elif cand.cost_per_hour is not None:
            cand.monthly = cand.cost_per_hour * cost.HOURS_PER_MONTH
        choice.estimates[cand.label] = None if cand.monthly is None else round(cand.monthly, 2)
    lam = next((c for c in cands if c.driver == "lambda"), None)
    ep = next((c for c in cands if c.driver == "sagemaker"), None)
    if lam is not None and ep is not None:
        choice.estimates["crossover_requests_per_month"] = cost.round_count(cost.crossover_requests(
            duration, float(lam.properties.get("memory_mb") or 128), str(ep.properties.get("instance_type")
                                                                          or "ml.m5.large"),
            int(ep.properties.get("instance_count") or 1), ep.region))
    choice.estimates["requests_per_month"] = rate
    choice.estimates["duration_ms"] = duration


def route(node: str, driver: str | None, props: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The driver and properties a node's instances are built with: the `placement` composite when the
    node lists implementations (its candidates in policy order), else the node's own driver unchanged."""
    choice = choose(node, props)
    if choice is None:
        return driver, props
    candidates = [{"label": c.label, "driver": c.driver, "properties": c.properties,
                   "cost_per_hour": c.cost_per_hour} for c in choice.ordered]
    return DRIVER, {"candidates": candidates, "report": choice.report()}
