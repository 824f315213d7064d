"""Benchmark: 20 containers of the local busybox image built by one `strato build` on Podman, against 20 parallel
`podman run` of the same image in the same run (the floor); then scaling 20 -> 40 -> 20.

Each container serves HTTP on a port published on 127.0.0.1; "healthy" means it answered there.
Prints the figures, then one JSON line with all_healthy_s, podman_floor_s, containers_per_s,
start_p50_s, start_p95_s, scale_up_s, scale_down_s (target: all_healthy_s <= 1.3 x podman_floor_s).
    python benchmarks/containers.py [--count 20] [--parallelism 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from drivers.common import http_ok  # noqa: E402
from tests.env import podman as podman_env  # noqa: E402

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    count: {{type: integer, default: {count}}}
  node_templates:
    web:
      type: strato.nodes.Container
      properties:
        image: {image}
        docker_host: {docker_host}
        command: [/bin/httpd, -f, -p, "8080", -h, /www]
        ports: [8080]
        health_check: {{http: /, timeout: 60}}
      capabilities:
        scalable: {{properties: {{default_instances: {{get_input: count}}, max_instances: 1000}}}}
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def podman_floor(service: podman_env.PodmanService, count: int, label: str) -> float:
    """20 parallel `podman run -d` publishing on 127.0.0.1, until every one answers HTTP: the floor."""
    env = service.cli_env()

    def one(i: int) -> float:
        started = time.monotonic()
        proc = subprocess.run(["podman", "run", "-d", "--label", f"{label}=1", "-p", "127.0.0.1::8080",
                               service.image, "/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                              capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"podman run failed: {proc.stderr.strip()}")
        cid = proc.stdout.strip()
        port = subprocess.run(["podman", "port", cid, "8080"], capture_output=True, text=True, env=env,
                              timeout=60).stdout.strip().rsplit(":", 1)[-1]
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"podman container {cid[:12]} did not answer on 127.0.0.1:{port}")
            time.sleep(0.05)
        return time.monotonic() - started

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(one, range(count)))
        return time.monotonic() - started
    finally:
        ids = subprocess.run(["podman", "ps", "-aq", "--filter", f"label={label}=1"], capture_output=True,
                             text=True, env=env, timeout=60).stdout.split()
        if ids:
            subprocess.run(["podman", "rm", "-f", *ids], capture_output=True, env=env, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--parallelism", type=int, default=32)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="strato-bench-containers-")
    os.environ["STRATO_HOME"] = os.path.join(work, "home")
    from orchestrator import service as svc
    from orchestrator.executor import RunOptions
    service = podman_env.start(os.path.join(work, "podman"))
    name = f"bench-containers-{os.getpid()}"
    store = svc.open_store()
    try:
        path = os.path.join(work, "containers.yaml")
        with open(path, "w") as fh:
            fh.write(DESCRIPTOR.format(count=args.count, image=service.image, docker_host=service.docker_host))
        options = RunOptions(parallelism=args.parallelism, timeout=300)
        # warm-up: the engine's first container pays one-off costs (image layers mounted, network set up)
        floor_warm = podman_floor(service, 1, f"strato-bench-warm-{os.getpid()}")
        floor = podman_floor(service, args.count, f"strato-bench-floor-{os.getpid()}")

        starts: list[float] = []

        def on_event(event: dict) -> None:
            if event.get("event") == "ready" and event.get("seconds") is not None:
                starts.append(float(event["seconds"]))

        t0 = time.monotonic()
        report = svc.build(path, name, {}, store, options, on_event=on_event)
        all_healthy = time.monotonic() - t0
        if not report["ok"]:
            raise SystemExit(f"build failed: {report['failures'][:3]}")
        svc.scale(store, name, "web", 2 * args.count)
        t0 = time.monotonic()
        up = svc.build(path, name, {}, store, options)
        scale_up = time.monotonic() - t0
        svc.scale(store, name, "web", args.count)
        t0 = time.monotonic()
        down = svc.build(path, name, {}, store, options)
        scale_down = time.monotonic() - t0
        if not (up["ok"] and down["ok"]):
            raise SystemExit(f"scaling failed: {(up['failures'] + down['failures'])[:3]}")
    finally:
        destroyed = svc.destroy(store, name, RunOptions(parallelism=args.parallelism)) if store.get_infra(name) \
            else {"ok": True}
        service.stop()
    result = {
        "containers": args.count, "all_healthy_s": round(all_healthy, 3), "podman_floor_s": round(floor, 3),
        "ratio_to_floor": round(all_healthy / floor, 3), "target_met": all_healthy <= 1.3 * floor,
        "containers_per_s": round(args.count / all_healthy, 2),
        "start_p50_s": round(statistics.median(starts), 3), "start_p95_s": round(quantile(starts, 0.95), 3),
        "scale_up_s": round(scale_up, 3), "scale_down_s": round(scale_down, 3),
        "scaled_to": 2 * args.count, "podman_single_warmup_s": round(floor_warm, 3),
        "destroyed_ok": bool(destroyed["ok"]),
    }
    print(f"{args.count} containers, one build:   all healthy in {all_healthy:.2f} s "
          f"({result['containers_per_s']} containers/s)")
    print(f"floor, {args.count} parallel podman run:  {floor:.2f} s   ratio {result['ratio_to_floor']} "
          f"(target <= 1.3: {'met' if result['target_met'] else 'NOT met'})")
    print(f"per-container start:             p50 {result['start_p50_s']} s, p95 {result['start_p95_s']} s")
    print(f"scale {args.count} -> {2 * args.count}: {scale_up:.2f} s; {2 * args.count} -> {args.count}: "
          f"{scale_down:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
