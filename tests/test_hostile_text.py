"""Issue 9 item 1: stored text is data on every page, API answer and export (both backends).

Every free-text column of the model holds a template or markup payload
wrapped in a marker ``⟦<tag>…⟧`` (one tag per column); then every GET route
of the app is requested, anonymously and with an admin's and a viewer's
token.  Each marker found must hold the stored text exactly: HTML-escaped in
pages, raw in JSON and in the exports.  A template engine evaluating it
(``{{7*7}}`` → ``49``), markup reaching the page raw, or a 500 fails.

Two lists keep the test honest as the app grows: the text columns are read
from ``Base.metadata`` and must each be either written here or named as a
controlled value; the GET routes are read from ``app.url_map`` and must each
be requested here.
"""

import ast
import csv
import io
import json
import re
import unicodedata
import uuid

import geopandas as gpd
import mapbox_vector_tile
import pytest
import shapely
import sqlalchemy as sa
from flask import url_for
from markupsafe import escape

from geodata.creditcode import make_credit_code
from geodata.models import (ApiToken, Base, Enterprise, Grid, GridEdit, GridEditItem, GridStaff,
                            Hazard, Park, Photo, ServiceRequest, User, Visit,
                            VisitEvent, WeeklyAssignment)
from geodata.periods import iso_week, local_today
from geodata.services import ledger, mapdata, visits
from geodata.services import requests as request_service
from geodata.services.grids import import_grids
from geodata.services.parks import get_park
from geodata.services.sites import import_enterprises
from geodata.storage import session_scope
from tests.conftest import metric_box
from tests.ledger_helpers import build_park, future, image_bytes, lonlat
from webmap import create_app

PAYLOADS = ["{{7*7}}", "{% if 1 %}x{% endif %}", "${7*7}", "<img src=x onerror=alert(1)>",
            "<script>alert(1)</script>", "\"'><svg onload=alert(1)>", "{{ lipsum.__globals__ }}"]

#: Free-text columns → the tag of their marker.  Ledger and edit-item codes are
#: stored normalised (NFKC, upper case), so their tags are upper case and their
#: payloads lose "/"; they hold markup here as text stored before any validation
#: existed would (today's writes keep them in their documented domains).
HOSTILE = {
    ("parks", "name"): "a",
    ("grids", "name"): "c",
    ("enterprises", "name"): "e", ("enterprises", "industry"): "f",
    ("enterprises", "contact_name"): "g", ("enterprises", "contact_phone"): "h",
    ("grid_staff", "name"): "i", ("grid_staff", "phone"): "j",
    ("hazards", "code"): "K", ("hazards", "category"): "l", ("hazards", "description"): "m",
    ("hazard_events", "actor"): "n", ("hazard_events", "note"): "o",
    ("supervisions", "supervisor"): "p", ("supervisions", "note"): "q",
    ("hazard_photos", "original_name"): "r", ("hazard_photos", "uploaded_by"): "s",
    ("grid_edits", "actor"): "t", ("grid_edits", "reason"): "u",
    ("grid_edit_items", "code"): "V",
    ("users", "username"): "w", ("users", "display_name"): "x",
    ("api_tokens", "name"): "y",
    ("service_requests", "category"): "b", ("service_requests", "description"): "d",
    ("service_requests", "department"): "k", ("service_requests", "responsible"): "z",
    ("service_requests", "resolution"): "0",
    ("request_events", "actor"): "1", ("request_events", "note"): "2",
    ("request_categories", "name"): "3",
    ("visits", "actor"): "6", ("visits", "note"): "7", ("visits", "findings"): "8",
    ("visit_events", "actor"): "v", ("visit_events", "note"): "9",
    ("weekly_assignments", "note"): "4", ("weekly_assignments", "created_by"): "5",
}
CODES = {"K", "V"}

