"""Engine overhead: (a) a 1000-node no-op DAG, (b) 200 sleeping nodes in 10 levels vs their critical path.

Usage: python benchmarks/engine_overhead.py [--compare-terraform] [--parallelism N]
Prints figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from orchestrator import service  # noqa: E402
from orchestrator.executor import RunOptions  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402


def noop_dag(n: int, back: int) -> str:
    lines = ["tosca_definitions_version: tosca_simple_yaml_1_3", "topology_template:", "  node_templates:"]
    for i in range(n):
        lines.append(f"    n{i}:")
        lines.append("      type: strato.nodes.Noop")
        if i >= back:
            lines.append(f"      requirements: [{{dependency: n{i - back}}}]")
    return "\n".join(lines) + "\n"


def sleep_levels(levels: int, width: int, seconds: float) -> str:
    lines = ["tosca_definitions_version: tosca_simple_yaml_1_3", "topology_template:", "  node_templates:"]
    for lvl in range(levels):
        for j in range(width):
            lines.append(f"    s{lvl}_{j}:")
            lines.append("      type: strato.nodes.Sleep")
            lines.append(f"      properties: {{seconds: {seconds}}}")
            if lvl:
                lines.append(f"      requirements: [{{dependency: s{lvl - 1}_{(j * 7) % width}}}]")
    return "\n".join(lines) + "\n"


def timed_build(text: str, workdir: str, name: str, parallelism: int) -> tuple[float, dict]:
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    store = StateStore(os.path.join(workdir, f"{name}.db"))
    started = time.perf_counter()
    report = service.build(path, name, {}, store, RunOptions(parallelism=parallelism))
    wall = time.perf_counter() - started
    if not report["ok"]:
        raise SystemExit(f"benchmark build failed: {report['failures'][:3]}")
    store.close()
    return wall, report


def terraform_noop(n: int, back: int, workdir: str, parallelism: int) -> str:
    lines = []
    for i in range(n):
        dep = f"\n  depends_on = [terraform_data.n{i - back}]" if i >= back else ""
        lines.append(f'resource "terraform_data" "n{i}" {{\n  input = {i}{dep}\n}}\n')
    return "\n".join(lines)


def terraform_sleep(levels: int, width: int, seconds: float) -> str:
    lines = []
    for lvl in range(levels):
        for j in range(width):
            dep = f"\n  depends_on = [terraform_data.s{lvl - 1}_{(j * 7) % width}]" if lvl else ""
            lines.append(f'resource "terraform_data" "s{lvl}_{j}" {{\n  provisioner "local-exec" {{\n'
                         f'    command = "sleep {seconds}"\n  }}{dep}\n}}\n')
    return "\n".join(lines)


def time_terraform(hcl: str, workdir: str, parallelism: int) -> float | None:
    tf = shutil.which("terraform")
    if not tf:
        return None
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "main.tf"), "w") as fh:
        fh.write(hcl)
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    subprocess.run([tf, "init", "-input=false", "-no-color"], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    started = time.perf_counter()
    subprocess.run([tf, "apply", "-auto-approve", "-input=false", "-no-color", f"-parallelism={parallelism}"],
                   cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL, timeout=900)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare-terraform", action="store_true", help="also time Terraform on the same shapes")
    parser.add_argument("--parallelism", type=int, default=32, help="Strato's --parallelism (default 32)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="strato-bench-")
    os.environ["STRATO_HOME"] = workdir
    try:
        noop_wall, noop_report = timed_build(noop_dag(1000, 10), workdir, "noop1000", args.parallelism)
        print(f"(a) 1000-node no-op DAG (each node depends on the node 10 before it), state in SQLite: "
              f"{noop_wall:.3f} s  [target <= 1.0 s; Terraform 1.11 anchor 29.5 s]")
        levels, width, seconds = 10, 20, 0.5
        critical = levels * seconds
        sleep_wall, _ = timed_build(sleep_levels(levels, width, seconds), workdir, "sleep200", args.parallelism)
        ratio = sleep_wall / critical
        print(f"(b) 200 sleep nodes (10 levels x 20, 0.5 s each): {sleep_wall:.3f} s vs critical path "
              f"{critical:.1f} s -> ratio {ratio:.3f}  [target <= 1.03; Terraform 1.15x at -parallelism=1000]")
        figures = {"noop_1000_wall_s": round(noop_wall, 4), "sleep_200_wall_s": round(sleep_wall, 4),
                   "sleep_200_critical_path_s": critical, "sleep_200_ratio": round(ratio, 4),
                   "parallelism": args.parallelism}
        if args.compare_terraform:
            if shutil.which("terraform") is None:
                print("terraform is not on PATH: comparison skipped")
                figures["terraform"] = None
            else:
                tf_noop = time_terraform(terraform_noop(1000, 10, workdir, 1000), os.path.join(workdir, "tf-noop"),
                                         1000)
                tf_sleep = time_terraform(terraform_sleep(levels, width, seconds), os.path.join(workdir, "tf-sleep"),
                                          1000)
                print(f"Terraform (same machine, -parallelism=1000): no-op 1000 {tf_noop:.2f} s "
                      f"({tf_noop / noop_wall:.1f}x Strato); sleep 200 {tf_sleep:.2f} s "
                      f"(ratio {tf_sleep / critical:.3f})")
                figures.update({"terraform_noop_1000_wall_s": round(tf_noop, 3),
                                "terraform_sleep_200_wall_s": round(tf_sleep, 3),
                                "terraform_sleep_200_ratio": round(tf_sleep / critical, 4),
                                "noop_speedup_vs_terraform": round(tf_noop / noop_wall, 2)})
        print(json.dumps(figures))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
