"""Prediction benchmark on MiCADO's recorded session: held-out errors of Strato, MiCADO's method and "nothing changes"."""
from __future__ import annotations

import argparse
import math
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optimizer.errors import OptimizerInputError  # noqa: E402
from optimizer.evaluate import evaluate, split_fraction  # noqa: E402
from optimizer.samples import read_csv  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "micado_optimizer_session.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--train-fraction", type=float, default=0.7, help="first fraction of rows (time order) trains")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        samples = read_csv(args.data)
        cut = split_fraction(samples, args.train_fraction)
        result = evaluate(samples, cut, seed=args.seed)
    except OptimizerInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Data: {args.data} ({len(samples)} rows); trained on the first {result['n_train']} rows "
          f"(up to timestamp {cut:.0f}), tested on the {result['n_test']} later rows, "
          f"{result['n_test_events']} of them scaling events.")
    print("(a) target from the same sample's metrics; (b) mean target over the 4 samples after an instance-count "
          "change, from the sample before it and the change.")
    print("All errors are on held-out later rows. MAPE here = median absolute percentage error.")
    for name in ("strato", "micado", "no_change"):
        for part in ("target", "after_scaling"):
            s = result[name][part]
            print(f"  {name:10s} {'(a)' if part == 'target' else '(b)'} {part:14s} MAPE {s['mape']:9.4f}   "
                  f"Spearman {s['spearman']:.3f}")
    print(f"  MiCADO's own 'reliability' (in-sample correlation, not an accuracy): "
          f"{result['micado']['in_sample_reliability']:.3f}")
    t = result["strato_training"]
    print(f"  Strato's choices on time-ordered validation: alpha {t['alpha']}, kappa {t['kappa']}, beta {t['beta']} "
          f"(kappa=1, beta=0 means 'anchor on the measured target, no model change')")
    sb, mb, nb = (result[k]["after_scaling"]["mape"] for k in ("strato", "micado", "no_change"))
    tie = math.isclose(sb, nb, rel_tol=1e-9)
    verdict = "NOT better (a tie: validation chose to anchor on the measured target)" if tie else \
        ("better" if sb < nb else "NOT better")
    print(f"  (b) Strato vs MiCADO: {'better' if sb < mb else 'NOT better'}; vs nothing changes: {verdict} "
          f"({sb:.5f} vs {nb:.5f})")
    summary = {k: result[k] for k in ("strato", "micado", "no_change", "n_train", "n_test", "n_test_events")}
    summary["micado"] = {k: v for k, v in summary["micado"].items() if k != "in_sample_reliability"}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
