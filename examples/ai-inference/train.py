"""Trains a small scikit-learn classifier on the Iris data set (shipped with scikit-learn) and saves it."""

import json
import os
import pickle
import sys

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split


def main() -> int:
    out_dir = os.environ.get("MODEL_DIR") or os.environ.get("STRATO_WORK_DIR") or "."
    os.makedirs(out_dir, exist_ok=True)
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=0)
    model = RandomForestClassifier(n_estimators=int(os.environ.get("N_ESTIMATORS", "50")), random_state=0)
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    path = os.path.join(out_dir, "model.pkl")
    with open(path, "wb") as fh:
        pickle.dump({"model": model, "classes": list(data.target_names),
                     "features": list(data.feature_names)}, fh)
    print(f"trained RandomForest on iris: held-out accuracy {accuracy:.3f}; saved {path}", flush=True)
    attrs_file = os.environ.get("STRATO_ATTRIBUTES_FILE")
    if attrs_file:  # tell Strato where the model is: it becomes this node's attributes
        with open(attrs_file, "w") as fh:
            json.dump({"model_path": path, "accuracy": accuracy}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
