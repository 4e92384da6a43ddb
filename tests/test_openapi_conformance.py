"""The API answers as its own OpenAPI document says, checked by Schemathesis with every check.

tests/test_api_fuzz.py asks only "no 5xx"; here every check the installed
Schemathesis has runs on generated requests, positive and negative, on both
backends: the status code, content type, body and headers must be the
documented ones, a request the document refuses must be refused (4xx), a
missing required header or an undeclared method must be refused, and a
request the document allows must not be refused for a value the document
could have refused.  The last one is narrowed to what a schema can say
(tests/schemathesis_hooks.py).  The same checks run through the
``schemathesis run`` CLI against a served app, with its coverage and
stateful phases.  The OGC API document (``/ogcapi/api``) gets the same checks.

A structural test walks ``app.url_map``: every ``/api`` rule and method is
documented, and every operation lists the answers its code path can give.
"""

import os
import re
import subprocess
import sys
import uuid
from datetime import date

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from geodata.creditcode import make_credit_code
from geodata.errors import GridmapError
from geodata.services.ledger import CATEGORIES
from schemathesis import checks
from schemathesis.core.jsonschema import matches_pattern
from schemathesis.core.jsonschema.patterns import compile_ecma_pattern
from tests.browser import ROOT, LiveServer
from tests.ledger_helpers import build_park, future, lonlat
from tests.schemathesis_hooks import narrowed_positive_data_acceptance
from webmap import create_app
from webmap.api import (BODY_ERRORS, COMMON_ERRORS, SECURED_ERRORS, VERSIONED_ERRORS,
                        openapi_document)
from webmap.ogcapi import openapi_document as ogc_document

#: Every check of the installed Schemathesis, positive_data_acceptance narrowed as above.
ALL_CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
              checks.content_type_conformance, checks.response_headers_conformance,
              checks.response_schema_conformance, checks.negative_data_rejection,
              checks.missing_required_header, checks.unsupported_method,
              checks.allow_header_conformance, checks.use_after_free,
              checks.ensure_resource_availability, checks.ignored_auth,
              narrowed_positive_data_acceptance]


def _document_schema(db_url, engine, tmp_path, document):
    """Yield Schemathesis' schema of ``document`` on an app over park T, with an admin token."""
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "TODAY": date(2025, 11, 30),
                      "DATA_DIR": str(tmp_path / "data")})
    schema_ = schemathesis.openapi.from_wsgi(document, app)
    schema_.token = tokens["admin"]
    yield schema_
    app.extensions["gridmap.engine"].dispose()


@pytest.fixture
def conformance_schema(db_url, engine, tmp_path):
    for schema_ in _document_schema(db_url, engine, tmp_path, "/api/openapi.json"):
        # Park T is the one that exists; other codes are 404s, which find nothing.
        schema_.config.parameters = {"code": "T"}
        yield schema_


conformance = schemathesis.pytest.from_fixture("conformance_schema")


@pytest.fixture
def ogc_conformance_schema(db_url, engine, tmp_path):
    yield from _document_schema(db_url, engine, tmp_path, "/ogcapi/api")


ogc_conformance = schemathesis.pytest.from_fixture("ogc_conformance_schema")


def test_every_check_of_schemathesis_is_run():
    """A Schemathesis upgrade that adds a check makes this list incomplete: add it above."""
    checks.load_all_checks()
    names = {c.__name__ for c in ALL_CHECKS} | {"positive_data_acceptance"}
    # object_level_authorization needs two users' resources in one run (test_grid_scope.py).
    assert set(checks.CHECKS.get_all_names()) - names == {"object_level_authorization"}


@conformance.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_answers_conform_to_the_document(case, conformance_schema):
    case.call_and_validate(headers={"Authorization": f"Bearer {conformance_schema.token}"},
                           checks=ALL_CHECKS)


@ogc_conformance.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_ogc_answers_conform_to_their_document(case, ogc_conformance_schema):
    case.call_and_validate(headers={"Authorization": f"Bearer {ogc_conformance_schema.token}"},
                           checks=ALL_CHECKS)


