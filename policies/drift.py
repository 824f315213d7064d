"""Data drift of a served model: its recent inputs and predictions, window by window, against the training reference.

Pure: numpy and scipy only, imported when a reference is built (so that importing this module costs nothing).

    ref = Reference.from_rows(training_rows, categorical=("colour",))
    detector = DriftDetector(ref, DriftConfig(overrides={"age": {"method": "psi", "threshold": 0.25}}))
    result = detector.window(recent_rows)          # WindowDrift: per feature and for the prediction
    alarm = ConsecutiveAlarm(k=3)
    if alarm.update(result.verdict()): ...         # true once, at the k-th drifted window in a row

Columns. Every key of the reference rows is a feature, except the prediction column (`prediction`), the
`ignore`d ones and identifier-like columns (text with more than 50 distinct values, over half of them distinct).
A column is categorical when it holds non-numeric values (text, booleans) or only integers with at most
10 distinct values; `categorical=` and `numeric=` override the guess. The prediction is tested like a feature.
The reference keeps a seeded subsample of at most 10,000 values per column, its quantile bins and category counts.

Methods and default thresholds (the "auto" choice depends on the reference's size, as Evidently does):

| column | reference | method | statistic | drifted when | default threshold |
|---|---|---|---|---|---|
| numeric | < 1000 rows | `ks` (scipy.stats.ks_2samp) | KS D; p-value | p < threshold | 0.01 / m |
| numeric | >= 1000 rows | `wasserstein` (scipy.stats) | distance / reference std | statistic > threshold | 0.1 |
| numeric | (on request) | `psi` on 10 reference-quantile bins | PSI | statistic > threshold | 0.2 |
| categorical | < 1000 rows | `chi2` (scipy.stats.chisquare) | chi-square; p-value | p < threshold | 0.01 / m |
| categorical | >= 1000 rows | `jensenshannon` (scipy) | JS distance (natural log) | statistic > threshold | 0.1 |

Why these defaults. A window tests m columns at once (every feature and the prediction), and an alert is
raised per window, so the false-alarm rate that matters is per window, not per column: the p-value tests use
a Bonferroni threshold alpha / m with alpha = 0.01, so that a window of unchanged data is flagged in at most
about 1% of windows whatever the number of features; k consecutive windows (3 by default) are then needed for
an alert, so unchanged data alerts about once in a million windows. Distances have no p-value, and their
sampling noise grows as windows shrink (roughly as 1/sqrt(n)); a fixed cut-off that is quiet at 500 rows
flags most 50-row windows. So a distance must also exceed its noise floor: what same-distribution windows of
that size reach by chance at the same per-window level 1 - alpha / m (PSI and Jensen-Shannon: their
chi-square approximation, (1/n + 1/N) chi2(bins - 1); Wasserstein: seeded draws from the reference itself,
corrected for the reference's own sampling error). 0.1 std (Wasserstein), 0.2 (PSI: 0.1-0.25 is the usual
"moderate shift" band) and 0.1 (JS) are the usual rules of thumb for a shift worth acting on.

Chi-square compares the window's counts with the reference frequencies. Categories the reference never saw get
a small expected share (Good-Turing: the reference's share of categories seen once, at least one row in N),
and cells expected below 5 rows are pooled (Cochran's rule), so that one stray new value does not alarm but
a window where a new category is common does; the statistic is divided by 1 + n/N, as the reference's own
sampling error (N rows) adds to the window's (n rows) in a two-sample comparison. A window below `min_window`
rows (50 by default) is `too_small`: never drifted, never an alarm; a column with fewer than `min_window`
usable values is skipped.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

NUMERIC_METHODS = ("ks", "wasserstein", "psi")
CATEGORICAL_METHODS = ("chi2", "jensenshannon")
METHODS = NUMERIC_METHODS + CATEGORICAL_METHODS
P_VALUE_METHODS = ("ks", "chi2")
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "psi": 0.2, "jensenshannon": 0.1}  # ks, chi2: alpha / m
DEFAULT_ALPHA = 0.01
DEFAULT_WINDOW = 200
DEFAULT_MIN_WINDOW = 50
DEFAULT_K = 3
LARGE_REFERENCE = 1000
MAX_REFERENCE = 10_000
PSI_BINS = 10
MAX_INT_CATEGORIES = 10
ID_MIN_DISTINCT = 50
MIN_EXPECTED = 5.0
CALIBRATION_DRAWS = 300
PREDICTION = "prediction"


# -- values ------------------------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    """value as a finite float (numbers, numeric text as read from a CSV); None otherwise (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def category(value: Any) -> str | None:
    """value as a category name that a CSV's text and a JSON record's number agree on ('1' == 1 == 1.0)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _number(value)
    if number is not None and number.is_integer():
        return str(int(number))
    return str(value).strip() if isinstance(value, str) else str(value)


def _finite(value: Any) -> Any:
    """A JSON-safe number: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- the reference -----------------------------------------------------------------------------------------------

@dataclass
class Column:
    """One column of the reference: numeric (a sorted sample, std, quantile bins) or categorical (counts)."""

    name: str
    kind: str  # numeric | categorical
    n: int
    sample: Any = None  # numpy array (numeric)
    std: float = 0.0
    edges: Any = None  # inner PSI bin edges (numeric)
    bin_fractions: Any = None
    counts: dict[str, int] = field(default_factory=dict)  # categorical
    unseen_share: float = 0.0

    def values(self, rows: Iterable[dict]) -> list:
        """This column's usable values in rows: floats (numeric) or category names."""
        read = _number if self.kind == "numeric" else category
        return [v for v in (read(r.get(self.name)) for r in rows) if v is not None]


def _guess_kind(values: list) -> str:
    numbers = [_number(v) for v in values]
    if any(x is None for x in numbers):
        return "categorical"
    if all(x.is_integer() for x in numbers) and len(set(numbers)) <= MAX_INT_CATEGORIES:
        return "categorical"
    return "numeric"


def _numeric_column(name: str, values: list[float], rng) -> Column:
    import numpy as np

    data = np.asarray(values, dtype=float)
    if len(data) > MAX_REFERENCE:
        data = rng.choice(data, MAX_REFERENCE, replace=False)
    data.sort()
    edges = np.unique(np.quantile(data, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    fractions = np.bincount(np.searchsorted(edges, data, side="right"), minlength=len(edges) + 1) / len(data)
    return Column(name, "numeric", len(data), sample=data, std=float(data.std()), edges=edges,
                  bin_fractions=fractions)


def _categorical_column(name: str, values: list[str], rng) -> Column:
    if len(values) > MAX_REFERENCE:
        values = list(rng.choice(values, MAX_REFERENCE, replace=False))
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    singletons = sum(1 for c in counts.values() if c == 1)
    return Column(name, "categorical", len(values), counts=counts,
                  unseen_share=max(singletons, 1) / len(values))


def _is_identifier(values: list) -> bool:
    distinct = len(set(values))
    return distinct > ID_MIN_DISTINCT and distinct > len(values) / 2


@dataclass
class Reference:
    """What the model was trained on, per column: the baseline every window is compared against."""

    columns: dict[str, Column]
    prediction: Column | None
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: list[dict], categorical: Iterable[str] = (), prediction: str = PREDICTION,
                  numeric: Iterable[str] = (), ignore: Iterable[str] = (), seed: int = 0) -> "Reference":
        """Build the reference from training rows (dicts; CSV text values are read as numbers where they are)."""
        import numpy as np

        categorical, numeric, ignore = set(categorical), set(numeric), set(ignore)
        both = categorical & numeric
        if both:
            raise ValueError(f"column {sorted(both)[0]!r} is named both categorical and numeric")
        if not rows:
            raise ValueError("the reference has no rows")
        rng = np.random.default_rng(seed)
        names = list(dict.fromkeys(k for r in rows for k in r))
        columns, skipped, pred = {}, [], None
        for name in names:
            if name in ignore:
                continue
            raw = [r.get(name) for r in rows if r.get(name) not in (None, "")]
            kind = "categorical" if name in categorical else "numeric" if name in numeric else _guess_kind(raw)
            if not raw or (kind == "categorical" and name not in categorical and name != prediction
                           and _is_identifier(raw)):
                skipped.append(name)
                continue
            column = cls._column(name, kind, raw, rng)
            if name == prediction:
                pred = column
            else:
                columns[name] = column
        if not columns and pred is None:
            raise ValueError("the reference has no usable column")
        return cls(columns, pred, skipped)

    @staticmethod
    def _column(name: str, kind: str, raw: list, rng) -> Column:
        if kind == "numeric":
            values = [x for x in (_number(v) for v in raw) if x is not None]
            if not values:
                raise ValueError(f"column {name!r} is declared numeric but holds no number")
            return _numeric_column(name, values, rng)
        return _categorical_column(name, [c for c in (category(v) for v in raw) if c is not None], rng)

    @classmethod
    def from_csv(cls, path: str, **options) -> "Reference":
        """from_rows on a CSV file with a header (the registry's reference_path)."""
        with open(path, newline="", encoding="utf-8") as fh:
            return cls.from_rows(list(csv.DictReader(fh)), **options)

    def summary(self) -> dict:
        """JSON-safe: each column's kind and size, and the columns left out."""
        cols = {name: {"kind": c.kind, "n": c.n} for name, c in self.columns.items()}
        if self.prediction is not None:
            cols[self.prediction.name] = {"kind": self.prediction.kind, "n": self.prediction.n, "prediction": True}
        return {"columns": cols, "skipped": list(self.skipped)}


# -- configuration -----------------------------------------------------------------------------------------------

def _check_threshold(method: str, threshold: Any, where: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"{where}: the threshold of {method} must be a number, got {threshold!r}")
    if method in P_VALUE_METHODS and not 0 < threshold < 1:
        raise ValueError(f"{where}: the threshold of {method} is a p-value, between 0 and 1 exclusive; "
                         f"got {threshold}")
    if method == "jensenshannon" and not 0 < threshold <= 1:
        raise ValueError(f"{where}: the threshold of jensenshannon is a distance in (0, 1]; got {threshold}")
    if threshold <= 0:
        raise ValueError(f"{where}: the threshold of {method} must be above 0; got {threshold}")
    return float(threshold)


def _check_method(method: Any, allowed: tuple[str, ...], where: str) -> str:
    if method not in allowed:
        raise ValueError(f"{where}: unknown drift method {method!r}; use one of {', '.join(allowed)}")
    return method


@dataclass
class DriftConfig:
    """How windows are tested. method_defaults: {numeric: auto|ks|wasserstein|psi, categorical:
    auto|chi2|jensenshannon}; thresholds: a default per method; overrides: {column: {method, threshold}}
    (the prediction column too); alpha: the per-window false-alarm level of the p-value tests (Bonferroni);
    noise_floor: distances must also beat same-size same-distribution windows (see the module's doc)."""

    method_defaults: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    min_window: int = DEFAULT_MIN_WINDOW
    thresholds: dict = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    large_reference: int = LARGE_REFERENCE
    noise_floor: bool = True
    seed: int = 0

    def __post_init__(self):
        defaults = {"numeric": "auto", "categorical": "auto", **(self.method_defaults or {})}
        for kind in defaults:
            if kind not in ("numeric", "categorical"):
                raise ValueError(f"methods: unknown column kind {kind!r}; use numeric or categorical")
        _check_method(defaults["numeric"], ("auto",) + NUMERIC_METHODS, "methods.numeric")
        _check_method(defaults["categorical"], ("auto",) + CATEGORICAL_METHODS, "methods.categorical")
        self.method_defaults = defaults
        for method, threshold in (self.thresholds or {}).items():
            _check_threshold(_check_method(method, METHODS, "thresholds"), threshold, f"thresholds.{method}")
        self.thresholds = dict(self.thresholds or {})
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise ValueError(f"alpha is a per-window false-alarm level between 0 and 1 exclusive; got {self.alpha!r}")
        if isinstance(self.min_window, bool) or not isinstance(self.min_window, int) or self.min_window < 2:
            raise ValueError(f"min_window must be an integer of at least 2 rows; got {self.min_window!r}")
        self.overrides = {name: self._override(name, spec) for name, spec in (self.overrides or {}).items()}

    @staticmethod
    def _override(name: str, spec: Any) -> dict:
        where = f"features.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: give {{method, threshold}}, got {spec!r}")
        unknown = set(spec) - {"method", "threshold"}
        if unknown:
            raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}; use method and threshold")
        method = spec.get("method")
        if method is not None:
            _check_method(method, METHODS, where)
        if spec.get("threshold") is not None:
            if method is None:
                raise ValueError(f"{where}: a threshold needs its method (the threshold's meaning depends on it)")
            _check_threshold(method, spec["threshold"], where)
        return {"method": method, "threshold": spec.get("threshold")}

    def method_for(self, column: Column) -> str:
        """The method testing this column: its override, else the default for its kind and reference size."""
        method = (self.overrides.get(column.name) or {}).get("method")
        if method is None:
            method = self.method_defaults[column.kind]
            if method == "auto":
                large = column.n >= self.large_reference
                method = {"numeric": ("ks", "wasserstein"), "categorical": ("chi2", "jensenshannon")}[
                    column.kind][large]
        allowed = NUMERIC_METHODS if column.kind == "numeric" else CATEGORICAL_METHODS
        if method not in allowed:
            raise ValueError(f"features.{column.name}: {method} does not test a {column.kind} column; "
                             f"use one of {', '.join(allowed)}")
        return method

    def threshold_for(self, name: str, method: str, tested: int) -> float:
        """The configured threshold: the override, the method's default, or (p-value tests) alpha / tested."""
        override = self.overrides.get(name) or {}
        if override.get("threshold") is not None and override.get("method") == method:
            return float(override["threshold"])
        if method in self.thresholds:
            return float(self.thresholds[method])
        if method in P_VALUE_METHODS:
            return self.alpha / max(tested, 1)
        return DEFAULT_THRESHOLDS[method]


