"""`strato models push|list|show|promote|rollback|mark`: versioned model artifacts in $STRATO_HOME/models."""

from __future__ import annotations

import time

import click

from orchestrator.cli.common import emit_json, handle_errors, json_option
from orchestrator.errors import UsageError


@click.group("models")
def command() -> None:
    """Versioned models: push an artifact, point aliases at versions, roll back, and see why anything changed.

    \b
      strato models push iris model.pkl --metric accuracy=0.96 --reference train.csv --note "weekly retrain"
      strato models promote iris 3 --reason "beat v2 on the holdout set"
      strato models show iris                 # versions, aliases and the history of every change
      strato models rollback iris --reason "5xx after the rollout"

    A model is stored by its sha256 in $STRATO_HOME/models (private to you); pushing the same content
    again gives back the existing version. References name a version: iris:3, iris@champion, iris (its
    champion, else its newest), or MLflow's models:/iris@champion and models:/iris/3 (resolved through
    MLflow when MLFLOW_TRACKING_URI is set and strato[mlflow] is installed).
    """


def _registry():
    from orchestrator.mlops.registry import ModelRegistry
    return ModelRegistry()


def parse_metrics(pairs: tuple[str, ...]) -> dict[str, float]:
    metrics = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--metric takes NAME=NUMBER, got '{pair}'")
    return metrics


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@command.command("push")
@click.argument("name")
@click.argument("artifact", metavar="FILE", type=click.Path(exists=True))
@click.option("--metric", "metrics", multiple=True, metavar="NAME=NUMBER", help="A training metric (repeatable).")
@click.option("--reference", metavar="CSV", type=click.Path(exists=True, dir_okay=False),
              help="Training rows (a header with the features and the prediction column), for drift monitoring.")
@click.option("--parent", type=click.IntRange(min=1), metavar="VERSION", help="The version this one derives from.")
@click.option("--data-digest", metavar="DIGEST", help="A digest of the training data (e.g. its sha256).")
@click.option("--note", default="", help="Why this version exists (kept in the history).")
@json_option
@handle_errors
def push(name, artifact, metrics, reference, parent, data_digest, note, as_json):
    """Store FILE (a file or a directory) as the next version of model NAME.

    \b
      strato models push iris model.pkl --metric accuracy=0.96 --reference train.csv
    """
    registry = _registry()
    before = len(registry.versions(name)) if name in registry.models() else 0
    version = registry.push(name, artifact, metrics=parse_metrics(metrics), data_digest=data_digest, parent=parent,
                            reference_path=reference, note=note)
    created = version.version > before
    if as_json:
        emit_json({"ok": True, "created": created, "version": version.to_dict()})
    elif created:
        click.echo(f"{version.ref} {version.digest}")
    else:
        click.echo(f"{version.ref} {version.digest} (the same content as before: no new version)")


@command.command("list")
@json_option
@handle_errors
def list_(as_json):
    """Every model: its number of versions and its aliases (`latest` is its newest version)."""
    registry = _registry()
    rows = [{"name": n, "versions": len(registry.versions(n)), "aliases": registry.aliases(n)}
            for n in registry.models()]
    if as_json:
        emit_json({"ok": True, "models": rows})
        return
    if not rows:
        click.echo("no models yet; push one with `strato models push NAME FILE`")
        return
    click.echo(f"{'NAME':<24} {'VERSIONS':>8}  ALIASES")
    for row in rows:
        aliases = ", ".join(f"{a}->{v}" for a, v in sorted(row["aliases"].items()))
        click.echo(f"{row['name']:<24} {row['versions']:>8}  {aliases}")


@command.command("show")
@click.argument("ref")
@json_option
@handle_errors
def show(ref, as_json):
    """A model's versions, aliases and history (REF a name), or one version (iris:3, iris@champion, models:/...).

    \b
      strato models show iris
      strato models show iris@champion --json
    """
    registry = _registry()
    if ref in registry.models():
        doc = registry.describe(ref)
        if as_json:
            emit_json({"ok": True, **doc})
        else:
            _print_model(doc)
        return
    version = registry.resolve(ref)
    if as_json:
        emit_json({"ok": True, "version": version.to_dict()})
    else:
        _print_version(version.to_dict())


