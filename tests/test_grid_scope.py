"""A grid member reads and writes only their grids: every route of ``app.url_map`` (both backends).

The rule (``geodata.services.ledger._check_grid_limit``, docs/security.md):
a user limited to some grids (网格员, ``user_grids``) reads and acts on the
ledger records of those grids and their sub-grids only — hazards with their
history and photos, requests, visits, enterprise files, 周交办 tasks — and
outside them sees no more than a visitor who is not logged in (the public
map: park and grid names, enterprises, open hazards).  A record of another
grid or park asked for by id is 403 ``outside_your_grids`` (a closed hazard
in the OGC API is a 404, as for visitors); lists, pages, exports, dashboards'
lists and the weekly report leave such records out.

The member ``member`` serves T-003 of park T.  Records of T-002 and of park U
carry ``SECRET-…`` markers in their text (:mod:`tests.scope_helpers`).  For
every route and method, with ids of T-002 and of park U, the member's answer
may show only the markers that an anonymous visitor's answer to the same
request shows; every write is refused and nothing stored changes.  A new
route fails the test until it is added to the tables below.
"""

import io
import re
import uuid
from datetime import datetime, timezone

import mapbox_vector_tile
import openpyxl
import pypdf
import shapely
import sqlalchemy as sa
from flask import url_for

from geodata.models import VisitRule
from geodata.periods import iso_week, local_today
from geodata.services import visits
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import metric_box, stored_snapshot
from tests.ledger_helpers import image_bytes, lonlat
from tests.scope_helpers import U_X, build_scopes
from webmap import create_app

SECRET = re.compile(r"SECRET-[A-Za-z0-9-]+")
#: Where each scope's records lie, in metres from the test origin (tests.scope_helpers).
POINTS = {"own": (150, 150), "grid": (650, 650), "park": (U_X + 150, 150)}
#: Files of the app itself, no stored data.
ASSETS = {"static", "maps.vendor", "field.static", "field.service_worker", "field.manifest",
          "field.shell"}
#: Routes that take no park, grid or record: the member's own session and the service.
UNSCOPED = {"login", "logout", "views.healthz", "views.readyz", "api.openapi", "ogcapi.openapi",
            "ogcapi.landing", "ogcapi.conformance", "ogcapi.collections", "views.index",
            "api.parks", "field.session_info"}
#: Routes naming one record (or the enterprise file) outside the member's grids: refused.
BY_ID = {"hazards_api.get_hazard", "hazards_api.history", "hazards_api.list_photos",
         "photos_api.photo", "photos_api.thumbnail", "requests_api.get_request",
         "requests_api.history", "visits_api.get_visit", "visits_api.history",
         "enterprises.api", "enterprises.page"}
#: Query strings of list routes, per scope.
QUERY = {"hazards_api.list_hazards": "park={park}", "requests_api.list_requests": "park={park}",
         "visits_api.list_visits": "park={park}", "visits_api.worklist": "park={park}",
         "api.search": "q=SECRET"}


