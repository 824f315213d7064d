"""`strato loadgen URL --trace CSV --speedup K --duration S`: bounded open-loop load against a loopback service."""

from __future__ import annotations

import click

from orchestrator.cli.common import emit_json, handle_errors, json_option
from orchestrator.errors import UsageError
from orchestrator.service import UserError


def _ms(value) -> str:
    return "     -" if value is None else f"{value:6.1f}"


def _line(s: dict) -> str:
    return (f"{s['start_s']:7.1f}-{s['end_s']:<7.1f}s offered {s['offered_rate']:7.2f}/s  sent {s['sent']:6d}  "
            f"ok {s['ok']:6d}  errors {s['errors']:5d}  dropped {s['dropped']:5d}  p50 {_ms(s['p50_ms'])} ms  "
            f"p95 {_ms(s['p95_ms'])} ms  p99 {_ms(s['p99_ms'])} ms"
            + (f"  ({', '.join(f'{k} {v}' for k, v in s['error_kinds'].items())})" if s["error_kinds"] else ""))


def _feature_stream(features, shifts, shift_at, ramp, body_format, seed, data):
    """The shifting feature stream the options ask for (None without --features); usage errors exit 64."""
    from descriptors.values import duration_seconds
    from orchestrator.mlops.shift import ShiftError, stream_from

    if features is None:
        if shifts or shift_at:
            raise UsageError("--shift and --shift-at need --features (the distribution to draw bodies from)")
        return None
    if data is not None:
        raise UsageError("give either --data (one fixed body) or --features (bodies drawn per request)")
    try:
        at = None if shift_at is None else duration_seconds(_seconds(shift_at), None)
        return stream_from(features, list(shifts), at, duration_seconds(_seconds(ramp), 0.0), body_format, seed)
    except (ShiftError, ValueError) as error:
        raise UsageError(str(error)) from None


def _seconds(text: str):
    """A bare number is seconds ('90'), else a time ('90s', '2m')."""
    try:
        return float(text)
    except ValueError:
        return text


@click.command("loadgen")
@click.argument("url")
@click.option("--trace", "trace", metavar="CSV", help="period,count rows (e.g. requests per minute) to replay.")
@click.option("--rate", type=float, help="A constant rate in requests/s instead of a trace.")
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="Play the trace K times faster (a 60 s row lasts 60/K s; its rate is unchanged).")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply the trace's rate by this.")
@click.option("--duration", type=float, default=60.0, show_default=True,
              help="Stop after S seconds (or at the trace's end).")
@click.option("--start", "start", metavar="PERIOD", help="Skip trace rows before this period (ISO text).")
@click.option("--row-seconds", type=float, help="Trace seconds per row (default: from the periods, else 60).")
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds per reported interval.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Per-request timeout, seconds.")
@click.option("--max-inflight", type=int, default=256, show_default=True,
              help="Requests in flight at most; arrivals beyond it are counted as dropped.")
@click.option("--method", default=None, help="HTTP method (default GET, or POST with --data).")
@click.option("--data", default=None, help="Request body (e.g. a JSON document).")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Extra request header (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Poisson arrivals (and features).")
@click.option("--features", metavar="SET|SPEC.json",
              help="POST bodies drawn from a feature distribution: 'iris', or a JSON spec file (see below).")
@click.option("--shift", "shifts", multiple=True, metavar="FEATURE:+D|-D|*F",
              help="With --features: shift a feature from --shift-at on, e.g. petal_length:+1.5 (repeatable).")
@click.option("--shift-at", metavar="TIME", help="When the shift starts, e.g. 60s or 2m (default: never).")
@click.option("--ramp", metavar="TIME", default="0", show_default=True,
              help="Gradual shift: reach its full size over this long (0: abrupt).")
@click.option("--body", "body_format", type=click.Choice(["features", "instances"]), default="features",
              show_default=True, help='With --features: {"features": {name: value}} or {"instances": [[values]]}.')
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback URL (only load what you own).")
@json_option
@handle_errors
def command(url, trace, rate, speedup, scale, duration, start, row_seconds, interval, timeout, max_inflight, method,
            data, headers, seed, features, shifts, shift_at, ramp, body_format, allow_remote, as_json):
    """Send Poisson arrivals at the trace's rate to URL and report latency and errors per interval.

    \b
    Open loop: requests leave on schedule whatever the service does; latency counts from the
    scheduled arrival. Only loopback URLs unless --allow-remote. Examples:
      strato loadgen http://127.0.0.1:8080/ --rate 20 --duration 30
      strato loadgen http://127.0.0.1:8080/predict --data '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' \\
          --trace worldcup.csv --start '1998-06-30 12:00:00' --speedup 60 --scale 0.001 --duration 120

    \b
    Input drift for model monitoring: --features draws each POST body from a feature distribution
    (iris: Fisher's per-species means and deviations) and --shift moves a feature part-way:
      strato loadgen http://127.0.0.1:8080/predict --rate 20 --duration 180 \\
          --features iris --shift-at 60s --shift petal_length:+1.5            # abrupt at 60 s
      ... --features iris --shift-at 60s --ramp 60s --shift sepal_width:*0.8   # gradual over a minute
    A spec file gives any distribution: {"classes": {"a": {"x": [mean, std], ...}, ...},
    "shift_at": 60, "ramp": 0, "shift": {"x": "+1.5"}, "body": "features"}.
    """
    from orchestrator.loadgen import LoadgenError, Segment, read_trace, run

    if (trace is None) == (rate is None):
        raise UsageError("give either --trace CSV or --rate R")
    if rate is not None and not (rate > 0 and scale > 0):
        raise UsageError("--rate and --scale must be positive")
    extra = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header takes NAME:VALUE (got {header!r})")
        extra[name.strip()] = value.strip()
    try:
        if trace is not None:
            segments = read_trace(trace, speedup=speedup, scale=scale, row_seconds=row_seconds, start=start)
        else:
            segments = [Segment(duration, rate * scale)]
        stream = _feature_stream(features, shifts, shift_at, ramp, body_format, seed, data)
        body = data.encode() if data is not None else None
        if stream is not None:
            body = b""   # each request's body comes from the stream
        if body is not None and not any(k.lower() == "content-type" for k in extra):
            extra["Content-Type"] = "application/json"
        report = run(url, segments, duration, interval_s=interval, seed=seed, timeout_s=timeout,
                     max_inflight=max_inflight, method=(method or ("POST" if body is not None else "GET")).upper(),
                     data=body, headers=extra, allow_remote=allow_remote,
                     on_interval=None if as_json else (lambda s: click.echo(_line(s))),
                     body=None if stream is None else stream.request_body)
    except LoadgenError as error:
        raise UserError(str(error)) from None
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo("total:")
        click.echo(_line(report.total()))
