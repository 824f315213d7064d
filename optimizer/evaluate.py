"""Honest, time-ordered evaluation: train on rows up to a timestamp, score predictions on later rows only."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from optimizer.errors import OptimizerInputError
from optimizer.features import scaling_events
from optimizer.micado import MicadoModel
from optimizer.models import StratoModel, median_ape
from optimizer.samples import SampleSet

MIN_TEST_ROWS = 10


def _scores(predicted: np.ndarray, actual: np.ndarray) -> dict:
    if len(actual) < 3 or np.ptp(actual) == 0 or np.ptp(predicted) == 0:
        rho = None  # undefined for fewer than 3 points or a constant series
    else:
        rho = float(spearmanr(predicted, actual)[0])
    return {"mape": median_ape(predicted, actual) if len(actual) else None, "spearman": rho}


def split_fraction(samples: SampleSet, fraction: float) -> float:
    """The timestamp that puts the first `fraction` of rows (in time order) into training."""
    if not 0 < fraction < 1:
        raise OptimizerInputError("the training fraction must be between 0 and 1")
    return float(samples.timestamps[max(0, int(round(len(samples) * fraction)) - 1)])


def evaluate(samples: SampleSet, train_until: float, seed: int = 0, per_instance: tuple[str, ...] = ()) -> dict:
    """Errors on rows after `train_until` of (a) target and (b) after-scaling target predictions.

    (b)'s actual value is the mean target over the 4 samples after the instance count changed,
    predicted from the sample before the change and the change itself. Compared: Strato,
    MiCADO's method and "nothing changes" (the previous target).
    """
    train = samples.until(train_until)
    n_train = len(train)
    if n_train == len(samples) or len(samples) - n_train < MIN_TEST_ROWS:
        raise OptimizerInputError(f"--train-until leaves {len(samples) - n_train} later rows to test on; "
                                  f"need at least {MIN_TEST_ROWS}")
    strato = StratoModel(seed=seed, per_instance=per_instance).fit(train)
    micado = MicadoModel(random_state=seed).fit(train)

    # The test part starts one row early so the first test row has a "previous" sample.
    test = samples.slice(slice(n_train - 1, None))
    actual = test.target[1:]
    strato_a, _ = strato.predict_target(test.metrics[1:], test.instances[1:])
    micado_a = micado.predict_target(test.metrics[1:])
    no_change_a = test.target[:-1]

    events = scaling_events(test)
    before = events.before
    if len(before):
        strato_b, _ = strato.predict_after_scaling(test.metrics[before], test.instances[before], events.delta,
                                                   test.target[before])
        micado_b = micado.predict_after_scaling(test.metrics[before], test.instances[before], events.delta)
        no_change_b = test.target[before]
    else:
        strato_b = micado_b = no_change_b = np.array([])
    after = events.after_target
    return {
        "strato": {"target": _scores(strato_a, actual), "after_scaling": _scores(strato_b, after)},
        "micado": {"target": _scores(micado_a, actual), "after_scaling": _scores(micado_b, after),
                   "in_sample_reliability": micado.reliability},
        "no_change": {"target": _scores(no_change_a, actual), "after_scaling": _scores(no_change_b, after)},
        "n_train": n_train, "n_test": int(len(actual)), "n_test_events": int(len(before)),
        "strato_training": strato.report.as_dict(),
    }
