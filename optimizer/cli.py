"""`strato optimizer train|advise|evaluate|report`: thin Click wrappers over the optimizer's plain functions."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Callable

import click

from optimizer.errors import OptimizerInputError, OptimizerUsageError

# numpy, scikit-learn and scipy are imported inside the functions that use them, so that
# `strato --version` or `strato validate` do not pay ~1.5 s for loading them (`strato --help` lists
# this group, which imports this module).


# How `report --infra X --node N` reads the node's decision timeline (optimizer.timeline) from the state store:
# (state path or None, infrastructure, node, passes) -> timeline. The strato CLI sets it (orchestrator/cli/optimizer.py),
# since the optimizer never imports the engine that owns the store's infrastructures and journal.
state_timeline: Callable[[str | None, str, str, int], dict] | None = None


# ----- plain functions (the REST API calls these) -----
def load_samples(data: str | None, state, infrastructure: str | None, node: str | None) -> SampleSet:
    from optimizer.samples import SampleStore, read_csv
    if data:
        return read_csv(data)
    if not (infrastructure and node):
        raise OptimizerUsageError("give --data CSV, or --infra and --node to read samples from the state store")
    with SampleStore(state) as store:
        return store.load(infrastructure, node)


def train_model(samples: SampleSet, model_path: str | Path, seed: int = 0, per_instance: tuple[str, ...] = ()) -> dict:
    from optimizer.models import StratoModel
    model = StratoModel(seed=seed, per_instance=tuple(per_instance)).fit(samples)
    with Path(model_path).open("wb") as handle:
        pickle.dump(model, handle)
    return model.report.as_dict()


def load_model(model_path: str | Path) -> StratoModel:
    path = Path(model_path)
    if not path.is_file():
        raise OptimizerInputError(f"no trained model at {path} (run `strato optimizer train` first)")
    with path.open("rb") as handle:
        return pickle.load(handle)


def advise_latest(samples: SampleSet, model: StratoModel, config: AdvisorConfig) -> dict:
    from optimizer.advisor import Advisor
    if len(samples) == 0:
        raise OptimizerInputError("no samples to advise from")
    last = -1
    advisor = Advisor(config, model)
    # The forecasts (trend, recent peak, headroom) need the load history: replay it, advise on the last row.
    history = max(config.forecast_window, config.capacity_trend_window, config.capacity_down_window,
                  config.capacity_headroom_window if config.capacity_headroom_quantile is not None else 0)
    for row in range(max(0, len(samples) - 1 - history), len(samples) - 1):
        advisor.observe(float(samples.timestamps[row]), dict(zip(samples.metric_names, samples.metrics[row])))
    advice = advisor.advise(float(samples.timestamps[last]), dict(zip(samples.metric_names, samples.metrics[last])),
                            int(samples.instances[last]), float(samples.target[last]), n_samples=len(samples))
    return advice.as_dict()


# ----- Click wrappers -----
class _Group(click.Group):
    """Turns the optimizer's user errors into one clear line and exit code 1 (64 for wrong usage), never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OptimizerUsageError as error:
            raise click.UsageError(str(error)) from None
        except OptimizerInputError as error:
            raise click.ClickException(str(error)) from None


def _source_options(f):
    f = click.option("--node", help="node name in the state store")(f)
    f = click.option("--infra", "--infrastructure", "infrastructure", help="infrastructure name in the state store")(f)
    f = click.option("--state", type=click.Path(dir_okay=False), help="state store (default $STRATO_HOME/state.db)")(f)
    f = click.option("--data", type=click.Path(dir_okay=False), help="samples CSV (MiCADO's format reads as is)")(f)
    return f


def _emit(result: dict, as_json: bool, human: str) -> None:
    click.echo(_json(result) if as_json else human)


def _json(result: dict) -> str:
    """Strict JSON (no NaN or Infinity, which JSON parsers reject): a non-finite number is a bug to fix at its source."""
    return json.dumps(result, allow_nan=False)


@click.group("optimizer", cls=_Group, help="ML advice for scaling: train, advise, evaluate, report; the load history it forecasts.")
def optimizer_group():
    pass


