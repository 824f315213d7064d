"""Metrics for the maintain loop: scrape instances' /metrics, or ask a Prometheus server, and aggregate per node.

Two sources answer the same queries:
- `ScrapeSource` (the embedded default, nothing else to run): scrapes every instance's Prometheus
  endpoint directly each pass and evaluates a small PromQL subset over what it scraped: a metric
  name, `sum|avg|max|min(NAME)`, `rate(NAME[...])` (optionally inside sum/avg/max/min) and
  `histogram_quantile(Q, ... NAME_bucket ...)`. Rates and quantiles come from the deltas between
  two scrapes, so the first pass after a (re)start has none.
- `PrometheusSource`: any PromQL through a real Prometheus' HTTP API when its URL is configured;
  the loop writes a file_sd targets file so that Prometheus scrapes the instances it knows.

Built-in probes, always present per node: `instances`, `ready`, `health_latency_ms`, and from
the first histogram an instance exposes (the ai-inference example's latency histogram):
`request_rate` (requests/s over all replicas), `latency_mean_ms`, `latency_p50_ms`,
`latency_p95_ms`, `latency_p99_ms`.

Strato's own metrics (pass duration, instances per state, scaling actions, heals, the
optimizer's prediction error) are in `LoopMetrics`.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import math
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterable

from orchestrator.bounded import Exceeded, http_get, settle

AGGREGATES = {
    "sum": sum,
    "avg": lambda v: sum(v) / len(v),
    "mean": lambda v: sum(v) / len(v),
    "max": max,
    "min": min,
}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_AGG_RE = re.compile(r"^\s*(sum|avg|mean|max|min)\s*\((.*)\)\s*$", re.S)
_RATE_RE = re.compile(rf"^\s*(?:i?rate|increase)\s*\(\s*({_NAME})\s*(?:\{{[^}}]*\}})?\s*(?:\[[^\]]*\])?\s*\)\s*$")
_QUANTILE_RE = re.compile(rf"^\s*histogram_quantile\s*\(\s*([0-9.]+)\s*,.*?({_NAME})_bucket", re.S)
_PLAIN_RE = re.compile(rf"^\s*({_NAME})\s*(?:\{{[^}}]*\}})?\s*$")


# node-wide probes computed from merged histograms (not per instance, so not re-aggregated)
NODE_BUILTINS = ("latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


# An instance's exposition is a few KiB; a body this large is an attack or a bug, not metrics.
MAX_SCRAPE_BYTES = 4 * 2 ** 20
# A PromQL answer of a query that aggregates itself is small; a vector of many series is larger.
MAX_QUERY_BYTES = 16 * 2 ** 20


class MetricsError(Exception):
    """A query the source cannot answer (unreachable server, unsupported expression)."""


def is_loopback(host: str | None) -> bool:
    """Only loopback instances are contacted by the loop: never an address an emulator made up."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def instance_metrics_url(attributes: dict, path: str = "/metrics") -> str | None:
    """The scrape URL of an instance, if it is one the loop may contact."""
    url = attributes.get("url")
    if not url:
        return None
    host = urllib.parse.urlsplit(url).hostname
    return url.rstrip("/") + path if is_loopback(host) else None


@dataclass
class Snapshot:
    """One scrape of one instance: plain values by series name, and histogram buckets by family."""

    ts: float
    values: dict[str, float] = field(default_factory=dict)          # series name (labels summed) -> value
    kinds: dict[str, str] = field(default_factory=dict)             # family -> counter | gauge | histogram ...
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)   # histogram -> {le: cumulative count}
    counts: dict[str, float] = field(default_factory=dict)          # histogram -> _count
    sums: dict[str, float] = field(default_factory=dict)            # histogram -> _sum


def parse_exposition(text: str, ts: float | None = None) -> Snapshot:
    """Parse the Prometheus text format (prometheus_client's parser); series of one name are summed over labels."""
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot(ts if ts is not None else time.time())
    for family in text_string_to_metric_families(text):
        snap.kinds[family.name] = family.type
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if family.type == "histogram":
                if name.endswith("_bucket"):
                    le = float(labels.get("le", "+Inf"))
                    bucket = snap.buckets.setdefault(family.name, {})
                    bucket[le] = bucket.get(le, 0.0) + value
                elif name.endswith("_count"):
                    snap.counts[family.name] = snap.counts.get(family.name, 0.0) + value
                elif name.endswith("_sum"):
                    snap.sums[family.name] = snap.sums.get(family.name, 0.0) + value
            snap.values[name] = snap.values.get(name, 0.0) + value
    return snap


