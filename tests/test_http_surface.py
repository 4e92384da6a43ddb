"""HTTP semantics of every route, walked from ``app.url_map`` and the OpenAPI document.

No route is listed here: a new one is covered by the walk.

* Every path part, with odd values (0, -1, 2^63, ``1e3``, ``01``, Unicode
  digits, NUL, traversal, SQL, markup), answers below 500, errors as the
  JSON error body, and no answer carries SQL, the database URL, a file path
  or a traceback.  ``<int:>`` parts take canonical numbers only.
* A method a path does not serve is 405 with ``Allow`` naming exactly the
  methods it serves; ``OPTIONS`` answers the same ``Allow``; ``HEAD`` answers
  as ``GET`` without a body.
* Every POST refuses other media types (415) and bodies over the upload cap
  (413) with the JSON body, changing nothing.
* Every OGC API route is 406 for an Accept header it cannot satisfy, and
  ``f=json`` still wins over it.
* An unhandled exception and a statement the database refuses as written
  are a JSON 500 ``internal_error`` with nothing of the exception in it (a
  lost database stays 503: tests/test_db.py, tests/test_write_outage.py).
"""

import io
import re

import pytest
import sqlalchemy as sa

from tests.conftest import stored_snapshot
from tests.ledger_helpers import build_park, image_bytes
from tests.test_conditional import _ids
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_visits_api import visit_body
from webmap import create_app
from webmap.api import openapi_document
from webmap.db import get_session

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Odd values for any path part; the non-canonical spellings of 1 must never find item 1.
ODD = ["0", "-1", str(2**63), str(2**64 + 1), "9" * 40, "1e3", "1.0", "+1", "01", " 1",
       "%D9%A1", "%EF%BC%91", "%00", "%C0%AF", "..%2F..%2Fetc%2Fpasswd", "a%20b",
       "%3Cscript%3E", "1%3BDROP%20TABLE%20parks", "%E4%B8%AD%E6%96%87", "x" * 300]
NOT_ONE = {"01", "+1", "1.0", "1e3", " 1", "%D9%A1", "%EF%BC%91"}
_PART = re.compile(r"<(?:([a-z]+)(?:\([^)]*\))?:)?([a-z_]+)>")


def _leaks(text, db_url):
    """What an answer must never contain, found in ``text`` (empty when clean)."""
    markers = ["Traceback", "SELECT ", "INSERT ", "sqlalchemy", "psycopg", "sqlite3",
               "/work/", "/tmp/", "site-packages", db_url]
    return [m for m in markers if m and m.lower() in text.lower()]


def _samples(api, engine):  # noqa: F811
    """A value that exists for every path part of the fixture's park."""
    ids = _ids(api)
    visit = api.call("POST", "/api/parks/T/visits", "inspector", visit_body()).json
    photo = api.call("POST", f"/api/hazards/{ids['hazard_id']}/photos", "inspector",
                     data={"photo": (io.BytesIO(image_bytes()), "a.png")},
                     content_type="multipart/form-data").json
    with engine.connect() as conn:
        firm = conn.execute(sa.text("SELECT credit_code FROM enterprises ORDER BY id")).scalar()
    return {**ids, "grid_code": "T-001", "visit_id": visit["id"], "photo_id": photo["id"],
            "credit_code": firm, "collection_id": "hazards", "feature_id": ids["hazard_id"],
            "z": 0, "x": 0, "y": 0, "fmt": "csv", "week": "2026-W01", "package": "leaflet",
            "filename": "leaflet.js"}


def _url(rule, values):
    return _PART.sub(lambda m: str(values[m.group(2)]), rule.rule)


def _rules(app):
    return sorted(app.url_map.iter_rules(), key=lambda r: r.rule)


def test_every_path_part_with_odd_values_is_a_clean_4xx(api, engine, db_url):  # noqa: F811
    samples = _samples(api, engine)
    before = stored_snapshot(engine)
    for rule in _rules(api.app):
        if "GET" not in rule.methods:
            continue
        for match in _PART.finditer(rule.rule):
            converter, name = match.groups()
            for odd in ODD:
                url = _url(rule, {**samples, name: odd})
                response = api.call("GET", url, "admin")
                where = f"{rule.rule} {name}={odd!r}: {response.status_code}"
                text = response.get_data(as_text=True)
                assert response.status_code < 500, (where, text[:300])
                assert not _leaks(text, db_url), (where, _leaks(text, db_url))
                if response.status_code >= 400:
                    assert response.json["error"]["code"], where
                if converter == "int" and odd in NOT_ONE:
                    assert response.status_code == 404, where
    assert stored_snapshot(engine) == before


