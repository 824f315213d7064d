"""The control plane image's entry point: secrets from files, then `strato serve --maintain` (or a health check).

Each of STRATO_API_TOKEN, STRATO_API_READ_TOKEN and STRATO_STATE_URL may be given as NAME_FILE, the path of a
file holding it (a Podman secret, a mounted Kubernetes Secret), so it never shows in the container's config.
STRATO_SECRET_KEY_FILE names the key that seals secret inputs: every server sharing one database needs the same
one, so it is copied to $STRATO_HOME/secret.key (mode 0600) before the server starts.
The server listens on 127.0.0.1 unless STRATO_HOST says otherwise: publishing it is a decision, not a default.
    entrypoint.py [EXTRA SERVE OPTIONS...]   exec `python -m orchestrator serve --maintain ...`
    entrypoint.py healthcheck                 exit 0 when GET /healthz answers {"ok": true} (the HEALTHCHECK)
"""
import json
import os
import sys
import urllib.request

SECRETS = ("STRATO_API_TOKEN", "STRATO_API_READ_TOKEN", "STRATO_STATE_URL")
EX_CONFIG = 78  # sysexits: a configuration error


def load_secret_files(environ: dict) -> None:
    """Set NAME from the file NAME_FILE names; a missing or empty file is a one-line error, not a traceback."""
    for name in SECRETS:
        path = environ.pop(f"{name}_FILE", "")
        if not path:
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise SystemExit(f"entrypoint: {name}_FILE={path}: {exc.strerror}") from None
        if not value:
            raise SystemExit(f"entrypoint: {name}_FILE={path} is empty")
        environ[name] = value


def install_secret_key(environ: dict) -> None:
    """Copy the shared sealing key into STRATO_HOME, where Strato reads it (atomically: never half a key)."""
    source = environ.pop("STRATO_SECRET_KEY_FILE", "")
    if not source:
        return
    try:
        with open(source, "rb") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise SystemExit(f"entrypoint: STRATO_SECRET_KEY_FILE={source}: {exc.strerror}") from None
    if not key:
        raise SystemExit(f"entrypoint: STRATO_SECRET_KEY_FILE={source} is empty")
    home = environ.get("STRATO_HOME") or os.path.expanduser("~/.strato")
    os.makedirs(home, mode=0o700, exist_ok=True)
    target = os.path.join(home, "secret.key")
    temp = f"{target}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.replace(temp, target)


def listen_address(environ: dict) -> tuple[str, str]:
    return environ.get("STRATO_HOST", "127.0.0.1"), environ.get("STRATO_PORT", "8470")


def healthcheck(environ: dict) -> int:
    host, port = listen_address(environ)
    if host in ("0.0.0.0", "::", ""):  # a wildcard address answers on loopback too
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 0 if json.load(resp).get("ok") is True else 1
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


def serve(environ: dict, extra: list[str]) -> None:
    try:
        load_secret_files(environ)
        install_secret_key(environ)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(EX_CONFIG)
    host, port = listen_address(environ)
    interval = environ.get("STRATO_MAINTAIN_INTERVAL", "10s")
    argv = [sys.executable, "-m", "orchestrator", "serve", "--maintain", "--maintain-interval", interval,
            "--host", host, "--port", port, *extra]
    os.execve(sys.executable, argv, environ)


if __name__ == "__main__":
    if sys.argv[1:2] == ["healthcheck"]:
        sys.exit(healthcheck(dict(os.environ)))
    serve(dict(os.environ), sys.argv[1:])
