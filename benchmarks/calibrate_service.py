"""Measure one real ai-inference replica's latency-vs-load curve and fit the simulator's M/M/1 model to it.

Trains examples/ai-inference/train.py into a temporary folder, starts ONE serve.py replica on a free
127.0.0.1 port, measures its mean service time at low load with one connection sending back to back, finds
its saturation throughput with short closed-loop bursts of 4 and 16 connections (the best of the two: a
replica with a queue of requests, which is what saturation means for an open-loop load), and drives it
with an OPEN-LOOP Poisson load at 10-90 % of that throughput. Latency is taken from each request's SCHEDULED send time,
so a slow server cannot slow down the generator and hide its own queueing (coordinated omission); a
request that times out counts with the time it waited. Prints a table, the fit
(optimizer.calibration.fit_service_curve), how the measured shape compares with M/M/1 in the
simulator's units (p95 / mean service time vs utilisation) and, last, one JSON line.

serve.py answers in two send()s; before it set TCP_NODELAY, a keep-alive client sending back to back
waited ~40 ms per request for its own delayed ACK (Nagle). The first table row, with delayed ACKs,
checks that no such stall is left. The rest is measured with TCP_QUICKACK on the client, i.e. the
replica's own service and queueing (--delayed-ack measures everything with delayed ACKs).

The load generator runs on the same machine as the server and competes with it for the CPUs: the table
shows the generator's own send rate, its send lag and the CPU each side used, so you can judge that.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.local import free_port  # noqa: E402
from optimizer.calibration import fit_service_curve, save_calibration  # noqa: E402

EXAMPLE = ROOT / "examples" / "ai-inference"
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
HEADERS = {"Content-Type": "application/json"}
LADDER = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------- the replica

def train_model(work_dir: Path, timeout_s: float = 120.0) -> Path:
    """Run the example's trainer as Strato would (MODEL_DIR + STRATO_ATTRIBUTES_FILE); return the model path."""
    attrs = work_dir / "trainer-attributes.json"
    env = dict(os.environ, MODEL_DIR=str(work_dir), STRATO_ATTRIBUTES_FILE=str(attrs))
    proc = subprocess.run([sys.executable, "train.py"], cwd=EXAMPLE, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"train.py failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return Path(json.loads(attrs.read_text())["model_path"])


class Replica:
    """One serve.py process on 127.0.0.1; use as a context manager so it is always stopped."""

    def __init__(self, model: Path, log_path: Path, health_timeout_s: float = 30.0):
        self.port = free_port()
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "serve.py", "--model", str(model), "--port", str(self.port)],
                                     cwd=EXAMPLE, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy(health_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited with {self.proc.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve.py not healthy on port {self.port} within {timeout_s:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU the server has used so far (from /proc)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            return math.nan

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ----------------------------------------------------------------- the load generator

class Client:
    """A keep-alive HTTP connection that reconnects after an error.

    serve.py writes a response's headers and body in two send()s without TCP_NODELAY, so on a busy
    keep-alive connection Nagle's algorithm holds the body until the client ACKs the headers, which
    Linux delays by ~40 ms. With `quickack` (the default here) the client ACKs at once (TCP_QUICKACK
    before each response), so what is measured is the replica's own service and queueing.
    """

    def __init__(self, port: int, timeout_s: float, quickack: bool = True):
        self.port, self.timeout_s, self.conn = port, timeout_s, None
        self.failures: dict[str, int] = {}  # kind of failure -> count
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")

    def connect(self) -> None:
        """Open the connection now (serve.py listens with a backlog of 5: connecting 16 at once while timing
        would add SYN retries of 1 s to the measurement)."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
                self.conn.connect()
        except OSError:
            self.close()

    def predict(self) -> bool:
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            self.conn.request("POST", "/predict", BODY, HEADERS)
            if self.quickack:
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            resp = self.conn.getresponse()
            resp.read()
            if resp.status != 200:
                self.failures[f"HTTP {resp.status}"] = self.failures.get(f"HTTP {resp.status}", 0) + 1
            return resp.status == 200
        except (OSError, http.client.HTTPException) as exc:
            kind = type(exc).__name__
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self.close()
            return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Step:
    """What one load step measured; latencies from the scheduled send time, in seconds."""
    mode: str
    offered: float  # requests/s asked for (open loop) or achieved (closed loop)
    duration_s: float
    latencies: np.ndarray
    ok: np.ndarray
    send_lag: np.ndarray  # actual send - scheduled send
    wall_s: float  # from the first scheduled send to the last completion (at least duration_s)
    generator_rate: float  # requests/s the generator really sent within the scheduled window
    generator_cpu_s: float
    server_cpu_s: float
    other_cpu_s: float  # what everything else on the machine used meanwhile (other work, steal)
    loadavg: tuple[float, float, float] = field(default_factory=os.getloadavg)
    pass_p95_s: list[float] = field(default_factory=list)  # p95 of each pass a merged step was measured in
    failures: dict[str, int] = field(default_factory=dict)  # kind -> count (exception name, HTTP status, unsent)

    @property
    def achieved(self) -> float:
        return float(self.ok.sum()) / self.wall_s

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if len(self.latencies) else math.nan

    def row(self) -> dict:
        lag = self.send_lag[np.isfinite(self.send_lag)]
        return {"mode": self.mode, "offered": round(self.offered, 2), "achieved": round(self.achieved, 2),
                "generator_rate": round(self.generator_rate, 2), "n": int(len(self.latencies)),
                "errors": int((~self.ok).sum()), "mean_s": round(float(self.latencies.mean()), 6),
                "p50_s": round(self.pct(50), 6), "p95_s": round(self.pct(95), 6), "p99_s": round(self.pct(99), 6),
                "send_lag_p99_s": round(float(np.percentile(lag, 99)), 6) if len(lag) else None,
                "generator_cpu": round(self.generator_cpu_s / self.wall_s, 3),
                "server_cpu": round(self.server_cpu_s / self.wall_s, 3),
                "other_cpu": round(self.other_cpu_s / self.wall_s, 3), "loadavg_1m": round(self.loadavg[0], 2),
                **({"pass_p95_s": [round(x, 6) for x in self.pass_p95_s]} if self.pass_p95_s else {}),
                **({"failures": self.failures} if self.failures else {})}


def merged(steps: list[Step]) -> Step:
    """One step from the passes that measured the same rate: requests pooled, times and CPU added up."""
    wall = sum(s.wall_s for s in steps)
    return Step(steps[0].mode, steps[0].offered, sum(s.duration_s for s in steps),
                np.concatenate([s.latencies for s in steps]), np.concatenate([s.ok for s in steps]),
                np.concatenate([s.send_lag for s in steps]), wall,
                sum(s.generator_rate * s.duration_s for s in steps) / sum(s.duration_s for s in steps),
                sum(s.generator_cpu_s for s in steps), sum(s.server_cpu_s for s in steps),
                sum(s.other_cpu_s for s in steps),
                tuple(max(s.loadavg[i] for s in steps) for i in range(3)), [s.pct(95) for s in steps],
                {k: sum(s.failures.get(k, 0) for s in steps) for k in {k for s in steps for k in s.failures}})


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
        return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / TICK
    except (OSError, ValueError, IndexError):
        return math.nan


def _measured(replica, run) -> tuple[float, float, float, object]:
    gen0, srv0, all0 = time.process_time(), replica.cpu_seconds(), machine_busy_seconds()
    out = run()
    gen, srv = time.process_time() - gen0, replica.cpu_seconds() - srv0
    return gen, srv, machine_busy_seconds() - all0 - gen - srv, out


def _run_clients(replica: Replica, count: int, work, limit_s: float, timeout_s: float,
                 quickack: bool) -> tuple[float, dict[str, int]]:
    """Run work(client, start) in `count` threads, each with its own connection opened before the common
    start time; wait at most `limit_s` after the start. Returns the start (perf_counter) and the failures."""
    start: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(count, action=lambda: start.append(time.perf_counter() + 0.02))

    def worker() -> None:
        client = Client(replica.port, timeout_s, quickack)
        client.connect()
        try:
            barrier.wait(timeout=30)
            work(client, start[0])
        except threading.BrokenBarrierError:
            pass
        finally:
            client.close()
            with lock:
                for kind, n in client.failures.items():
                    failures[kind] = failures.get(kind, 0) + n

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + 30 + limit_s
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    if not start:
        raise RuntimeError(f"the {count} load-generator connections were not ready within 30 s")
    return start[0], failures


def closed_loop(replica: Replica, connections: int, seconds: float, timeout_s: float = 5.0,
                quickack: bool = True) -> Step:
    """`connections` clients each sending back to back for `seconds`: the throughput the replica sustains."""
    records: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def work(client: Client, start: float) -> None:
        mine = []
        while (now := time.perf_counter()) < start + seconds:
            ok = client.predict()
            mine.append((time.perf_counter() - now, ok))
        with lock:
            records.extend(mine)

    def run():
        start, failures = _run_clients(replica, connections, work, seconds + timeout_s + 5, timeout_s, quickack)
        return time.perf_counter() - start, failures

    gen_cpu, srv_cpu, other_cpu, (wall, failures) = _measured(replica, run)
    lat = np.array([r[0] for r in records])
    ok = np.array([r[1] for r in records], dtype=bool)
    wall = max(wall, seconds)
    rate = len(lat) / wall
    return Step(f"closed x{connections}" + ("" if quickack else " dACK"), rate, seconds, lat, ok, np.zeros(len(lat)),
                wall, rate, gen_cpu, srv_cpu, other_cpu, failures=failures)


def open_loop(replica: Replica, rate: float, seconds: float, workers: int = 32, timeout_s: float = 5.0,
              seed: int = 0, quickack: bool = True) -> Step:
    """Poisson arrivals at `rate`/s for `seconds`, sent by `workers` threads with keep-alive connections.

    The arrival times are drawn up front (a Poisson process conditioned on round(rate x seconds) arrivals:
    sorted uniform times), so the offered load does not depend on how the server answers. Each request's
    latency runs from its scheduled time; one still unsent `timeout_s` after its time counts as timed out.
    """
    n = max(1, round(rate * seconds))
    times = np.sort(np.random.default_rng(seed).uniform(0.0, seconds, n))
    latency = np.full(n, math.nan)
    lag = np.full(n, math.nan)
    ok = np.zeros(n, dtype=bool)
    cursor = iter(range(n))
    lock = threading.Lock()
    last_done = [0.0]
    unsent = [0]

    def work(client: Client, start: float) -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            due = start + times[i]
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            if sent - due > timeout_s:  # the client-side queue alone exceeded the timeout
                latency[i] = sent - due
                with lock:
                    unsent[0] += 1
                continue
            lag[i] = sent - due
            ok[i] = client.predict()
            done = time.perf_counter()
            latency[i] = done - due
            with lock:
                last_done[0] = max(last_done[0], done - start)

    def run():
        start, failures = _run_clients(replica, workers, work, seconds + 2 * timeout_s + 5, timeout_s, quickack)
        with lock:  # whatever a stuck worker never answered counts as timed out
            late = np.isnan(latency)
            latency[late] = np.maximum(timeout_s, time.perf_counter() - start - times[late])
            unsent[0] += int(late.sum())
        if unsent[0]:
            failures["unsent within the timeout"] = unsent[0]
        return last_done[0], failures

    gen_cpu, srv_cpu, other_cpu, (wall, failures) = _measured(replica, run)
    done = np.isfinite(latency)
    in_window = int(np.sum(times + np.nan_to_num(lag, nan=np.inf) <= seconds))
    return Step("open", rate, seconds, latency[done], ok[done], lag[done], max(wall, seconds), in_window / seconds,
                gen_cpu, srv_cpu, other_cpu, failures=failures)


# ----------------------------------------------------------------- the run

def warm_up(replica: Replica, requests: int = 100) -> None:
    client = Client(replica.port, 5.0)
    for _ in range(requests):
        client.predict()
    client.close()


def fmt_table(steps: list[Step]) -> str:
    head = (f"{'mode':<14} {'offered':>8} {'achieved':>8} {'gen.sent':>8} {'n':>5} {'err':>3} {'p50 ms':>7} "
            f"{'p95 ms':>7} {'p99 ms':>7} {'lag99 ms':>8} {'gen cpu':>7} {'srv cpu':>7} {'oth cpu':>7} "
            f"{'load1':>5}  p95/pass ms")
    lines = [head, "-" * len(head)]
    for s in steps:
        r = s.row()
        lag = "-" if s.mode != "open" or r["send_lag_p99_s"] is None else f"{1000 * r['send_lag_p99_s']:.2f}"
        sent = f"{r['generator_rate']:.1f}" if s.mode == "open" else "-"
        passes = "/".join(f"{1000 * x:.1f}" for x in s.pass_p95_s) or "-"
        lines.append(f"{s.mode:<14} {r['offered']:>8.1f} {r['achieved']:>8.1f} {sent:>8} {r['n']:>5} {r['errors']:>3} "
                     f"{1000 * r['p50_s']:>7.2f} {1000 * r['p95_s']:>7.2f} {1000 * r['p99_s']:>7.2f} {lag:>8} "
                     f"{r['generator_cpu']:>7.2f} {r['server_cpu']:>7.2f} {r['other_cpu']:>7.2f} "
                     f"{r['loadavg_1m']:>5.2f}  {passes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="FILE", help="write the calibration JSON here (default: write nothing)")
    parser.add_argument("--step-seconds", type=float, default=6.0,
                        help="seconds of open-loop load per rate, split over the passes (default 6)")
    parser.add_argument("--passes", type=int, default=2,
                        help="passes over the rate ladder, up then down then up...; each rate's requests are pooled "
                             "over the passes, so a burst of other load on the machine does not land on one rate "
                             "only (default 2)")
    parser.add_argument("--burst-seconds", type=float, default=3.0,
                        help="seconds per closed-loop saturation burst (default 3)")
    parser.add_argument("--workers", type=int, default=32, help="open-loop sender threads (default 32)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delayed-ack", action="store_true",
                        help="measure with the client's normal delayed ACKs, i.e. with the ~40 ms Nagle stall "
                             "serve.py's two-write responses cause on busy keep-alive connections (default: the "
                             "client ACKs at once, TCP_QUICKACK, so the replica's own queueing is measured)")
    args = parser.parse_args(argv)
    if not (0 < args.step_seconds <= 30 and 0 < args.burst_seconds <= 30 and 1 <= args.workers <= 256
            and 0 < args.timeout <= 30 and 1 <= args.passes <= 10):
        parser.error("keep --step-seconds/--burst-seconds/--timeout in (0, 30], --workers in [1, 256] and "
                     "--passes in [1, 10]")

    started = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="strato-calibrate-") as tmp:
        model = train_model(Path(tmp))
        with Replica(model, Path(tmp) / "serve.log") as replica:
            print(f"one serve.py replica on 127.0.0.1:{replica.port} (pid {replica.proc.pid}), model {model.name}",
                  flush=True)
            warm_up(replica)
            quick = not args.delayed_ack
            stall = closed_loop(replica, 1, min(args.burst_seconds, 2.0), args.timeout, quickack=False)
            single = closed_loop(replica, 1, min(args.burst_seconds, 2.0), args.timeout, quick)
            bursts = [stall, single] + [closed_loop(replica, c, args.burst_seconds, args.timeout, quick)
                                        for c in (4, 16)]
            print(f"one keep-alive connection back to back: mean {1000 * stall.latencies.mean():.2f} ms with "
                  f"delayed ACKs, {1000 * single.latencies.mean():.2f} ms with "
                  f"{'delayed ACKs' if args.delayed_ack else 'TCP_QUICKACK'} (the "
                  "first; a ~40 ms gap would be a Nagle stall)", flush=True)
            saturation = max(b.achieved for b in bursts[2:])  # with a queue of 4 or 16 requests in the server
            service = float(single.latencies.mean())
            print(f"saturation (closed loop, best of 4 and 16 connections): {saturation:.1f} req/s; one connection "
                  f"back to back (no queue): {single.achieved:.1f} req/s; mean response time with one connection "
                  f"(low-load service time): {1000 * service:.2f} ms, i.e. 1/s = {1 / service:.1f} req/s", flush=True)
            by_rate: dict[int, list[Step]] = {i: [] for i in range(len(LADDER))}
            for n in range(args.passes):
                order = range(len(LADDER)) if n % 2 == 0 else reversed(range(len(LADDER)))
                for i in order:
                    step = open_loop(replica, LADDER[i] * saturation, args.step_seconds / args.passes, args.workers,
                                     args.timeout, args.seed + 100 * n + i, quick)
                    by_rate[i].append(step)
                    print(f"  pass {n + 1}, open loop {LADDER[i]:.0%} of saturation: offered {step.offered:.1f}/s, "
                          f"achieved {step.achieved:.1f}/s, p95 {1000 * step.pct(95):.2f} ms, other CPU "
                          f"{step.other_cpu_s / step.wall_s:.2f} cores", flush=True)
            steps = [merged(by_rate[i]) for i in range(len(LADDER))]
    elapsed = time.monotonic() - started

    print()
    print(fmt_table(bursts + steps))
    print("gen.sent = requests/s the generator really sent; lag99 = p99 of (actual - scheduled) send time;"
          " gen/srv/oth cpu = cores used by the generator / the replica / everything else on the machine "
          f"(other work, steal). The generator shares the machine's {os.cpu_count()} cores with the replica, so "
          "its CPU is taken from the server's; rows with oth cpu well above 0 were measured on a busy machine.")
    busy = [s for s in bursts + steps if s.other_cpu_s / s.wall_s > 0.3]
    if busy:
        print(f"WARNING: {len(busy)} of {len(bursts + steps)} rows ran while other work used > 0.3 cores of the "
              "machine; their latencies are not the replica's alone (run again on a quiet machine)")
    failed = {s.mode + f" {s.offered:.0f}/s": s.failures for s in bursts + steps if s.failures}
    if failed:
        print("failed requests by kind: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    points = [(s.offered, s.pct(95), s.achieved) for s in steps]
    cal = fit_service_curve(points, mean_service_s=service, saturation_req_per_s=saturation)
    print(f"\nfit p95 = c + ln(20)/(mu - rate) on {sum(p.used for p in cal.points)} points: mu = "
          f"{cal.mu_req_per_s:.1f} req/s, c = {1000 * cal.overhead_s:.3f} ms; relative error median "
          f"{cal.fit_median_rel_error:.1%}, max {cal.fit_max_rel_error:.1%} (saturation measured "
          f"{saturation:.1f} req/s)")
    print("shape in simulator units (p95 / low-load mean service time vs utilisation = rate / saturation):")
    print(f"  {'util':>5} {'measured':>9} {'M/M/1':>7} {'fit':>7}")
    for p in cal.points:
        print(f"  {p.utilisation:>5.2f} {p.p95_over_service:>9.2f} {p.mm1_p95_over_service:>7.2f} "
              f"{p.fitted_p95_s / service:>7.2f}")
    shape = ", ".join(f"u={u:g}: {'n/a' if e is None else f'{e:+.0%}'}" for u, e in cal.mm1_shape_rel_error.items())
    print(f"M/M/1 relative error (M/M/1 - measured)/measured, + = M/M/1 pessimistic: {shape}")
    print(f"total {elapsed:.0f} s; load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out:
        print(f"wrote {save_calibration(cal, args.out)}")
    print(json.dumps({
        "mu_req_per_s": round(cal.mu_req_per_s, 3), "overhead_s": round(cal.overhead_s, 6),
        "saturation_req_per_s": round(saturation, 3), "single_connection_req_per_s": round(single.achieved, 3),
        "mean_service_s": round(service, 6),
        "fit_median_rel_error": round(cal.fit_median_rel_error, 4),
        "fit_max_rel_error": round(cal.fit_max_rel_error, 4),
        "mm1_shape_rel_error": {f"{u:g}": (None if e is None else round(e, 4))
                                for u, e in cal.mm1_shape_rel_error.items()},
        "points": [s.row() for s in bursts + steps], "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
