"""Schemathesis over the OpenAPI document: no generated request may cause a server error.

Every documented route is called with generated parameters (strings where
numbers belong, huge and negative numbers, odd bboxes) on both backends; the
answer must be a 2xx or a 4xx with the JSON error body, never a 5xx (the one
allowed 5xx is the documented 501 for vector tiles on SpatiaLite).
"""

from datetime import date

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.browser import demo_url  # noqa: F401
from webmap import create_app


@pytest.fixture
def api_schema(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True, "TODAY": date(2025, 11, 30)})
    yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    app.extensions["gridmap.engine"].dispose()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.include(method="GET").parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_cause_server_errors(case):
    response = case.call()
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        assert body is not None and {"code", "message"} <= set(body["error"]), response.text
    if response.status_code >= 500:
        assert response.status_code == 501, response.text
        assert body["error"]["code"] == "vector_tiles_unsupported"
