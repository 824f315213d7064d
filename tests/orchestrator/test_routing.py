"""A Router node in a real build: HAProxy in front of two process replicas answers at once, and follows a scale
from 2 to 3 (and back) in the maintain pass that makes it, with no failed request. Skipped where haproxy is absent
(tests/env/haproxy.sh installs it)."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import time

import pytest

from drivers.common import process_start_time
from drivers.haproxy import HaproxyAdmin
from orchestrator import service
from orchestrator.executor import RunOptions
from orchestrator.maintain import Maintainer, MaintainOptions, request_scale
from orchestrator.mlops import routing
from orchestrator.state import StateStore
from tests.drivers.test_haproxy import BACKEND, Client, _count

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy is not installed (tests/env/haproxy.sh installs Debian's haproxy)")

DESCRIPTOR = textwrap.dedent(f"""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        web:
          type: strato.nodes.Process
          properties:
            command: ["{{python}}", {BACKEND}, "{{port}}", "web-{{instance}}"]
            port: auto
            health_check: {{http: /health}}
          capabilities:
            scalable: {{properties: {{default_instances: 2, max_instances: 4}}}}
        lb:
          type: strato.nodes.ai.Router
          properties: {{check_interval: 0.5, drain_timeout: 5}}
          requirements:
            - route_to: web
      outputs:
        url: {{value: {{get_attribute: [lb, url]}}}}
    """)


@pytest.fixture
def stack(strato_home, tmp_path):
    path = tmp_path / "routed.yaml"
    path.write_text(DESCRIPTOR)
    store = StateStore(str(strato_home / "state.db"))
    name = f"routed-{tmp_path.name[-12:]}".replace("_", "-")
    report = service.build(str(path), name, {}, store, RunOptions(timeout=60))
    try:
        yield store, name, report
    finally:
        service.destroy(store, name, RunOptions(timeout=60))


def _router(store, name):
    rec = next(r for r in store.instances(name) if r.node == "lb")
    return rec, HaproxyAdmin(rec.attributes["admin_socket"])


def test_a_built_stack_routes_at_once_and_follows_a_scale_out_and_in(stack):
    store, name, report = stack
    assert report["ok"], report
    url = report["outputs"]["url"]
    port = int(url.rsplit(":", 1)[1])
    assert set(_count(port, 20)) == {"web-0", "web-1"}            # routed by the build itself
    rec, admin = _router(store, name)
    assert admin.weights(rec.attributes["backend"]) == {"web-0": 1, "web-1": 1}

    client = Client(port)
    client.start()
    out = request_scale(store, name, "web", "to", 3)               # one maintain pass, run here
    assert out["pass"]["acted"] and out["pass"]["errors"] == [], out
    assert admin.weights("lb") == {"web-0": 1, "web-1": 1, "web-2": 1}
    assert set(_count(port, 30)) == {"web-0", "web-1", "web-2"}

    out = request_scale(store, name, "web", "to", 2)               # web-2 is drained, then deleted
    assert out["pass"]["errors"] == [], out
    assert admin.weights("lb") == {"web-0": 1, "web-1": 1}
    time.sleep(0.3)
    client.finish()
    assert client.failures == [] and client.answers["web-2"] > 0
    routed = [e for e in store.events(name, limit=500) if e["kind"] == "routed"]
    assert any(e["detail"]["added"] == ["web-2"] for e in routed)
    assert any(e["detail"]["removed"] == ["web-2"] for e in routed)


def test_a_pass_routes_again_what_the_router_lost(stack):
    store, name, report = stack
    rec, admin = _router(store, name)
    admin.sync("lb", [])                                           # a restarted HAProxy, say: no server left
    assert admin.weights("lb") == {}
    pass_report = Maintainer(store, name, MaintainOptions(policies=False)).run_pass()
    assert pass_report.errors == []
    assert admin.weights("lb") == {"web-0": 1, "web-1": 1}


def test_routes_come_from_the_route_to_requirement(stack):
    store, name, _ = stack
    template = service.load_checked(store.get_infra(name).descriptor, confined=False).template
    assert routing.routes(template) == [routing.Route("lb", "web")]
    synced = routing.sync_routers(store, name, template)
    assert [(s.router, s.target, s.servers, s.error) for s in synced] == [("lb", "web", 2, None)]
    assert not synced[0].report.changed                            # already in step: nothing to do


def test_a_router_that_died_comes_back_on_its_port_with_its_servers(stack):
    store, name, report = stack
    port = int(report["outputs"]["url"].rsplit(":", 1)[1])
    rec, _ = _router(store, name)
    os.kill(rec.attributes["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_start_time(rec.attributes["pid"]) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    pass_report = Maintainer(store, name, MaintainOptions(policies=False)).run_pass()
    assert pass_report.acted and pass_report.errors == [], pass_report
    again, admin = _router(store, name)
    assert again.attributes["pid"] != rec.attributes["pid"] and again.attributes["port"] == port
    assert admin.weights("lb") == {"web-0": 1, "web-1": 1}
    assert set(_count(port, 20)) == {"web-0", "web-1"}
