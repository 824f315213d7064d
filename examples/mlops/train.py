"""Trains the iris model (a nearest-centroid classifier, as JSON) and pushes it into Strato's model registry.

    python train.py --push iris [--promote] [--error-rate 0.3] [--delay-ms 40] [--note TEXT]

The bundle is plain JSON (no pickle): the class centroids, and optional `faults` ({error_rate, delay_ms}) that
serve.py obeys, so a deliberately bad version can be pushed for the rollout tests and benchmark. As a Trainer
node it pushes into $STRATO_HOME/models, with a training reference (rows drawn from the iris classes) that drift
monitoring compares the served inputs against, and prints the `model_path` and `model_version` attributes.

Re-run by continuous training (strato.policies.ContinuousTraining), it gets $STRATO_TRAINING_DATA, a CSV of the
recent labelled requests (features and `label`): it fits the centroids on those rows and only writes the model
file (attribute model_path); Strato pushes it as the next version, with that CSV as its reference.
"""

from __future__ import annotations

import argparse
import csv
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


def fit(path: str, note: str = "") -> dict:
    """The bundle fitted on a labelled CSV (the centroid of each label's rows)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = sorted({r["label"] for r in rows})
    centroids = [[sum(float(r[f]) for r in rows if r["label"] == c) / sum(1 for r in rows if r["label"] == c)
                  for f in FEATURES] for c in labels]
    return {"kind": "nearest_centroid", "features": FEATURES, "classes": labels, "centroids": centroids,
            "note": note or f"fitted on {len(rows)} labelled rows"}


def write_reference(path: str, rows: int = 300, seed: int = 0) -> str:
    """Training rows drawn from the iris classes (features and `label`): the baseline drift is measured from."""
    from orchestrator.mlops.shift import IRIS, FeatureStream
    stream = FeatureStream(IRIS, seed=seed)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FEATURES + ["label"])
        for _ in range(rows):
            features, label = stream.draw()
            writer.writerow([features[f] for f in FEATURES] + [label])
    return path


def push(registry, name: str, bundle: dict, promote: bool = False, note: str | None = None):
    """Store the bundle as the model's next version (and point `champion` at it); returns the ModelVersion."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(bundle, fh)
    reference = write_reference(fh.name + ".csv")
    try:
        version = registry.push(name, fh.name, metrics={"classes": len(bundle["classes"])}, created_by="examples/mlops/train.py",
                                note=note or bundle.get("note") or None, reference_path=reference)
    finally:
        os.unlink(fh.name)
        os.unlink(reference)
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
    if os.environ.get("STRATO_TRAINING_DATA"):   # continuous training: fit, write; Strato pushes it
        path = os.path.join(os.environ.get("STRATO_WORK_DIR") or tempfile.mkdtemp(), "model.json")
        with open(path, "w") as fh:
            json.dump(fit(os.environ["STRATO_TRAINING_DATA"]), fh)
        attrs = {"model_path": path}
        if os.environ.get("STRATO_ATTRIBUTES_FILE"):
            with open(os.environ["STRATO_ATTRIBUTES_FILE"], "w") as fh:
                json.dump(attrs, fh)
        print(json.dumps(attrs))
        return
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
