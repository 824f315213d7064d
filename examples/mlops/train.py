"""Trains the iris model (a nearest-centroid classifier, as JSON) and pushes it into Strato's model registry.

    python train.py --push iris [--promote] [--error-rate 0.3] [--delay-ms 40] [--note TEXT]

The bundle is plain JSON (no pickle): the class centroids, and optional `faults` ({error_rate, delay_ms}) that
serve.py obeys, so a deliberately bad version can be pushed for the rollout tests and benchmark. As a Trainer
node it pushes into $STRATO_HOME/models and prints the `model_path` and `model_version` attributes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

# the iris data's per-class means (sepal length, sepal width, petal length, petal width), from the 150 rows
CENTROIDS = {"setosa": [5.006, 3.428, 1.462, 0.246], "versicolor": [5.936, 2.770, 4.260, 1.326],
             "virginica": [6.588, 2.974, 5.552, 2.026]}
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_bundle(error_rate: float = 0.0, delay_ms: float = 0.0, note: str = "") -> dict:
    """The model as serve.py loads it; `note` makes otherwise equal bundles distinct versions."""
    bundle = {"kind": "nearest_centroid", "features": FEATURES, "classes": list(CENTROIDS),
              "centroids": [CENTROIDS[c] for c in CENTROIDS], "note": note}
    if error_rate or delay_ms:
        bundle["faults"] = {"error_rate": float(error_rate), "delay_ms": float(delay_ms)}
    return bundle


def push(registry, name: str, bundle: dict, promote: bool = False, note: str | None = None):
    """Store the bundle as the model's next version (and point `champion` at it); returns the ModelVersion."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(bundle, fh)
    try:
        version = registry.push(name, fh.name, metrics={"classes": len(bundle["classes"])}, created_by="examples/mlops/train.py",
                                note=note or bundle.get("note") or None)
    finally:
        os.unlink(fh.name)
    if promote:
        registry.promote(name, version.version, reason=note or "trained")
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push", default="iris", help="the model's name in the registry")
    parser.add_argument("--promote", action="store_true", help="point the champion alias at the new version")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    from orchestrator.mlops.registry import ModelRegistry
    version = push(ModelRegistry(), args.push, make_bundle(args.error_rate, args.delay_ms, args.note),
                   args.promote, args.note or None)
    attrs = {"model_path": version.path, "model_version": version.ref}
    if os.environ.get("STRATO_ATTRIBUTES_FILE"):
        with open(os.environ["STRATO_ATTRIBUTES_FILE"], "w") as fh:
            json.dump(attrs, fh)
    print(json.dumps(attrs))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
