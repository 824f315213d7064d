"""Generate the small samples CSV the README's optimizer commands use (examples/optimizer/samples.csv).

A day-shaped request rate with bursts is played through the closed-loop simulator
(optimizer.simulator) under Kubernetes-HPA-style target tracking, so the instance count moves
and the file holds scaling events; every control interval becomes one row (timestamp, request
rate, CPU utilisation, instances, latency), written with optimizer.samples.write_csv.

    python -m optimizer.make_samples -o examples/optimizer/samples.csv
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from optimizer.samples import write_csv
from optimizer.simulator import History, HpaPolicy, ServiceModel, simulate

DEFAULT_OUTPUT = "examples/optimizer/samples.csv"


class _Recording(HpaPolicy):
    """HPA target tracking that keeps the simulator's history (the rows the CSV is made of)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history = History()

    def learn(self, observation):
        self.history.add(observation)


def request_rates(rows: int, seed: int) -> np.ndarray:
    """Requests/s per 15 s interval: two slow waves, a few bursts and noise (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    base = 28 + 18 * np.sin(2 * math.pi * t / 240) + 8 * np.sin(2 * math.pi * t / 57 + 1.0)
    bursts = np.zeros(rows)
    for start in rng.choice(rows - 20, size=max(1, rows // 150), replace=False):
        bursts[start:start + 12] += rng.uniform(15, 30)
    return np.clip(base + bursts + rng.normal(0, 2.0, rows), 2.0, None)


def make_samples(rows: int = 480, seed: int = 7):
    service = ServiceModel(startup_delay_s=45.0)
    policy = _Recording(target_utilization=0.6, max_replicas=12)
    simulate(request_rates(rows, seed), policy, service, initial_replicas=3, max_replicas=12, seed=seed)
    return policy.history.samples()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", default=DEFAULT_OUTPUT)
    parser.add_argument("--rows", type=int, default=480, help="control intervals (15 s each)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    samples = make_samples(args.rows, args.seed)
    write_csv(samples, args.output)
    print(f"wrote {args.output}: {len(samples)} rows, instances {int(samples.instances.min())}-"
          f"{int(samples.instances.max())}")


if __name__ == "__main__":
    main()
