"""The three ledgers a park keeps answer the same attacks the same way, on both backends.

Hazards (隐患), enterprise requests (诉求) and field visits (走访/巡查/回头看)
grew one after the other; the hazard ledger was hardened first.  This is
the table across them: every create and state-change route meets the same
stale versions, replays, foreign grids, roles, positions, hostile text and
impossible dates, and every refusal leaves the store as it was (the ledger
counter included).  The per-ledger files walk each ledger's own rules.
"""

import io
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, ServiceRequest, Visit
from geodata.periods import local_today
from geodata.storage import session_scope
from tests.conftest import stored_snapshot
from tests.ledger_helpers import OUTSIDE, build_park, image_bytes, lonlat
from webmap import create_app

FIRM_B = make_credit_code("411621", 2)  # 乙公司, in grid T-002: not the member's (T-003)


def _soon():
    return (local_today() + timedelta(days=7)).isoformat()


def _an_hour_ago():
    return (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()


def _at(name="T-001"):
    lon, lat = lonlat(name)
    return {"lon": lon, "lat": lat}


class Route:
    """One write route of one ledger and what its body holds."""

    def __init__(self, name, url, body, *, role="inspector", versioned=False, located=False,
                 texts=(), dates=(), moments=()):
        self.name, self.url, self.body, self.role = name, url, body, role
        self.versioned, self.located = versioned, located
        self.texts, self.dates, self.moments = texts, dates, moments


ROUTES = [
    Route("hazard_create", lambda w: "/api/parks/T/hazards",
          lambda w: {**_at(), "category": "消防安全", "description": "灭火器过期",
                     "found_date": local_today().isoformat()},
          located=True, texts=("description",), dates=("found_date",)),
    Route("request_create", lambda w: "/api/parks/T/requests",
          lambda w: {"enterprise": FIRM_B, "category": "用工", "description": "急需招聘缝纫工",
                     "source": "phone", "received_date": local_today().isoformat()},
          texts=("description", "enterprise"), dates=("received_date",)),
    Route("visit_create", lambda w: "/api/parks/T/visits",
          lambda w: {"client_id": str(uuid.uuid4()), "kind": "patrol",
                     "occurred_at": _an_hour_ago(), **_at(), "note": "巡查一遍",
                     "findings": "无异常"},
          located=True, texts=("note", "findings"), moments=("occurred_at",)),
    Route("hazard_transition", lambda w: f"/api/hazards/{w['hazard']}/transitions",
          lambda w: {"to": "rectifying", "deadline": _soon(), "note": "限期整改"},
          versioned=True, texts=("note",), dates=("deadline",)),
    Route("hazard_escalation", lambda w: f"/api/hazards/{w['hazard']}/escalations",
          lambda w: {"to": "park", "reason": "逾期未整改"},
          role="supervisor", versioned=True, texts=("reason",)),
    Route("request_transition", lambda w: f"/api/requests/{w['request']}/transitions",
          lambda w: {"to": "assigned", "department": "县人社局", "responsible": "李四",
                     "deadline": _soon(), "note": "交办"},
          role="supervisor", versioned=True, texts=("note", "department", "responsible"),
          dates=("deadline",)),
]
VERSIONED = [r for r in ROUTES if r.versioned]
LOCATED = [r for r in ROUTES if r.located]
BY_NAME = {r.name: r for r in ROUTES}


def _ids(routes):
    return [r.name for r in routes]


@pytest.fixture
def world(db_url, engine):
    """Park T with a hazard in T-001 and a request of 乙公司 (T-002), both version 1."""
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})

    def call(route_or_url, role, body=None, headers=None, raw=None, method="POST", **kwargs):
        url = route_or_url.url(world) if isinstance(route_or_url, Route) else route_or_url
        headers = dict(headers or {})
        if role:
            headers["Authorization"] = f"Bearer {tokens[role]}"
        if raw is not None or body is not None:
            kwargs["data"] = raw if raw is not None else json.dumps(body)
            kwargs.setdefault("content_type", "application/json")
        return app.test_client().open(url, method=method, headers=headers, **kwargs)

    world = {"call": call, "engine": engine, "app": app}
    hazard = call("/api/parks/T/hazards", "admin", BY_NAME["hazard_create"].body(world))
    request = call("/api/parks/T/requests", "admin", BY_NAME["request_create"].body(world))
    assert hazard.status_code == request.status_code == 201, (hazard.json, request.json)
    world["hazard"], world["request"] = hazard.json["id"], request.json["id"]
    yield world
    app.extensions["gridmap.engine"].dispose()


