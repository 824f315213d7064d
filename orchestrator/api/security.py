"""Bearer tokens with scopes for the REST API: generated on first start (0600 files) or taken from the environment."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field

from fastapi import Request

from descriptors.secrets import MASK, SECRET_NAME
from orchestrator.api.errors import ApiError

READ, WRITE = "read", "write"
SCOPES = {READ: {READ}, WRITE: {READ, WRITE}}   # a write token may also read
TOKEN_ENV = {WRITE: "STRATO_API_TOKEN", READ: "STRATO_API_READ_TOKEN"}
TOKEN_FILE = {WRITE: "api-token", READ: "api-token.read"}
MIN_TOKEN_LENGTH = 16
_SECRET_KEY = SECRET_NAME  # the names a descriptor's inputs are secret by, too


@dataclass
class Tokens:
    """The accepted tokens and their scope; `None` for a server started with --insecure-no-auth."""

    by_scope: dict[str, list[bytes]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def scope_of(self, presented: str) -> str | None:
        """The scope of a presented token, comparing in constant time against every known token."""
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for scope in (WRITE, READ):
            for token in self.by_scope.get(scope, []):
                if hmac.compare_digest(given, token) and found is None:
                    found = scope
        return found


def _read_or_create(path: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)  # a token readable by others is no secret
        with open(path) as fh:
            token = fh.read().strip()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the API token in {path} is shorter than {MIN_TOKEN_LENGTH} characters; "
                             "delete the file to have a new one generated")
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def load_tokens(home: str) -> Tokens:
    """Tokens from STRATO_API_TOKEN / STRATO_API_READ_TOKEN, else from (new) 0600 files under home."""
    tokens = Tokens()
    os.makedirs(home, exist_ok=True)
    for scope in (WRITE, READ):
        value = os.environ.get(TOKEN_ENV[scope])
        if value:
            if len(value) < MIN_TOKEN_LENGTH:
                raise ValueError(f"${TOKEN_ENV[scope]} must be at least {MIN_TOKEN_LENGTH} characters")
        else:
            path = os.path.join(home, TOKEN_FILE[scope])
            value = _read_or_create(path)
            tokens.files[scope] = path
        tokens.by_scope[scope] = [value.encode()]
    return tokens


def authorize(request: Request, tokens: Tokens | None, needed: str) -> str:
    """The caller's scope, or 401 (no or wrong token) / 403 (token lacks the scope)."""
    if tokens is None:
        return WRITE
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "UNAUTHORIZED", "send a token: 'Authorization: Bearer <token>' "
                                            "(the server keeps it in $STRATO_HOME/api-token)")
    scope = tokens.scope_of(presented.strip())
    if scope is None:
        raise ApiError(401, "UNAUTHORIZED", "the token is not valid for this server")
    if needed not in SCOPES[scope]:
        raise ApiError(403, "FORBIDDEN", f"a {scope} token cannot do this; it needs a {needed} token")
    return scope


def scrub(value):
    """Credentials never leave the server: values under secret-looking keys are masked."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "") else scrub(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