@optimizer_group.command("train")
@_source_options
@click.option("--model", "model_path", default="optimizer-model.pkl", show_default=True, type=click.Path())
@click.option("--import-csv", is_flag=True, help="also store the CSV's samples in the state store (--infra/--node)")
@click.option("--seed", default=0, show_default=True)
@click.option("--per-instance", "per_instance", multiple=True, metavar="METRIC",
              help="a load metric shared out over the instances (e.g. a request rate): the model sees it per "
                   "instance, which the capacity plan needs; repeatable")
@click.option("--json", "as_json", is_flag=True)
def train_command(data, state, infrastructure, node, model_path, import_csv, seed, per_instance, as_json):
    """Train Strato's model on samples and save it."""
    from optimizer.samples import SampleStore
    samples = load_samples(data, None if import_csv else state, infrastructure, node) if data else \
        load_samples(None, state, infrastructure, node)
    if import_csv:
        if not (infrastructure and node):
            raise OptimizerUsageError("--import-csv needs --infra and --node")
        with SampleStore(state) as store:
            store.add(infrastructure, node, samples)
    report = train_model(samples, model_path, seed, per_instance)
    _emit(report, as_json, f"trained on {report['n_samples']} samples ({report['n_events']} scaling events) in "
                           f"{report['seconds']:.2f} s; held-out median APE {report['validation_mape']:.3f}, "
                           f"after scaling {report['validation_after_mape']:.3f}; saved {model_path}")


@optimizer_group.command("advise")
@_source_options
@click.option("--model", "model_path", default="optimizer-model.pkl", show_default=True, type=click.Path())
@click.option("--low", type=float, required=True, help="lower threshold of the target")
@click.option("--high", type=float, required=True, help="upper threshold of the target")
@click.option("--min-instances", default=1, show_default=True)
@click.option("--max-instances", default=10, show_default=True)
@click.option("--max-up", default=4, show_default=True)
@click.option("--max-down", default=4, show_default=True)
@click.option("--min-samples", default=100, show_default=True)
@click.option("--capacity-target", type=float, default=None,
              help="model-based capacity plan: the fewest instances whose cautious predicted target at the "
                   "forecast load stays <= this (needs a model trained with --per-instance)")
@click.option("--horizon", type=float, default=75.0, show_default=True,
              help="seconds the load is forecast over (about the instance start-up time plus one interval)")
@click.option("--headroom-quantile", type=float, default=None,
              help="capacity plan: raise the forecast by this quantile of the load's recent growth over the horizon "
                   "(default: the tuned value, TUNED_CAPACITY_PLAN in optimizer/advisor.py)")
@click.option("--json", "as_json", is_flag=True)
def advise_command(data, state, infrastructure, node, model_path, low, high, min_instances, max_instances, max_up,
                   max_down, min_samples, capacity_target, horizon, headroom_quantile, as_json):
    """Advise an instance count for the latest sample (the earlier samples give the load's recent history)."""
    from optimizer.advisor import TUNED_CAPACITY_PLAN, AdvisorConfig
    if headroom_quantile is None:
        headroom_quantile = TUNED_CAPACITY_PLAN["capacity_headroom_quantile"]
    samples = load_samples(data, state, infrastructure, node)
    model = load_model(model_path)
    options = {}
    if capacity_target is not None:
        if not model.per_instance:
            raise OptimizerInputError("--capacity-target needs a model trained with --per-instance METRIC "
                                      "(the load it plans for)")
        options = dict(TUNED_CAPACITY_PLAN, capacity_target=capacity_target, load_metrics=model.per_instance,
                       forecast_horizon_s=horizon, capacity_headroom_quantile=headroom_quantile,
                       capacity_overload_target=high)
    config = AdvisorConfig(low, high, min_instances, max_instances, max_up, max_down, min_samples=min_samples,
                           **options)
    advice = advise_latest(samples, model, config)
    _emit(advice, as_json, f"{advice['phase']}: {advice['instances']} instance(s) ({advice['delta']:+d}); "
                           f"{advice['reason']}")