def state(engine):
    """What a refused write must leave as it was: counts, geometries, counters, rows' states."""
    snapshot = stored_snapshot(engine)
    with session_scope(engine) as session:
        snapshot["hazards"] = session.execute(sa.select(
            Hazard.id, Hazard.status, Hazard.version, Hazard.escalation, Hazard.deadline,
            Hazard.description).order_by(Hazard.id)).all()
        snapshot["requests"] = session.execute(sa.select(
            ServiceRequest.id, ServiceRequest.status, ServiceRequest.version,
            ServiceRequest.department, ServiceRequest.deadline,
            ServiceRequest.description).order_by(ServiceRequest.id)).all()
        # Visits are never changed, but a replay must not rewrite one (conftest leaves them out).
        snapshot["visits"] = session.execute(sa.select(
            Visit.id, Visit.client_id, Visit.kind, Visit.accuracy_m, Visit.enterprise_id,
            Visit.note, Visit.findings, sa.func.ST_AsBinary(Visit.location)).order_by(
                Visit.id)).all()
    return snapshot


def refused(world, route, role, body, status, code=None, field=None, **kwargs):
    """Send ``body`` to ``route``; assert the refusal and that nothing stored changed."""
    before = state(world["engine"])
    response = world["call"](route, role, body, **kwargs)
    assert response.status_code == status, (route.name, body, response.json)
    error = response.json["error"]
    if code is not None:
        assert error["code"] == code, (route.name, body, error)
    if field is not None:
        assert error["details"]["field"] == field, (route.name, body, error)
    assert state(world["engine"]) == before, (route.name, body)
    return error


def _fresh(route, world):
    """A conditional write carries the version the client read: the record's ETag now."""
    if not route.versioned:
        return {}
    record = route.url(world).rsplit("/", 1)[0]
    return {"If-Match": world["call"](record, "admin", method="GET").headers["ETag"]}


def test_every_route_of_the_table_works(world):
    """The table's bodies are valid: each refusal below is the attack's, not a bad body's."""
    for route in ROUTES:
        before = state(world["engine"])
        response = world["call"](route, route.role, route.body(world), headers=_fresh(route, world))
        assert response.status_code in (200, 201), (route.name, response.json)
        assert state(world["engine"]) != before, route.name


@pytest.mark.parametrize("route", VERSIONED, ids=_ids(VERSIONED))
def test_stale_and_malformed_versions_change_nothing(world, route):
    body = route.body(world)
    refused(world, route, route.role, {**body, "version": 7}, 409, "stale_version")
    refused(world, route, route.role, body, 412, headers={"If-Match": '"7"'})
    refused(world, route, route.role, body, 400, "invalid_if_match",
            headers={"If-Match": "seven"})
    refused(world, route, route.role, body, 428)


@pytest.mark.parametrize("route", ROUTES, ids=_ids(ROUTES))
def test_an_idempotency_key_replay_is_the_same_answer_and_one_row(world, route):
    body = route.body(world)
    headers = {**_fresh(route, world), "Idempotency-Key": f"parity-{route.name}"}
    first = world["call"](route, route.role, body, headers=headers)
    assert first.status_code in (200, 201), first.json
    after_first = state(world["engine"])
    again = world["call"](route, route.role, body, headers=headers)
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert again.headers.get("ETag") == first.headers.get("ETag")
    assert state(world["engine"]) == after_first


@pytest.mark.parametrize("route", ROUTES, ids=_ids(ROUTES))
def test_roles_and_grids_are_checked_before_anything_changes(world, route):
    body, headers = route.body(world), _fresh(route, world)
    refused(world, route, None, body, 401, headers=headers)
    refused(world, route, "viewer", body, 403, headers=headers)
    # The member serves T-003; the point, the enterprise and the records lie in T-001/T-002.
    refused(world, route, "member", body, 403, "outside_your_grids", headers=headers)


