"""Record a model server's inputs and predictions, and serve them to Strato's monitoring (stdlib only).

A Python model server imports this module and calls `Recorder.record` once per prediction; Strato's maintain
loop pulls the records over loopback HTTP on every pass and computes drift and accuracy from them:

    from orchestrator.mlops.record import Recorder
    rec = Recorder(version=os.environ.get("STRATO_MODEL_VERSION", "unknown"))
    ...
    request_id = rec.record({"petal_length": 1.4, ...}, prediction)     # in the /predict handler
    # send request_id back to the client as the header X-Request-Id: labels are joined on it later
    ...
    answer = rec.handle(self.path)          # in do_GET, before the server's own routes
    if answer is not None:
        status, body = answer               # body: bytes of a JSON document

The protocol, for servers in any language (Strato only reads it):

    GET /strato/records?after=SEQ&limit=N
    200 application/json
    {"records": [{"seq": 7, "id": "9f2c...", "ts": 1764758400.5, "features": {...} or [...],
                  "prediction": ..., "version": "iris:3"}, ...],
     "next": 7, "dropped": 0, "stream": "5d0c..."}

- `seq` counts the recorded requests of this server process from 1, one by one; `after` (default 0) asks
  for records with a larger seq, oldest first, at most `limit` (default 1000, at most 10000) of them.
- `next` is the cursor for the next call: the last seq returned, or `after` when nothing is new.
- `dropped` counts records after `after` that were lost before being read (the buffer is a ring of
  `capacity` records: a slow reader loses the oldest, never blocks the server).
- `stream` names this process's sequence: when it changes (the server restarted), the reader starts
  again from after=0.
- `id` is the request id (a client's own X-Request-Id if it sent one, else a fresh one); `features`
  is an object of named values, or a list in the order of the training reference's columns.
- A bad query answers 400 with {"error": {"code": "BAD_QUERY", "message": "..."}}.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from itertools import islice
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATH = "/strato/records"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
MAX_ID_LENGTH = 200


class Recorder:
    """A thread-safe ring buffer of a model server's recent requests (features, prediction, version)."""

    def __init__(self, version: str = "unknown", capacity: int = 10000, sample: float = 1.0):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not 0.0 <= sample <= 1.0:
            raise ValueError("sample must be between 0 and 1")
        self.version, self.capacity, self.sample = str(version), int(capacity), float(sample)
        self.stream = uuid.uuid4().hex
        self._records: deque[dict] = deque(maxlen=self.capacity)
        self._seq = 0
        self._lock = threading.Lock()
        self._random = random.Random()

    def record(self, features: dict | list, prediction: Any, request_id: str | None = None) -> str:
        """Keep one request (or skip it, when sampling says so); returns its request id either way."""
        rid = str(request_id)[:MAX_ID_LENGTH] if request_id else uuid.uuid4().hex
        if self.sample < 1.0 and self._random.random() >= self.sample:
            return rid
        entry = {"id": rid, "ts": time.time(), "features": features, "prediction": prediction,
                 "version": self.version}
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._records.append(entry)
        return rid

    def records(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> dict:
        """The protocol's answer: records with seq > after, oldest first, at most `limit`."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        with self._lock:
            oldest = self._records[0]["seq"] if self._records else self._seq + 1
            dropped = max(0, oldest - after - 1) if after < self._seq else 0
            start = max(0, after + 1 - oldest)
            chosen = [dict(r) for r in islice(self._records, start, start + limit)]
        return {"records": chosen, "next": chosen[-1]["seq"] if chosen else after, "dropped": dropped,
                "stream": self.stream}

    def handle(self, path: str) -> tuple[int, bytes] | None:
        """(HTTP status, JSON body) for GET /strato/records?...; None for any other path (the server's own)."""
        parts = urlsplit(path)
        if parts.path.rstrip("/") != PATH:
            return None
        query = parse_qs(parts.query)
        try:
            after = int(query.get("after", ["0"])[0])
            limit = int(query.get("limit", [str(DEFAULT_LIMIT)])[0])
            if after < 0 or limit < 1:
                raise ValueError
        except ValueError:
            return 400, _error("BAD_QUERY", "after must be an integer >= 0 and limit an integer >= 1")
        return 200, json.dumps(self.records(after, limit), default=str).encode()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()