# -- the statistics ----------------------------------------------------------------------------------------------

def _ks(column: Column, values: list[float]) -> tuple[float, float]:
    from scipy import stats

    result = stats.ks_2samp(values, column.sample)
    return float(result.statistic), float(result.pvalue)


def _wasserstein(column: Column, values: list[float]) -> float:
    from scipy import stats

    return float(stats.wasserstein_distance(values, column.sample)) / (column.std or 1.0)


def _psi(column: Column, values: list[float]) -> float:
    import numpy as np

    bins = len(column.edges) + 1
    counts = np.bincount(np.searchsorted(column.edges, values, side="right"), minlength=bins)
    actual = (counts + 0.5) / (len(values) + 0.5 * bins)  # smoothed: an empty bin is not an infinite PSI
    expected = (column.bin_fractions * column.n + 0.5) / (column.n + 0.5 * bins)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _window_counts(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _reference_shares(column: Column, names: list[str]) -> list[float]:
    """The reference's share of each category in names; categories it never saw split its unseen share."""
    unseen = [c for c in names if c not in column.counts]
    seen_total = (1.0 - column.unseen_share) if unseen else 1.0
    each_unseen = column.unseen_share / len(unseen) if unseen else 0.0
    return [column.counts[c] / column.n * seen_total if c in column.counts else each_unseen for c in names]


def _pooled(observed: list[float], expected: list[float]) -> tuple[list[float], list[float]]:
    """Cells expected below MIN_EXPECTED rows pooled into one (then into the smallest other cell if still small)."""
    big = [(o, e) for o, e in zip(observed, expected) if e >= MIN_EXPECTED]
    small = [(o, e) for o, e in zip(observed, expected) if e < MIN_EXPECTED]
    if small:
        pooled = (sum(o for o, _ in small), sum(e for _, e in small))
        if pooled[1] < MIN_EXPECTED and big:
            big.sort(key=lambda oe: oe[1])
            smallest = big.pop(0)
            pooled = (pooled[0] + smallest[0], pooled[1] + smallest[1])
        big.append(pooled)
    return [o for o, _ in big], [e for _, e in big]


def _chi2(column: Column, values: list[str]) -> tuple[float, float]:
    from scipy import stats

    window = _window_counts(values)
    names = sorted(set(column.counts) | set(window))
    n = len(values)
    observed, expected = _pooled([window.get(c, 0) for c in names],
                                 [share * n for share in _reference_shares(column, names)])
    if len(observed) < 2:
        return 0.0, 1.0  # one cell: nothing to compare
    total = sum(expected)
    expected = [e * n / total for e in expected]  # chisquare wants equal sums
    statistic = float(stats.chisquare(observed, expected).statistic)
    # the reference is a sample too: as a two-sample test would, count its own error (variance 1/n + 1/N)
    statistic /= 1 + n / column.n
    return statistic, float(stats.chi2.sf(statistic, len(observed) - 1))


def _jensenshannon(column: Column, values: list[str]) -> tuple[float, int]:
    from scipy.spatial import distance

    window = _window_counts(values)
    names = sorted(set(column.counts) | set(window))
    distance_value = distance.jensenshannon(_reference_shares(column, names),
                                            [window.get(c, 0) / len(values) for c in names])
    return float(distance_value), len(names)


def _upper_quantile(level: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1.0 - level))


