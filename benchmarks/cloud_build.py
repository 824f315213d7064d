"""Benchmark: one descriptor with 50 EC2 instances + 20 Nova servers built on moto + Mimic (loopback), plus the cost crossover.

Prints wall time against the summed latency of every cloud API call (parallel efficiency), API
calls per instance, destroy time, and the table of requests/month above which a SageMaker
endpoint is cheaper than Lambda. The last line is one JSON object.
    python benchmarks/cloud_build.py [--ec2 50] [--nova 20] [--parallelism 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "cloud"))

import emulators  # noqa: E402

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    ec2_fleet:
      type: strato.nodes.aws.EC2Instance
      properties: {{image: ami-04681a1dbd79675a5, instance_type: t3.micro, ports: [22]}}
      capabilities: {{scalable: {{properties: {{default_instances: {ec2}, max_instances: 1000}}}}}}
    nova_fleet:
      type: strato.nodes.openstack.Server
      properties: {{flavor: "1GB Standard Instance", image: "Ubuntu 14.04 LTS (Trusty Tahr) (PVHVM)"}}
      capabilities: {{scalable: {{properties: {{default_instances: {nova}, max_instances: 1000}}}}}}
"""


class CallMeter:
    """Counts and times every HTTP API call boto3 and openstacksdk make (process-wide, thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {"aws": 0, "openstack": 0}
        self.seconds = {"aws": 0.0, "openstack": 0.0}

    def wrap(self, owner, attr: str, kind: str):
        real = getattr(owner, attr)
        meter = self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                with meter.lock:
                    meter.calls[kind] += 1
                    meter.seconds[kind] += time.perf_counter() - t0
        setattr(owner, attr, timed)

    def reset(self):
        with self.lock:
            self.calls = {"aws": 0, "openstack": 0}
            self.seconds = {"aws": 0.0, "openstack": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ec2", type=int, default=50)
    parser.add_argument("--nova", type=int, default=20)
    parser.add_argument("--parallelism", type=int, default=32)
    args = parser.parse_args()

    import botocore.client
    import keystoneauth1.session
    meter = CallMeter()
    meter.wrap(botocore.client.BaseClient, "_make_api_call", "aws")
    meter.wrap(keystoneauth1.session.Session, "request", "openstack")

    work = tempfile.mkdtemp(prefix="strato-cloud-bench-")
    t0 = time.perf_counter()
    moto = emulators.start_moto(work)
    mimic = emulators.start_mimic(work)
    startup = time.perf_counter() - t0
    try:
        os.environ.update(emulators.aws_environment(moto))
        os.environ.update(emulators.openstack_environment(mimic))
        os.environ["STRATO_HOME"] = os.path.join(work, "home")
        path = os.path.join(work, "fleet.yaml")
        with open(path, "w") as fh:
            fh.write(DESCRIPTOR.format(ec2=args.ec2, nova=args.nova))

        from orchestrator import service
        from orchestrator.executor import RunOptions
        store = service.open_store()
        options = RunOptions(parallelism=args.parallelism, timeout=300)
        per_instance: list[float] = []
        events = lambda e: per_instance.append(e["seconds"]) if e["event"] == "ready" else None  # noqa: E731
        instances = args.ec2 + args.nova

        t0 = time.perf_counter()
        report = service.build(path, "bench", {}, store, options, on_event=events)
        wall = time.perf_counter() - t0
        if not report["ok"]:
            raise SystemExit(f"build failed: {report['failures'][:3]}")
        build_calls = dict(meter.calls)
        build_call_s = dict(meter.seconds)
        meter.reset()

        t0 = time.perf_counter()
        again = service.build(path, "bench", {}, store, options)
        noop_wall = time.perf_counter() - t0
        noop_calls = sum(meter.calls.values())
        meter.reset()

        t0 = time.perf_counter()
        gone = service.destroy(store, "bench", options)
        destroy_wall = time.perf_counter() - t0
        destroy_calls = sum(meter.calls.values())
        if not gone["ok"]:
            raise SystemExit(f"destroy failed: {gone['failures'][:3]}")
    finally:
        moto.stop()
        mimic.stop()

    from orchestrator import cost
    total_calls = sum(build_calls.values())
    total_call_s = sum(build_call_s.values())
    speedup = total_call_s / wall
    efficiency = speedup / min(args.parallelism, instances)
    crossover = cost.crossover_table(durations_ms=(50, 100, 200, 500, 1000), memories_mb=(512, 1024, 2048),
                                     instance_type="ml.m5.large", region="us-east-1")

    print(f"emulators started in {startup:.2f} s (moto + Mimic on 127.0.0.1)")
    print(f"build: {args.ec2} EC2 + {args.nova} Nova instances, parallelism {args.parallelism}")
    print(f"  wall time                      {wall:8.2f} s")
    print(f"  sum of API call latencies      {total_call_s:8.2f} s  ({build_calls['aws']} AWS calls "
          f"{build_call_s['aws']:.2f} s, {build_calls['openstack']} OpenStack calls {build_call_s['openstack']:.2f} s)")
    print(f"  sum of per-instance submit-to-ready time {sum(per_instance):.2f} s (includes queueing in the pool)")
    print(f"  speedup (API time / wall)      {speedup:8.2f} x")
    print(f"  parallel efficiency            {efficiency:8.3f}  (speedup / min(parallelism, instances))")
    print(f"  API calls per instance         {total_calls / instances:8.2f}")
    print(f"rebuild with nothing to do: {noop_wall:.2f} s, {noop_calls} API calls (observe: {noop_calls / instances:.2f}/instance)")
    print(f"destroy: {destroy_wall:.2f} s, {destroy_calls} API calls")
    print("crossover (ml.m5.large endpoint, us-east-1): Lambda is cheaper below these requests/month")
    print(f"  {'latency ms':>10} {'memory MB':>9} {'endpoint $/mo':>13} {'req/month':>14} {'req/s':>8}")
    for r in crossover:
        print(f"  {r['duration_ms']:>10} {r['memory_mb']:>9} {r['endpoint_usd_month']:>13.2f} "
              f"{r['crossover_requests_per_month']:>14,} {r['crossover_requests_per_second']:>8}")
    print(json.dumps({
        "ec2_instances": args.ec2, "nova_servers": args.nova, "parallelism": args.parallelism,
        "wall_s": round(wall, 3), "api_time_sum_s": round(total_call_s, 3), "speedup": round(speedup, 2),
        "parallel_efficiency": round(efficiency, 3), "api_calls": total_calls,
        "api_calls_per_instance": round(total_calls / instances, 2),
        "api_calls_by_cloud": build_calls, "noop_rebuild_s": round(noop_wall, 3),
        "destroy_s": round(destroy_wall, 3), "destroy_api_calls": destroy_calls,
        "crossover": crossover}))


if __name__ == "__main__":
    main()
