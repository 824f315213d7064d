"""The control plane image's entry point: secrets from files, then `strato serve --maintain` (or a health check).

Each of STRATO_API_TOKEN, STRATO_API_READ_TOKEN and STRATO_STATE_URL may be given as NAME_FILE, the path of a
file holding it (a Podman secret, a mounted Kubernetes Secret), so it never shows in the container's config.
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
