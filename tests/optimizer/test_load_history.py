"""The optimizer's offered-load history: its state-DB table (idempotent, all-or-none, private file), the policy's
adapter, and reading it from CSV files (timestamp,value rows and period,count traces) and Prometheus's range API
(pieces, bounds; a real Prometheus is in tests/orchestrator/test_optimizer_history.py)."""

from __future__ import annotations

import http.server
import json
import math
import os
import stat
import threading
import urllib.parse

import pytest

from optimizer.errors import OptimizerInputError
from optimizer.history import parse_step, parse_time, query_prometheus, read_history_csv
from optimizer.samples import LoadHistoryStore, SampleStore, StoreLoadHistory


def test_add_is_idempotent_recent_is_oldest_first_and_delete_forgets(tmp_path):
    path = tmp_path / "state.db"
    with LoadHistoryStore(path) as store:
        assert store.add("i", "web", "rps", [(30.0, 3.0), (10.0, 1.0), (20.0, 2.0)]) == 3
        assert store.add("i", "web", "rps", [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)]) == 0   # the same again
        assert store.add("i", "web", "rps", [(30.0, 99.0), (40.0, 4.0)]) == 1               # a kept time keeps its value
        assert store.add("i", "api", "rps", [(10.0, 7.0)]) == 1
        assert store.recent("i", "web", "rps", 10) == [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0), (40.0, 4.0)]
        assert store.recent("i", "web", "rps", 2) == [(30.0, 3.0), (40.0, 4.0)]
        assert store.between("i", "web", "rps", 15, 35) == [(20.0, 2.0), (30.0, 3.0)]
        assert store.span("i", "web", "rps") == (4, 10.0, 40.0) and store.count("i", "web", "other") == 0
        assert store.metrics("i", "web") == ["rps"]
        assert store.delete("i", "web") == 4
        assert store.count("i", "web", "rps") == 0 and store.count("i", "api", "rps") == 1
    with LoadHistoryStore(path) as again:   # it is in the file, not in the object
        assert again.recent("i", "api", "rps", 5) == [(10.0, 7.0)]


@pytest.mark.parametrize("rows, message", [
    ([(1.0, 1.0), (2.0, math.nan)], "row 2: NaN"),
    ([(1.0, 1.0), (math.inf, 1.0)], "row 2: NaN"),
    ([(1.0, 1.0), (2.0, -1.0)], "row 2: a load cannot be negative"),
    ([(1.0, 1.0), (2.0, 2.0), (1.0, 3.0)], "row 3: timestamp 1.000 repeats"),
])
def test_a_bad_row_refuses_all_rows(tmp_path, rows, message):
    with LoadHistoryStore(tmp_path / "state.db") as store:
        with pytest.raises(OptimizerInputError, match=message):
            store.add("i", "web", "rps", rows)
        assert store.count("i", "web", "rps") == 0


