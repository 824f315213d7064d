"""Processes Strato started, found by the instance key in their environment (/proc): what tests and the soak
benchmark count to prove no instance runs twice and none is left behind."""

from __future__ import annotations

import os

from drivers.local import KEY_ENV


def processes_of(infra: str) -> dict[str, list[int]]:
    """Live (non-zombie) processes carrying an instance key of this infrastructure, by key.

    Names are unique per test, so whatever else runs on the machine is never counted."""
    found: dict[str, list[int]] = {}
    prefix = f"{KEY_ENV}={infra}/".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        for item in env:
            if item.startswith(prefix):
                found.setdefault(item.split(b"=", 1)[1].decode(), []).append(int(entry))
    return found
