"""A tiny iris trainer for the continuous-training tests: the petal-length thresholds that split the labelled rows
of $STRATO_TRAINING_DATA best (the defaults without it), written to a model file whose path becomes the node's
attribute model_path."""

import csv
import json
import os

model = {"setosa_below": 2.5, "versicolor_below": 4.9}
rows = 0
if os.environ.get("STRATO_TRAINING_DATA"):
    with open(os.environ["STRATO_TRAINING_DATA"], newline="") as handle:
        data = [(float(r["petal_length"]), r["label"]) for r in csv.DictReader(handle)]
    rows = len(data)
    means = {}
    for label in ("setosa", "versicolor", "virginica"):
        values = [x for x, y in data if y == label]
        means[label] = sum(values) / len(values) if values else None
    if all(v is not None for v in means.values()):
        model = {"setosa_below": (means["setosa"] + means["versicolor"]) / 2,
                 "versicolor_below": (means["versicolor"] + means["virginica"]) / 2}
path = os.path.join(os.environ["STRATO_WORK_DIR"], "model.json")
with open(path, "w") as handle:
    json.dump({**model, "trained_on": rows, "model_name": os.environ.get("STRATO_MODEL_NAME")}, handle)
with open(os.environ["STRATO_ATTRIBUTES_FILE"], "w") as handle:
    json.dump({"model_path": path, "metrics": {"rows": rows}}, handle)
