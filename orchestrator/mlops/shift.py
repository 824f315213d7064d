"""Request bodies drawn from a feature distribution that shifts part-way: `strato loadgen --features`.

A feature set is a mixture of classes, each a normal distribution per feature (iris: the per-species means and
standard deviations of Fisher's iris data). A shift adds an offset to a feature (`petal_length:+1.5`) or scales
it (`sepal_width:*0.8`) from `--shift-at` on, at once (abrupt) or over `--ramp` seconds (gradual), so a model
server's monitoring can be seen to notice it. A JSON spec file says the same for any feature set:

    {"classes": {"a": {"x": [0.0, 1.0], "y": [5.0, 2.0]}, "b": {"x": [3.0, 1.0], "y": [1.0, 0.5]}},
     "shift_at": 60, "ramp": 0, "shift": {"x": "+1.5"}, "body": "features"}

`body`: "features" sends {"features": {name: value}} (default), "instances" {"instances": [[values...]]}.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

# Fisher's iris data: per species, each feature's mean and standard deviation (cm).
IRIS = {
    "setosa": {"sepal_length": (5.006, 0.352), "sepal_width": (3.428, 0.379), "petal_length": (1.462, 0.174),
               "petal_width": (0.246, 0.105)},
    "versicolor": {"sepal_length": (5.936, 0.516), "sepal_width": (2.770, 0.314), "petal_length": (4.260, 0.470),
                   "petal_width": (1.326, 0.198)},
    "virginica": {"sepal_length": (6.588, 0.636), "sepal_width": (2.974, 0.322), "petal_length": (5.552, 0.552),
                  "petal_width": (2.026, 0.275)},
}
FEATURE_SETS = {"iris": IRIS}
BODIES = ("features", "instances")


class ShiftError(ValueError):
    """A bad feature set, shift or spec file (one sentence)."""


@dataclass(frozen=True)
class Shift:
    feature: str
    op: str        # "+" adds `value`, "*" multiplies by it
    value: float

    def apply(self, x: float, strength: float) -> float:
        """The shifted value at a strength between 0 (none) and 1 (all of it)."""
        if self.op == "+":
            return x + self.value * strength
        return x * (1.0 + (self.value - 1.0) * strength)


def parse_shift(text: str) -> Shift:
    """FEATURE:+DELTA, FEATURE:-DELTA or FEATURE:*FACTOR (also FEATURE=... as `feature=petal_length:+1.5`)."""
    text = str(text).strip().removeprefix("feature=")
    name, sep, change = text.partition(":")
    if not sep or not name or not change or change[0] not in "+-*":
        raise ShiftError(f"a shift is FEATURE:+DELTA, FEATURE:-DELTA or FEATURE:*FACTOR (got {text!r})")
    try:
        value = float(change[1:])
    except ValueError:
        raise ShiftError(f"the shift of {name!r} needs a number after {change[0]!r} (got {change!r})") from None
    return Shift(name, "*" if change[0] == "*" else "+", -value if change[0] == "-" else value)


@dataclass
class FeatureStream:
    """Draws one request's features at time t (seconds from the start), shifted from `shift_at` on."""

    classes: dict[str, dict[str, tuple[float, float]]]
    shifts: list[Shift] = field(default_factory=list)
    shift_at: float | None = None
    ramp: float = 0.0
    body: str = "features"
    seed: int = 0

    def __post_init__(self):
        if not self.classes:
            raise ShiftError("a feature set needs at least one class")
        names = set(next(iter(self.classes.values())))
        for shift in self.shifts:
            if shift.feature not in names:
                raise ShiftError(f"no feature {shift.feature!r} to shift (features: {', '.join(sorted(names))})")
        if self.body not in BODIES:
            raise ShiftError(f"body must be one of {', '.join(BODIES)} (got {self.body!r})")
        self.names = sorted(names, key=list(next(iter(self.classes.values()))).index)
        self.rng = random.Random(self.seed)

    def strength(self, t: float) -> float:
        """How much of the shift applies at t: 0 before shift_at, then 1 (abrupt) or rising over `ramp` seconds."""
        if self.shift_at is None or t < self.shift_at:
            return 0.0
        return 1.0 if self.ramp <= 0 else min(1.0, (t - self.shift_at) / self.ramp)

    def draw(self, t: float = 0.0) -> tuple[dict[str, float], str]:
        """(features, the class they were drawn from: the true label)."""
        label = self.rng.choice(sorted(self.classes))
        strength = self.strength(t)
        features = {}
        for name in self.names:
            mean, std = self.classes[label][name]
            x = self.rng.gauss(mean, std)
            for shift in self.shifts:
                if shift.feature == name and strength > 0:
                    x = shift.apply(x, strength)
            features[name] = round(x, 3)
        return features, label

    def request_body(self, t: float) -> bytes:
        features, _ = self.draw(t)
        doc = {"features": features} if self.body == "features" else {"instances": [[features[n] for n in self.names]]}
        return json.dumps(doc).encode()


def stream_from(features: str | None, shifts: list[str], shift_at: float | None, ramp: float, body: str,
                seed: int) -> FeatureStream:
    """The stream the CLI options describe: a built-in feature set's name, or a JSON spec file's path."""
    if features in FEATURE_SETS:
        return FeatureStream(FEATURE_SETS[features], [parse_shift(s) for s in shifts], shift_at, ramp, body, seed)
    try:
        with open(str(features)) as handle:
            spec = json.load(handle)
    except OSError as exc:
        raise ShiftError(f"--features is {', '.join(FEATURE_SETS)} or a JSON spec file: cannot read {features!r} "
                         f"({exc.strerror})") from None
    except ValueError as exc:
        raise ShiftError(f"{features}: not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), dict):
        raise ShiftError(f"{features}: a spec is {{\"classes\": {{CLASS: {{FEATURE: [mean, std]}}}}, ...}}")
    try:
        classes = {c: {f: (float(v[0]), float(v[1])) for f, v in fs.items()} for c, fs in spec["classes"].items()}
    except (TypeError, ValueError, IndexError, AttributeError):
        raise ShiftError(f"{features}: each feature of a class is [mean, std]") from None
    spec_shifts = [parse_shift(f"{k}:{v}") for k, v in (spec.get("shift") or {}).items()]
    return FeatureStream(classes, spec_shifts + [parse_shift(s) for s in shifts],
                         shift_at if shift_at is not None else spec.get("shift_at"),
                         ramp or float(spec.get("ramp") or 0.0), spec.get("body", body), seed)
