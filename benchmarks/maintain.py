"""Maintain loop figures: an idle pass at 1,000 / 10,000 instances, kill -9 to healthy replacement, and the
ai-inference example under a WorldCup98 load ramp with target tracking vs the optimizer policy.

    flock /work/bench.lock python benchmarks/maintain.py [--ramp-minutes 50] [--seconds-per-minute 2]
                                                         [--skip-ramp] [--json]

Ends with one JSON line: pass_1000_ms, pass_10000_ms, heal_s, ramp -> {target_tracking: {target: run}, optimizer,
replica_s_ratio_at_equal_p95}
each {p95_ms, replica_s, actions, requests, errors}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.maintain import Maintainer, MaintainOptions  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402

try:  # `strato loadgen` (orchestrator/loadgen.py); a built-in open-loop generator stands in where it is absent
    from orchestrator import loadgen  # noqa: E402
except ImportError:  # pragma: no cover
    loadgen = None

EXAMPLE_DIR = os.path.join(REPO, "examples", "ai-inference")
TRACE = os.path.join(os.path.dirname(REPO), "shared", "data", "worldcup98_requests_per_minute.csv")
if not os.path.exists(TRACE):
    TRACE = "/work/shared/data/worldcup98_requests_per_minute.csv"
ROWS = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def noop_descriptor(directory: str, n: int) -> str:
    path = os.path.join(directory, f"noop{n}.yaml")
    with open(path, "w") as fh:
        fh.write(f"""tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    base: {{type: strato.nodes.Noop}}
    web:
      type: strato.nodes.Noop
      capabilities: {{scalable: {{properties: {{default_instances: {n}, max_instances: {2 * n}}}}}}}
      requirements: [{{dependency: base}}]
""")
    return path


def idle_pass_ms(directory: str, n: int, repeats: int = 7) -> float:
    """Median duration of a pass with nothing to do over n noop instances (after one warm-up pass)."""
    ceiling = int(os.environ.get("STRATO_MAX_INSTANCES_PER_NODE") or 1000)
    os.environ["STRATO_MAX_INSTANCES_PER_NODE"] = str(max(ceiling, 2 * n))  # above the default ceiling
    store = StateStore(os.path.join(directory, f"state{n}.db"))
    report = service.build(noop_descriptor(directory, n), f"idle{n}", {}, store, RunOptions())
    assert report["ok"], report
    m = Maintainer(store, f"idle{n}", MaintainOptions())
    first = m.run_pass()
    assert not first.acted and not first.errors, first.to_dict()
    times = []
    for _ in range(repeats):
        r = m.run_pass()
        assert not r.acted and r.instances == n + 1
        times.append(r.duration * 1000)
    store.close()
    print(f"idle pass, {n:>6} instances: median {statistics.median(times):7.1f} ms  "
          f"(min {min(times):.1f}, max {max(times):.1f}, {repeats} passes)")
    return statistics.median(times)


def cli(home: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, STRATO_HOME=home, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def start_loop(home: str, name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, STRATO_HOME=home, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "maintain", name, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def heal_seconds(directory: str, interval: float = 1.0, kills: int = 3) -> float:
    """kill -9 of a replica of the real example -> a replacement answering /health (median of `kills`)."""
    home = os.path.join(directory, "heal-home")
    name = f"heal{os.getpid()}"
    proc = cli(home, "build", os.path.join(EXAMPLE_DIR, "service.yaml"), "--name", name, "-q")
    assert proc.returncode == 0, proc.stderr
    store = StateStore(os.path.join(home, "state.db"))
    loop = start_loop(home, name, "--interval", f"{interval}s")
    results = []
    try:
        while store.lease_holder(name) is None:
            time.sleep(0.05)
        for i in range(kills):
            victim = next(r for r in store.instances(name) if r.node == "server" and r.index == i % 2)
            time.sleep(interval * random.random())   # kill at a random phase of the loop
            os.kill(victim.handle["pid"], signal.SIGKILL)
            killed = time.monotonic()
            while time.monotonic() < killed + 120:
                rec = store.get_instance(victim.key)
                if rec.status == "ready" and rec.handle and rec.handle["pid"] != victim.handle["pid"]:
                    try:
                        with urllib.request.urlopen(rec.attributes["url"] + "/health", timeout=2) as resp:
                            if resp.status == 200:
                                break
                    except OSError:
                        pass
                time.sleep(0.02)
            results.append(time.monotonic() - killed)
            print(f"kill -9 of server[{victim.index}] -> healthy replacement in {results[-1]:.2f} s "
                  f"(interval {interval:g} s)")
    finally:
        stop(loop)
        cli(home, "destroy", name, "--yes", "-q")
        store.close()
    return statistics.median(results)


# -- the load ramp ------------------------------------------------------------------------------

def trace_stretch(minutes: int) -> list[float]:
    """A rising stretch of the WorldCup98 trace (requests per minute): the busiest day's climb to its peak."""
    with open(TRACE) as fh:
        counts = [float(row["count"]) for row in csv.DictReader(fh)]
    peak = max(range(len(counts)), key=counts.__getitem__)
    start = max(0, peak - int(minutes * 0.7))
    return counts[start:start + minutes]