@pytest.mark.parametrize("kind", [LoadHistoryStore, SampleStore])
def test_a_state_file_the_optimizer_creates_is_private(tmp_path, kind):
    old = os.umask(0o022)
    try:
        with kind(tmp_path / "home" / "state.db"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "home" / "state.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o700


def test_store_load_history_is_what_the_policy_adds_each_pass_and_reads_after_a_restart(tmp_path):
    path = tmp_path / "state.db"
    history = StoreLoadHistory(path, "i", "web", "rps")
    for t in range(5):
        history.add(100.0 + t, float(t))
    history.add(104.0, 4.0)   # the same pass offered twice adds nothing
    with pytest.raises(OptimizerInputError):
        history.add(105.0, math.nan)
    restarted = StoreLoadHistory(path, "i", "web", "rps")
    assert restarted.recent(3) == [(102.0, 2.0), (103.0, 3.0), (104.0, 4.0)]
    assert StoreLoadHistory(path, "i", "web", "other").recent(3) == []


def test_csv_times_are_iso_or_epoch_and_rows_come_back_sorted(tmp_path):
    path = tmp_path / "load.csv"
    path.write_text("time,value\n2024-05-01T00:01:00Z,2\n1714521600,1\n2024-05-01 00:02:00,3\n"
                    "2024-05-01T02:03:00+02:00,4\n\n")
    rows, how = read_history_csv(path)
    assert rows == [(1714521600.0, 1.0), (1714521660.0, 2.0), (1714521720.0, 3.0), (1714521780.0, 4.0)]
    assert how == "timestamp,value rows"


def test_a_period_count_trace_becomes_a_rate_per_second(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("period,count\n1998-04-30 21:30:00,120\n1998-04-30 21:31:00,60\n")
    rows, how = read_history_csv(path)
    assert rows == [(parse_time("1998-04-30T21:30:00Z"), 2.0), (parse_time("1998-04-30T21:31:00Z"), 1.0)]
    assert "per 60 s" in how


@pytest.mark.parametrize("text, message", [
    ("timestamp,value\n1,1\n2,x\n", r":3: 'x' is not a number"),
    ("timestamp,value\n1,1\nyesterday,1\n", r":3: 'yesterday' is neither epoch seconds nor an ISO 8601 time"),
    ("timestamp,value\n1,1\n2,-4\n", r":3: '-4': a load cannot be negative"),
    ("timestamp,value\n1,1\n2,nan\n", r":3: 'nan': NaN"),
    ("timestamp,value\n1,1\n1.0,2\n", r":3: the time 1.0 repeats line 2"),
    ("timestamp,value\n1,1\n2,1,3\n", r":3: 3 fields, the header has 2"),
    ("when,what,other\n1,1,1\n", "expected the columns timestamp,value"),
    ("timestamp,value\n", "has a header but no rows"),
    ("", "the file is empty"),
])
def test_a_bad_csv_is_refused_naming_its_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(OptimizerInputError, match=message):
        read_history_csv(path)


def test_steps():
    assert [parse_step(s) for s in ("60", "60s", "5m", "1h", "500ms")] == [60, 60, 300, 3600, 0.5]
    for bad in ("soon", "0s", "-5m"):
        with pytest.raises(OptimizerInputError):
            parse_step(bad)


class FakePrometheus(http.server.BaseHTTPRequestHandler):
    """/api/v1/query_range as Prometheus answers it (load = the time's minute), /moved redirects elsewhere,
    /empty answers a vector; every request's range is remembered."""

    asked: list = []

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.end_headers()
            return
        query = dict(urllib.parse.parse_qsl(url.query))
        start, end, step = float(query["start"]), float(query["end"]), float(query["step"])
        self.asked.append((start, end))
        points = [[start + i * step, str((start + i * step) // 60 if i != 2 else "NaN")]
                  for i in range(int((end - start) // step) + 1)]
        data = ({"resultType": "vector", "result": []} if url.path.startswith("/empty") else
                {"resultType": "matrix", "result": [{"metric": {}, "values": points}]})
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prometheus():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakePrometheus.asked = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_long_range_is_asked_for_in_pieces_with_bounds(fake_prometheus):
    rows = query_prometheus(fake_prometheus, "up", 6000, 6000 + 60 * 24, 60, max_points=10)
    assert FakePrometheus.asked == [(6000, 6540), (6600, 7140), (7200, 7440)]
    # in every piece the third point is NaN: a gap, not a load
    assert [t for t, _ in rows] == [6000 + 60 * i for i in range(25) if i % 10 != 2]
    assert all(v == t // 60 for t, v in rows)
    with pytest.raises(OptimizerInputError, match="larger than 100 bytes"):
        query_prometheus(fake_prometheus, "up", 6000, 6600, 60, max_bytes=100)
    with pytest.raises(OptimizerInputError, match="answered HTTP 302"):
        query_prometheus(fake_prometheus + "/moved", "up", 6000, 6600, 60)
    with pytest.raises(OptimizerInputError, match="returned a vector"):
        query_prometheus(fake_prometheus + "/empty", "up", 6000, 6600, 60)
    with pytest.raises(OptimizerInputError, match="must be an http"):
        query_prometheus("file:///etc/passwd", "up", 6000, 6600, 60)