def _chi2_quantile(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.chi2.ppf(1.0 - level, max(dof, 1)))


class _WassersteinFloor:
    """The normalised Wasserstein distance that same-distribution windows reach by chance, per column.

    Calibrated once per column on seeded draws of n0 rows from the reference sample (a log-normal fit of their
    distances), then scaled to any window size n: the statistic's spread goes as sqrt(1/n + 1/N) for a fresh
    window against a reference of N, and as sqrt(1/n0 - 1/N) for draws taken from the reference itself.
    About 0.2 s a column for a reference of 10,000 values, once per detector.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.fits: dict[str, tuple[int, float, float]] = {}

    def _fit(self, column: Column) -> tuple[int, float, float]:
        import numpy as np

        if column.name not in self.fits:
            rng = np.random.default_rng(self.seed)
            n0 = max(2, min(200, column.n // 4))
            logs = [math.log(max(_wasserstein(column, rng.choice(column.sample, n0, replace=False)), 1e-12))
                    for _ in range(CALIBRATION_DRAWS)]
            self.fits[column.name] = (n0, float(np.mean(logs)), float(np.std(logs)))
        return self.fits[column.name]

    def floor(self, column: Column, n: int, level: float) -> float:
        n0, mean, sd = self._fit(column)
        at_n0 = math.exp(mean + _upper_quantile(level) * sd)
        return at_n0 * math.sqrt((1 / n + 1 / column.n) / max(1 / n0 - 1 / column.n, 1e-12))


# -- windows -----------------------------------------------------------------------------------------------------

@dataclass
class FeatureDrift:
    """One column of one window. statistic: the test statistic or distance; p_value: tests only; drifted when
    p_value < threshold (tests) or statistic > max(threshold, noise_floor) (distances)."""

    name: str
    kind: str
    method: str
    threshold: float
    n: int
    statistic: float | None = None
    p_value: float | None = None
    noise_floor: float | None = None
    drifted: bool = False
    too_small: bool = False

    def to_dict(self) -> dict:
        return {"kind": self.kind, "method": self.method, "statistic": _finite(self.statistic),
                "p_value": _finite(self.p_value), "threshold": _finite(self.threshold),
                "noise_floor": _finite(self.noise_floor), "drifted": self.drifted, "n": self.n,
                "too_small": self.too_small}


@dataclass
class WindowDrift:
    """The verdict on one window: per feature, for the prediction, and overall (`drifted`)."""

    n: int
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    too_small: bool = False

    @property
    def drifted(self) -> bool:
        return not self.too_small and bool(self.drifted_columns)

    @property
    def drifted_columns(self) -> list[str]:
        columns = list(self.features.values()) + ([self.prediction] if self.prediction else [])
        return [c.name for c in columns if c.drifted]

    def verdict(self) -> bool | None:
        """What ConsecutiveAlarm.update takes: drifted or not, None when the window is too small to say."""
        return None if self.too_small else self.drifted

    def to_dict(self) -> dict:
        return {"n": self.n, "too_small": self.too_small, "drifted": self.drifted,
                "drifted_columns": self.drifted_columns,
                "features": {name: f.to_dict() for name, f in self.features.items()},
                "prediction": self.prediction.to_dict() if self.prediction else None}


class DriftDetector:
    """Tests windows of served rows against a Reference with a DriftConfig (methods are checked at once)."""

    def __init__(self, reference: Reference, config: DriftConfig | None = None):
        self.reference = reference
        self.config = config or DriftConfig()
        self.columns = list(reference.columns.values()) + ([reference.prediction] if reference.prediction else [])
        self.methods = {c.name: self.config.method_for(c) for c in self.columns}
        unknown = set(self.config.overrides) - set(self.methods) - set(reference.skipped)
        if unknown:
            raise ValueError(f"features.{sorted(unknown)[0]}: no such column in the reference "
                             f"(columns: {', '.join(sorted(self.methods))})")
        self._floors = _WassersteinFloor(self.config.seed)

    def window(self, rows: list[dict]) -> WindowDrift:
        """Drift of these rows (input features and the prediction, in one dict per request)."""
        tested = len(self.columns)
        results = {c.name: self._column(c, rows, tested) for c in self.columns}
        prediction = self.reference.prediction
        pred = results.pop(prediction.name) if prediction is not None else None
        too_small = len(rows) < self.config.min_window or (
            all(r.too_small for r in results.values()) and (pred is None or pred.too_small))
        return WindowDrift(len(rows), results, pred, too_small)

    def _column(self, column: Column, rows: list[dict], tested: int) -> FeatureDrift:
        method = self.methods[column.name]
        values = column.values(rows) if len(rows) >= self.config.min_window else []
        result = FeatureDrift(column.name, column.kind, method, self.config.threshold_for(column.name, method, tested),
                              len(values))
        if len(values) < self.config.min_window:
            result.too_small = True
            return result
        level = self.config.alpha / tested
        if method in P_VALUE_METHODS:
            result.statistic, result.p_value = (_ks if method == "ks" else _chi2)(column, values)
            result.drifted = result.p_value < result.threshold
            return result
        n = len(values)
        if method == "wasserstein":
            result.statistic = _wasserstein(column, values)
            floor = self._floors.floor(column, n, level) if self.config.noise_floor else None
        elif method == "psi":
            result.statistic = _psi(column, values)
            floor = _chi2_quantile(level, len(column.edges)) * (1 / n + 1 / column.n)
        else:
            result.statistic, cells = _jensenshannon(column, values)
            floor = math.sqrt(_chi2_quantile(level, cells - 1) * (1 / n + 1 / column.n) / 8)
        result.noise_floor = floor if self.config.noise_floor else None
        result.drifted = result.statistic > max(result.threshold, result.noise_floor or 0.0)
        return result


# -- alerts and accuracy -----------------------------------------------------------------------------------------

class ConsecutiveAlarm:
    """An alert at the k-th drifted window in a row, once; re-armed by a window that is not drifted.

    update(None) (a window too small to say) neither extends nor breaks the run.
    """

    def __init__(self, k: int = DEFAULT_K):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer of at least 1 window; got {k!r}")
        self.k = k
        self.run = 0
        self.fired = False

    def update(self, drifted: bool | None) -> bool:
        if drifted is None:
            return False
        if not drifted:
            self.run, self.fired = 0, False
            return False
        self.run += 1
        if self.run >= self.k and not self.fired:
            self.fired = True
            return True
        return False

    def to_state(self) -> dict:
        return {"k": self.k, "run": self.run, "fired": self.fired}

    @classmethod
    def from_state(cls, state: dict) -> "ConsecutiveAlarm":
        alarm = cls(int(state.get("k", DEFAULT_K)))
        alarm.run, alarm.fired = int(state.get("run", 0)), bool(state.get("fired", False))
        return alarm


def accuracy(pairs: Iterable[tuple[Any, Any]], kind: str = "auto") -> dict:
    """{kind, n, accuracy} (classification: share of predictions equal to their label) or {kind, n, mae}
    (regression: mean absolute error) over (prediction, label) pairs; kind auto: regression when a label is
    a non-integral number. n counts the pairs with a label; the figure is None when there are none."""
    if kind not in ("auto", "classification", "regression"):
        raise ValueError(f"kind must be auto, classification or regression; got {kind!r}")
    pairs = [(p, y) for p, y in pairs if y is not None and y != ""]
    if kind == "auto":
        numbers = [_number(y) for _, y in pairs]
        regression = bool(pairs) and all(x is not None for x in numbers) and any(not x.is_integer() for x in numbers)
        kind = "regression" if regression else "classification"
    if kind == "classification":
        right = sum(1 for p, y in pairs if category(p) == category(y))
        return {"kind": kind, "n": len(pairs), "accuracy": right / len(pairs) if pairs else None}
    errors = [abs(p - y) for p, y in ((_number(p), _number(y)) for p, y in pairs) if p is not None and y is not None]
    return {"kind": kind, "n": len(errors), "mae": sum(errors) / len(errors) if errors else None}


# -- the `monitoring` block of a model server (strato.datatypes.ModelMonitoring) ----------------------------------

@dataclass(frozen=True)
class MonitoringSpec:
    """A node's `monitoring` block, checked: windows of window_rows rows or window_seconds seconds."""

    drift: DriftConfig
    window_rows: int | None = DEFAULT_WINDOW
    window_seconds: float | None = None
    k: int = DEFAULT_K
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    accuracy_min: float | None = None
    webhook: str | None = None

    def reference_options(self) -> dict:
        """The keyword arguments of Reference.from_rows / from_csv this block asks for."""
        return {"categorical": self.categorical, "numeric": self.numeric, "ignore": self.ignore}