class OpenLoopLoad:
    """Stand-in for `strato loadgen` where it is absent: Poisson arrivals at the trace's (scaled) rate."""

    def __init__(self, url: str, rates: list[float], seconds_per_step: float, max_in_flight: int = 64):
        self.url, self.rates, self.step = url, rates, seconds_per_step
        self.latencies: list[float] = []
        self.errors = 0
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.lock = threading.Lock()

    def _one(self) -> None:
        started = time.perf_counter()
        try:
            req = urllib.request.Request(self.url, data=ROWS, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
            with self.lock:
                self.latencies.append(time.perf_counter() - started)
        except OSError:
            with self.lock:
                self.errors += 1
        finally:
            self.slots.release()

    def run(self) -> None:
        rng = random.Random(7)
        begin = time.monotonic()
        at = 0.0
        for i, rate in enumerate(self.rates):
            end = (i + 1) * self.step
            while True:
                at += rng.expovariate(rate) if rate > 0 else self.step
                if at >= end:
                    at = end
                    break
                delay = begin + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not self.slots.acquire(timeout=1.0):
                    with self.lock:
                        self.errors += 1   # the client is saturated: counted as a failed request
                    continue
                threading.Thread(target=self._one, daemon=True).start()
        deadline = time.monotonic() + 15
        while self.slots._value < 64 and time.monotonic() < deadline:
            time.sleep(0.05)


POLICIES = {
    "target_tracking": """
    - autoscale:
        type: strato.policies.Scaling
        targets: [server]
        properties:
          metric: request_rate
          aggregation: sum
          target: {per_replica:g}
          min_instances: 1
          max_instances: {max_replicas}
          period: 1 s
          cooldown: 0 s
          scale_down_stabilization: 20 s
          scale_up_period: 2 s
""",
    "optimizer": """
    - autoscale:
        type: strato.policies.Optimizer
        targets: [server]
        properties:
          target_metric: latency_p95_ms
          target_value: {slo_ms}
          input_metrics: [request_rate]
          min_instances: 1
          max_instances: {max_replicas}
          period: 1 s
          cooldown: 0 s
          startup_delay: 2 s
          training_samples_required: 20
""",
}


def ramp_run(directory: str, policy: str, rates: list[float], step_s: float, settings: dict,
             label: str | None = None) -> dict:
    label = label or policy
    work = os.path.join(directory, label)
    os.makedirs(work, exist_ok=True)
    for script in ("train.py", "serve.py"):
        shutil.copy(os.path.join(EXAMPLE_DIR, script), work)
    with open(os.path.join(EXAMPLE_DIR, "service.yaml")) as fh:
        text = fh.read()
    text = text.replace("\n  outputs:", "\n  policies:" + POLICIES[policy].format(**settings) + "\n  outputs:")
    text = text.replace("default: 2\n      description: Number", "default: 1\n      description: Number")
    descriptor = os.path.join(work, "service.yaml")
    with open(descriptor, "w") as fh:
        fh.write(text)
    home = os.path.join(work, "home")
    name = f"ramp-{label.replace('_', '-').replace('.', '-')}-{os.getpid()}"
    proc = cli(home, "build", descriptor, "--name", name, "-q")
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:]}
    store = StateStore(os.path.join(home, "state.db"))
    endpoint = cli(home, "outputs", name, "--get", "endpoint").stdout.strip()
    loop = start_loop(home, name, "--interval", "1s")
    replica_s = 0.0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal replica_s
        last = time.monotonic()
        while not stop_sampling.is_set():
            stop_sampling.wait(0.5)
            now = time.monotonic()
            ready = sum(1 for r in store.instances(name) if r.node == "server" and r.status == "ready")
            replica_s += ready * (now - last)
            last = now

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        while store.lease_holder(name) is None:
            time.sleep(0.05)
        sampler.start()
        if loadgen is not None:   # `strato loadgen`'s engine: the same open-loop trace replay as the CLI
            segments = [loadgen.Segment(step_s, rate) for rate in rates]
            report = loadgen.run(endpoint, segments, step_s * len(rates), interval_s=10.0, method="POST",
                                 data=ROWS, headers={"Content-Type": "application/json"}, max_inflight=64)
            total = report.total()
            load = None
        else:
            load = OpenLoopLoad(endpoint, rates, step_s)
            load.run()
    finally:
        stop_sampling.set()
        sampler.join(timeout=5)
        stop(loop)
        err = loop.stderr.read() if loop.stderr else ""
    events = store.events(name, 100000)
    actions = [e for e in events if e["kind"] == "scaled"]
    broken = [e["detail"].get("error") for e in events if e["kind"] == "policy_broken"]
    samples = len(store.samples(name, "server"))
    cli(home, "destroy", name, "--yes", "-q")
    store.close()
    if load is None:
        p95, requests, errors = total["p95_ms"], total["ok"], total["errors"] + total["dropped"]
    else:
        lat = sorted(load.latencies)
        p95 = round(1000 * lat[int(0.95 * (len(lat) - 1))], 2) if lat else None
        requests, errors = len(lat), load.errors
    result = {"p95_ms": p95, "replica_s": round(replica_s, 1),
              "actions": len(actions), "requests": requests, "errors": errors, "samples": samples,
              "max_replicas_used": max([a["detail"]["desired"] for a in actions] or [1])}
    if broken:
        result["policy_errors"] = sorted({b for b in broken if b})[:3]
    if "Traceback" in err:
        result["loop_crash"] = err[-500:]
    print(f"ramp, {label:<22} p95 {result['p95_ms']} ms, {result['replica_s']} replica-s, "
          f"{result['actions']} scaling actions, {result['requests']} requests, {result['errors']} errors"
          + (f", policy errors: {result['policy_errors']}" if broken else ""))
    return result