#: Text columns that cannot hold free text, and why.
CONTROLLED = {
    ("parks", "code"): "code alphabet A-Z 0-9 . _ - (geodata/domains.py), checked on every "
                       "write; a URL holding anything else is a 404 before any lookup",
    ("grids", "code"): "code alphabet, as park codes",
    ("parks", "division_code"): "six digits, checked on import",
    ("enterprises", "credit_code"): "GB 32100 code with a check character",
    ("grids", "kind"): "CHECK constraint (area/enterprise/workshop)",
    ("grid_staff", "role"): "CHECK constraint",
    ("hazards", "level"): "CHECK constraint", ("hazards", "status"): "CHECK constraint",
    ("hazards", "escalation"): "trigger/constraint on the escalation levels",
    ("hazard_events", "from_status"): "a workflow state",
    ("hazard_events", "to_status"): "a workflow state",
    ("hazard_events", "action"): "a workflow action name",
    ("hazard_events", "escalation"): "two escalation levels, e.g. grid>park",
    ("hazard_photos", "stored_name"): "random hex name made by the server",
    ("hazard_photos", "content_type"): "image/jpeg (re-encoded by the server), or image/png "
                                       "for a photo stored before revision 0006",
    ("hazard_photos", "thumbnail_name"): "random hex name made by the server",
    ("hazard_photos", "tag"): "one of PHOTO_TAGS (geodata/services/photos.py photo_tag)",
    ("hazard_photos", "sha256"): "hex digest",
    ("supervisions", "outcome"): "CHECK constraint",
    ("grid_edits", "operation"): "one of EDIT_OPERATIONS",
    ("grid_edits", "problems"): "JSON written by the server",
    ("grid_lineage", "relation"): "an operation name",
    ("users", "role"): "CHECK constraint", ("users", "password_hash"): "scrypt hash",
    ("api_tokens", "token_hash"): "hex digest",
    ("service_requests", "code"): "SQ<year>-<seq>, generated by the server only",
    ("ledger_counters", "ledger"): "CHECK constraint (YH or SQ)",
    ("service_requests", "status"): "CHECK constraint",
    ("service_requests", "source"): "CHECK constraint",
    ("service_requests", "satisfaction"): "CHECK constraint",
    ("request_events", "from_status"): "a request workflow state",
    ("request_events", "to_status"): "a request workflow state",
    ("request_events", "action"): "a request workflow action name",
    ("request_events", "satisfaction"): "a satisfaction level (checked by the service)",
    ("visits", "kind"): "CHECK constraint (patrol/visit/recheck)",
    ("visits", "client_id"): "a UUID, normalised by the server",
    ("visit_events", "action"): "an action name written by the server (log, photo)",
    ("visit_rules", "kind"): "CHECK constraint", ("visit_rules", "period"): "CHECK constraint",
    ("idempotency_keys", "key"): "1-64 of A-Za-z0-9_-, checked before use",
    ("idempotency_keys", "method_path"): "method and path of a route that answered 2xx",
    ("idempotency_keys", "request_hash"): "hex digest",
    ("idempotency_keys", "response"): "JSON written by the server, only replayed as JSON",
    ("weekly_assignments", "week"): "an ISO week YYYY-Www, checked by the service",
    ("assessment_weights", "metric"): "CHECK constraint (ASSESSMENT_METRICS)",
}

#: Every GET route: how to request it, and what it answers.
HTML_PAGES = {"views.index", "login", "maps.park_map", "maps.grid_page", "editor.edit_page",
              "ledger_pages.dashboard", "ledger_pages.ledger_page", "request_pages.requests_page",
              "weekly_pages.weekly_page", "weekly_pages.assessment_page", "enterprises.page",
              "field.shell"}
EXPORTS = {"ledger_pages.ledger_file", "request_pages.requests_file", "weekly_pages.weekly_file"}
JSON_ROUTES = {
    "views.healthz", "views.readyz", "api.openapi", "api.parks", "api.park", "api.coverage",
    "api.enterprises", "api.grids", "api.grid", "api.hazards", "api.hidden_units", "api.search",
    "api.summaries", "api.summary", "hazards_api.list_hazards", "hazards_api.get_hazard",
    "hazards_api.history", "hazards_api.dashboard", "edit_api.history", "edit_api.state",
    "requests_api.list_requests", "requests_api.get_request", "requests_api.history",
    "visits_api.list_visits", "visits_api.get_visit", "visits_api.history",
    "visits_api.worklist", "visits_api.due", "visits_api.layer", "enterprises.api",
    "hazards_api.list_photos", "field.session_info", "field.manifest"}
NEEDS_LOGIN = {"hazards_api.list_hazards", "hazards_api.get_hazard", "hazards_api.history",
               "hazards_api.dashboard", "edit_api.history", "edit_api.state",
               "requests_api.list_requests", "requests_api.get_request", "requests_api.history",
               "visits_api.list_visits", "visits_api.get_visit", "visits_api.history",
               "visits_api.worklist", "visits_api.due", "visits_api.layer",
               "enterprises.api", "hazards_api.list_photos", "field.session_info"}
