"""Benchmark: full validation (load, types, requirements, functions, graph and cycle check) of Compute chains.

Writes chain descriptors of 500 and 5000 `tosca.nodes.Compute` nodes, each with host
capability properties and a dependency on the previous node, then times
`orchestrator.service.load_checked` on them (best of a few runs). With
--compare-tosca-parser it also times tosca-parser's ToscaTemplate on the very same files.

    python benchmarks/validate_scale.py [--compare-tosca-parser] [--repeat N]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = (500, 5000)
TARGET_5000_S = 0.5
TARGET_RATIO = 12.0


def chain_descriptor(n: int) -> str:
    """A TOSCA 1.3 topology: node_i is a Compute host that depends on node_{i-1}."""
    lines = ["tosca_definitions_version: tosca_simple_yaml_1_3", "",
             f"description: A chain of {n} Compute nodes.", "", "topology_template:", "  node_templates:"]
    for i in range(n):
        lines += [f"    node_{i}:",
                  "      type: tosca.nodes.Compute",
                  "      capabilities:",
                  "        host:",
                  "          properties:",
                  "            num_cpus: 1",
                  "            mem_size: 1 GB"]
        if i:
            lines += ["      requirements:", f"        - dependency: node_{i - 1}"]
    return "\n".join(lines) + "\n"


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_strato(path: str, repeat: int) -> float:
    from orchestrator.service import load_checked
    loaded = load_checked(path)  # warm-up: parses the shipped profiles once per process
    assert len(loaded.template.node_templates) > 0
    return best_time(lambda: load_checked(path), repeat)


def time_tosca_parser(path: str, repeat: int) -> float:
    from toscaparser.tosca_template import ToscaTemplate
    ToscaTemplate(path)
    return best_time(lambda: ToscaTemplate(path), repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-tosca-parser", action="store_true",
                        help="also time tosca-parser (pip install tosca-parser) on the same files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best is reported")
    args = parser.parse_args()

    result: dict = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n in SIZES:
            paths[n] = os.path.join(tmp, f"chain_{n}.yaml")
            with open(paths[n], "w") as fh:
                fh.write(chain_descriptor(n))
        for n in SIZES:
            t = time_strato(paths[n], args.repeat)
            result[f"validate_{n}_s"] = round(t, 4)
            print(f"strato validate, {n:>5} nodes: {t:.3f} s")
        ratio = result["validate_5000_s"] / max(result["validate_500_s"], 1e-9)
        result["scaling_5000_over_500"] = round(ratio, 2)
        result["meets_target"] = result["validate_5000_s"] <= TARGET_5000_S and ratio <= TARGET_RATIO
        print(f"time(5000)/time(500) = {ratio:.2f} (target <= {TARGET_RATIO}); "
              f"5000 nodes {'within' if result['validate_5000_s'] <= TARGET_5000_S else 'OVER'} "
              f"the {TARGET_5000_S} s target")

        if args.compare_tosca_parser:
            try:
                import toscaparser  # noqa: F401
            except ImportError:
                print("tosca-parser is absent (pip install tosca-parser); comparison skipped")
                result["tosca_parser"] = "absent"
            else:
                import logging
                logging.disable(logging.CRITICAL)  # tosca-parser logs every node it parses
                for n in SIZES:
                    t = time_tosca_parser(paths[n], max(1, min(args.repeat, 2)))
                    result[f"tosca_parser_{n}_s"] = round(t, 4)
                    speedup = t / max(result[f"validate_{n}_s"], 1e-9)
                    result[f"speedup_{n}"] = round(speedup, 1)
                    print(f"tosca-parser,    {n:>5} nodes: {t:.3f} s  (strato is {speedup:.1f}x faster)")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
