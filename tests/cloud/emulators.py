"""Install and start the cloud emulators the cloud tests and benchmark run against: moto_server and Mimic.

Both listen on a free 127.0.0.1 port and are stopped by their owner. Mimic pins old Twisted
pieces, so it lives in its own virtualenv `.venv-mimic` at the repository root, created on
demand (CI starts from a clean clone). Run as a script to install ahead of time:
    python tests/cloud/emulators.py install
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from drivers.local import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIMIC_VENV = os.path.join(REPO, ".venv-mimic")
MIMIC_PIN = "mimic==2.2.0"


class EmulatorUnavailable(RuntimeError):
    """The emulator cannot be installed or started here; the message says why (tests skip with it)."""


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log_path: str, method: str = "GET",
               body: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EmulatorUnavailable(f"{proc.args[0]} exited with {proc.returncode}: {_tail(log_path)}")
        try:
            req = urllib.request.Request(url, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise EmulatorUnavailable(f"{url} did not answer within {timeout:g} s: {_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return " | ".join(fh.read().splitlines()[-5:])
    except OSError:
        return ""


class Emulator:
    """A running emulator process; `stop()` ends it (and is safe to call twice)."""

    def __init__(self, name: str, proc: subprocess.Popen, url: str, log_path: str):
        self.name, self.proc, self.url, self.log_path = name, proc, url, log_path

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _moto_command() -> list[str]:
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    if os.path.exists(exe):
        return [exe]
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise EmulatorUnavailable("moto[server] is not installed: pip install 'strato[test]'") from None
    return [sys.executable, "-m", "moto.server"]


def start_moto(log_dir: str | None = None, timeout: float = 30) -> Emulator:
    port = free_port()
    log_path = os.path.join(log_dir or tempfile.mkdtemp(prefix="moto-"), "moto.log")
    log = open(log_path, "ab")
    proc = subprocess.Popen([*_moto_command(), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    emu = Emulator("moto", proc, url, log_path)
    try:
        _wait_http(url + "/moto-api/", proc, timeout, log_path)
    except BaseException:
        emu.stop()
        raise
    return emu


def _mimic_python() -> str:
    return os.path.join(MIMIC_VENV, "bin", "python")


def mimic_installed() -> bool:
    return os.path.exists(os.path.join(MIMIC_VENV, "bin", "twistd")) and subprocess.run(
        [_mimic_python(), "-c", "import mimic"], capture_output=True, timeout=60).returncode == 0


def install_mimic(timeout: float = 600) -> None:
    """Create .venv-mimic with Mimic in it (once; a file lock keeps parallel test processes from racing)."""
    os.makedirs(os.path.dirname(MIMIC_VENV), exist_ok=True)
    with open(os.path.join(tempfile.gettempdir(), "strato-venv-mimic.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mimic_installed():
            return
        shutil.rmtree(MIMIC_VENV, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", MIMIC_VENV], check=True, capture_output=True,
                           timeout=120)
            proc = subprocess.run([_mimic_python(), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                                   MIMIC_PIN], capture_output=True, text=True, timeout=timeout)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(MIMIC_VENV, ignore_errors=True)
            raise EmulatorUnavailable(f"cannot create {MIMIC_VENV}: {exc}") from None
        if proc.returncode != 0:
            shutil.rmtree(MIMIC_VENV, ignore_errors=True)
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise EmulatorUnavailable(f"pip could not install {MIMIC_PIN} into {MIMIC_VENV}: {tail}")


def start_mimic(log_dir: str | None = None, timeout: float = 60) -> Emulator:
    install_mimic()
    port = free_port()
    work = log_dir or tempfile.mkdtemp(prefix="mimic-")
    log_path = os.path.join(work, "mimic.log")
    log = open(log_path, "ab")
    # twistd writes twistd.pid in its cwd; give each instance its own directory.
    proc = subprocess.Popen([os.path.join(MIMIC_VENV, "bin", "twistd"), "-n", "--pidfile=", "mimic",
                             "--listen", f"tcp:{port}:interface=127.0.0.1"], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    emu = Emulator("mimic", proc, url, log_path)
    try:
        _wait_http(url + "/identity/v2.0/tokens", proc, timeout, log_path, method="POST",
                   body=b'{"auth": {"passwordCredentials": {"username": "probe", "password": "probe"}}}')
    except BaseException:
        emu.stop()
        raise
    return emu


def aws_environment(moto: Emulator) -> dict[str, str]:
    """The standard variables that point boto3 (and so Strato) at moto."""
    return {"AWS_ENDPOINT_URL": moto.url, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def openstack_environment(mimic: Emulator) -> dict[str, str]:
    """The standard OS_* variables that point openstacksdk (and so Strato) at Mimic's Keystone v2."""
    return {"OS_AUTH_URL": mimic.url + "/identity/v2.0", "OS_AUTH_TYPE": "v2password",
            "OS_IDENTITY_API_VERSION": "2", "OS_USERNAME": "strato", "OS_PASSWORD": "strato",
            "OS_PROJECT_NAME": "strato", "OS_REGION_NAME": "ORD", "OS_COMPUTE_API_VERSION": "2"}


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        install_mimic()
        print(f"mimic ready in {MIMIC_VENV}")
    else:
        print(__doc__)
        sys.exit(2)
