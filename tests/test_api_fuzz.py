"""Schemathesis over the OpenAPI document: no generated request may cause a server error.

Every documented route is called with generated parameters and bodies on both
backends.  The read-only map API runs on the demo park; the hazard ledger and
grid-edit routes run authenticated (an admin's API token, which may log,
move, escalate and edit) on a fresh writable park, so generated writes are
stored and later reads must cope with them.  The document declares each
member's domain (geodata/domains.py); Schemathesis' negative mode sends what
it refuses (huge integers, year-1 dates, NUL and other control characters,
empty or one-point geometries).  The answer must be a 2xx or a 4xx with the
JSON error body, never a 5xx; tests/test_openapi_conformance.py checks the
rest of the document.  Generation is derandomized, so a run is repeatable.
"""

import uuid
from datetime import date, timedelta

import pytest
import schemathesis
import shapely
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, Photo, ServiceRequest
from geodata.periods import local_today
from geodata.request_workflow import TRANSITIONS as REQUEST_TRANSITIONS
from geodata.services import ledger, requests, visits
from geodata.services.parks import get_park
from geodata.storage import session_scope
from geodata.workflow import TRANSITIONS
from tests.browser import demo_url  # noqa: F401
from tests.ledger_helpers import ACTORS, build_park, image_bytes, lonlat
from webmap import create_app

WRITES = (r"^/api/(hazards|photos|requests|visits|me/|parks/\{code\}/"
          r"(hazards|requests|edits|dashboard|visits))")


FIRM = make_credit_code("411621", 1)  # 甲公司 of park T
_ASSIGN = ("assigned", {"department": "县人社局", "responsible": "李四",
                        "deadline": local_today() + timedelta(days=30)})
#: Stored requests: accepted, assigned, in progress, resolved (twice) and followed up.
REQUEST_STEPS = [(), (_ASSIGN,), (_ASSIGN, ("in_progress", {})),
                 (_ASSIGN, ("in_progress", {}), ("resolved", {})),
                 (_ASSIGN, ("in_progress", {}), ("resolved", {})),
                 (_ASSIGN, ("in_progress", {}), ("resolved", {}),
                  ("followed_up", {"satisfaction": "满意"}))]


@pytest.fixture
def api_schema(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True, "TODAY": date(2025, 11, 30)})
    yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    app.extensions["gridmap.engine"].dispose()


@pytest.fixture
def write_schema(db_url, engine, tmp_path):
    tokens = build_park(engine)
    # Stored hazards in each state, for the generated transitions and escalations.
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        for steps in [(), ("supervising", "closed")] + [("supervising",)] * 6:
            hazard = ledger.create_hazard(session, park, point=shapely.Point(*lonlat("T-001")),
                                          category="其他", actor=ACTORS["admin"])
            for to in steps:
                ledger.transition(session, hazard.id, to, actor=ACTORS["admin"],
                                  expected_version=hazard.version,
                                  supervision={"note": "ok"} if to == "closed" else None)
        # Requests in each state, for the generated request transitions.
        for steps in REQUEST_STEPS:
            item = requests.create_request(session, park, enterprise=FIRM, category="用工",
                                           description="招工", source="visit",
                                           actor=ACTORS["admin"])
            for to, extra in steps:
                requests.transition(session, item.id, to, actor=ACTORS["admin"],
                                    expected_version=item.version, note="x", **extra)
        # a stored photo, for the generated photo downloads
        ledger.save_photo(session, hazard.id, image_bytes("JPEG", (64, 48)),
                          actor=ACTORS["admin"], directory=tmp_path / "data" / "photos")
        # A stored visit, so the generated reads and photo uploads may find one.
        visits.create_visit(session, park, actor=ACTORS["admin"], client_id_=str(uuid.uuid4()),
                            kind="visit", occurred_at_="2025-12-01T09:00:00+08:00",
                            point=shapely.Point(*lonlat("T-003")))
    app = create_app({"DATABASE_URL": db_url, "TESTING": True,
                      "DATA_DIR": str(tmp_path / "data")})
    schema_ = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    # Park T is the one that exists; other codes are 404s, which find nothing.
    schema_.config.parameters = {"code": "T"}
    schema_.token, schema_.engine = tokens["admin"], engine
    yield schema_
    app.extensions["gridmap.engine"].dispose()


schema = schemathesis.pytest.from_fixture("api_schema")
writes = schemathesis.pytest.from_fixture("write_schema")


def _check(response):
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        assert body is not None and {"code", "message"} <= set(body["error"]), response.text
    assert response.status_code < 500, response.text


@schema.include(method="GET").exclude(path_regex=WRITES).parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_never_cause_server_errors(case):
    _check(case.call())


def _steer(case, engine):
    """Aim some generated writes at things that exist, so their other values get stored.

    Random lon/lat almost never fall inside park T, random credit codes name
    no enterprise and random hazard, request and photo ids and versions almost
    never match, so without this the codes, dates, notes, supervision records and
    request fields would all stop at 422/404/409.  Even hazard and request ids
    are mapped onto stored rows in a state the step can leave (with their
    current version in the body), even photo ids onto the stored photo; odd
    ones, huge ones included, are sent as generated.
    """
    body = case.body if isinstance(case.body, dict) else {}
    if "lon" in body:
        body.pop("location", None)  # which would win over lon/lat
        body["lon"], body["lat"] = lonlat("T-004")
    pid = str((case.path_parameters or {}).get("photo_id"))
    if pid.isdigit() and int(pid) % 2 == 0:
        with session_scope(engine) as session:
            case.path_parameters["photo_id"] = session.execute(sa.select(Photo.id)).scalar()
    if "enterprise" in body and isinstance(body.get("description"), str):
        # the park's enterprise, and some text (the generator mostly sends ''), so the
        # dates, sources and descriptions get as far as being stored
        body["enterprise"] = FIRM
        body["description"] = body["description"] or "招工"
    for key, model, table in (("hazard_id", Hazard, TRANSITIONS),
                              ("request_id", ServiceRequest, REQUEST_TRANSITIONS)):
        ref = str((case.path_parameters or {}).get(key))
        if not (ref.isdigit() and int(ref) % 2 == 0):
            continue
        with session_scope(engine) as session:
            stored = session.execute(sa.select(model.id, model.version, model.status)
                                     .order_by(model.id)).all()
        # Prefer a row the generated step can leave, so the step's checks all run.
        to = body.get("to") if isinstance(body.get("to"), str) else None
        movable = [r for r in stored if (r.status, to) in table] or stored
        if movable:
            case.path_parameters[key], version, _ = movable[(int(ref) // 2) % len(movable)]
            if isinstance(case.body, dict):
                body["version"] = version


@writes.include(path_regex=WRITES).parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_ledger_and_edit_requests_never_cause_server_errors(case, write_schema):
    _steer(case, write_schema.engine)
    _check(case.call(headers={"Authorization": f"Bearer {write_schema.token}"}))