def _served(app):
    """``{rule text: methods}`` over all rules of a path (a path may have several rules)."""
    served = {}
    for rule in app.url_map.iter_rules():
        served.setdefault(rule.rule, set()).update(rule.methods)
    return served


def test_every_path_answers_405_with_allow_and_options_and_head(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    before = stored_snapshot(engine)
    rules = {rule.rule: rule for rule in _rules(api.app)}
    for text, methods in _served(api.app).items():
        url = _url(rules[text], samples)
        allowed = set(methods) | {"OPTIONS"}
        for method in METHODS:
            if method in methods:
                continue
            response = api.call(method, url, "admin", body={})
            assert response.status_code == 405, (method, url, response.status_code)
            assert set(response.headers["Allow"].split(", ")) == allowed, (method, url)
            assert response.json["error"]["code"] == "method_not_allowed"
        options = api.call("OPTIONS", url, "admin")
        assert options.status_code == 200, url
        assert set(options.headers["Allow"].split(", ")) == allowed, url
        if "GET" in methods:
            got, head = api.call("GET", url, "admin"), api.call("HEAD", url, "admin")
            got.close(), head.close()  # static files are streamed
            assert head.status_code == got.status_code and head.data == b"", url
    assert stored_snapshot(engine) == before


def _posts():
    """``{path: request media type}`` of every POST of the OpenAPI document."""
    out = {}
    for path, operations in openapi_document()["paths"].items():
        if "post" in operations:
            (media,) = operations["post"]["requestBody"]["content"]
            out[path] = media
    return out


@pytest.mark.parametrize("path", sorted(_posts()))
def test_every_post_refuses_other_media_types_and_oversized_bodies(
        api, engine, path):  # noqa: F811
    url = path.format(**_ids(api), visit_id=1)
    before = stored_snapshot(engine)
    others = {"application/json": ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None, "application/jsonx"],
              "multipart/form-data": ["application/json", "text/plain", None]}[_posts()[path]]
    for media in others:
        response = api.client().post(url, data=b'{"to": "closed"}', headers={
            "Authorization": f"Bearer {api.tokens['admin']}",
            **({"Content-Type": media} if media else {})})
        assert response.status_code == 415, (path, media, response.status_code)
        assert response.json["error"]["code"] == "unsupported_media_type", (path, media)
    api.app.config["MAX_CONTENT_LENGTH"] = 4096
    response = api.client().post(url, data=b"x" * 5000, headers={
        "Authorization": f"Bearer {api.tokens['admin']}", "Content-Type": _posts()[path]})
    assert response.status_code == 413, (path, response.status_code)
    assert response.json["error"]["code"] == "payload_too_large"
    assert stored_snapshot(engine) == before, path


def test_every_ogc_route_is_406_for_an_unsatisfiable_accept(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    for rule in _rules(api.app):
        if not rule.rule.startswith("/ogcapi/") or rule.endpoint == "ogcapi.openapi":
            continue
        url = _url(rule, samples)
        for accept in ("application/xml", "image/png", "application/json;q=0"):
            refused = api.call("GET", url, "admin", headers={"Accept": accept})
            assert refused.status_code == 406, (url, accept, refused.status_code)
            assert refused.json["error"]["code"] == "not_acceptable"
            assert "application/json" in refused.json["error"]["details"]["offered"]
        chosen = api.call("GET", url + "?f=json", "admin", headers={"Accept": "image/png"})
        assert chosen.status_code == 200 and chosen.is_json, url
        for accept in ("*/*", "application/geo+json", "application/*", "text/html"):
            assert api.call("GET", url, "admin", headers={"Accept": accept}).status_code == 200


@pytest.fixture
def failing_app(db_url, engine):
    build_park(engine, users=False)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "PROPAGATE_EXCEPTIONS": False})
    secret = f"{db_url} /etc/passwd SELECT password FROM users"

    @app.get("/fail/exception")
    def _exception():
        raise RuntimeError(secret)

    @app.get("/fail/column")
    def _column():
        get_session().execute(sa.text("SELECT no_such_column FROM parks"))

    @app.get("/fail/table")
    def _table():
        get_session().execute(sa.text("SELECT * FROM no_such_table"))

    yield app
    app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("url, status, code", [
    ("/fail/exception", 500, "internal_error"),
    ("/fail/column", 500, "internal_error"),
    ("/fail/table", 503, "schema_missing"),
])
def test_failures_are_json_without_their_text(failing_app, db_url, url, status, code):
    for method in ("GET", "HEAD"):
        response = failing_app.test_client().open(url, method=method)
        assert response.status_code == status and response.mimetype == "application/json"
    response = failing_app.test_client().get(url)
    assert response.json["error"]["code"] == code
    text = response.get_data(as_text=True)
    assert not _leaks(text, db_url) and "no_such" not in text and "passwd" not in text
    assert ("Retry-After" in response.headers) == (status == 503)
    # the app goes on answering
    assert failing_app.test_client().get("/api/parks/T").status_code == 200