#: Photo files: images re-encoded by the server, behind a login, under a server-made name.
PHOTOS = {"photos_api.photo", "photos_api.thumbnail"}
#: OGC API – Features: each requested as GeoJSON/JSON (f=json) and as HTML (f=html).
OGC = {"ogcapi.landing", "ogcapi.conformance", "ogcapi.collections", "ogcapi.collection",
       "ogcapi.items", "ogcapi.item", "ogcapi.openapi"}
OGC_COLLECTIONS = ("parks", "grids", "enterprises", "hazards")
BINARY = {"api.grid_tile"}  # Mapbox vector tiles: protobuf, never parsed as HTML
#: Files of this app, no stored text (the field app's service worker and static files too).
ASSETS = {"static", "maps.vendor", "field.static", "field.service_worker"}

#: Tags each page must show (beyond the rest being correct): the page's own user text.
PAGE_SHOWS = {
    "views.index": {"a"},
    "maps.park_map": {"a"},
    "maps.grid_page": {"a", "c", "e", "f", "g", "h", "i", "j", "K", "l", "m", "6", "7", "8"},
    "editor.edit_page": {"a"},
    "ledger_pages.dashboard": {"a", "c", "x"},
    "ledger_pages.ledger_page": {"a", "c", "e", "K", "l", "m", "p", "x"},
    "request_pages.requests_page": {"a", "b", "c", "d", "e", "k", "x", "z", "0", "3"},
    # the file of the enterprise holding the closed hazard, the request and the re-check:
    # grid, staff, hazard history, request and its history, the visit
    "enterprises.page": {"a", "c", "e", "f", "g", "h", "i", "j", "K", "l", "m", "n", "o",
                         "6", "7", "8", "b", "d", "k", "z", "1", "2"},
    "weekly_pages.weekly_page": {"a", "c", "4"},
    "weekly_pages.assessment_page": {"a", "w", "x"},
}
EXPORT_SHOWS = {"ledger_pages.ledger_file": {"c", "e", "K", "l", "m", "p"},
                "request_pages.requests_file": {"b", "c", "d", "e", "k", "z", "0"},
                "weekly_pages.weekly_file": {"a", "c", "4"}}
#: Tags the JSON API must return somewhere (events, photos, edits are only there).
JSON_SHOWS = {"a", "c", "e", "f", "i", "j", "K", "l", "m", "n", "o", "p", "q", "t", "u", "V",
              "b", "d", "k", "z", "0", "1", "2", "v", "6", "7", "8", "9", "r", "s"}

MARK = re.compile(r"⟦(.)(.*?)⟧", re.S)


def stored(tag, payload):
    """The value stored for ``tag``: the marked payload, normalised like a code for codes."""
    text = f"⟦{tag}{payload}⟧"
    if tag in CODES:
        text = unicodedata.normalize("NFKC", text.replace("/", "")).upper()
    return text