MONITORING_FIELDS = ("window", "min_window", "k", "methods", "features", "categorical", "numeric", "ignore",
                     "accuracy_min", "webhook")


def _window(value: Any) -> tuple[int | None, float | None]:
    """window: a number of rows (an integer) or a duration ('5 m', '30 s')."""
    if value is None:
        return DEFAULT_WINDOW, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 2:
            raise ValueError(f"monitoring.window: a window needs at least 2 rows; got {value}")
        return value, None
    if isinstance(value, str):
        from descriptors.values import duration_seconds

        try:
            seconds = duration_seconds(value, None)
        except ValueError:
            seconds = None
        if seconds is not None and seconds > 0:
            return None, seconds
    raise ValueError(f"monitoring.window: give a number of rows (200) or a duration ('5 m'); got {value!r}")


def _names(block: dict, key: str) -> tuple[str, ...]:
    value = block.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"monitoring.{key}: give a list of column names; got {value!r}")
    return tuple(value)


def _drift_config(block: dict, methods: dict, min_window: int) -> DriftConfig:
    unknown = set(methods) - {"numeric", "categorical", "thresholds", "alpha"}
    if unknown:
        raise ValueError(f"monitoring.methods: unknown field {sorted(unknown)[0]!r}; "
                         "use numeric, categorical, thresholds, alpha")
    try:
        return DriftConfig(method_defaults={k: methods[k] for k in ("numeric", "categorical") if k in methods},
                           overrides=block.get("features") or {}, min_window=min_window,
                           thresholds=methods.get("thresholds") or {}, alpha=methods.get("alpha", DEFAULT_ALPHA))
    except ValueError as err:
        text = str(err)
        # DriftConfig's thresholds and alpha sit under `methods` in the block
        inner = "methods." if text.startswith(("thresholds", "alpha")) else ""
        raise ValueError(f"monitoring.{inner}{text}") from None


