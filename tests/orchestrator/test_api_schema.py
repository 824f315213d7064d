"""Schemathesis against the published OpenAPI spec (bounded): no 5xx for generated input, responses match the spec."""

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the schema test needs schemathesis (pip install '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,  # noqa: E402
                                               status_code_conformance)

from orchestrator.api import ApiSettings, create_app  # noqa: E402

# Semantic checks ("schema-valid data is accepted") do not fit descriptors: valid JSON may be an invalid descriptor.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

TOKEN = "schema-" + "w" * 30


def test_no_server_errors_and_responses_match_the_spec(strato_home, monkeypatch):
    monkeypatch.setenv("STRATO_API_TOKEN", TOKEN)
    monkeypatch.setenv("STRATO_API_READ_TOKEN", "schema-read-" + "r" * 30)
    app = create_app(str(strato_home / "state.db"), ApiSettings(validation_timeout=5))
    # the event stream never ends by design; its bounded form is covered in test_api.py
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex="/events$")
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(max_examples=4, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
        check()
        tested += 1
    assert tested >= 15
    app.state.ctx.ops.wait_idle(30)