def _delta(now: float, before: float | None) -> float:
    """Counter increase; a counter that went down was reset (a replaced instance), so all of it is new."""
    if before is None:
        return 0.0
    return now - before if now >= before else now


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts: linear interpolation inside the bucket."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound  # the highest finite bound, as Prometheus does
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return bounds[-1]


class ScrapeSource:
    """Scrapes instances directly and answers queries from the last two scrapes of each instance.

    The previous scrape is kept in memory only: after a restart of the loop the first pass has
    no rates, which costs one interval and nothing else."""

    def __init__(self, timeout: float = 2.0, workers: int = 16, max_bytes: int = MAX_SCRAPE_BYTES):
        self.timeout, self.workers, self.max_bytes = timeout, workers, max_bytes
        self.previous: dict[str, Snapshot] = {}
        self.current: dict[str, Snapshot] = {}
        self.errors: dict[str, str] = {}

    def _fetch(self, url: str, deadline: float) -> Snapshot:
        status, body = http_get(url, deadline, self.max_bytes, {"Accept": "text/plain"})
        if status != 200:
            raise MetricsError(f"answered HTTP {status}")
        return parse_exposition(body.decode("utf-8", "replace"))

    def _outcome(self, future, url: str) -> tuple[Snapshot | None, str | None]:
        """(snapshot, None) or (None, why): a stalled or oversized instance must not stop the pass."""
        if future.cancelled():
            return None, f"{url}: not scraped: the scrape's {self.timeout:g} s deadline came first"
        error = future.exception(timeout=0) if future.done() else None
        if not future.done() or (isinstance(error, Exceeded) and error.late):
            return None, f"{url}: no complete answer within the scrape's {self.timeout:g} s deadline"
        if error is not None:
            return None, f"{url}: {error}"
        return future.result(), None

    def scrape(self, targets: dict[str, str]) -> None:
        """targets: instance key -> metrics URL, all scraped at once; the whole scrape (every request and
        body) ends within `timeout` seconds. Failures are remembered per instance, never raised."""
        fresh: dict[str, Snapshot] = {}
        errors: dict[str, str] = {}
        deadline = time.monotonic() + self.timeout
        items = list(targets.items())
        futures = settle([functools.partial(self._fetch, url, deadline) for _, url in items], deadline,
                         self.workers, "strato-scrape")
        for (key, url), future in zip(items, futures):
            snap, error = self._outcome(future, url)
            if snap is not None:
                fresh[key] = snap
            else:
                errors[key] = error
        # keep the older snapshot of an instance that failed this time, so its rate resumes later
        self.previous = {k: self.current[k] for k in self.current if k in targets}
        self.current = {**{k: v for k, v in self.previous.items() if k in errors}, **fresh}
        self.errors = errors

    # -- per-node evaluation --------------------------------------------------
    def _pairs(self, keys: Iterable[str]) -> list[tuple[Snapshot, Snapshot | None]]:
        return [(self.current[k], self.previous.get(k) if self.previous.get(k) is not self.current[k] else None)
                for k in keys if k in self.current]

    def _rates(self, keys, name: str) -> list[float]:
        rates = []
        for cur, prev in self._pairs(keys):
            if prev is None or name not in cur.values or cur.ts <= prev.ts:
                continue
            rates.append(_delta(cur.values[name], prev.values.get(name)) / (cur.ts - prev.ts))
        return rates

    def _merged_buckets(self, keys, family: str) -> dict[float, float]:
        merged: dict[float, float] = {}
        for cur, prev in self._pairs(keys):
            if prev is None or family not in cur.buckets:
                continue
            before = prev.buckets.get(family, {})
            for le, count in cur.buckets[family].items():
                merged[le] = merged.get(le, 0.0) + _delta(count, before.get(le, 0.0))
        return merged

    def query(self, expr: str, keys: list[str]) -> float | None:
        """Evaluate the supported PromQL subset over the node's instances; None when there is no data yet."""
        m = _QUANTILE_RE.match(expr)
        if m:
            value = histogram_quantile(float(m.group(1)), self._merged_buckets(keys, m.group(2)))
            return value
        agg = "sum"
        inner = expr
        m = _AGG_RE.match(expr)
        if m:
            agg, inner = m.group(1), m.group(2)
        m = _RATE_RE.match(inner)
        if m:
            values = self._rates(keys, m.group(1))
        else:
            m = _PLAIN_RE.match(inner)
            if not m:
                raise MetricsError(f"'{expr}' is beyond the embedded scraper's PromQL subset "
                                   "(NAME, sum/avg/max/min(NAME), rate(NAME[1m]), histogram_quantile(Q, NAME_bucket)); "
                                   "configure a Prometheus URL for full PromQL")
            name = m.group(1)
            values = [cur.values[name] for cur, _ in self._pairs(keys) if name in cur.values]
        if not values:
            return None
        return float(AGGREGATES[agg](values))

    def instance_values(self, name: str, keys: list[str]) -> list[float]:
        """One value per instance for a plain metric name: a counter's per-second rate, a gauge's value;
        `request_rate` is each instance's request rate (from its first histogram)."""
        if name == "request_rate":
            values = []
            for cur, prev in self._pairs(keys):
                family = next(iter(sorted(cur.buckets)), None)
                if prev is None or family is None or cur.ts <= prev.ts:
                    continue
                values.append(_delta(cur.counts.get(family, 0.0), prev.counts.get(family)) / (cur.ts - prev.ts))
            return values
        family = name[:-6] if name.endswith("_total") else name
        kinds = {cur.kinds.get(family) or cur.kinds.get(name) for cur, _ in self._pairs(keys)}
        if "counter" in kinds:
            series = name if name.endswith("_total") else name + "_total"
            return self._rates(keys, series) or self._rates(keys, name)
        return [cur.values[name] for cur, _ in self._pairs(keys) if name in cur.values]

    def evaluate(self, query: str, keys: list[str], aggregation: str = "mean",
                 quantile: float | None = None) -> float | None:
        """A node's value for a policy's metric: a PromQL-subset expression, or a plain name whose
        per-instance values are combined by `aggregation` (sum, mean, max, min, quantile)."""
        m = _PLAIN_RE.match(query)
        if m:
            name = m.group(1)
            if name in NODE_BUILTINS:
                return self.builtins(keys).get(name)
            how = f"quantile:{quantile if quantile is not None else 0.95}" if aggregation == "quantile" else aggregation
            return aggregate(self.instance_values(name, keys), how)
        return self.query(query, keys)

    def builtins(self, keys: list[str]) -> dict[str, float]:
        """request rate and latency from the first histogram the instances expose (seconds -> ms)."""
        out: dict[str, float] = {}
        family = next((f for k in keys if k in self.current for f in sorted(self.current[k].buckets)), None)
        if family is None:
            return out
        merged = self._merged_buckets(keys, family)
        pairs = [(c, p) for c, p in self._pairs(keys) if p is not None and c.ts > p.ts]
        if not pairs:
            return out
        # each instance's rate over its own scrape interval, summed over the node
        out["request_rate"] = sum(_delta(c.counts.get(family, 0.0), p.counts.get(family)) / (c.ts - p.ts)
                                  for c, p in pairs)
        count = sum(_delta(c.counts.get(family, 0.0), p.counts.get(family)) for c, p in pairs)
        total = sum(_delta(c.sums.get(family, 0.0), p.sums.get(family)) for c, p in pairs)
        if count > 0:
            out["latency_mean_ms"] = 1000.0 * total / count
            for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                value = histogram_quantile(q, merged)
                if value is not None:
                    out[f"latency_{label}_ms"] = 1000.0 * value
        return out