def _patterns(node):
    """Every ``pattern`` of the JSON Schemas in ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_every_pattern_of_both_documents_can_be_generated(db_url):
    """Hypothesis draws from every pattern as Schemathesis reads it (ECMA-262, ``re.ASCII``).

    A pattern it cannot draw from left Schemathesis' coverage phase without a
    valid value, and it sent the one it had made to break ``maxLength`` as
    valid (U+2028 named alone in the text patterns, geodata/domains.py).
    """
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    with app.test_request_context("/ogcapi/api"):
        patterns = set(_patterns(openapi_document())) | set(_patterns(ogc_document()))
    app.extensions["gridmap.engine"].dispose()
    assert len(patterns) > 10
    compiled = {pattern: compile_ecma_pattern(pattern) for pattern in patterns}
    assert None not in compiled.values(), compiled

    @given(st.data())
    @settings(max_examples=1, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    def draw_from_each(data):
        for pattern, regex in compiled.items():
            drawn = data.draw(st.from_regex(regex, fullmatch=True), label=pattern)
            assert matches_pattern(pattern)(drawn), (pattern, drawn)

    draw_from_each()


def _methods(app):
    """``{(OpenAPI path, method): rule}`` of every ``/api`` rule of ``app.url_map``."""
    out = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out[(path, method.lower())] = rule
    return out


def test_every_api_route_is_documented_with_its_answers(db_url):
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    with app.test_request_context():
        document = openapi_document()
    validate(document)  # a valid OpenAPI 3.0 document
    documented = {(path, method): op for path, ops in document["paths"].items()
                  for method, op in ops.items()}
    served = _methods(app)
    assert set(served) == set(documented), set(served) ^ set(documented)
    statuses = {str(cls.http_status) for cls in _subclasses(GridmapError)} - {"500"}
    for (path, method), op in documented.items():
        answers = set(op["responses"])
        expected = set(COMMON_ERRORS)
        if "security" in op:
            expected |= set(SECURED_ERRORS)
        if "requestBody" in op:
            expected |= set(BODY_ERRORS)
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        if "If-Match" in headers:
            expected |= set(VERSIONED_ERRORS)
        if "If-None-Match" in headers:
            expected.add("304")
        assert expected <= answers, (method, path, expected - answers)
        assert "X-Gridmap-User" in headers, (method, path)
        # every error answer is the documented error body, 503 with its Retry-After
        for code in answers & statuses:
            assert op["responses"][code]["$ref"].startswith("#/components/responses/")
        ok = op["responses"].get("201")
        if ok is not None:
            assert ok["headers"]["Location"]["required"], (method, path)
    assert "Retry-After" in document["components"]["responses"]["Unavailable"]["headers"]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.mark.parametrize("role, status", [(None, 401), ("viewer", None)])
def test_secured_operations_are_the_ones_refusing_anonymous_requests(db_url, engine, role,
                                                                     status):
    """An operation answers 401 without credentials exactly when it declares ``security``."""
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    with app.test_request_context():
        document = openapi_document()
    samples = {"code": "T", "grid_code": "T-001", "hazard_id": 1, "request_id": 1,
               "visit_id": 1, "photo_id": 1, "z": 0, "x": 0, "y": 0,
               "credit_code": "914116210000000198"}
    # Credentials are judged first: a bad Idempotency-Key does not turn the 401 into a 400.
    headers = ({"Authorization": f"Bearer {tokens[role]}"} if role else
               {"Idempotency-Key": "not a key!"})
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            response = client.open(path.format(**samples), method=method.upper(),
                                   headers=headers, json={} if method == "post" else None)
            if role is None:
                assert (response.status_code == 401) == ("security" in op), (method, path)
            assert str(response.status_code) in op["responses"], (
                method, path, response.status_code)
        # An undeclared method is 405 with Allow, whoever X-Gridmap-User names.
        other = "DELETE" if "delete" not in ops else "PATCH"
        response = client.open(path.format(**samples), method=other,
                               headers={**headers, "X-Gridmap-User": "someone-else"})
        assert response.status_code == 405 and response.headers["Allow"], (other, path)
    app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("document", ["/api/openapi.json", "/ogcapi/api"])
def test_schemathesis_cli_finds_nothing_with_every_check(db_url, engine, tmp_path, document):
    """``schemathesis run`` on a served app: coverage, fuzzing and stateful phases, all checks.

    The coverage phase is the one that sends missing required headers,
    undeclared methods and each boundary of every schema; the stateful phase
    chains creates and reads.  A few examples per operation keep it short.
    """
    tokens = build_park(engine)
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.code" = "T"\n')
    server = LiveServer(db_url)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
             f"{server.url}{document}", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance,object_level_authorization",
             "--max-examples", "3", "--seed", "1", "--workers", "1", "--no-shrink",
             "--continue-on-failure", "--header", f"Authorization: Bearer {tokens['admin']}"],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
                 "NO_COLOR": "1"})
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def _documented_schema(document, path, method, status):
    """The schema ``document`` gives the JSON answer ``status`` of ``method path``."""
    answer = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["content"]["application/json"]["schema"]


def test_ledger_answers_validate_against_their_closed_schemas(db_url, engine, tmp_path):
    """Real hazard, request and visit answers (one, a page, a write, history, an error) validate.

    Their schemas are geodata/answer_schemas.py's, closed, so a member a
    serialiser adds without documenting it fails here (and in the
    ``response_schema_conformance`` check above).
    """
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "TODAY": date(2025, 11, 30),
                      "DATA_DIR": str(tmp_path / "data")})
    client = app.test_client()
    with app.test_request_context():
        document = openapi_document()
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    lon, lat = lonlat((150, 150))  # inside 甲公司's site in T-003
    calls = [
        ("post", "/api/parks/{code}/hazards", {"code": "T"},
         {"lon": lon, "lat": lat, "category": CATEGORIES[0], "description": "消防通道堵塞"}),
        ("get", "/api/hazards/{hazard_id}", {"hazard_id": 1}, None),
        ("post", "/api/hazards/{hazard_id}/transitions", {"hazard_id": 1},
         {"to": "rectifying", "version": 1, "deadline": future().isoformat()}),
        ("post", "/api/hazards/{hazard_id}/escalations", {"hazard_id": 1},
         {"to": "park", "reason": "逾期未改", "version": 2}),
        ("get", "/api/hazards", {}, None),
        ("post", "/api/parks/{code}/requests", {"code": "T"},
         {"enterprise": make_credit_code("411621", 1), "category": "融资",
          "description": "流动资金紧张", "source": "phone"}),
        ("get", "/api/requests/{request_id}", {"request_id": 1}, None),
        ("post", "/api/requests/{request_id}/transitions", {"request_id": 1},
         {"to": "assigned", "version": 1, "department": "金融办", "responsible": "李四",
          "deadline": future().isoformat()}),
        ("get", "/api/requests", {}, None),
        ("post", "/api/parks/{code}/visits", {"code": "T"},
         {"client_id": str(uuid.uuid4()), "kind": "visit", "lon": lon, "lat": lat,
          "occurred_at": "2025-11-29T09:00:00+08:00", "accuracy_m": 6.5, "note": "走访"}),
        ("get", "/api/visits/{visit_id}", {"visit_id": 1}, None),
        ("get", "/api/visits", {}, None),
        ("get", "/api/hazards/{hazard_id}/history", {"hazard_id": 1}, None),
        ("get", "/api/requests/{request_id}/history", {"request_id": 1}, None),
        ("get", "/api/visits/{visit_id}/history", {"visit_id": 1}, None),
        ("get", "/api/hazards/{hazard_id}", {"hazard_id": 999}, None),  # 404: the error body
    ]
    for method, path, values, body in calls:
        response = client.open(path.format(**values), method=method.upper(), headers=auth,
                               json=body)
        assert response.status_code in (200, 201, 404), (path, response.get_json())
        assert (response.status_code == 404) == (values.get("hazard_id") == 999), path
        schema = _documented_schema(document, path, method, response.status_code)
        assert "$ref" in schema, (method, path)  # a real schema, not {"type": "object"}
        OAS30Validator({**schema, "components": document["components"]},
                       format_checker=OAS30Validator.FORMAT_CHECKER).validate(
                           response.get_json())
    app.extensions["gridmap.engine"].dispose()
