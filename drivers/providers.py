"""Driver registry: backends register under the `strato.drivers` entry point group (like Libcloud's provider table).

The table is declared once, in setup.cfg's [options.entry_points]. An installed Strato (and any
plugin package) is read through importlib.metadata; a source checkout that is imported without
being (re)installed reads its own setup.cfg, so its newest drivers are found too.
"""

from __future__ import annotations

import configparser
import importlib
import os
import threading
from importlib.metadata import entry_points

from drivers.base import Driver

GROUP = "strato.drivers"
_SETUP_CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.cfg")

_instances: dict[str, Driver] = {}
_lock = threading.Lock()


class UnknownDriver(LookupError):
    pass


def _checkout_table() -> dict[str, str]:
    """The strato.drivers entry points declared in the setup.cfg next to this package (a source checkout)."""
    if not os.path.exists(_SETUP_CFG):
        return {}
    parser = configparser.ConfigParser()
    parser.read(_SETUP_CFG)
    raw = parser.get("options.entry_points", GROUP, fallback="")
    table = {}
    for line in raw.splitlines():
        name, sep, target = line.partition("=")
        if sep:
            table[name.strip()] = target.strip()
    return table


def _table() -> dict[str, str]:
    table = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    table.update(_checkout_table())
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
