"""A dependency-free trainer (runs on any host's system Python): a nearest-centroid classifier on Fisher's iris sample."""

import argparse
import json
import math

# (sepal length, sepal width, petal length, petal width) -> class; a few rows of each species
DATA = [((5.1, 3.5, 1.4, 0.2), 0), ((4.9, 3.0, 1.4, 0.2), 0), ((5.0, 3.6, 1.4, 0.2), 0), ((5.4, 3.9, 1.7, 0.4), 0),
        ((7.0, 3.2, 4.7, 1.4), 1), ((6.4, 3.2, 4.5, 1.5), 1), ((5.5, 2.3, 4.0, 1.3), 1), ((6.5, 2.8, 4.6, 1.5), 1),
        ((6.3, 3.3, 6.0, 2.5), 2), ((5.8, 2.7, 5.1, 1.9), 2), ((7.1, 3.0, 5.9, 2.1), 2), ((6.7, 3.0, 5.2, 2.3), 2)]


def train(epochs: int) -> dict:
    # Centroids refined by a few passes of online averaging (epochs only makes it run longer, as training does).
    centroids = {c: [0.0] * 4 for c in range(3)}
    for epoch in range(max(1, epochs)):
        counts = {c: 0 for c in range(3)}
        for x, c in DATA:
            counts[c] += 1
            centroids[c] = [m + (v - m) / (counts[c] + epoch) for m, v in zip(centroids[c], x)]
    correct = sum(min(range(3), key=lambda c: math.dist(x, centroids[c])) == y for x, y in DATA)
    return {"centroids": centroids, "train_accuracy": correct / len(DATA)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.out, "w") as fh:
        json.dump(train(args.epochs), fh)