class PrometheusSource:
    """PromQL over a Prometheus server's HTTP API (instant queries)."""

    def __init__(self, url: str, timeout: float = 3.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def evaluate(self, query: str, keys: list[str] | None = None, aggregation: str = "sum",
                 quantile: float | None = None) -> float | None:
        """PromQL as written; when it returns several series they are combined by `aggregation`."""
        return self.query(query, keys, aggregation, quantile)

    def query(self, expr: str, keys: list[str] | None = None, aggregation: str = "sum",
              quantile: float | None = None) -> float | None:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            status, raw = http_get(url, time.monotonic() + self.timeout, MAX_QUERY_BYTES,
                                   {"Accept": "application/json"})
        except Exceeded as exc:
            late = f"no complete answer within {self.timeout:g} s"
            raise MetricsError(f"Prometheus at {self.url}: {late if exc.late else exc}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise MetricsError(f"Prometheus at {self.url} unreachable: {exc}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if status >= 400:
            detail = body.get("error", "") if isinstance(body, dict) else ""
            raise MetricsError(f"Prometheus refused '{expr}': {detail or f'HTTP {status}'}")
        if not isinstance(body, dict):
            raise MetricsError(f"Prometheus at {self.url} answered something other than a JSON object")
        data = body.get("data", {})
        result = data.get("result")
        if data.get("resultType") == "scalar":
            value = float(result[1])
        elif not result:
            return None
        else:  # a vector: the query should aggregate itself; several series are combined
            values = [float(series["value"][1]) for series in result]
            values = [v for v in values if not math.isnan(v)]
            how = f"quantile:{quantile if quantile is not None else 0.95}" if aggregation == "quantile" else aggregation
            value = aggregate(values, how) if values else math.nan
        return None if math.isnan(value) else value


def write_file_sd(path: str, targets: list[dict]) -> bool:
    """Write Prometheus file_sd targets if they changed (Prometheus watches the file); True when written."""
    import os
    text = json.dumps(targets, indent=1, sort_keys=True)
    try:
        with open(path) as fh:
            if fh.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)  # atomic: Prometheus never reads half a file
    return True


def aggregate(values: list[float], how: str) -> float | None:
    if not values:
        return None
    if how.startswith("quantile"):
        q = float(how.split(":", 1)[1]) if ":" in how else 0.95
        ordered = sorted(values)
        pos = q * (len(ordered) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
    return float(AGGREGATES[how](values))


class LoopMetrics:
    """Strato's own metrics (prometheus_client), one registry per loop so several loops/tests never collide."""

    def __init__(self):
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:  # pragma: no cover - metrics are optional without prometheus-client
            self.registry = None
            return
        self.registry = CollectorRegistry()
        self.pass_seconds = Histogram("strato_maintain_pass_seconds", "Duration of one maintain pass",
                                      ["infrastructure"], registry=self.registry,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.instances = Gauge("strato_instances", "Instances per node and state", ["infrastructure", "node", "state"],
                               registry=self.registry)
        self.actions = Counter("strato_scaling_actions", "Scaling actions", ["infrastructure", "node", "policy",
                                                                              "direction"], registry=self.registry)
        self.heals = Counter("strato_heals", "Instances replaced because they failed or vanished",
                             ["infrastructure", "node"], registry=self.registry)
        self.prediction_error = Gauge("strato_optimizer_prediction_error",
                                      "Relative error of the optimizer's last prediction of the target metric",
                                      ["infrastructure", "node"], registry=self.registry)
        self.policy_errors = Counter("strato_policy_errors", "Policies that could not decide",
                                     ["infrastructure", "policy"], registry=self.registry)
        # model monitoring (orchestrator/mlops/monitoring.py): the last closed window of each model server
        model = ["infrastructure", "node", "feature", "method"]
        self.model_drift = Gauge("strato_model_drift_statistic", "Drift statistic of a feature (or the prediction) in the "
                                 "last window: KS D, chi-square, or a distance (wasserstein, psi, JS)", model,
                                 registry=self.registry)
        self.model_drifted = Gauge("strato_model_drifted", "1 when the feature drifted in the last window", model,
                                   registry=self.registry)
        self.model_accuracy = Gauge("strato_model_accuracy", "Accuracy of the labels fed back in the last window",
                                    ["infrastructure", "node"], registry=self.registry)

    def observe_pass(self, infra: str, seconds: float, states: dict[tuple[str, str], int]) -> None:
        if self.registry is None:
            return
        self.pass_seconds.labels(infra).observe(seconds)
        for (node, state), n in states.items():
            self.instances.labels(infra, node, state).set(n)

    def serve(self, port: int, host: str = "127.0.0.1"):
        """Serve /metrics over HTTP on a background thread; returns the server (call .shutdown())."""
        if self.registry is None:
            raise MetricsError("serving metrics needs prometheus-client: pip install prometheus-client")
        from prometheus_client import start_http_server
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
