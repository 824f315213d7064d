"""The router's side of a rollout: per-server weights for a stable/canary split, and one analysis window's counts.

Weights are per server (HAProxy's `set weight`), so a track's share is divided among its ready servers. The
window's requests and 5xx come from the router's cumulative per-server counters (HaproxyAdmin.server_stats),
taken at the window's start (the baseline, kept in the rollout's state) and now; latency quantiles come from the
replicas' own Prometheus histograms, summed per track over the same window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestrator.metrics import histogram_quantile, instance_metrics_url
from policies.rollout import WindowStats

MAX_WEIGHT = 256           # HAProxy's highest server weight
STABLE, CANARY = "stable", "canary"
QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def slot_name(node: str, index: int) -> str:
    """A server's name in the router's backend (HAProxy names: letters, digits, _ . : -)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{node}-{index}")


@dataclass
class Slot:
    name: str
    host: str
    port: int
    weight: int
    track: str
    drain: bool = False
    metrics_url: str | None = None


def address(rec) -> tuple[str, int] | None:
    attrs = rec.attributes or {}
    host, port = attrs.get("host") or "127.0.0.1", attrs.get("port")
    return (str(host), int(port)) if isinstance(port, int) or str(port or "").isdigit() else None


def split(stable: list, canary: list, canary_pct: float) -> list[Slot]:
    """Ready stable and canary instances -> their servers, the canary's share divided among its servers.

    A track with no ready server cannot take its share: the other track gets everything (weight_achieved says so)."""
    share = {STABLE: 100.0 - canary_pct, CANARY: canary_pct}
    if not canary:
        share = {STABLE: 100.0, CANARY: 0.0}
    elif not stable:
        share = {STABLE: 0.0, CANARY: 100.0}
    slots = []
    for track, recs in ((STABLE, stable), (CANARY, canary)):
        each = share[track] / len(recs) if recs else 0.0
        for rec in recs:
            where = address(rec)
            if where is None:
                continue
            weight = 0 if each <= 0 else max(1, min(MAX_WEIGHT, round(each * MAX_WEIGHT / 100.0)))
            slots.append(Slot(slot_name(rec.node, rec.index), where[0], where[1], weight, track, drain=weight == 0,
                              metrics_url=instance_metrics_url(rec.attributes or {})))
    return slots


def achieved(slots: list[Slot]) -> float:
    """The canary's share of the total weight, in percent (what the router really does)."""
    total = sum(s.weight for s in slots)
    return round(100.0 * sum(s.weight for s in slots if s.track == CANARY) / total, 2) if total else 0.0


@dataclass
class Counters:
    """Cumulative counters at one moment: per server (requests, errors, mean response ms), per server histogram."""

    servers: dict[str, list[float]] = field(default_factory=dict)
    histograms: dict[str, dict[str, float]] = field(default_factory=dict)   # server -> {le: cumulative}
    unit: float = 1000.0                                                    # histogram unit -> ms

    def to_dict(self) -> dict:
        return {"servers": self.servers, "histograms": self.histograms, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Counters | None":
        if not data:
            return None
        return cls(dict(data.get("servers") or {}), dict(data.get("histograms") or {}), float(data.get("unit", 1000)))


def read_counters(stats: dict, snapshots: dict) -> Counters:
    """The router's server_stats (name -> ServerStats) and the replicas' scrapes (server name -> Snapshot)."""
    counters = Counters()
    for name, st in stats.items():
        # a 5xx the router retried on another server is counted under `retries`, not `errors_5xx`: every attempt
        # this server failed counts against it, whether or not the client ended up with an answer
        # (and is missing from its `requests`, which count the answers it gave): attempts = requests + retries
        retried = float(getattr(st, "retries", 0) or 0)
        failed = float(st.errors_5xx) + float(st.connect_errors) + retried
        counters.servers[name] = [float(st.requests) + retried, failed, float(st.response_time_ms_avg or 0.0)]
    for name, snap in snapshots.items():
        family = next((f for f in snap.buckets if "latency" in f or "duration" in f), None)
        if family is None:
            continue
        counters.unit = 1.0 if family.endswith(("_ms", "_milliseconds")) else 1000.0
        counters.histograms[name] = {repr(le): count for le, count in snap.buckets[family].items()}
    return counters


def _delta(now: float, before: float) -> float:
    """A counter's increase; one that went down was reset (a restarted router or replica): all of it is new."""
    return now - before if now >= before else now


def window(now: Counters, base: Counters, tracks: dict[str, str]) -> dict[str, WindowStats]:
    """Each track's WindowStats between `base` and `now`; tracks: server name -> stable | canary."""
    out = {STABLE: WindowStats(), CANARY: WindowStats()}
    weighted = {STABLE: 0.0, CANARY: 0.0}
    buckets: dict[str, dict[float, float]] = {STABLE: {}, CANARY: {}}
    for name, (requests, errors, rt) in now.servers.items():
        track = tracks.get(name)
        if track is None:
            continue
        before = base.servers.get(name, [0.0, 0.0, 0.0])
        served = _delta(requests, before[0])
        out[track].requests += int(served)
        out[track].errors += int(_delta(errors, before[1]))
        weighted[track] += served * rt
        for le, count in now.histograms.get(name, {}).items():
            old = base.histograms.get(name, {}).get(le, 0.0)
            buckets[track][float(le)] = buckets[track].get(float(le), 0.0) + _delta(count, old)
    for track, stats in out.items():
        if stats.requests:
            stats.latency_ms["latency_mean_ms"] = weighted[track] / stats.requests
        for metric, q in QUANTILES.items():
            value = histogram_quantile(q, buckets[track])
            if value is not None:
                stats.latency_ms[metric] = value * now.unit
    return out
