"""Waiting with a bound, for the maintain loop: an HTTP GET that ends by a deadline, and calls run side by side until one.

A socket timeout bounds each read, not a request: an endpoint that sends one byte a second
never trips it, and one that sends 25 MB keeps the reader busy for as long as it likes. So
`http_get` bounds the whole exchange (connect, headers, body) by a wall-clock deadline and the
body by a size, and `settle` runs many such calls at once and stops waiting at a deadline, so
one stalled instance never holds up a pass.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence

_CHUNK = 65536


class Exceeded(Exception):
    """A call ran past its deadline (`late` True) or its size limit; the message says which, in one sentence."""

    def __init__(self, message: str, late: bool = True):
        super().__init__(message)
        self.late = late


def http_get(url: str, deadline: float, max_bytes: int = 0, headers: dict | None = None) -> tuple[int, bytes]:
    """GET `url` and return (status, body); everything ends by `deadline` (a time.monotonic() value).

    max_bytes=0 reads no body (a health probe wants the status only). Raises Exceeded past the
    deadline or the size, OSError / http.client.HTTPException / ValueError for the rest."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    left = deadline - time.monotonic()
    if left <= 0:
        raise Exceeded("not started: its deadline had passed")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=left)
    expired = threading.Event()

    def expire() -> None:
        expired.set()          # first: whoever reads conn.sock after this sees the flag
        sock = conn.sock
        if sock is not None:   # unblocks a read in progress (it sees end-of-file or an error)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(left, expire)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if expired.is_set():
            raise Exceeded("no answer within its time limit")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        body = _read_capped(resp, max_bytes) if max_bytes else b""
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise Exceeded("no complete answer within its time limit") from None
        raise
    finally:
        timer.cancel()
        conn.close()
    if expired.is_set():  # a read cut short by expire() looks like a (short) end of the body
        raise Exceeded("no complete answer within its time limit")
    return resp.status, body


def _read_capped(resp: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, one socket read at a time (read(n) would wait for all n bytes), refused past max_bytes."""
    length = resp.getheader("Content-Length") or ""
    if length.isdigit() and int(length) > max_bytes:
        raise Exceeded(f"its answer is {int(length)} bytes, over the {size_text(max_bytes)} limit", late=False)
    chunks, total = [], 0
    while True:
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise Exceeded(f"its answer is over the {size_text(max_bytes)} limit", late=False)
        chunks.append(chunk)


def size_text(size: int) -> str:
    """4194304 -> '4 MiB', 65536 -> '64 KiB'."""
    for unit, scale in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def settle(calls: Sequence[Callable[[], object]], deadline: float, workers: int,
           name: str = "strato-bounded") -> list[Future]:
    """Run `calls` on at most `workers` threads and wait for them until `deadline` (time.monotonic()).

    Returns one future per call, in order: done; cancelled (it was still queued at the deadline
    and never ran); or still running (left to end on its own: every call must bound itself)."""
    if not calls:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(calls))), thread_name_prefix=name)
    try:
        futures = [pool.submit(call) for call in calls]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return futures
