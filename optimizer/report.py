"""PNG reports: predicted vs actual target on held-out rows, and the advice an advisor would have given over time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from optimizer.advisor import Advisor, AdvisorConfig
from optimizer.models import StratoModel
from optimizer.samples import SampleSet


def write_report(samples: SampleSet, train_until: float, out_dir: str | Path, config: AdvisorConfig,
                 seed: int = 0) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = samples.until(train_until)
    test = samples.slice(slice(len(train), None))
    model = StratoModel(seed=seed).fit(train)
    predicted, spread = model.predict_target(test.metrics, test.instances)

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.loglog(test.target, predicted, ".", alpha=0.5)
    low, high = float(min(test.target.min(), predicted.min())), float(max(test.target.max(), predicted.max()))
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set_xlabel(f"actual {samples.target_name}")
    ax.set_ylabel(f"predicted {samples.target_name}")
    ax.set_title(f"Held-out rows after the training cut ({len(test)} rows)")
    fig.tight_layout()
    scatter = out / "predicted_vs_actual.png"
    fig.savefig(scatter, dpi=100)
    plt.close(fig)

    advisor = Advisor(config, model)
    advised = [advisor.advise(float(test.timestamps[i]), dict(zip(test.metric_names, test.metrics[i])),
                              int(test.instances[i]), float(test.target[i]), n_samples=len(train)).instances
               for i in range(len(test))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    minutes = (test.timestamps - test.timestamps[0]) / 60
    top.semilogy(minutes, test.target, label="actual")
    top.semilogy(minutes, predicted, label="predicted", alpha=0.7)
    top.axhline(config.target_high, color="r", ls=":", label="thresholds")
    top.axhline(config.target_low, color="r", ls=":")
    top.set_ylabel(samples.target_name)
    top.legend()
    bottom.step(minutes, test.instances, where="post", label="actual instances")
    bottom.step(minutes, advised, where="post", label="advised instances")
    bottom.set_xlabel("minutes after the training cut")
    bottom.set_ylabel("instances")
    bottom.legend()
    fig.tight_layout()
    timeline = out / "advice_over_time.png"
    fig.savefig(timeline, dpi=100)
    plt.close(fig)
    return [scatter, timeline]