@pytest.mark.parametrize("route", LOCATED, ids=_ids(LOCATED))
def test_positions_outside_the_park_or_not_positions_change_nothing(world, route):
    body = {k: v for k, v in route.body(world).items() if k not in ("lon", "lat")}
    lon, lat = lonlat(OUTSIDE)
    refused(world, route, route.role, {**body, "lon": lon, "lat": lat}, 422, "outside_park")
    lon, lat = lonlat("T-001")
    refused(world, route, route.role, {**body, "lon": lat, "lat": lon}, 422,
            "coordinate_out_of_range", "location")
    refused(world, route, route.role, {**body, "location": {
        "type": "Point", "coordinates": [lon, lat, 5.0]}}, 422, "unsupported_dimension", "location")
    raw = json.dumps({**body, "lon": 0, "lat": lat}).replace('"lon": 0', '"lon": NaN')
    before = state(world["engine"])
    response = world["call"](route, route.role, raw=raw)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid_coordinate"
    assert state(world["engine"]) == before


HOSTILE_TEXT = {"over_long": "长" * 2001, "nul": "整改\x00完成", "bidi": "整改\u202e成完"}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.texts],
                         ids=_ids([r for r in ROUTES if r.texts]))
def test_hostile_text_in_every_field_is_422_naming_it(world, route):
    for field in route.texts:
        for kind, text in HOSTILE_TEXT.items():
            body = {**route.body(world), field: text}
            refused(world, route, route.role, body, 422, field=field, headers=_fresh(route, world))


IMPOSSIBLE_DAYS = ("0001-01-01", "9999-12-31", "2026-02-30")
#: What Python's fromisoformat reads but the schema's YYYY-MM-DD does not: the basic form
#: (also as a JSON number) and week dates.
NOT_DAYS = (20260105, "20260105", "2026-W02-1", True, [2026, 1, 5])
NOT_MOMENTS = (20260105, "20260105T100000+0800", "2026-W02-1T10:00:00+08:00", 1.5e9)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.dates or r.moments],
                         ids=_ids([r for r in ROUTES if r.dates or r.moments]))
def test_dates_outside_the_domain_are_422_naming_the_field(world, route):
    for field in route.dates:
        for day in IMPOSSIBLE_DAYS + NOT_DAYS:
            refused(world, route, route.role, {**route.body(world), field: day}, 422,
                    field=field, headers=_fresh(route, world))
    for field in route.moments:
        for moment in [f"{day}T10:00:00+08:00" for day in IMPOSSIBLE_DAYS] + list(NOT_MOMENTS):
            refused(world, route, route.role, {**route.body(world), field: moment}, 422,
                    field=field, headers=_fresh(route, world))


@pytest.mark.parametrize("table", ["hazard_events", "supervisions", "request_events",
                                   "visit_events"])
