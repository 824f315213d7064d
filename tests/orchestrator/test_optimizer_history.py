"""`strato optimizer history import|show`: a node's offered-load history from a CSV or a real Prometheus, kept in the
state store under the node's optimizer load metric; bad data and unknown names refused with nothing written."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from optimizer.samples import LoadHistoryStore
from tests.conftest import run_strato
from tests.prometheus_server import require_prometheus, running_prometheus

DESCRIPTOR = """tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  node_templates:
    web:
      type: strato.nodes.Noop
      capabilities:
        scalable: {properties: {default_instances: 1, min_instances: 1, max_instances: 5}}
    db:
      type: strato.nodes.Noop
  policies:
    - autoscale:
        type: strato.policies.Optimizer
        targets: [web]
        properties:
          target_metric: latency_p95_ms
          target_value: 200
          input_metrics: ['sum(rate(http_requests_total[1m]))', cpu]
          min_instances: 1
          max_instances: 5
"""
LOAD_METRIC = "sum(rate(http_requests_total[1m]))"


@pytest.fixture
def built(strato_home, tmp_path):
    descriptor = tmp_path / "service.yaml"
    descriptor.write_text(DESCRIPTOR)
    run_strato("build", str(descriptor), "--name", "shop", "-q", home=strato_home, check=True)
    return strato_home


def stored(home, node="web", metric=LOAD_METRIC) -> list:
    with LoadHistoryStore(home / "state.db") as store:
        return store.recent("shop", node, metric, 1000)


def history(home, *args):
    return run_strato("optimizer", "history", *args, home=home)


def test_csv_import_keeps_the_load_under_the_policy_metric_and_again_adds_nothing(built, tmp_path):
    csv = tmp_path / "load.csv"
    csv.write_text("timestamp,value\n2024-05-01T00:00:00Z,10\n2024-05-01T00:01:00Z,12.5\n1714521720,9\n")
    first = history(built, "import", "shop", "web", "--file", str(csv), "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["ok"] and result["metric"] == LOAD_METRIC and result["added"] == 3 and result["count"] == 3
    again = json.loads(history(built, "import", "shop", "web", "--file", str(csv), "--json").stdout)
    assert again["added"] == 0 and again["count"] == 3
    assert stored(built) == [(1714521600.0, 10.0), (1714521660.0, 12.5), (1714521720.0, 9.0)]
    show = history(built, "show", "shop", "web")
    assert show.returncode == 0 and "3 row(s) from 2024-05-01T00:00:00Z to 2024-05-01T00:02:00Z" in show.stdout
    rows = json.loads(history(built, "show", "shop", "web", "--json", "--limit", "2").stdout)
    assert rows["count"] == 3 and rows["first"] == 1714521600.0 and rows["rows"] == [[1714521660.0, 12.5],
                                                                                        [1714521720.0, 9.0]]


def test_a_trace_goes_under_the_metric_named(built, tmp_path):
    csv = tmp_path / "trace.csv"
    csv.write_text("period,count\n1998-06-29 00:00:00,600\n1998-06-29 00:01:00,1200\n")
    done = history(built, "import", "shop", "db", "--file", str(csv), "--metric", "rps")
    assert done.returncode == 0, done.stderr
    assert [v for _, v in stored(built, "db", "rps")] == [10.0, 20.0]
    # the db node has no optimizer policy: without --metric there is no metric to keep it under
    refused = history(built, "import", "shop", "db", "--file", str(csv))
    assert refused.returncode == 1 and "give --metric NAME" in refused.stderr


def test_bad_rows_are_refused_with_their_line_and_nothing_is_written(built, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("timestamp,value\n2024-05-01T00:00:00Z,10\n2024-05-01T00:01:00Z,12\n2024-05-01T00:02:00Z,oops\n")
    refused = history(built, "import", "shop", "web", "--file", str(csv), "--json")
    assert refused.returncode == 1
    error = json.loads(refused.stdout)["error"]
    assert error["message"].endswith("bad.csv:4: 'oops' is not a number") and "Traceback" not in refused.stderr
    assert stored(built) == []


def test_unknown_names_and_usage_mistakes(built, tmp_path):
    csv = tmp_path / "load.csv"
    csv.write_text("timestamp,value\n1,1\n")
    for name, node, says in (("nope", "web", "no infrastructure named 'nope'"),
                             ("shop", "nope", "has no node 'nope' (nodes: db, web)")):
        refused = history(built, "import", name, node, "--file", str(csv), "--metric", "rps")
        assert refused.returncode == 1 and says in refused.stderr
    assert stored(built, "nope", "rps") == [] and not run_strato("state", "check", home=built).returncode
    for args in ([], ["--file", str(csv), "--prometheus", "http://127.0.0.1:1"], ["--prometheus", "http://127.0.0.1:1"],
                 ["--file", str(csv), "--query", "up"], ["--prometheus", "http://127.0.0.1:1", "--query", "up",
                                                         "--start", "last tuesday"]):
        usage = history(built, "import", "shop", "web", *args)
        assert usage.returncode == 64, (args, usage.stderr)
    unreachable = history(built, "import", "shop", "web", "--prometheus", "http://127.0.0.1:1", "--query", "up")
    assert unreachable.returncode == 1 and "cannot reach Prometheus" in unreachable.stderr
    empty = history(built, "show", "shop", "db")
    assert empty.returncode == 1 and "no load history stored for 'shop/db'" in empty.stderr


def backfilled_tsdb(tmp_path, start: int, values: list[float]) -> str:
    """A Prometheus TSDB holding `offered_load` (and a second series that a bare name would also match) every
    60 s from `start`, written with promtool's OpenMetrics backfill."""
    lines = ["# TYPE offered_load gauge"]
    lines += [f'offered_load{{node="web"}} {v} {start + 60 * i}' for i, v in enumerate(values)]
    lines += [f'offered_load{{node="db"}} 1 {start + 60 * i}' for i in range(len(values))]
    (tmp_path / "load.om").write_text("\n".join(lines) + "\n# EOF\n")
    tsdb = tmp_path / "tsdb"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "load.om"), str(tsdb)],
                   check=True, capture_output=True, timeout=120)
    return str(tsdb)


@pytest.mark.slow
def test_import_from_a_real_prometheus(built, tmp_path):
    require_prometheus()
    start = (int(time.time()) // 3600 - 3) * 3600   # within the retention, clear of the head block
    values = [float(10 + (i % 7)) for i in range(30)]
    tsdb = backfilled_tsdb(tmp_path, start, values)
    with running_prometheus(tmp_path, "global: {scrape_interval: 1m}\n", tsdb) as url:
        args = ["--prometheus", url, "--start", str(start), "--end", str(start + 60 * 29), "--step", "1m", "--json"]
        two = history(built, "import", "shop", "web", "--query", "offered_load", *args)
        assert two.returncode == 1 and "the query returned 2 series" in two.stderr
        done = history(built, "import", "shop", "web", "--query", 'offered_load{node="web"}', *args)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["added"] == 30
        assert stored(built) == [(float(start + 60 * i), v) for i, v in enumerate(values)]
        again = history(built, "import", "shop", "web", "--query", 'offered_load{node="web"}', *args)
        assert json.loads(again.stdout)["added"] == 0
        refused = history(built, "import", "shop", "web", "--query", "sum(", *args)
        assert refused.returncode == 1 and "Prometheus refused the query" in refused.stderr