def interpolate(x: float, points: list[tuple[float, float]]) -> float:
    """Linear interpolation on sorted (x, y) points (x within their range)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def equal_p95_ramp(directory: str, rates: list[float], args, settings: dict) -> dict:
    """Target tracking at several per-replica targets (its p95 / replica-seconds curve) and the optimizer at its
    SLO; the optimizer's replica-seconds over tracking's interpolated at the optimizer's p95 (equal p95)."""
    targets = [float(x) for x in args.tracking_targets.split(",") if x.strip()]
    tracking = {f"{t:g}": ramp_run(directory, "target_tracking", rates, args.seconds_per_minute,
                                    dict(settings, per_replica=t), label=f"target_tracking_{t:g}") for t in targets}
    optimizer = ramp_run(directory, "optimizer", rates, args.seconds_per_minute, settings)
    points = sorted((r["p95_ms"], r["replica_s"]) for r in tracking.values() if r.get("p95_ms") is not None)
    ratio = None
    if optimizer.get("p95_ms") is not None and len(points) >= 2 and points[0][0] <= optimizer["p95_ms"] <= points[-1][0]:
        at_equal = interpolate(optimizer["p95_ms"], points)
        ratio = round(optimizer["replica_s"] / at_equal, 3)
        print(f"ramp: at the optimizer's p95 ({optimizer['p95_ms']} ms) target tracking would use {at_equal:.1f} "
              f"replica-s; the optimizer used {optimizer['replica_s']} (x{ratio})")
    else:
        print("ramp: the optimizer's p95 lies outside target tracking's range: no ratio at equal p95")
    return {"target_tracking": tracking, "optimizer": optimizer, "replica_s_ratio_at_equal_p95": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramp-minutes", type=int, default=50, help="trace minutes replayed")
    parser.add_argument("--seconds-per-minute", type=float, default=2.0, help="speed-up: wall seconds per minute")
    parser.add_argument("--peak-rate", type=float, default=60.0, help="requests/s at the stretch's busiest minute")
    parser.add_argument("--skip-ramp", action="store_true")
    parser.add_argument("--tracking-targets", default="10,20,30,45,60",
                        help="per-replica request rates target tracking is run at (its p95 / cost curve)")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed last)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="strato-bench-maintain-")
    out: dict = {}
    try:
        out["pass_1000_ms"] = round(idle_pass_ms(directory, 1000), 2)
        out["pass_10000_ms"] = round(idle_pass_ms(directory, 10000), 2)
        out["heal_s"] = round(heal_seconds(directory), 2)
        out["heal_interval_s"] = 1.0
        if not args.skip_ramp:
            counts = trace_stretch(args.ramp_minutes)
            scale = args.peak_rate / max(counts)
            rates = [c * scale for c in counts]
            print(f"ramp: {len(rates)} trace minutes x {args.seconds_per_minute:g} s, "
                  f"{min(rates):.1f} -> {max(rates):.1f} requests/s")
            settings = {"per_replica": 20, "max_replicas": 6, "slo_ms": 25}
            out["ramp"] = equal_p95_ramp(directory, rates, args, settings)
            out["ramp_settings"] = {"trace_minutes": len(rates), "seconds_per_minute": args.seconds_per_minute,
                                    "peak_rate": args.peak_rate, **settings,
                                    "tracking_targets": args.tracking_targets,
                                    "load_generator": "strato loadgen" if loadgen is not None else "built-in"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