def test_every_read_declaring_if_none_match_answers_304_by_the_weak_comparison(
        api, engine):  # noqa: F811
    samples = _samples(api, engine)
    for path, operations in openapi_document()["paths"].items():
        declared = [p["name"] for p in operations.get("get", {}).get("parameters", ())
                    if p["in"] == "header"]
        if "If-None-Match" not in declared:
            continue
        url = path.format(**samples)
        etag = api.call("GET", url, "admin").headers.get("ETag")
        assert etag and etag.startswith('"'), (path, etag)
        for held in (etag, f"W/{etag}", "*", f'"other", W/{etag}'):
            response = api.call("GET", url, "admin", headers={"If-None-Match": held})
            assert response.status_code == 304 and response.data == b"", (path, held)
            assert response.headers["ETag"] == etag, (path, held)
        assert api.call("GET", url, "admin", headers={
            "If-None-Match": '"other"'}).status_code == 200, path


#: ``(bbox, status on /api, status on /ogcapi)``: OGC API answers every bad value 400.
BBOXES = [
    ("170,30,-170,40", 422, 400),  # across the antimeridian
    ("114,35,115,34", 422, 400),  # miny > maxy
    ("1,2,3", 400, 400), ("1,2,3,4,5", 400, 400), ("1,2,3,4,5,6,7", 400, 400),
    ("1,2,5,3,4,1", 400, 400),  # six numbers with minz > maxz (six are OGC only)
    ("NaN,0,1,1", 422, 400), ("inf,0,1,1", 422, 400), ("1e400,0,1,1", 422, 400),
    ("1,2,3,4c", 400, 400), ("0x1,0,1,1", 400, 400), (" 1,0,2,1", 400, 400), (",,,", 400, 400),
    ("", 400, 400), ("-181,0,1,1", 422, 400), ("0,-91,1,1", 422, 400),
    ("34,114,35,115", 422, 400),  # lat/lon order: 114 is no latitude
]


def _bbox_routes(api, samples):  # noqa: F811
    routes = []
    ogc = api.call("GET", "/ogcapi/api", None).json
    for prefix, document in (("", openapi_document()), ("/ogcapi", ogc)):
        for path, operations in document["paths"].items():
            params = operations.get("get", {}).get("parameters", ())
            if any(p["in"] == "query" and p["name"] == "bbox" for p in params):
                values = {**samples, "collectionId": "grids"}
                routes.append(prefix + path.format(**values))
    return routes


def test_bad_bbox_on_every_route_declaring_one(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    routes = _bbox_routes(api, samples)
    assert any(r.startswith("/ogcapi/") for r in routes) and any(
        r.startswith("/api/") for r in routes)
    for url in routes:
        ogc = url.startswith("/ogcapi/")
        for bbox, api_status, ogc_status in BBOXES:
            if len(bbox.split(",")) == 6 and not ogc:
                api_status = 400  # not four numbers
            response = api.call("GET", f"{url}?bbox={bbox}", "admin")
            expected = ogc_status if ogc else api_status
            assert response.status_code == expected, (url, bbox, response.status_code)
            error = response.json["error"]
            assert error["code"] == "invalid_bbox" and error["details"]["parameter"] == "bbox"
            if bbox.startswith("170,"):
                assert "antimeridian" in error["message"], (url, error)
        whole = api.call("GET", f"{url}?bbox=-180,-90,180,90", "admin")
        assert whole.status_code == 200, url
