"""PNG reports: predicted vs actual target on held-out rows, the advice an advisor would have given over time, and
a node's live decision timeline (load, forecast band, predicted vs observed target, count)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optimizer.errors import OptimizerInputError

if TYPE_CHECKING:
    from optimizer.advisor import AdvisorConfig
    from optimizer.samples import SampleSet


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_report(samples: SampleSet, train_until: float, out_dir: str | Path, config: AdvisorConfig,
                 seed: int = 0) -> list[Path]:
    from optimizer.advisor import Advisor
    from optimizer.models import StratoModel
    plt = _pyplot()

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


def _series(points: list, x_key: str, y_key: str, t0: float) -> tuple[np.ndarray, np.ndarray]:
    """(minutes after t0, values) of the points whose value is known."""
    kept = [(p[x_key], p[y_key]) for p in points if p.get(y_key) is not None]
    if not kept:
        return np.array([]), np.array([])
    t, v = np.array(kept, dtype=float).T
    return (t - t0) / 60, v


def _draw_load(ax, timeline: dict, t0: float) -> None:
    if timeline["load"]:
        t, v = np.array(timeline["load"], dtype=float).T
        ax.plot((t - t0) / 60, v, color="k", lw=1.2, label="load observed")
    bands = [dict(d["band"], at=d["at"]) for d in timeline["decisions"] if d.get("band")]
    bands.sort(key=lambda b: b["at"])
    for low, high, alpha, label in (("q05", "q95", 0.18, "forecast 5-95 %"), ("q25", "q75", 0.35, "forecast 25-75 %")):
        rows = [b for b in bands if b.get(low) is not None and b.get(high) is not None]
        if rows:
            at = (np.array([b["at"] for b in rows]) - t0) / 60
            ax.fill_between(at, [b[low] for b in rows], [b[high] for b in rows], color="tab:blue", alpha=alpha,
                            step="mid", lw=0, label=label)
    t, v = _series([dict(b, t=b["at"]) for b in bands], "t", "q50", t0)
    if len(t):
        ax.plot(t, v, color="tab:blue", ls="--", lw=1, label="forecast median")
    ax.set_ylabel(timeline.get("metric") or "load")
    ax.legend(loc="upper left", fontsize=8)


def _draw_target(ax, timeline: dict, t0: float) -> None:
    t, v = _series(timeline["observed"], "t", "target", t0)
    if len(t):
        ax.plot(t, v, color="k", lw=1.2, label="target observed")
    t, v = _series(timeline["decisions"], "at", "predicted_target", t0)
    if len(t):
        ax.plot(t, v, color="tab:orange", marker=".", ms=3, lw=1, label="predicted for the chosen count")
    if timeline.get("target_value"):
        ax.axhline(timeline["target_value"], color="r", ls=":", lw=1, label="target value")
    ax.set_ylabel(timeline.get("target_metric") or "target")
    ax.legend(loc="upper left", fontsize=8)


def _draw_count(ax, timeline: dict, t0: float) -> None:
    t, v = _series(timeline["observed"], "t", "instances", t0)
    if len(t):
        ax.step(t, v, where="post", color="k", lw=1.2, label="instances")
    t, v = _series(timeline["decisions"], "t", "chosen", t0)
    if len(t):
        ax.step(t, v, where="post", color="tab:green", ls="--", lw=1, label="chosen")
    ax.set_ylabel("instances")
    ax.legend(loc="upper left", fontsize=8)


def write_timeline(timeline: dict, path: str | Path) -> Path:
    """Draw a node's timeline (orchestrator.optimizer_view.node_timeline / optimizer.timeline.build_timeline) as one
    PNG of three panels over time: load and its forecast band, target predicted vs observed, the count."""
    from datetime import datetime, timezone
    times = ([p["t"] for p in timeline["observed"]] + [d["t"] for d in timeline["decisions"]] +
             [row[0] for row in timeline["load"]])
    if not times:
        raise OptimizerInputError(f"nothing to draw for {timeline.get('infrastructure')}/{timeline.get('node')} yet: "
                                  "no maintain passes, decisions or load history stored")
    plt = _pyplot()
    t0 = min(times)
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    _draw_load(axes[0], timeline, t0)
    _draw_target(axes[1], timeline, t0)
    _draw_count(axes[2], timeline, t0)
    start = datetime.fromtimestamp(t0, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    axes[2].set_xlabel(f"minutes after {start}")
    axes[0].set_title(f"{timeline.get('infrastructure')}/{timeline.get('node')}: why it scaled "
                      f"({timeline.get('forecasts', 0)} forecasts)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