def text_columns():
    return {(t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns
            if isinstance(c.type, (sa.String, sa.Text))}


def test_every_text_column_is_hostile_or_controlled():
    assert not set(HOSTILE) & set(CONTROLLED)
    assert set(HOSTILE) | set(CONTROLLED) == text_columns(), (
        "a text column is new: add it to HOSTILE (and write a payload into it) or CONTROLLED")
    assert len(set(HOSTILE.values())) == len(HOSTILE)
    for (table, column), tag in HOSTILE.items():  # each payload fits, with a row id < 10
        limit = Base.metadata.tables[table].c[column].type.length
        assert limit is None or max(len(stored(tag, p)) for p in PAYLOADS) + 1 <= limit


def build_hostile(engine, payload, photo_dir):
    """Park T (ledger_helpers) with a sub-grid, a hidden unit, a closed and an open hazard,
    a photo and a grid edit; then every free-text column holds its marked payload.

    The append-only tables (events, edits) get their text on insert; the
    others are overwritten with SQL, as text stored before any validation
    existed would be.  Returns ``{role: API token}``.
    """
    tokens = build_park(engine)
    v = {tag: stored(tag, payload) for tag in HOSTILE.values()}
    admin = ledger.Actor(v["n"], "admin")
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_grids(session, park, gpd.GeoDataFrame(
            [{"code": "T-001-01", "name": "子网格", "parent_code": "T-001"}],
            geometry=[metric_box(0, 500, 250, 750)], crs=4326))
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": "丙", "credit_code": make_credit_code("411621", 3),
              "host_credit_code": make_credit_code("411621", 1)}],
            geometry=[metric_box(120, 120, 160, 160)], crs=4326))
        closed = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat((110, 190))),
                                      category="其他", description="x", actor=admin)
        ledger.transition(session, closed.id, "rectifying", actor=admin, expected_version=1,
                          note=v["o"], deadline=future())
        ledger.transition(session, closed.id, "supervising", actor=admin, expected_version=2,
                          note=v["o"])
        # The supervisor is the acting user (supervisions are append-only: no SQL later).
        ledger.transition(session, closed.id, "closed", actor=ledger.Actor(v["p"], "admin"),
                          expected_version=3, note=v["o"], supervision={"note": v["q"]})
        open_ = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-001")),
                                     category="其他", description="x", actor=admin)
        ledger.save_photo(session, closed.id, image_bytes("JPEG"),
                          actor=ledger.Actor(v["s"], "admin"), directory=photo_dir,
                          original_name=v["r"])
        # a request followed up after a 不满意 reopening, in a park with its own category
        request_service.add_category(session, park, v["3"])
        item = request_service.create_request(
            session, park, enterprise=make_credit_code("411621", 1), category=v["3"],
            description="x", source="visit", actor=ledger.Actor(v["1"], "admin"))
        for to, extra in (("assigned", {"department": "x", "responsible": "x",
                                        "deadline": future()}),
                          ("in_progress", {}), ("resolved", {}),
                          ("followed_up", {"satisfaction": "不满意"}), ("resolved", {}),
                          ("followed_up", {"satisfaction": "满意"})):
            request_service.transition(session, item.id, to, actor=ledger.Actor(v["1"], "admin"),
                                       expected_version=item.version, note=v["2"], **extra)
        visit, _ = visits.create_visit(
            session, park, actor=ledger.Actor("admin", "admin"), client_id_=str(uuid.uuid4()),
            kind="recheck", hazard_id=closed.id, occurred_at_="2025-12-01T09:00:00+08:00",
            point=ledger.parse_point(*lonlat((110, 190))))
        session.add(VisitEvent(visit_id=visit.id, actor=v["v"], action="photo", note=v["9"]))
        # a 周交办 assignment of this week, tasking the open hazard
        session.add(WeeklyAssignment(
            park_id=park.id, week=iso_week(local_today()), hazard_id=open_.id,
            owner_id=session.execute(sa.select(User.id)).scalars().first(),
            deadline=future(), note=v["4"], created_by=v["5"]))
        t4 = session.execute(sa.select(Grid).where(Grid.code == "T-004")).scalar_one()
        edit = GridEdit(park_id=park.id, actor=v["t"], operation="draw", reason=v["u"],
                        park_version=park.version, problems="")
        session.add(edit)
        session.flush()
        session.add(GridEditItem(edit_id=edit.id, grid_id=t4.id, code=v["V"],
                                 after_wkb=shapely.to_wkb(shapely.box(0, 0, 1, 1)),
                                 after_active=True, after_version=1))
        session.execute(sa.update(Park).values(name=v["a"]))
        session.execute(sa.update(Grid).values(name=v["c"]))
        session.execute(sa.update(Enterprise).values(
            name=sa.literal(v["e"]) + sa.cast(Enterprise.id, sa.String), industry=v["f"],
            contact_name=v["g"], contact_phone=v["h"]))
        session.execute(sa.update(GridStaff).values(name=v["i"], phone=v["j"]))
        session.execute(sa.update(Hazard).values(
            code=sa.literal(v["K"]) + sa.cast(Hazard.id, sa.String), category=v["l"],
            description=v["m"]))
        session.execute(sa.update(User).values(
            username=sa.literal(v["w"]) + sa.cast(User.id, sa.String), display_name=v["x"]))
        session.execute(sa.update(ApiToken).values(name=v["y"]))
        session.execute(sa.update(ServiceRequest).values(
            category=v["b"], description=v["d"], department=v["k"], responsible=v["z"],
            resolution=v["0"]))
        session.execute(sa.update(Visit).values(actor=v["6"], note=v["7"], findings=v["8"]))
    # SQL behind the services' back: the cached grid layers cannot see it (their stamp
    # counts rows and versions, which are the same in every run of this test)
    mapdata.clear_cache()
    return tokens


def check_text(text, payload, *, html):
    """Every marker in ``text`` holds its stored value (HTML-escaped when ``html``).

    Returns the set of tags seen.
    """
    seen = set()
    for tag, body in MARK.findall(text):
        value = stored(tag, payload)[2:-1]
        expected = str(escape(value)) if html else value
        assert body == expected, f"column tagged {tag!r} shows {body!r}, stored {value!r}"
        seen.add(tag)
    return seen


