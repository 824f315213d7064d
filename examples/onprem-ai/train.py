"""Trainer of the onprem-ai example: fits a nearest-centroid classifier on the iris data and writes it as text.

The model file holds one line per class, `LABEL c1 c2 c3 c4`, which the container's tiny CGI
server reads; its path and text become this node's attributes (model_path, model).
"""

import json
import os

from sklearn.datasets import load_iris
from sklearn.neighbors import NearestCentroid


def main() -> None:
    data = load_iris()
    model = NearestCentroid().fit(data.data, data.target)
    lines = [" ".join([str(label)] + [f"{v:.6f}" for v in centroid])
             for label, centroid in zip(model.classes_, model.centroids_)]
    text = "\n".join(lines) + "\n"
    out_dir = os.path.join(os.environ.get("STRATO_WORK_DIR", "."), "model")
    os.makedirs(out_dir, exist_ok=True)
    os.chmod(out_dir, 0o755)  # the model server container reads it through a bind mount
    path = os.path.join(out_dir, "centroids.txt")
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o644)
    with open(os.environ["STRATO_ATTRIBUTES_FILE"], "w") as fh:
        json.dump({"model_dir": out_dir, "model_path": path, "model": text, "classes": len(lines)}, fh)
    print(f"trained: {len(lines)} classes -> {path}")


if __name__ == "__main__":
    main()
