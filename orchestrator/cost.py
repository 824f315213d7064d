"""Cost: price tables (data files with source and date), hourly cost per instance/node, Lambda-vs-endpoint crossover.

Shipped AWS prices live in orchestrator/prices/aws.yaml. OpenStack prices are the user's: give
`cost_per_hour` on an implementation, or a `$STRATO_HOME/prices.yaml` (or $STRATO_PRICES) with
`openstack: {FLAVOR: price}` (and any AWS overrides in the shipped file's shape).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import yaml

PRICE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices")
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
DEFAULT_REGION = "us-east-1"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def user_price_file() -> str:
    if os.environ.get("STRATO_PRICES"):
        return os.environ["STRATO_PRICES"]
    from orchestrator.state import strato_home
    return os.path.join(strato_home(), "prices.yaml")


@lru_cache(maxsize=4)
def _load(user_file: str, mtime: float) -> dict:
    with open(os.path.join(PRICE_DIR, "aws.yaml")) as fh:
        table = yaml.safe_load(fh)
    if mtime:
        with open(user_file) as fh:
            table = _merge(table, yaml.safe_load(fh) or {})
    return table


def prices() -> dict:
    path = user_price_file()
    mtime = os.path.getmtime(path) if os.path.exists(path) else 0.0
    return _load(path, mtime)


def _region(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def gpus_of(driver: str, instance_type: str | None) -> int | None:
    table = prices().get({"ec2": "ec2", "sagemaker": "sagemaker"}.get(driver, ""), {})
    info = table.get("instance_types", {}).get(instance_type or "")
    return None if info is None else int(info.get("gpu", 0))


def instance_hourly(driver: str, props: dict[str, Any], region: str | None = None) -> float | None:
    """Hourly price of one Strato instance on a backend, or None when no price is known (Lambda: 0 when idle)."""
    if props.get("cost_per_hour") is not None:
        return float(props["cost_per_hour"])
    table = prices()
    if driver == "ec2":
        return table.get("ec2", {}).get(_region(region or props.get("region")), {}).get(
            str(props.get("instance_type") or "t3.micro"))
    if driver == "sagemaker":
        price = table.get("sagemaker", {}).get(_region(region or props.get("region")), {}).get(
            str(props.get("instance_type") or "ml.m5.large"))
        return None if price is None else price * int(props.get("instance_count") or 1)
    if driver == "lambda":
        return 0.0  # pay per use: see lambda_monthly
    if driver == "openstack":
        flavor = props.get("flavor_name") or props.get("flavor")
        price = (table.get("openstack") or {}).get(str(flavor))
        return None if price is None else float(price)
    if driver in ("local", "noop", "sleep"):
        return 0.0
    return None


def lambda_monthly(requests_per_month: float, duration_ms: float, memory_mb: float, region: str | None = None) -> float:
    rates = prices().get("lambda", {}).get(_region(region)) or prices()["lambda"][DEFAULT_REGION]
    gb_seconds = requests_per_month * (duration_ms / 1000.0) * (memory_mb / 1024.0)
    return gb_seconds * rates["gb_second"] + requests_per_month * rates["request"]


def endpoint_monthly(instance_type: str, instance_count: int = 1, region: str | None = None) -> float | None:
    hourly = instance_hourly("sagemaker", {"instance_type": instance_type, "instance_count": instance_count}, region)
    return None if hourly is None else hourly * HOURS_PER_MONTH


def crossover_requests(duration_ms: float, memory_mb: float, instance_type: str, instance_count: int = 1,
                       region: str | None = None) -> float | None:
    """Requests/month above which the always-on endpoint costs less than Lambda (both priced from the tables)."""
    monthly = endpoint_monthly(instance_type, instance_count, region)
    if monthly is None:
        return None
    per_request = lambda_monthly(1.0, duration_ms, memory_mb, region)
    return monthly / per_request if per_request > 0 else math.inf


def crossover_table(durations_ms=(50, 100, 200, 500, 1000), memories_mb=(512, 1024, 2048, 4096),
                    instance_type: str = "ml.m5.large", instance_count: int = 1,
                    region: str | None = None) -> list[dict]:
    rows = []
    for duration in durations_ms:
        for memory in memories_mb:
            req = crossover_requests(duration, memory, instance_type, instance_count, region)
            rows.append({"duration_ms": duration, "memory_mb": memory, "instance_type": instance_type,
                         "instance_count": instance_count, "region": _region(region),
                         "endpoint_usd_month": round(endpoint_monthly(instance_type, instance_count, region) or 0, 2),
                         "crossover_requests_per_month": None if req is None else round(req),
                         "crossover_requests_per_second": None if req is None else round(req / SECONDS_PER_MONTH, 3)})
    return rows


def inference_estimates(requests_per_month: float, duration_ms: float, lambda_memory_mb: float,
                        endpoint_type: str, endpoint_count: int = 1, region: str | None = None) -> dict:
    """Monthly cost of serving the expected load from Lambda and from an endpoint, and which is cheaper."""
    lam = lambda_monthly(requests_per_month, duration_ms, lambda_memory_mb, region)
    ep = endpoint_monthly(endpoint_type, endpoint_count, region)
    cheaper = "lambda" if ep is None or lam <= ep else "sagemaker"
    return {"requests_per_month": requests_per_month, "duration_ms": duration_ms,
            "lambda_usd_month": round(lam, 2), "endpoint_usd_month": None if ep is None else round(ep, 2),
            "cheaper": cheaper,
            "crossover_requests_per_month": _round(crossover_requests(duration_ms, lambda_memory_mb, endpoint_type,
                                                                      endpoint_count, region))}


def _round(x):
    return None if x is None else (x if math.isinf(x) else round(x))


def infrastructure_cost(store, name: str) -> dict:
    """Hourly cost per node and in total of what an infrastructure runs now, priced from its instances' attributes."""
    from orchestrator.service import _require_infra
    infra = _require_infra(store, name)
    nodes: dict[str, dict] = {}
    for rec in store.instances(name):
        if rec.status not in ("ready", "unknown", "creating", "replacing"):  # unknown: most likely still billed
            continue
        attrs = dict(rec.attributes or {})
        props = {**(rec.handle or {}), **attrs}
        placed = attrs.get("placement") or {}
        if placed.get("cost_per_hour") is not None:
            props["cost_per_hour"] = placed["cost_per_hour"]
        hourly = instance_hourly(rec.driver, props, props.get("region"))
        row = nodes.setdefault(rec.node, {"node": rec.node, "instances": 0, "drivers": [], "usd_per_hour": 0.0,
                                          "unpriced": 0, "pay_per_use": False})
        row["instances"] += 1
        if rec.driver not in row["drivers"]:
            row["drivers"].append(rec.driver)
        if rec.driver == "lambda":
            row["pay_per_use"] = True
        if hourly is None:
            row["unpriced"] += 1
        else:
            row["usd_per_hour"] += hourly
    rows = sorted(nodes.values(), key=lambda r: r["node"])
    for r in rows:
        r["usd_per_hour"] = round(r["usd_per_hour"], 4)
    total = round(sum(r["usd_per_hour"] for r in rows), 4)
    table = prices()
    return {"infrastructure": infra.name, "nodes": rows, "usd_per_hour": total,
            "usd_per_month": round(total * HOURS_PER_MONTH, 2),
            "prices": {"source": table.get("source"), "retrieved": table.get("retrieved"),
                       "user_file": user_price_file() if os.path.exists(user_price_file()) else None},
            "notes": ["Lambda nodes cost per request and GB-second on top (pay per use)"]
            if any(r["pay_per_use"] for r in rows) else []}