def check_json(data, payload):
    """Every string in a JSON document holds markers exactly as stored; returns the tags."""
    seen = set()
    if isinstance(data, dict):
        for key, value in data.items():
            seen |= check_json(key, payload) | check_json(value, payload)
    elif isinstance(data, list):
        for value in data:
            seen |= check_json(value, payload)
    elif isinstance(data, str):
        seen |= check_text(data, payload, html=False)
    return seen


_JSON_BLOCK = re.compile(r'<script type="application/json"[^>]*>(.*?)</script>', re.S)


def check_page(html, payload):
    """An HTML page: markers escaped, raw markup absent, JSON blocks exact; returns the tags."""
    for raw in ("<img src=x", "<IMG SRC=X", "<svg onload", "<SVG ONLOAD", "<script>alert",
                "<SCRIPT>ALERT"):
        assert raw not in html
    seen = check_text(html, payload, html=True)
    for block in _JSON_BLOCK.findall(html):
        seen |= check_json(json.loads(block), payload)
    return seen


def check_export(fmt, body, payload):
    if fmt == "html":
        return check_page(body.decode("utf-8"), payload)
    if fmt == "pdf":
        from pypdf import PdfReader

        # Table cells wrap: the extracted lines are joined before the markers are read.
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
        return check_text(text.replace("\n", ""), payload, html=False)
    if fmt == "csv":
        cells = [c for row in csv.reader(io.StringIO(body.decode("utf-8-sig"))) for c in row]
    else:
        from openpyxl import load_workbook
        sheet = load_workbook(io.BytesIO(body), read_only=True).active
        cells = [c for row in sheet.iter_rows(values_only=True) for c in row
                 if isinstance(c, str)]
    seen = set()
    for cell in cells:
        seen |= check_text(cell, payload, html=False)
    return seen


def urls(endpoint, ids):
    """The URLs to request for ``endpoint`` (every grid for a grid route, both formats...)."""
    code = ids["park"]
    args = {
        "views.index": [{}], "login": [{}, {"next": f"/parks/{code}/map"}],
        "maps.park_map": [{"code": code}],
        "maps.grid_page": [{"code": code, "grid_code": g} for g in ids["grids"]],
        "editor.edit_page": [{"code": code}], "ledger_pages.dashboard": [{"code": code}],
        "ledger_pages.ledger_page": [{"code": code}, {"code": code, "status": "closed"}],
        "ledger_pages.ledger_file": [{"code": code, "fmt": "csv"}, {"code": code, "fmt": "xlsx"}],
        "request_pages.requests_page": [{"code": code}, {"code": code, "status": "followed_up"}],
        "enterprises.page": [{"code": code, "credit_code": c} for c in ids["enterprises"]],
        "enterprises.api": [{"code": code, "credit_code": c} for c in ids["enterprises"]],
        "request_pages.requests_file": [{"code": code, "fmt": "csv"},
                                        {"code": code, "fmt": "xlsx"}],
        "weekly_pages.weekly_page": [{"code": code},
                                     {"code": code, "week": iso_week(local_today())}],
        "weekly_pages.weekly_file": [{"code": code, "week": iso_week(local_today()), "fmt": f}
                                     for f in ("xlsx", "html", "pdf")],
        "weekly_pages.assessment_page": [{"code": code}],
        "requests_api.list_requests": [{}],
        "requests_api.get_request": [{"request_id": r} for r in ids["requests"]],
        "requests_api.history": [{"request_id": r} for r in ids["requests"]],
        "views.healthz": [{}], "views.readyz": [{}], "api.openapi": [{}], "api.parks": [{}],
        "api.park": [{"code": code}], "api.coverage": [{"code": code}],
        "api.enterprises": [{"code": code}], "api.grids": [{"code": code}],
        "api.grid": [{"code": code, "grid_code": g} for g in ids["grids"]],
        "api.hazards": [{"code": code}], "api.hidden_units": [{"code": code}],
        "api.search": [{"code": code, "q": "⟦"}], "api.summaries": [{"code": code}],
        "api.summary": [{"code": code, "grid_code": g} for g in ids["grids"]],
        "hazards_api.list_hazards": [{}],
        "hazards_api.get_hazard": [{"hazard_id": h} for h in ids["hazards"]],
        "hazards_api.history": [{"hazard_id": h} for h in ids["hazards"]],
        "hazards_api.dashboard": [{"code": code}],
        "hazards_api.list_photos": [{"hazard_id": h} for h in ids["hazards"]],
        "photos_api.photo": [{"photo_id": i} for i in ids["photos"]],
        "photos_api.thumbnail": [{"photo_id": i} for i in ids["photos"]],
        "edit_api.history": [{"code": code}], "edit_api.state": [{"code": code}],
        "visits_api.list_visits": [{}, {"park": code}],
        "visits_api.get_visit": [{"visit_id": i} for i in ids["visits"]],
        "visits_api.history": [{"visit_id": i} for i in ids["visits"]],
        "visits_api.worklist": [{"park": code}], "visits_api.due": [{"code": code}],
        "visits_api.layer": [{"code": code}],
        "api.grid_tile": [{"code": code, "z": z, "x": x, "y": y} for z, x, y in ids["tiles"]],
        "static": [{"filename": "gridmap.js"}],
        "field.shell": [{}], "field.session_info": [{}], "field.manifest": [{}],
        "field.service_worker": [{}], "field.static": [{"filename": "field.js"}],
        "maps.vendor": [{"package": "leaflet", "filename": "leaflet.js"},
                        {"package": "leaflet-geoman-free", "filename": "leaflet-geoman.min.js"}],
        "ogcapi.landing": [{}], "ogcapi.conformance": [{}], "ogcapi.collections": [{}],
        "ogcapi.openapi": [{"f": "json"}],
        "ogcapi.collection": [{"collection_id": c} for c in OGC_COLLECTIONS],
        "ogcapi.items": [{"collection_id": c} for c in OGC_COLLECTIONS],
        "ogcapi.item": [{"collection_id": c, "feature_id": i} for c, i in ids["features"]],
    }[endpoint]
    if endpoint in OGC and endpoint != "ogcapi.openapi":
        args = [{**a, "f": f} for a in args for f in ("json", "html")]
    return [url_for(endpoint, **a) for a in args]


