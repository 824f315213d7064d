"""CLI start-up time: median wall time of fresh `strato --version`, `validate` (10 nodes) and `status` processes.

Each figure is the median of N runs (default 10), every run a whole new process, with `python -c pass`
measured in the same run as the floor. Target: each <= 0.35 s, or <= 4x the floor where the floor is
slower than 0.35/4 s. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S, FLOOR_FACTOR = 0.35, 4.0


def ten_node_descriptor() -> str:
    nodes = "".join(f"    n{i}:\n      type: strato.nodes.Noop\n"
                    + (f"      requirements: [{{dependency: n{i - 1}}}]\n" if i else "") for i in range(10))
    return f"tosca_definitions_version: tosca_simple_yaml_1_3\ntopology_template:\n  node_templates:\n{nodes}"


def strato_command() -> list[str]:
    """The installed `strato` script beside this Python when there is one (what users run), else -m."""
    script = os.path.join(os.path.dirname(sys.executable), "strato")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "orchestrator"]


def median_wall(argv: list[str], env: dict, runs: int) -> float:
    """Median over `runs` fresh processes, after one unmeasured run that leaves the bytecode cache warm."""
    times = []
    subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per command (median reported)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="strato-startup-")
    try:
        env = dict(os.environ, STRATO_HOME=os.path.join(work, "home"),
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # as a user's installation runs: with compiled bytecode cached (some sandboxes turn that off)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        descriptor = os.path.join(work, "ten.yaml")
        with open(descriptor, "w") as fh:
            fh.write(ten_node_descriptor())
        strato = strato_command()
        print(f"command: {' '.join(strato)}  ({args.runs} fresh processes each, median wall time)")
        figures = {
            "python_floor_s": median_wall([sys.executable, "-c", "pass"], env, args.runs),
            "version_s": median_wall(strato + ["--version"], env, args.runs),
            "validate_small_s": median_wall(strato + ["validate", descriptor], env, args.runs),
            "status_s": median_wall(strato + ["status"], env, args.runs),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = figures["python_floor_s"]
    limit = max(TARGET_S, FLOOR_FACTOR * floor)
    for name in ("python_floor_s", "version_s", "validate_small_s", "status_s"):
        verdict = "" if name == "python_floor_s" else ("  ok" if figures[name] <= limit else "  OVER TARGET")
        print(f"{name:<18} {figures[name]:.3f} s{verdict}")
    print(f"target: each <= {limit:.3f} s (max of {TARGET_S} s and {FLOOR_FACTOR:g} x the floor)")
    figures = {k: round(v, 4) for k, v in figures.items()}
    figures.update({"runs": args.runs, "limit_s": round(limit, 4),
                    "within_target": all(figures[k] <= limit for k in ("version_s", "validate_small_s", "status_s"))})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
