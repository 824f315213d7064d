"""A node's optimizer timeline as plain JSON: the load and target observed, the load forecast band one start-up
delay ahead, the target predicted for the chosen count, and the count; built from the decision events and per-pass
samples the maintain loop journals (the dashboard and `strato optimizer report` draw it)."""
from __future__ import annotations

import math
from typing import Any, Iterable

BAND_QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
QUANTILE_TOLERANCE = 0.011


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _ahead_step(forecast: dict, detail: dict) -> int:
    """The horizon step one start-up delay ahead: the first step at or beyond the delay when the forecast (or the
    decision) names it, else the first step."""
    horizons = [_number(h) for h in forecast.get("horizon_s") or []]
    delay = _number(forecast.get("startup_s", detail.get("startup_s")))
    if delay is not None:
        for i, h in enumerate(horizons):
            if h is not None and h >= delay - 1e-9:
                return i
    return 0


def forecast_band(detail: dict) -> dict | None:
    """{"horizon_s", "q05", "q25", "q50", "q75", "q95"} of the load forecast one start-up delay ahead, from a
    decision's detail (None when it has no readable forecast); a quantile the forecast lacks is None."""
    forecast = detail.get("forecast") if isinstance(detail, dict) else None
    if not isinstance(forecast, dict):
        return None
    quantiles = [_number(q) for q in forecast.get("quantiles") or []]
    values, horizons = forecast.get("values") or [], forecast.get("horizon_s") or []
    step = _ahead_step(forecast, detail)
    if step >= len(values) or step >= len(horizons) or not isinstance(values[step], list):
        return None
    row = values[step]
    band: dict[str, Any] = {"horizon_s": _number(horizons[step])}
    for name, wanted in BAND_QUANTILES.items():
        near = [i for i, q in enumerate(quantiles) if q is not None and abs(q - wanted) <= QUANTILE_TOLERANCE]
        band[name] = _number(row[near[0]]) if near and near[0] < len(row) else None
    return band if band["horizon_s"] is not None else None


def decision_point(event: dict) -> dict | None:
    """One decision event ("decision" or "scaled", as StateStore.events returns them) as a timeline point."""
    outer = event.get("detail") or {}
    detail = outer.get("detail") if isinstance(outer.get("detail"), dict) else {}
    t = _number(event.get("ts"))
    if t is None:
        return None
    band = forecast_band(detail)
    ahead = t + band["horizon_s"] if band else t
    action = outer.get("action") or outer.get("direction") or event.get("kind")
    chosen = detail.get("chosen", outer.get("desired"))
    return {"t": t, "action": action, "current": outer.get("current", outer.get("from")),
            "chosen": int(chosen) if _number(chosen) is not None else None,
            "chosen_cost": _number(detail.get("chosen_cost")),
            "predicted_target": _number(detail.get("predicted_target")), "at": ahead,
            "method": (detail.get("forecast") or {}).get("method") if isinstance(detail.get("forecast"), dict) else None,
            "band": band, "reason": outer.get("reason")}


def build_timeline(samples: Iterable[dict], events: Iterable[dict], load_rows: Iterable[tuple[float, float]],
                   metric: str | None) -> dict:
    """The timeline of one node from StateStore.samples rows ({ts, instances, target, metrics}), its decision
    events, and stored load history rows (timestamp, value) of `metric`:
    {metric, observed: [{t, instances, target}], load: [[t, value]], decisions: [{t, action, current, chosen,
    chosen_cost, predicted_target, at, method, band: {horizon_s, q05..q95} | None, reason}], forecasts}."""
    observed, seen = [], {}
    for row in samples:
        t = _number(row.get("ts"))
        if t is None:
            continue
        observed.append({"t": t, "instances": _number(row.get("instances")), "target": _number(row.get("target"))})
        value = _number((row.get("metrics") or {}).get(metric)) if metric else None
        if value is not None:
            seen[t] = value
    # the stored history is the load's record (the policy adds each pass to it, imports seed it); the values the
    # loop's samples carry stand in where there is none
    stored = {float(t): float(v) for t, v in load_rows if _number(t) is not None and _number(v) is not None}
    load = stored or seen
    decisions = [p for p in (decision_point(e) for e in events) if p is not None]
    return {"metric": metric, "observed": observed, "load": [[t, v] for t, v in sorted(load.items())],
            "decisions": decisions,
            "forecasts": sum(1 for d in decisions if d["band"] is not None)}
