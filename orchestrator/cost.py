"""Cost, pure pricing: price tables (data files with source and date), hourly cost per instance, Lambda-vs-endpoint crossover.

Shipped AWS prices live in orchestrator/prices/aws.yaml. OpenStack prices are the user's: give
`cost_per_hour` on an implementation, or a `$STRATO_HOME/prices.yaml` (or $STRATO_PRICES) with
`openstack: {FLAVOR: price}` (and any AWS overrides in the shipped file's shape). Each driver says
how its instances are priced (`Driver.pricing`). What an infrastructure costs now is service.infrastructure_cost.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import yaml

from drivers.base import Pricing
from drivers.providers import UnknownDriver, driver_class
from orchestrator.state import strato_home

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


@lru_cache(maxsize=128)  # reading the driver table takes milliseconds; a class's pricing never changes
def pricing_of(driver: str) -> Pricing | None:
    """How the driver registered under this name says its instances are priced (None: unknown driver or no price)."""
    try:
        return driver_class(driver).pricing
    except UnknownDriver:
        return None


def gpus_of(driver: str, instance_type: str | None) -> int | None:
    pricing = pricing_of(driver)
    table = (prices().get(pricing.table) or {}) if pricing and pricing.table else {}
    info = table.get("instance_types", {}).get(instance_type or "")
    return None if info is None else int(info.get("gpu", 0))


def instance_hourly(driver: str, props: dict[str, Any], region: str | None = None) -> float | None:
    """Hourly price of one Strato instance on a backend, or None when no price is known (Lambda: 0 when idle)."""
    if props.get("cost_per_hour") is not None:
        return float(props["cost_per_hour"])
    pricing = pricing_of(driver)
    if pricing is None:
        return None
    if pricing.free or pricing.per_use:
        return 0.0  # pay per use: see lambda_monthly
    table = prices().get(pricing.table) or {}
    if pricing.regional:
        table = table.get(_region(region or props.get("region")), {})
    size = next((props[k] for k in pricing.size if props.get(k)), None) or pricing.default
    price = table.get(str(size))
    if price is None:
        return None
    return float(price) * (int(props.get(pricing.count) or 1) if pricing.count else 1)


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
            "crossover_requests_per_month": round_count(crossover_requests(duration_ms, lambda_memory_mb, endpoint_type,
                                                                      endpoint_count, region))}


def round_count(x: float | None) -> float | int | None:
    """A count rounded to a whole number; None and infinity stay as they are."""
    return None if x is None else (x if math.isinf(x) else round(x))