def _print_model(doc: dict) -> None:
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(doc["aliases"].items()))
    click.echo(f"{doc['name']}: {len(doc['versions'])} version(s); aliases: {aliases or 'none'}")
    click.echo(f"  {'VERSION':>7}  {'CREATED':<19}  {'STATUS':<6}  {'DIGEST':<19}  METRICS")
    for v in doc["versions"]:
        meta = v["metadata"]
        metrics = " ".join(f"{k}={x:g}" for k, x in sorted(meta.get("metrics", {}).items()))
        click.echo(f"  {v['version']:>7}  {when(v['created_at']):<19}  {meta.get('status') or '-':<6}  "
                   f"{v['digest'][:19]:<19}  {metrics}")
    click.echo("history:")
    for e in doc["history"]:
        if e["event"] == "mark":
            what = f"{e['version']} marked {e['status']}"
        else:
            what = f"{e['alias']} -> {e['version']}" + (f" (was {e['previous']})" if e.get("previous") else "")
        reason = f": {e['reason']}" if e.get("reason") else ""
        click.echo(f"  {when(e['at'])}  {e['event']:<8}  {what}  by {e.get('by') or '?'}{reason}")


def _print_version(v: dict) -> None:
    meta = v["metadata"]
    click.echo(f"{v['ref']}  {v['digest']}")
    click.echo(f"  path:      {v['path']}")
    click.echo(f"  created:   {when(v['created_at'])} by {meta.get('created_by') or '?'}")
    click.echo(f"  status:    {meta.get('status') or '-'}")
    for key in ("parent", "data_digest", "note", "source", "run_id"):
        if meta.get(key):
            click.echo(f"  {key + ':':<10} {meta[key]}")
    for k, x in sorted(meta.get("metrics", {}).items()):
        click.echo(f"  metric:    {k}={x:g}")
    click.echo(f"  reference: {v['reference_path'] or '-'}")


@command.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", default="champion", show_default=True, help="The alias to point at VERSION.")
@click.option("--reason", default="", help="Why (kept in the history).")
@json_option
@handle_errors
def promote(name, version, alias, reason, as_json):
    """Point an alias of NAME at VERSION (a version marked bad is refused).

    \b
      strato models promote iris 3 --reason "accuracy 0.96 on the holdout set"
      strato models promote iris 4 --alias staging
    """
    moved = _registry().promote(name, version, alias=alias, reason=reason)
    _moved(moved, alias, as_json)


@command.command("rollback")
@click.argument("name")
@click.option("--alias", default="champion", show_default=True, help="The alias to move back.")
@click.option("--reason", default="", help="Why (kept in the history).")
@json_option
@handle_errors
def rollback(name, alias, reason, as_json):
    """Move an alias of NAME back to the last version it pointed at that is not marked bad, at once and without
    analysis; the version it leaves is marked bad.

    \b
      strato models rollback iris --reason "error rate 4% after the rollout"
    """
    moved = _registry().rollback(name, alias=alias, reason=reason)
    _moved(moved, alias, as_json)


@command.command("mark")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("status", type=click.Choice(["good", "bad"]))
@click.option("--reason", default="", help="Why (kept in the history).")
@json_option
@handle_errors
def mark(name, version, status, reason, as_json):
    """Mark VERSION of NAME good or bad (a bad version is never promoted, nor rolled back to).

    \b
      strato models mark iris 4 bad --reason "leaks the label"
    """
    marked = _registry().mark(name, version, status, reason=reason)
    if as_json:
        emit_json({"ok": True, "version": marked.to_dict()})
    else:
        click.echo(f"{marked.ref} is marked {status}")


def _moved(version, alias: str, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "alias": alias, "version": version.to_dict()})
    else:
        click.echo(f"{version.name}@{alias} -> {version.version} ({version.digest[:19]})")
