"""Driver registry: backends register under the `strato.drivers` entry point group (like Libcloud's provider table)."""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

from drivers.base import Driver

# Used when the package is imported from a source tree without being installed.
BUILTIN = {
    "local": "drivers.local:LocalDriver",
    "noop": "drivers.noop:NoopDriver",
    "sleep": "drivers.noop:SleepDriver",
    "placeholder": "drivers.placeholder:PlaceholderDriver",
    "ec2": "drivers.aws.ec2:Ec2Driver",
    "sagemaker": "drivers.aws.sagemaker:SageMakerDriver",
    "lambda": "drivers.aws.lambda_:LambdaDriver",
    "openstack": "drivers.openstack:OpenStackDriver",
}

_instances: dict[str, Driver] = {}
_lock = threading.Lock()


class UnknownDriver(LookupError):
    pass


def _table() -> dict[str, str]:
    table = dict(BUILTIN)
    for ep in entry_points(group="strato.drivers"):
        table[ep.name] = ep.value
    return table


def known_drivers() -> list[str]:
    return sorted(_table())


def driver_class(name: str) -> type[Driver]:
    """The class registered under name, without connecting to its backend."""
    target = _table().get(name)
    if target is None:
        raise UnknownDriver(f"no driver named '{name}' (known: {', '.join(known_drivers())})")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def get_driver(name: str) -> Driver:
    """The (process-wide) driver instance registered under name."""
    with _lock:
        if name in _instances:
            return _instances[name]
        driver = _instances[name] = driver_class(name)()
        return driver