def tile_of(lon, lat, z=15):
    import math
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_page_api_and_export_shows_stored_text_literally(db_url, engine, tmp_path,
                                                               backend, payload):
    tokens = build_hostile(engine, payload, tmp_path / "photos")
    with session_scope(engine) as session:
        ids = {"park": session.execute(sa.select(Park.code)).scalar_one(),
               "grids": session.execute(sa.select(Grid.code)).scalars().all(),
               "hazards": session.execute(sa.select(Hazard.id)).scalars().all(),
               "requests": session.execute(sa.select(ServiceRequest.id)).scalars().all(),
               "enterprises": session.execute(sa.select(Enterprise.credit_code)).scalars().all(),
               "visits": session.execute(sa.select(Visit.id)).scalars().all(),
               "tiles": [tile_of(*lonlat("T-001"))],
               "photos": session.execute(sa.select(Photo.id)).scalars().all()}
        ids["features"] = [("parks", ids["park"])] + [
            (collection, i) for collection, model in (
                ("grids", Grid), ("enterprises", Enterprise), ("hazards", Hazard))
            for i in session.execute(sa.select(model.id)).scalars()]
        # the fixture reached every free-text column
        for (table, column), tag in HOSTILE.items():
            values = session.execute(sa.text(f"SELECT {column} FROM {table}")).scalars().all()
            assert any(stored(tag, payload) in value for value in values), column
    # the photos were stored under tmp_path/photos: the app's photo folder
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    try:
        routes = {r.endpoint for r in app.url_map.iter_rules() if "GET" in r.methods}
        assert routes == HTML_PAGES | EXPORTS | JSON_ROUTES | OGC | BINARY | ASSETS | PHOTOS, (
            "a GET route is new: request it in this test (urls()) and say what it answers")
        client = app.test_client()
        # "member" serves T-003 only: its answers go through the grid-limited paths (a
        # record elsewhere is a 403, contacts and closed hazards elsewhere are left out)
        shown = {"admin": {}, "viewer": {}, "member": {}, None: {}}
        for role in shown:
            headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
            for endpoint in sorted(routes):
                with app.test_request_context():
                    targets = urls(endpoint, ids)
                for target in targets:
                    response = client.get(target, headers=headers)
                    where = f"{endpoint} {target} as {role}"
                    assert response.status_code < 500, where
                    seen = shown[role].setdefault(endpoint, set())
                    if endpoint in HTML_PAGES:
                        if response.status_code == 302:  # anonymous: to the login form
                            assert role is None and "/login" in response.headers["Location"]
                            response = client.get(response.headers["Location"])
                        assert response.status_code in (200, 403), where
                        assert response.mimetype == "text/html", where
                        seen |= check_page(response.get_data(as_text=True), payload)
                    elif endpoint in EXPORTS:
                        if role is None:
                            assert response.status_code == 302, where
                            continue
                        assert response.status_code == 200, where
                        assert response.headers["Content-Disposition"].startswith(
                            "attachment; filename="), where
                        assert "⟦" not in response.headers["Content-Disposition"]
                        seen |= check_export(target.rsplit(".", 1)[1].split("?")[0],
                                             response.data, payload)
                    elif endpoint in JSON_ROUTES:
                        expected = {None: 401 if endpoint in NEEDS_LOGIN else 200,
                                    "viewer": 200, "admin": 200, "member": 200}[role]
                        if role == "member" and response.status_code == 403:
                            assert response.get_json()["error"]["code"] == "outside_your_grids"
                            expected = 403
                        assert response.status_code == expected, (where, response.get_json())
                        assert response.is_json, where  # JSON or GeoJSON
                        seen |= check_json(response.get_json(), payload)
                    elif endpoint in PHOTOS:
                        allowed = {None: {401}, "member": {200, 403}}.get(role, {200})
                        assert response.status_code in allowed, where
                        if response.status_code == 200:
                            assert response.mimetype == "image/jpeg", where
                            assert response.headers["X-Content-Type-Options"] == "nosniff"
                            assert re.fullmatch(r"inline; filename=photo-\d+(-thumbnail)?\.jpg",
                                                response.headers["Content-Disposition"]), where
                    elif endpoint in OGC:
                        # anonymous clients see open hazards only: a closed one is a 404
                        assert response.status_code == 200 or (
                            role in (None, "member") and "/hazards/items/" in target
                            and response.status_code == 404), where
                        if response.mimetype == "text/html":
                            seen |= check_page(response.get_data(as_text=True), payload)
                        else:
                            seen |= check_json(response.get_json(), payload)
                    elif endpoint in BINARY:
                        # grid names travel in the tiles as data, exactly as stored
                        assert response.status_code == 200, where
                        seen |= check_json(mapbox_vector_tile.decode(response.data), payload)
                    else:
                        assert response.status_code == 200, where
                    response.close()  # asset files are streamed
        admin = shown["admin"]
        for endpoint, tags in PAGE_SHOWS.items():
            assert tags <= admin[endpoint], (endpoint, tags - admin[endpoint])
        for endpoint, tags in EXPORT_SHOWS.items():
            assert tags <= admin[endpoint], (endpoint, tags - admin[endpoint])
        assert JSON_SHOWS <= set().union(*(admin[e] for e in JSON_ROUTES))
        # the user's own name, on the map panel and in the ledger's header
        assert "w" in admin["maps.park_map"] and "x" in admin["ledger_pages.ledger_page"]
        assert "a" in shown[None]["maps.park_map"]
        # the member's own grid: its hazard and enterprise contacts, with the same text
        assert {"m", "g", "h"} <= shown["member"]["ledger_pages.ledger_page"] | shown[
            "member"]["ogcapi.items"]
    finally:
        app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("payload", ["{{7*7}}", "{% if 1 %}x{% endif %}", "{%", "{{ x"])