def tile_of(xy, z=15):
    import math
    lon, lat = lonlat(xy)
    n = 2 ** z
    return z, int((lon + 180) / 360 * n), int(
        (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def arguments(rule, s, scope):
    """The URL arguments of ``rule`` for the records of scope ``s``: a list of dicts."""
    z, x, y = tile_of(POINTS[scope])
    one = {"code": s["park"], "grid_code": s["grid"], "hazard_id": s["hazard"],
           "request_id": s["request"], "visit_id": s["visit"], "photo_id": s["photo"],
           "credit_code": s["enterprise"], "week": iso_week(local_today()), "z": z, "x": x,
           "y": y}
    many = {"fmt": ("csv", "xlsx", "html", "pdf"),
            "collection_id": ("hazards", "enterprises"),
            "hazard_id": (s["hazard"], s["closed"])}
    out = [{}]
    for name in sorted(rule.arguments):
        if name == "feature_id":
            continue
        values = many[name] if name in many else (one[name],)
        out = [{**a, name: v} for a in out for v in values]
    if "feature_id" in rule.arguments:  # OGC items: open and closed hazards, the enterprise
        out = [{"collection_id": "hazards", "feature_id": s["hazard"]},
               {"collection_id": "hazards", "feature_id": s["closed"]},
               {"collection_id": "enterprises", "feature_id": s["enterprise_id"]}]
    return out


def body_for(endpoint, s, scope):
    """Request keywords of a write that only the grid limit should refuse."""
    lon, lat = lonlat(POINTS[scope])
    photo = {"data": {"photo": (io.BytesIO(image_bytes("JPEG")), "p.jpg")},
             "content_type": "multipart/form-data"}
    return {
        "hazards_api.create_hazard": {"json": {"lon": lon, "lat": lat, "category": "其他"}},
        "hazards_api.transition": {"json": {"to": "supervising", "version": 2}},
        "hazards_api.escalate": {"json": {"to": "park", "reason": "x", "version": 2}},
        "hazards_api.upload_photo": photo,
        "visits_api.upload_photo": photo,
        "requests_api.create_request": {"json": {
            "enterprise": s["enterprise"], "category": "其他", "description": "x",
            "source": "visit"}},
        "requests_api.transition": {"json": {"to": "assigned", "version": 1}},
        "visits_api.create_visit": {"json": {
            "client_id": str(uuid.uuid4()), "kind": "patrol", "lon": lon, "lat": lat,
            "occurred_at": "2025-12-01T09:00:00+08:00"}},
    }.get(endpoint, {"json": {}})


def shown(response):
    """The ``SECRET-…`` markers in an answer, whatever its format."""
    mimetype, data = response.mimetype, response.data
    if mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        text = " ".join(str(c) for sheet in book for row in sheet.iter_rows(values_only=True)
                        for c in row if c is not None)
    elif mimetype == "application/pdf":
        text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)
    elif mimetype == "application/vnd.mapbox-vector-tile":
        text = str(mapbox_vector_tile.decode(data))
    elif mimetype.startswith("image/"):
        text = ""
    else:
        text = response.get_data(as_text=True)
    return set(SECRET.findall(text))


def test_a_grid_member_sees_and_changes_nothing_outside_their_grids(db_url, engine, tmp_path,
                                                                    backend):
    tokens, ids = build_scopes(engine, tmp_path / "photos")
    with engine.connect() as conn:
        for s in ids.values():
            s["enterprise_id"] = conn.exec_driver_sql(
                "SELECT id FROM enterprises WHERE credit_code = ?" if backend == "spatialite"
                else "SELECT id FROM enterprises WHERE credit_code = %s",
                (s["enterprise"],)).scalar_one()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()
        member = {"Authorization": f"Bearer {tokens['member']}"}
        rules = [r for r in app.url_map.iter_rules() if r.endpoint not in ASSETS]
        known = UNSCOPED | BY_ID | set(QUERY)
        walked = {r.endpoint for r in rules if r.arguments or r.endpoint in QUERY}
        assert {r.endpoint for r in rules} <= known | walked
        assert not {r.endpoint for r in rules if not r.arguments} - UNSCOPED - set(QUERY), (
            "a route without arguments is new: give it a QUERY or say why it is UNSCOPED")
        before = stored_snapshot(engine)
        photos_before = sorted(p.name for p in (tmp_path / "photos").iterdir())

        # the member's own records are theirs to read (the test is not passing by refusing all)
        own = ids["own"]
        for url in (f"/api/hazards/{own['hazard']}", f"/api/requests/{own['request']}",
                    f"/api/visits/{own['visit']}", f"/api/photos/{own['photo']}",
                    f"/api/parks/T/enterprises/{own['enterprise']}"):
            assert client.get(url, headers=member).status_code == 200, url
        ledger_csv = client.get("/parks/T/ledger.csv", headers=member).get_data(as_text=True)
        assert "OWN-hazard" in ledger_csv and "OWN-closed" in ledger_csv
        assert "OWN-task" in client.get(f"/parks/T/weekly/{iso_week(local_today())}",
                                        headers=member).get_data(as_text=True)

        checked = 0
        for scope in ("grid", "park"):
            s = ids[scope]
            for rule in rules:
                if rule.endpoint in UNSCOPED and not rule.arguments:
                    continue
                query = QUERY.get(rule.endpoint, "").format(park=s["park"])
                for args in arguments(rule, s, scope):
                    with app.test_request_context():
                        url = url_for(rule.endpoint, **args) + (f"?{query}" if query else "")
                    for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                        where = f"{method} {url} ({rule.endpoint})"
                        if method == "GET":
                            got = client.get(url, headers=member)
                            assert got.status_code < 500, where
                            if rule.endpoint in BY_ID:
                                assert got.status_code == 403, where
                                if got.is_json:  # the enterprise page is an HTML 403
                                    assert got.get_json()["error"]["code"] == (
                                        "outside_your_grids"), where
                            seen = shown(got)
                            public = client.get(url)
                            visitor = shown(public) if public.status_code == 200 else set()
                            assert seen <= visitor, (where, seen - visitor)
                        else:
                            got = client.open(url, method=method, headers=member,
                                              **body_for(rule.endpoint, s, scope))
                            assert got.status_code in (403, 404), (where, got.get_json())
                            assert not shown(got), where
                        checked += 1
        assert checked > 150
        assert stored_snapshot(engine) == before
        assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == photos_before
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_visits_due_show_a_grid_member_only_the_enterprises_they_serve(db_url, engine, tmp_path):
    tokens, ids = build_scopes(engine, tmp_path / "photos")
    with session_scope(engine, write=True) as session:
        for s in ids.values():  # a daily patrol for each enterprise: all are overdue today
            visits.set_rule(session, get_park(session, s["park"]), "patrol",
                            enterprise=s["enterprise"], period="day", times=1)
        # ruled since long ago, so yesterday's missing patrol is owed
        session.execute(sa.update(VisitRule).values(
            created_at=datetime(2025, 1, 1, tzinfo=timezone.utc)))
    app = create_app({"DATABASE_URL": db_url, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()

        def due(role, park):
            auth = {"Authorization": f"Bearer {tokens[role]}"}
            listed = client.get(f"/api/parks/{park}/visits/due", headers=auth).get_json()
            layer = client.get(f"/api/parks/{park}/visits/layer", headers=auth).get_json()
            return ({e["enterprise"]["credit_code"] for e in listed["visits_due"]},
                    {f["properties"]["credit_code"] for f in layer["features"]
                     if f["properties"]["layer"] == "overdue_enterprise"})

        own, other = ids["own"]["enterprise"], ids["grid"]["enterprise"]
        assert due("admin", "T") == ({own, other}, {own, other})
        assert due("member", "T") == ({own}, {own})
        assert due("member", "U") == (set(), set())
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_a_grid_member_names_in_a_visit_only_what_they_serve(db_url, engine, tmp_path):
    """A visit in the member's grid cannot re-check another grid's hazard or visit its firm."""
    tokens, ids = build_scopes(engine, tmp_path / "photos")
    app = create_app({"DATABASE_URL": db_url, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()
        lon, lat = lonlat(POINTS["own"])

        def visit(role="member", **fields):
            return client.post("/api/parks/T/visits", headers={
                "Authorization": f"Bearer {tokens[role]}"}, json={
                "client_id": str(uuid.uuid4()), "lon": lon, "lat": lat,
                "occurred_at": "2025-12-01T09:00:00+08:00", **fields})

        before = stored_snapshot(engine)
        other = ids["grid"]
        for fields in ({"kind": "recheck", "hazard_id": other["closed"]},
                       {"kind": "visit", "enterprise": other["enterprise"]}):
            refused = visit(**fields)
            assert refused.status_code == 403, fields
            assert refused.get_json()["error"]["code"] == "outside_your_grids"
        assert stored_snapshot(engine) == before
        # the same in their own grid, by an admin, or for an enterprise linked to them (包联)
        assert visit(kind="recheck", hazard_id=ids["own"]["closed"]).status_code == 201
        assert visit("admin", kind="recheck", hazard_id=other["closed"]).status_code == 201
        with session_scope(engine, write=True) as session:
            visits.link(session, get_park(session, "T"), "member", other["enterprise"])
        assert visit(kind="visit", enterprise=other["enterprise"]).status_code == 201
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_a_members_grids_are_their_grids_and_every_grid_below_them(engine):
    """allowed_grid_ids walks down parent links at any depth, and only from the member's grids."""
    from geodata.models import Grid, User, UserGrid
    from geodata.models.base import to_element
    from geodata.services.users import allowed_grid_ids
    from tests.test_storage import _park

    cell = to_element(shapely.MultiPolygon([metric_box(0, 0, 100, 100)]))
    with session_scope(engine) as session:
        park = _park(session)

        def grid(code, parent=None):
            row = Grid(park_id=park.id, code=code, name=code, geom=cell, area_m2=1e4,
                       parent_id=parent and parent.id, level=1 if parent is None else 2)
            session.add(row)
            session.flush()
            return row

        a, b, c = grid("A"), grid("B"), grid("C")
        a1 = grid("A-1", a)
        a1x, c1 = grid("A-1-x", a1), grid("C-1", c)
        member = User(username="member", password_hash="x", role="inspector")
        other = User(username="other", password_hash="x", role="inspector")
        session.add_all([member, other])
        session.flush()
        session.add_all([UserGrid(user_id=member.id, grid_id=a.id),
                         UserGrid(user_id=member.id, grid_id=b.id)])
        session.flush()
        session.expire_all()
        assert allowed_grid_ids(session, member) == {a.id, a1.id, a1x.id, b.id}
        assert c1.id not in allowed_grid_ids(session, member)
        assert allowed_grid_ids(session, other) is None


def test_the_request_account_holds_every_grid_of_its_user(engine):
    """The token and the login cookie read the user with all their grids (one row per
    grid) and give the same account; a user without grids has none, so no limit."""
    from geodata.models import Grid, User, UserGrid
    from geodata.models.base import to_element
    from geodata.services.users import (allowed_grid_ids, create_token, grid_park_ids,
                                        user_for_session, user_for_token)
    from tests.test_storage import _park

    cell = to_element(shapely.MultiPolygon([metric_box(0, 0, 100, 100)]))
    with session_scope(engine) as session:
        park = _park(session)
        a, b, c = (Grid(park_id=park.id, code=code, name=code, geom=cell, area_m2=1e4,
                        level=1) for code in "ABC")
        member = User(username="member", password_hash="x", role="inspector")
        free = User(username="free", password_hash="x", role="inspector", display_name="自由")
        session.add_all([a, b, c, member, free])
        session.flush()
        session.add_all([UserGrid(user_id=member.id, grid_id=g.id) for g in (a, c)])
        session.flush()
        tokens = {name: create_token(session, name)[0] for name in ("member", "free")}
        ids = {"a": a.id, "c": c.id, "park": park.id, "member": member.id, "free": free.id}
    with session_scope(engine) as session:
        by_token = user_for_token(session, tokens["member"])
        assert sorted(by_token.grid_roots) == sorted([ids["a"], ids["c"]])
        assert by_token == user_for_session(session, ids["member"], 1)
        assert allowed_grid_ids(session, by_token) == {ids["a"], ids["c"]}
        assert grid_park_ids(session, by_token) == {ids["park"]}
        unlimited = user_for_token(session, tokens["free"])
        assert (unlimited.username, unlimited.display_name, unlimited.grid_roots) == (
            "free", "自由", ())
        assert allowed_grid_ids(session, unlimited) is None
        assert user_for_session(session, ids["free"], 2) is None  # an ended session
        assert user_for_token(session, tokens["free"] + "x") is None