@optimizer_group.command("evaluate")
@_source_options
@click.option("--train-until", type=float, help="UNIX timestamp: train on rows up to it, test on later rows")
@click.option("--train-fraction", type=float, default=0.7, show_default=True,
              help="used when --train-until is not given: the first fraction of rows trains")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def evaluate_command(data, state, infrastructure, node, train_until, train_fraction, seed, as_json):
    """Held-out errors of Strato, MiCADO's method and "nothing changes"."""
    from optimizer.evaluate import evaluate, split_fraction
    samples = load_samples(data, state, infrastructure, node)
    cut = train_until if train_until is not None else split_fraction(samples, train_fraction)
    result = evaluate(samples, cut, seed=seed)
    if as_json:
        click.echo(_json(result))
        return
    click.echo(f"trained on {result['n_train']} rows, tested on {result['n_test']} later rows "
               f"({result['n_test_events']} scaling events)")
    for name in ("strato", "micado", "no_change"):
        for part in ("target", "after_scaling"):
            s = result[name][part]
            rho = "n/a" if s["spearman"] is None else f"{s['spearman']:.3f}"
            mape = "n/a" if s["mape"] is None else f"{s['mape']:.4f}"
            click.echo(f"  {name:10s} {part:14s} median APE {mape:>8s}  Spearman {rho}")


@optimizer_group.command("report")
@_source_options
@click.option("--train-until", type=float)
@click.option("--train-fraction", type=float, default=0.7, show_default=True)
@click.option("--low", type=float, help="lower threshold of the target (the model plots)")
@click.option("--high", type=float, help="upper threshold of the target (the model plots)")
@click.option("--max-instances", default=10, show_default=True)
@click.option("--passes", default=720, show_default=True, type=click.IntRange(1, 100000),
              help="the timeline: the node's last N maintain passes")
@click.option("--out", "out_dir", default="optimizer-report", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help='print {"ok": true, "files": [...]} instead of one path a line')
def report_command(data, state, infrastructure, node, train_until, train_fraction, low, high, max_instances, passes,
                   out_dir, as_json):
    """Write PNG plots (needs matplotlib: pip install 'strato[plots]').

    \b
    With --infra X --node N, the node's timeline from the state (timeline.png): the load observed, the
    load forecast one start-up delay ahead (5-95 % and 25-75 % bands, median) placed at the time it
    forecasts, the target predicted for the chosen count against the target observed, and the count.
    With --low and --high (and --data CSV or --infra/--node samples), a model trained on the first
    rows: predicted vs actual target on the later rows, and the advice over time.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptimizerInputError("the report draws with matplotlib, which is not installed: "
                                  "pip install 'strato[plots]'") from None
    timeline = bool(infrastructure and node)
    if (low is None) != (high is None) or (low is None and not timeline):
        raise click.UsageError("give --low and --high for the model plots, or --infra and --node for the timeline")
    paths = []
    if timeline:
        paths.append(_timeline_plot(state, infrastructure, node, passes, out_dir))
    if low is not None:
        paths += _model_plots(data, state, infrastructure, node, train_until, train_fraction, low, high,
                              max_instances, out_dir)
    if as_json:
        click.echo(_json({"ok": True, "files": paths}))
    else:
        for path in paths:
            click.echo(path)


def _timeline_plot(state, infrastructure: str, node: str, passes: int, out_dir: str) -> str:
    from optimizer.report import write_timeline
    if state_timeline is None:
        raise OptimizerInputError("the timeline reads the state store's journal: run it as `strato optimizer report`")
    return str(write_timeline(state_timeline(state, infrastructure, node, passes), Path(out_dir) / "timeline.png"))


def _model_plots(data, state, infrastructure, node, train_until, train_fraction, low, high, max_instances,
                 out_dir) -> list[str]:
    from optimizer.advisor import AdvisorConfig
    from optimizer.evaluate import split_fraction
    from optimizer.report import write_report
    samples = load_samples(data, state, infrastructure, node)
    cut = train_until if train_until is not None else split_fraction(samples, train_fraction)
    config = AdvisorConfig(low, high, max_instances=max_instances, min_samples=1)
    return [str(path) for path in write_report(samples, cut, out_dir, config)]


if __name__ == "__main__":
    optimizer_group()