def test_map_page_title_is_text_not_template(db_url, engine, payload):
    """The issue's report: a park named 测试{{7*7}}园区 showed 测试49园区; ``{%`` gave a 500."""
    build_park(engine, users=False)
    name = f"测试{payload}园区"
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(Park).values(name=name))
    app = create_app({"DATABASE_URL": db_url})
    try:
        response = app.test_client().get("/parks/T/map")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert f"<title>{escape(name)} · T · gridmap</title>" in html
        assert f'<span id="gm-park-name">{escape(name)}</span>' in html
        assert "测试49园区" not in html and "测试x园区" not in html
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_unknown_hostile_code_is_a_json_404(db_url, engine):
    build_park(engine, users=False)
    app = create_app({"DATABASE_URL": db_url})
    try:
        client = app.test_client()
        for path in ("/parks/<img src=x onerror=alert(1)>/map",
                     "/parks/T/grids/<svg onload=alert(1)>", "/parks/{{7*7}}/map"):
            response = client.get(path)
            assert response.status_code == 404 and response.mimetype == "application/json"
            assert response.get_json()["error"]["code"] == "not_found"
    finally:
        app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("target", ["/\\evil.example/", "/\\/evil.example/", "/\t/evil.example/",
                                    "/%0a/x\n", "//evil.example", "https://evil.example/"])
def test_login_next_never_leaves_the_site(db_url, engine, target):
    tokens = build_park(engine)  # noqa: F841 -- the accounts
    app = create_app({"DATABASE_URL": db_url, "WTF_CSRF_ENABLED": False})
    try:
        response = app.test_client().post("/login", data={
            "username": "viewer", "password": "viewer-pass-123", "next": target})
        assert response.status_code == 302 and response.headers["Location"] == "/"
    finally:
        app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("query", ["code=x", "fmt=x", "_external=1&_scheme=javascript",
                                   "_anchor=x", "_method=x"])