def parse_monitoring(block: dict | None) -> MonitoringSpec:
    """A node's `monitoring` block (strato.datatypes.ModelMonitoring) as a MonitoringSpec; ValueError naming the
    field and what is wrong otherwise."""
    block = block or {}
    if not isinstance(block, dict):
        raise ValueError(f"monitoring: give a mapping of {', '.join(MONITORING_FIELDS)}; got {block!r}")
    unknown = set(block) - set(MONITORING_FIELDS)
    if unknown:
        raise ValueError(f"monitoring: unknown field {sorted(unknown)[0]!r}; use {', '.join(MONITORING_FIELDS)}")
    rows, seconds = _window(block.get("window"))
    k = block.get("k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"monitoring.k: the number of drifted windows in a row before an alert, at least 1; got {k!r}")
    min_window = block.get("min_window", min(DEFAULT_MIN_WINDOW, rows) if rows else DEFAULT_MIN_WINDOW)
    if rows is not None and isinstance(min_window, int) and min_window > rows:
        raise ValueError(f"monitoring.min_window: {min_window} is more than the window's {rows} rows")
    methods = block.get("methods") or {}
    if not isinstance(methods, dict):
        raise ValueError(f"monitoring.methods: give {{numeric, categorical, thresholds, alpha}}; got {methods!r}")
    accuracy_min = block.get("accuracy_min")
    if accuracy_min is not None and (isinstance(accuracy_min, bool) or not isinstance(accuracy_min, (int, float))
                                     or not 0 < accuracy_min <= 1):
        raise ValueError(f"monitoring.accuracy_min: a share of correct predictions in (0, 1]; got {accuracy_min!r}")
    webhook = block.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
        raise ValueError(f"monitoring.webhook: an http(s) URL; got {webhook!r}")
    return MonitoringSpec(_drift_config(block, methods, min_window), rows, seconds, k, _names(block, "categorical"),
                          _names(block, "numeric"), _names(block, "ignore"),
                          None if accuracy_min is None else float(accuracy_min), webhook)
