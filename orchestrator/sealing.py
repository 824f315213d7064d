"""Secret inputs at rest: sealed with Fernet (the `cryptography` package) under a key file beside the state database.

The key file (`secret.key`, mode 0600) is made once, atomically: written to a private temporary file and
linked into place, so no process ever reads a half-written key and two processes starting at once agree
on one key. A sealed input is stored as {"$strato_sealed": TOKEN}; reading it back needs the same key.
cryptography is imported only when there is something to seal or open (the CLI must start fast).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from descriptors.secrets import Unreadable

KEY_FILE = "secret.key"
SEALED = "$strato_sealed"
# named, not given as a path: these reasons reach API responses, which show no server paths
_KEY_NAMED = f"{KEY_FILE} beside the state database"
_INSTALL_HINT = "Strato needs the cryptography package to store secret inputs: pip install 'cryptography>=41'"
_boxes: dict[bytes, Any] = {}
_lock = threading.Lock()


class SealError(Exception):
    """No key to open sealed inputs with (reported as the reason an input is unreadable)."""


def key_path(home: str) -> str:
    return os.path.join(home, KEY_FILE)


def seal_inputs(inputs: dict, names, home: str) -> dict:
    """inputs with the values of the named (secret) inputs sealed; other values as they are."""
    names = {n for n in names if inputs.get(n) is not None}
    if not names:
        return inputs
    box = _fernet(home, create=True)
    return {k: ({SEALED: box.encrypt(json.dumps(v).encode()).decode()} if k in names else v)
            for k, v in inputs.items()}


def open_inputs(stored: dict, home: str) -> tuple[dict, frozenset[str]]:
    """(inputs with sealed values opened, the names of those that were sealed). A value that cannot be
    opened becomes an Unreadable, which a build refuses with a clear error until the input is given again."""
    sealed = [k for k, v in stored.items() if isinstance(v, dict) and len(v) == 1 and SEALED in v]
    if not sealed:
        return stored, frozenset()
    try:
        box, reason = _fernet(home, create=False), ""
    except SealError as exc:
        box, reason = None, str(exc)
    opened = dict(stored)
    for name in sealed:
        opened[name] = Unreadable(reason) if box is None else _open(box, stored[name][SEALED])
    return opened, frozenset(sealed)


def _open(box, token: str) -> Any:
    from cryptography.fernet import InvalidToken
    try:
        return json.loads(box.decrypt(str(token).encode()))
    except (InvalidToken, ValueError):
        return Unreadable(f"the key in {_KEY_NAMED} is not the one it was sealed with")


def _fernet(home: str, create: bool):
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise SealError(_INSTALL_HINT) from None
    path = key_path(home)
    with _lock:
        try:
            key = _read_key(path)
        except FileNotFoundError:
            if not create:
                raise SealError(f"its key file ({_KEY_NAMED}) is missing") from None
            _create_key(path, Fernet.generate_key())
            key = _read_key(path)
        box = _boxes.get(key)  # by the key itself: a key file replaced meanwhile is never served from the cache
        if box is None:
            try:
                box = _boxes[key] = Fernet(key)
            except ValueError:
                raise SealError(f"its key file ({_KEY_NAMED}) does not hold a key") from None
        return box


def _read_key(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read().strip()


def _create_key(path: str, key: bytes) -> None:
    """Write the key to a private temporary file and link it into place (never replacing another's key)."""
    temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made the key first: use theirs
    finally:
        os.unlink(temp)