def test_ledger_export_links_take_only_the_filters(db_url, engine, query):
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url})
    try:
        response = app.test_client().get(f"/parks/T/ledger?{query}&status=closed",
                                         headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert response.status_code == 200
        links = re.findall(r'href="([^"]*ledger\.(?:csv|xlsx)[^"]*)"', response.get_data(
            as_text=True))
        assert links == ["/parks/T/ledger.csv?status=closed", "/parks/T/ledger.xlsx?status=closed"]
    finally:
        app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("text", ["=1+1", " =1+1", "+1", "-1", "@SUM(1)", "\t=1", "\n=1"])
def test_exports_neutralise_formulas_and_control_characters(db_url, engine, text):
    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "T"),
                             point=ledger.parse_point(*lonlat("T-001")), category="其他",
                             description="x", actor=ledger.Actor("admin", "admin"))
        session.execute(sa.update(Hazard).values(description=text + "\x01"))
    app = create_app({"DATABASE_URL": db_url})
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {tokens['viewer']}"}
        csv_body = client.get("/parks/T/ledger.csv", headers=auth)
        xlsx_body = client.get("/parks/T/ledger.xlsx", headers=auth)
        assert csv_body.status_code == xlsx_body.status_code == 200
        rows = list(csv.reader(io.StringIO(csv_body.data.decode("utf-8-sig"))))
        assert rows[1][rows[0].index("隐患描述")] == "'" + text + "\x01"
        from openpyxl import load_workbook
        sheet = load_workbook(io.BytesIO(xlsx_body.data)).active
        header = [c.value for c in sheet[1]]
        cell = sheet.cell(row=2, column=header.index("隐患描述") + 1)
        assert cell.data_type == "s" and cell.value == "'" + text + "\ufffd"
    finally:
        app.extensions["gridmap.engine"].dispose()


#: Calls that compile their text argument as a template or mark it as safe HTML.
TEMPLATE_CALLS = {"Element", "Html", "MacroElement", "Popup", "Tooltip", "GeoJsonPopup",
                  "GeoJsonTooltip", "DivIcon", "Template", "from_string",
                  "render_template_string", "Markup"}


def test_no_template_source_or_html_sink_in_the_code():
    """No call that turns text into a template or into markup, anywhere in the app.

    The pages are built with Flask templates (user text as variables) and
    :class:`webmap.maps.Verbatim`; scripts build DOM nodes with
    ``textContent`` and give Leaflet tooltips and popups functions.
    """
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [p for d in ("geodata", "webmap", "scripts") for p in (root / d).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            where = f"{path}:{node.lineno}: {name}"
            assert name.rsplit(".", 1)[-1] not in TEMPLATE_CALLS, where
            if name.startswith("folium."):
                assert not {k.arg for k in node.keywords} & {"popup", "tooltip"}, where
            assert not any(k.arg == "autoescape" and isinstance(k.value, ast.Constant)
                           and not k.value.value for k in node.keywords), where
    templates = list((root / "webmap" / "templates").rglob("*"))
    assert any(p.name == "shell.html" for p in templates)  # the field app's are walked too
    for path in (p for p in templates if p.is_file()):
        text = path.read_text()
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|\{%\s*raw", text), path
        # a script in a page is a JSON block read with JSON.parse(textContent), never code
        for attributes in re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", text):
            assert 'type="application/json"' in attributes, (path, attributes)
    # A link or image address set from script is built by the app (a path, tel:, a blob),
    # never a stored value that could be a javascript: URL.
    banned_js = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\.html\("
                           r"|set(Tooltip|Popup)?Content\(|\bhtml\s*:|eval\(|new Function"
                           r"|\.bind(Tooltip|Popup)\((?!\s*(function\b|el\())"
                           r"|setTimeout\(\s*['\"`]|\.(href|src|action)\s*=\s*+(?!p\.|ph\.|href\b"
                           r"|CONFIG\.|URL\.createObjectURL)")
    # every script of the app: the desk's, the field app's and its service worker (a template)
    scripts = [p for p in (root / "webmap").rglob("*.js")
               if not {"node_modules", "vendor"} & set(p.parts)]
    assert {"gridmap.js", "field.js", "sw.js", "editor.js"} <= {p.name for p in scripts}
    for path in scripts:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not banned_js.search(line), f"{path}:{number}: {line.strip()}"
