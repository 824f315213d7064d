"""Fixtures for the cloud tests: moto_server and Mimic on free loopback ports, and an environment pointing at them.

The emulators are shared by the session (tests tell their resources apart by infrastructure name);
tests that stop an emulator start their own. Tests talk only to 127.0.0.1, never to the
addresses the emulators invent.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulators  # noqa: E402

pytest.importorskip("boto3", reason="the AWS drivers need boto3 (pip install 'strato[aws]')")
pytest.importorskip("openstack", reason="the OpenStack driver needs openstacksdk (pip install 'strato[openstack]')")


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    try:
        emu = emulators.start_moto(str(tmp_path_factory.mktemp("moto")))
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"moto_server unavailable: {exc}")
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def mimic(tmp_path_factory):
    try:
        emu = emulators.start_mimic(str(tmp_path_factory.mktemp("mimic")))
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"Mimic unavailable: {exc}")
    yield emu
    emu.stop()


@pytest.fixture
def cloud_env(moto, mimic, monkeypatch, strato_home):
    """os.environ (for in-process driver calls) and a dict (for `strato` subprocesses) pointing at both emulators."""
    env = {**emulators.aws_environment(moto), **emulators.openstack_environment(mimic)}
    for k in [k for k in os.environ if k.startswith(("AWS_", "OS_"))]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
