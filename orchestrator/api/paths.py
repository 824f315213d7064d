"""Server paths never leave the API: every JSON and event-stream body names Strato's files relative to $STRATO_HOME.

Handles, operation results, events and error messages carry the paths drivers and the state store use
(an instance's log, its attributes file, a Terraform working directory, the state database). They mean
something on the server only, and tell a client where and as whom it runs. One middleware rewrites every
response body on the way out, so no route, present or future, has to remember to.
"""

from __future__ import annotations

import json
import os
import re

HOME_NAME = "$STRATO_HOME"
REWRITTEN_TYPES = (b"application/json", b"text/event-stream")


def _forms(path: str) -> set[str]:
    """The ways a path may be spelled in a body: as given and resolved, raw and JSON-escaped."""
    forms = set()
    for spelling in {os.path.abspath(path), os.path.realpath(path)}:
        forms |= {spelling, json.dumps(spelling)[1:-1]}
    return forms


def path_rewriter(home: str, state_path: str):
    """A function rewriting body bytes: the state database's path, then $STRATO_HOME's, shown by name."""
    rules: list[tuple[re.Pattern, bytes]] = []
    end = rb"(?![A-Za-z0-9_.-])"  # the whole name: /srv/strato is not a prefix of /srv/strato2
    if "://" in state_path:  # a database URL (maybe with a password) is never shown
        rules.append((re.compile(re.escape(state_path.encode())), b"the state database"))
        state_path = os.path.join(home, "state.db")
    name = os.path.basename(state_path)
    shown = f"{HOME_NAME}/{name}" if os.path.dirname(os.path.abspath(state_path)) in _forms(home) else name
    for form in sorted(_forms(state_path), key=len, reverse=True):
        rules.append((re.compile(re.escape(form.encode()) + end), shown.encode()))
    for form in sorted(_forms(home), key=len, reverse=True):
        rules.append((re.compile(re.escape(form.encode()) + end), HOME_NAME.encode()))

    def rewrite(body: bytes) -> bytes:
        for pattern, replacement in rules:
            body = pattern.sub(lambda _m, r=replacement: r, body)
        return body
    return rewrite


class HideServerPaths:
    """ASGI middleware applying a rewriter to JSON and event-stream bodies (Content-Length kept right)."""

    def __init__(self, app, rewrite):
        self.app, self.rewrite = app, rewrite

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") == "HEAD":
            return await self.app(scope, receive, send)
        held: dict = {}
        parts: list[bytes] = []

        async def rewriting_send(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(REWRITTEN_TYPES):
                    held["pass"] = True
                    return await send(message)
                if b"content-length" not in headers:  # a stream: each chunk is one whole event
                    held["stream"] = True
                    return await send(message)
                held["start"] = message
                return None
            if message["type"] != "http.response.body" or held.get("pass"):
                return await send(message)
            if held.get("stream"):
                return await send({**message, "body": self.rewrite(message.get("body", b""))})
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = self.rewrite(b"".join(parts))
            start = held["start"]
            headers = [(k, v) for k, v in start.get("headers") or [] if k != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return await self.app(scope, receive, rewriting_send)