def test_history_is_append_only(world, table):
    world["call"](BY_NAME["visit_create"], "inspector", BY_NAME["visit_create"].body(world))
    # A supervision record: the hazard fixed on the spot, then sent back by a supervisor.
    for to, note, version in (("supervising", "当场整改", 1), ("rectifying", "未整改到位", 2)):
        moved = world["call"](f"/api/hazards/{world['hazard']}/transitions", "supervisor",
                              {"to": to, "note": note, "deadline": _soon()},
                              headers={"If-Match": f'"{version}"'})
        assert moved.status_code == 200, moved.json
    engine = world["engine"]
    before = state(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() >= 1
    for statement in (f"UPDATE {table} SET note = 'rewritten'", f"DELETE FROM {table}"):
        with pytest.raises(sa.exc.DBAPIError):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    assert state(engine) == before


PHOTO_ROUTES = {"hazard": lambda w: f"/api/hazards/{w['hazard']}/photos",
                "visit": lambda w: f"/api/visits/{w['visit']}/photos"}


@pytest.mark.parametrize("owner", sorted(PHOTO_ROUTES))
def test_photos_of_either_ledger_answer_alike(world, owner):
    """Photos of hazards and visits: roles, grids and replays as for the ledgers' writes."""
    visit = world["call"](BY_NAME["visit_create"], "admin", BY_NAME["visit_create"].body(world))
    world["visit"] = visit.json["id"]
    url = PHOTO_ROUTES[owner](world)

    def send(role, key=None):
        headers = {"Idempotency-Key": key} if key else {}
        return world["call"](url, role, headers=headers, content_type="multipart/form-data",
                             data={"photo": (io.BytesIO(image_bytes()), "a.png")})

    for role, status, code in ((None, 401, None), ("viewer", 403, None),
                               ("member", 403, "outside_your_grids")):
        before = state(world["engine"])
        response = send(role)
        assert response.status_code == status, (role, response.json)
        if code:
            assert response.json["error"]["code"] == code
        assert state(world["engine"]) == before
    first = send("inspector", f"photo-{owner}")
    assert first.status_code == 201, first.json
    after = state(world["engine"])
    again = send("inspector", f"photo-{owner}")
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert state(world["engine"]) == after


def test_a_visit_resent_with_another_record_under_its_client_id_is_409(world, engine):
    """The visit ledger's own replay key (``client_id``) names one record, as a key does.

    A resend that differs in any field is another record: answered with the old
    one it would be lost silently (the phone deletes what the server acknowledged).
    """
    route = BY_NAME["visit_create"]
    body = {**route.body(world), "accuracy_m": 8.0}
    first = world["call"](route, "inspector", body)
    assert first.status_code == 201, first.json
    again = world["call"](route, "inspector", body)
    assert (again.status_code, again.json) == (200, first.json)
    lon, lat = lonlat("T-002")
    for change in ({"lon": lon, "lat": lat}, {"accuracy_m": 9.0}, {"enterprise": FIRM_B},
                   {"kind": "visit"}, {"note": "另一条"}):
        refused(world, route, "inspector", {**body, **change}, 409, "duplicate_client_id",
                "client_id")


@pytest.mark.parametrize("owner", sorted(PHOTO_ROUTES))
def test_photo_forms_of_either_ledger_hold_photo_and_tag_only(world, owner):
    """One reader for both: a tag is kept (default before/visit), any other field refused."""
    visit = world["call"](BY_NAME["visit_create"], "admin", BY_NAME["visit_create"].body(world))
    world["visit"] = visit.json["id"]
    url = PHOTO_ROUTES[owner](world)

    def send(**fields):
        data = {"photo": (io.BytesIO(image_bytes()), "a.png"), **fields}
        return world["call"](url, "inspector", content_type="multipart/form-data", data=data)

    for fields, code, field in (({"tga": "after"}, "unknown_property", "tga"),
                                ({"note": "x"}, "unknown_property", "note"),
                                ({"tag": "later"}, "unknown_tag", "tag"),
                                ({"tag": ["after", "before"]}, "invalid_value", "tag")):
        before = state(world["engine"])
        response = send(**fields)
        assert response.status_code == 422, (fields, response.json)
        assert response.json["error"]["code"] == code, response.json
        assert response.json["error"]["details"]["field"] == field
        assert state(world["engine"]) == before
    assert send().json["tag"] == {"hazard": "before", "visit": "visit"}[owner]
    assert send(tag="after").json["tag"] == "after"


@pytest.mark.parametrize("ledger, has_overdue", [("hazards", True), ("requests", True),
                                                 ("visits", False)])
def test_the_ledgers_lists_refuse_bad_parameters_alike(world, ledger, has_overdue):
    """The list routes share their parameter readers: the same bad value, the same answer."""
    cases = [("limit=0", "invalid_limit"), ("offset=-1", "invalid_offset"),
             ("sort=id", "unknown_parameter"), ("park=T&park=T", None)]
    if has_overdue:
        cases.append(("overdue=maybe", "invalid_overdue"))
    for query, code in cases:
        response = world["call"](f"/api/{ledger}?{query}", "viewer", method="GET")
        assert response.status_code in (400, 422), (query, response.json)
        if code is not None:
            assert response.json["error"]["code"] == code, (query, response.json)
