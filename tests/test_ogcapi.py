"""OGC API – Features (``/ogcapi``) on both backends: the Flask test client for links,
paging, bbox, datetime, filters, roles and bad input, and GDAL's OAPIF driver (through
pyogrio) reading every collection from a live ``gridmap serve``, compared with the database.

The database is the demo park plus the hostile-text park of :mod:`tests.browser`, with
one API token for the ``viewer`` account.
"""

from datetime import date, datetime, timezone

import numpy as np
import pyogrio
import pytest
import schemathesis
import shapely
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from geodata.models import Enterprise, Grid, Hazard, Park, User
from geodata.models.base import to_shapes
from geodata.services.users import create_token
from geodata.storage import make_engine, session_scope
from tests.browser import PAYLOAD_NAME, LiveServer, demo_database, load_payload_park
from tests.conftest import table_counts
from webmap import create_app

TODAY = date(2025, 11, 30)
OPEN = ("found", "rectifying", "supervising")
COLLECTIONS = ("parks", "grids", "enterprises", "hazards")

_BUILT = {}
RETIRED = "X-004"


@pytest.fixture(scope="module", params=["spatialite", "postgis"])
def ogc_db(request, tmp_path_factory):
    """``(url, viewer token)``: the demo park, the hostile-text park and a viewer token."""
    if request.param not in _BUILT:
        url = demo_database(request, tmp_path_factory, "gridmap_ogcapi")
        engine = make_engine(url)
        load_payload_park(engine)
        with session_scope(engine, write=True) as session:
            token, _ = create_token(session, "viewer", "ogcapi tests")
            # a retired grid keeps its row; no collection may serve it
            session.execute(sa.update(Grid).where(Grid.code == RETIRED).values(
                active_to=date(2025, 1, 1)))
            # the demo imports its closed hazards without a closing time; give one a time
            first_closed = sa.select(sa.func.min(Hazard.id)).where(
                Hazard.status == "closed").scalar_subquery()
            session.execute(sa.update(Hazard).where(Hazard.id == first_closed).values(
                closed_at=datetime(2025, 11, 3, 8, 15, tzinfo=timezone.utc)))
        engine.dispose()
        _BUILT[request.param] = (url, token)
    return _BUILT[request.param]


@pytest.fixture(scope="module")
def app(ogc_db):
    app = create_app({"DATABASE_URL": ogc_db[0], "TESTING": True, "TODAY": TODAY})
    yield app
    app.extensions["gridmap.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def token(ogc_db):
    return {"Authorization": f"Bearer {ogc_db[1]}"}


def db_rows(app, query):
    with app.extensions["gridmap.engine"].connect() as conn:
        return conn.execute(query).all()


def db_count(app, model, *where):
    return db_rows(app, sa.select(sa.func.count()).select_from(model).where(*where))[0][0]


def get_json(client, url, status=200, **kw):
    response = client.get(url, **kw)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def all_pages(client, url, **kw):
    """Follow ``next`` links from ``url``; return the features and the pages."""
    found, pages = [], []
    while url:
        page = get_json(client, url, **kw)
        pages.append(page)
        found += page["features"]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return found, pages


# --------------------------------------------------------------------------
# landing page, conformance, collections
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/ogcapi", "/ogcapi/"])
def test_landing_page_links_resolve(client, path):
    body = get_json(client, path)
    rels = {link["rel"]: link for link in body["links"]}
    assert {"self", "alternate", "service-desc", "conformance", "data"} <= set(rels)
    assert rels["self"]["type"] == "application/json" and rels["alternate"]["type"] == "text/html"
    for rel in ("service-desc", "conformance", "data"):
        response = client.get(rels[rel]["href"])
        assert response.status_code == 200
        assert response.mimetype == rels[rel]["type"].split(";")[0]
    assert client.get(rels["service-desc"]["href"]).get_json()["openapi"].startswith("3.0")


def test_conformance_declares_core_geojson_html_oas30(client):
    conforms = get_json(client, "/ogcapi/conformance")["conformsTo"]
    base = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
    assert set(conforms) == {base + c for c in ("core", "geojson", "html", "oas30")}


def test_collections_and_extents(app, client):
    body = get_json(client, "/ogcapi/collections")
    assert [c["id"] for c in body["collections"]] == list(COLLECTIONS)
    bounds = shapely.total_bounds(to_shapes([r[0] for r in db_rows(
        app, sa.select(Park.boundary))]))
    first, last = db_rows(app, sa.select(sa.func.min(Hazard.found_date),
                                         sa.func.max(Hazard.found_date))
                          .where(Hazard.status.in_(OPEN)))[0]
    for c in body["collections"]:
        assert c["itemType"] == "feature"
        assert c["extent"]["spatial"]["crs"].endswith("/OGC/1.3/CRS84")
        assert np.allclose(c["extent"]["spatial"]["bbox"][0], bounds, rtol=0, atol=1e-12)
        one = get_json(client, f"/ogcapi/collections/{c['id']}")
        assert one["id"] == c["id"] and one["extent"] == c["extent"]
        items = [link for link in one["links"] if link["rel"] == "items"]
        assert {link["type"] for link in items} == {"application/geo+json", "text/html"}
    hazards = body["collections"][3]["extent"]["temporal"]["interval"][0]
    assert hazards == [f"{date.fromisoformat(str(first))}T00:00:00Z",
                       f"{date.fromisoformat(str(last))}T00:00:00Z"]


# --------------------------------------------------------------------------
# items: paging, bbox, datetime, property filters
# --------------------------------------------------------------------------

def test_paging_walks_every_grid_once(app, client):
    found, pages = all_pages(client, "/ogcapi/collections/grids/items?limit=7")
    expected = [r[0] for r in db_rows(app, sa.select(Grid.id).where(Grid.active_to.is_(None))
                                      .order_by(Grid.id))]
    assert [f["id"] for f in found] == expected
    assert len(pages) == -(-len(expected) // 7)
    for i, page in enumerate(pages):
        rels = [link["rel"] for link in page["links"]]
        assert page["numberMatched"] == len(expected)
        assert page["numberReturned"] == len(page["features"]) <= 7
        assert ("prev" in rels) == (i > 0) and ("next" in rels) == (i < len(pages) - 1)
        assert page["timeStamp"].endswith("Z")
    second = client.get(next(link["href"] for link in pages[1]["links"]
                             if link["rel"] == "prev")).get_json()
    assert second["features"] == pages[0]["features"]


def test_limit_default_and_above_the_maximum(app, client):
    total = db_count(app, Enterprise)
    assert get_json(client, "/ogcapi/collections/enterprises/items")["numberReturned"] == 100
    body = get_json(client, "/ogcapi/collections/enterprises/items?limit=50000")
    assert body["numberReturned"] == body["numberMatched"] == total
    assert not [link for link in body["links"] if link["rel"] == "next"]


@pytest.mark.parametrize("collection, model, column", [
    ("grids", Grid, Grid.geom), ("enterprises", Enterprise, Enterprise.site),
    ("hazards", Hazard, Hazard.location)])
def test_bbox_matches_shapely_on_the_stored_geometries(app, client, token, collection, model,
                                                       column):
    rows = db_rows(app, sa.select(model.id, column).order_by(model.id))
    ids, geoms = np.array([r[0] for r in rows]), to_shapes([r[1] for r in rows])
    if collection == "grids":
        active = {r[0] for r in db_rows(app, sa.select(Grid.id).where(Grid.active_to.is_(None)))}
        keep = np.isin(ids, list(active))
        ids, geoms = ids[keep], geoms[keep]
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    bbox = (minx + (maxx - minx) * 0.3, miny + (maxy - miny) * 0.2,
            minx + (maxx - minx) * 0.6, miny + (maxy - miny) * 0.7)
    expected = ids[shapely.intersects(geoms, shapely.box(*bbox))]
    found, _ = all_pages(client, f"/ogcapi/collections/{collection}/items?limit=1000&bbox="
                         + ",".join(repr(float(v)) for v in bbox), headers=token)
    assert 0 < len(found) < len(ids)
    assert sorted(f["id"] for f in found) == sorted(expected.tolist())


def test_bbox_on_parks(app, client):
    boundaries = to_shapes([r[0] for r in db_rows(app, sa.select(Park.boundary))])
    minx, miny, maxx, maxy = shapely.total_bounds(boundaries)
    everything = f"{minx},{miny},{maxx},{maxy}"
    assert get_json(client, f"/ogcapi/collections/parks/items?bbox={everything}")[
        "numberMatched"] == len(boundaries) == 2
    assert get_json(client, "/ogcapi/collections/parks/items?bbox=100,20,100.1,20.1")[
        "numberMatched"] == 0


@pytest.mark.parametrize("datetime, first, last", [
    ("2025-11-01", date(2025, 11, 1), date(2025, 11, 1)),
    ("2025-11-01T09:30:00Z", date(2025, 11, 1), date(2025, 11, 1)),
    ("2025-10-15/..", date(2025, 10, 15), None),
    ("../2025-06-30", None, date(2025, 6, 30)),
    ("2025-03-01/2025-03-31", date(2025, 3, 1), date(2025, 3, 31)),
    ("2025-03-01T00:00:00%2B08:00/2025-03-31T23:59:59%2B08:00", date(2025, 3, 1),
     date(2025, 3, 31)),
])
@pytest.mark.parametrize("who", ["anonymous", "viewer"])
def test_datetime_filters_found_date(app, client, token, datetime, first, last, who):
    where = [] if who == "viewer" else [Hazard.status.in_(OPEN)]
    if first:
        where.append(Hazard.found_date >= first)
    if last:
        where.append(Hazard.found_date <= last)
    expected = db_count(app, Hazard, *where)
    body = get_json(client, f"/ogcapi/collections/hazards/items?limit=1&datetime={datetime}",
                    headers=token if who == "viewer" else {})
    assert body["numberMatched"] == expected
    if who == "viewer":  # the demo ledger has hazards in each of these periods
        assert expected > 0


def test_property_filters(app, client, token):
    def matched(url, **kw):
        return get_json(client, url, **kw)["numberMatched"]

    active = Grid.active_to.is_(None)
    assert matched("/ogcapi/collections/grids/items?park=fgkfq&level=2") == db_count(
        app, Grid, active, Grid.level == 2, Grid.park_id == db_rows(
            app, sa.select(Park.id).where(Park.code == "FGKFQ"))[0][0]) > 0
    children = get_json(client, "/ogcapi/collections/grids/items?parent=FGKFQ-005")["features"]
    assert children and {f["properties"]["parent"] for f in children} == {"FGKFQ-005"}
    assert matched("/ogcapi/collections/grids/items?kind=workshop") == db_count(
        app, Grid, active, Grid.kind == "workshop")
    hidden = get_json(client, "/ogcapi/collections/enterprises/items?hidden=true&limit=1000")
    assert hidden["numberMatched"] > 0
    assert all(f["properties"]["hidden"] for f in hidden["features"])
    visible = matched("/ogcapi/collections/enterprises/items?hidden=false")
    assert hidden["numberMatched"] + visible == db_count(app, Enterprise)
    assert matched("/ogcapi/collections/enterprises/items?park=FGKFQ&hidden=true") == (
        hidden["numberMatched"] - matched("/ogcapi/collections/enterprises/items?park=X"
                                          "&hidden=true"))
    for status in ("found", "rectifying", "closed"):
        assert matched(f"/ogcapi/collections/hazards/items?status={status}",
                       headers=token) == db_count(app, Hazard, Hazard.status == status)
    assert matched("/ogcapi/collections/hazards/items?level=major&status=rectifying",
                   headers=token) == db_count(app, Hazard, Hazard.level == "major",
                                              Hazard.status == "rectifying")


def test_single_items(app, client):
    grid = get_json(client, "/ogcapi/collections/grids/items?limit=1")["features"][0]
    one = get_json(client, f"/ogcapi/collections/grids/items/{grid['id']}")
    assert {k: one[k] for k in ("id", "geometry", "properties")} == {
        k: grid[k] for k in ("id", "geometry", "properties")}
    assert {link["rel"] for link in one["links"]} == {"self", "alternate", "collection"}
    park = get_json(client, "/ogcapi/collections/parks/items/fgkfq")
    assert park["id"] == "FGKFQ" and park["geometry"]["type"] == "MultiPolygon"
    assert client.get("/ogcapi/collections/grids/items/1").mimetype == "application/geo+json"


def test_retired_grids_are_not_served(app, client):
    (retired,), = db_rows(app, sa.select(Grid.id).where(Grid.code == RETIRED))
    assert client.get(f"/ogcapi/collections/grids/items/{retired}").status_code == 404
    found, _ = all_pages(client, "/ogcapi/collections/grids/items?park=X")
    assert sorted(f["properties"]["code"] for f in found) == ["X-001", "X-002", "X-003"]
    assert get_json(client, f"/ogcapi/collections/grids/items?code={RETIRED}")[
        "numberMatched"] == 0


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_the_service_is_read_only(app, client, token, method):
    before = table_counts(app.extensions["gridmap.engine"])
    for url in ("/ogcapi/collections", "/ogcapi/collections/grids/items",
                "/ogcapi/collections/grids/items/1"):
        response = getattr(client, method)(url, json={"type": "Feature"}, headers=token)
        assert response.status_code == 405, url
        assert "GET" in response.headers["Allow"]
        assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert table_counts(app.extensions["gridmap.engine"]) == before


# --------------------------------------------------------------------------
# roles: an anonymous client sees what the anonymous map shows
# --------------------------------------------------------------------------

def test_anonymous_sees_open_hazards_with_map_fields(app, client, token):
    anon, _ = all_pages(client, "/ogcapi/collections/hazards/items?limit=10000")
    assert len(anon) == db_count(app, Hazard, Hazard.status.in_(OPEN)) > 0
    assert {f["properties"]["status"] for f in anon} <= set(OPEN)
    assert set(anon[0]["properties"]) == {
        "code", "park", "category", "level", "status", "description", "found_date",
        "deadline", "escalation", "grid", "enterprise", "overdue"}
    everything, _ = all_pages(client, "/ogcapi/collections/hazards/items?limit=10000",
                              headers=token)
    assert len(everything) == db_count(app, Hazard)
    assert {"closed_at", "version"} <= set(everything[0]["properties"])
    closed = next(f for f in everything if f["properties"]["status"] == "closed")
    stamped = [f["properties"]["closed_at"] for f in everything if f["properties"]["closed_at"]]
    assert stamped == ["2025-11-03T08:15:00Z"]  # UTC with Z on both backends
    url = f"/ogcapi/collections/hazards/items/{closed['id']}"
    assert client.get(url).status_code == 404
    assert get_json(client, url, headers=token)["properties"]["status"] == "closed"
    assert get_json(client, "/ogcapi/collections/hazards/items?status=closed")[
        "numberMatched"] == 0
    anon_ext = get_json(client, "/ogcapi/collections/hazards")["extent"]["temporal"]
    all_ext = get_json(client, "/ogcapi/collections/hazards", headers=token)["extent"]
    assert anon_ext["interval"][0][0] > all_ext["temporal"]["interval"][0][0]


def test_enterprise_contacts_need_a_login(app, client, token):
    anon = get_json(client, "/ogcapi/collections/enterprises/items?limit=1")["features"][0]
    assert set(anon["properties"]) == {"name", "credit_code", "industry", "park", "grid",
                                       "hidden", "host", "reason"}
    user = get_json(client, "/ogcapi/collections/enterprises/items?limit=1",
                    headers=token)["features"][0]
    assert {"contact_name", "contact_phone", "employees", "registered"} <= set(
        user["properties"])


def test_session_cookie_counts_as_logged_in(app, client):
    (uid, version), = db_rows(app, sa.select(User.id, User.session_version).where(
        User.username == "viewer"))
    with client.session_transaction() as session:
        session["uid"], session["sv"] = uid, version
    body = get_json(client, "/ogcapi/collections/hazards/items?limit=1")
    assert body["numberMatched"] == db_count(app, Hazard)


def test_bad_token_is_401(client):
    response = client.get("/ogcapi/collections/hazards/items",
                          headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

@pytest.mark.parametrize("url, kw", [
    ("/ogcapi/collections/enterprises/items?park=X&f=html", {}),
    ("/ogcapi/collections/enterprises/items?park=X", {"headers": {"Accept": "text/html"}}),
])
def test_html_pages_escape_user_text(client, url, kw):
    response = client.get(url, **kw)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert PAYLOAD_NAME not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "`${alert(3)}` javascript:alert(4)" in html  # text, inert outside script
    assert "<script" not in html


@pytest.mark.parametrize("url", ["/ogcapi/?f=html", "/ogcapi/conformance?f=html",
                                 "/ogcapi/collections?f=html",
                                 "/ogcapi/collections/hazards?f=html",
                                 "/ogcapi/collections/parks/items/X?f=html"])
def test_html_alternates(client, url):
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'rel="self"' in response.get_data(as_text=True)


# --------------------------------------------------------------------------
# bad input: 400 (the standard's rule for invalid and unknown parameters) or 404
# --------------------------------------------------------------------------

BAD = [
    ("/ogcapi/collections/grids/items?bbox=1,2,3", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=1,2,3,4,5", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=1,2,3,4c", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=5,1,4,2", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=nan,1,2,3", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?bbox=34,114,35,115", 400, "invalid_bbox"),
    ("/ogcapi/collections/grids/items?limit=0", 400, "invalid_limit"),
    ("/ogcapi/collections/grids/items?limit=-5", 400, "invalid_limit"),
    ("/ogcapi/collections/grids/items?limit=ten", 400, "invalid_limit"),
    ("/ogcapi/collections/grids/items?limit=1.5", 400, "invalid_limit"),
    ("/ogcapi/collections/grids/items?offset=-1", 400, "invalid_offset"),
    ("/ogcapi/collections/grids/items?offset=99999999999", 400, "invalid_offset"),
    ("/ogcapi/collections/hazards/items?datetime=yesterday", 400, "invalid_datetime"),
    ("/ogcapi/collections/hazards/items?datetime=2025-13-01", 400, "invalid_datetime"),
    ("/ogcapi/collections/hazards/items?datetime=2025-02-30", 400, "invalid_datetime"),
    ("/ogcapi/collections/hazards/items?datetime=../..", 400, "invalid_datetime"),
    ("/ogcapi/collections/hazards/items?datetime=2025-05-01/2025-04-01", 400,
     "invalid_datetime"),
    ("/ogcapi/collections/hazards/items?datetime=2025-05-01T10:00:00", 400, "invalid_datetime"),
    ("/ogcapi/collections/grids/items?datetime=2025-05-01", 400, "unknown_parameter"),
    ("/ogcapi/collections/grids/items?sort=name;--", 400, "unknown_parameter"),
    ("/ogcapi/collections/grids/items?filter=level=1", 400, "unknown_parameter"),
    ("/ogcapi/collections/grids/items?limit=1&limit=2", 400, "repeated_parameter"),
    ("/ogcapi/collections/grids/items?level=one", 400, "invalid_filter"),
    ("/ogcapi/collections/grids/items?kind=field", 400, "invalid_filter"),
    ("/ogcapi/collections/hazards/items?status=open;DROP TABLE hazards", 400, "invalid_filter"),
    ("/ogcapi/collections/enterprises/items?hidden=maybe", 400, "invalid_filter"),
    ("/ogcapi/collections/enterprises/items?name=x" + "x" * 10, 400, "unknown_parameter"),
    ("/ogcapi/collections/enterprises/items?industry=" + "x" * 201, 400, "invalid_filter"),
    ("/ogcapi/collections/enterprises/items?industry=%00", 400, "invalid_filter"),
    ("/ogcapi/collections/enterprises/items?industry=a%00b", 400, "invalid_filter"),
    ("/ogcapi/collections/grids/items?park=", 400, "invalid_filter"),
    ("/ogcapi/collections/hazards/items?category=%E2%80%AEx", 400, "invalid_filter"),
    ("/ogcapi/collections/parks/items/X%00", 404, "not_found"),
    ("/ogcapi/collections/parks/items/" + "X" * 300, 404, "not_found"),
    ("/ogcapi/collections?f=xml", 400, "invalid_f"),
    ("/ogcapi/conformance?x=1", 400, "unknown_parameter"),
    ("/ogcapi/collections/nope", 404, "not_found"),
    ("/ogcapi/collections/nope/items", 404, "not_found"),
    ("/ogcapi/collections/grids/items/999999", 404, "not_found"),
    ("/ogcapi/collections/grids/items/1;DROP TABLE grids", 404, "not_found"),
    ("/ogcapi/collections/hazards/items/abc", 404, "not_found"),
    ("/ogcapi/collections/parks/items/NOPE", 404, "not_found"),
]


@pytest.mark.parametrize("url, status, code", BAD)
def test_bad_input_gets_json_error(app, client, url, status, code):
    before = table_counts(app.extensions["gridmap.engine"])
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    assert table_counts(app.extensions["gridmap.engine"]) == before


@pytest.fixture
def ogc_schema(app):
    return schemathesis.openapi.from_wsgi("/ogcapi/api", app)


schema = schemathesis.pytest.from_fixture("ogc_schema")


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_cause_server_errors(case):
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert {"code", "message"} <= set(response.json()["error"]), response.text


# --------------------------------------------------------------------------
# a real client: GDAL's OAPIF driver against a live server
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(ogc_db):
    server = LiveServer(ogc_db[0])
    yield server
    server.stop()


def _stored(app, collection, anonymous):
    """``{key: geometry}`` of what a client may see, straight from the database."""
    if collection == "parks":
        query = sa.select(Park.code, Park.boundary)
    elif collection == "grids":
        query = (sa.select(Park.code, Grid.code, Grid.geom).join(Park, Grid.park_id == Park.id)
                 .where(Grid.active_to.is_(None)))
    elif collection == "enterprises":
        query = sa.select(Park.code, Enterprise.credit_code, Enterprise.site).join(
            Park, Enterprise.park_id == Park.id)
    else:
        query = sa.select(Park.code, Hazard.code, Hazard.location).join(
            Park, Hazard.park_id == Park.id).where(
                *([Hazard.status.in_(OPEN)] if anonymous else []))
    rows = db_rows(app, query)
    return dict(zip([tuple(r[:-1]) for r in rows], to_shapes([r[-1] for r in rows])))


def _read(url, collection):
    frame = pyogrio.read_dataframe(url, layer=collection)
    key = {"parks": ["code"], "grids": ["park", "code"], "enterprises": ["park", "credit_code"],
           "hazards": ["park", "code"]}[collection]
    keys = [tuple(k) for k in frame[key].itertuples(index=False)]
    assert len(set(keys)) == len(keys)
    return dict(zip(keys, frame.geometry.values))


def _assert_same(read, stored):
    assert len(read) == len(stored) > 0
    assert set(read) == set(stored)
    keys = sorted(stored)
    got = np.array([read[k] for k in keys], dtype=object)
    want = np.array([stored[k] for k in keys], dtype=object)
    # full double precision on the wire: GDAL reads back exactly the stored coordinates
    assert shapely.equals_exact(got, want, tolerance=0).all()


def test_gdal_oapif_driver_is_available():
    assert "OAPIF" in pyogrio.list_drivers()


def test_gdal_reads_every_collection_as_the_database_holds_it(app, live):
    url = f"OAPIF:{live.url}/ogcapi"
    layers = pyogrio.list_layers(url)
    assert sorted(layers[:, 0]) == sorted(COLLECTIONS)
    for collection in COLLECTIONS:
        stored = _stored(app, collection, anonymous=True)
        _assert_same(_read(url, collection), stored)
        # ogrinfo's count: GDAL takes it from numberMatched
        assert pyogrio.read_info(url, layer=collection)["features"] == len(stored)


def test_gdal_sends_attribute_filters_to_the_server(app, live):
    # GDAL finds the queryables in the OpenAPI document and turns the filter into
    # ?level=2&park=FGKFQ and ?hidden=1&industry=...; the answer must still be right
    url = f"OAPIF:{live.url}/ogcapi"
    frame = pyogrio.read_dataframe(url, layer="grids", where="level = 2 AND park = 'FGKFQ'")
    assert len(frame) == db_count(app, Grid, Grid.active_to.is_(None), Grid.level == 2,
                                  Grid.park_id.in_(sa.select(Park.id).where(
                                      Park.code == "FGKFQ"))) > 0
    frame = pyogrio.read_dataframe(url, layer="enterprises",
                                   where="hidden = 1 AND industry = '食品加工'")
    assert len(frame) > 0 and frame["hidden"].all() and (frame["industry"] == "食品加工").all()


def test_gdal_spatial_filter_matches_the_database(app, live):
    url = f"OAPIF:{live.url}/ogcapi"
    stored = _stored(app, "grids", anonymous=True)
    minx, miny, maxx, maxy = shapely.total_bounds(list(stored.values()))
    bbox = (minx, miny, (minx + maxx) / 2, (miny + maxy) / 2)
    frame = pyogrio.read_dataframe(url, layer="grids", bbox=bbox)
    keys = {k for k, g in stored.items() if g.intersects(shapely.box(*bbox))}
    assert 0 < len(frame) == len(keys) < len(stored)
    assert set(frame[["park", "code"]].itertuples(index=False, name=None)) == keys


def test_gdal_with_a_token_reads_what_the_role_sees(app, live, ogc_db):
    url = f"OAPIF:{live.url}/ogcapi"
    # GDAL_HTTP_HEADERS is not sent: the OAPIF driver sets its own (Accept) headers
    pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": ogc_db[1]})
    try:
        hazards = _read(url, "hazards")
    finally:
        pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": None, "GDAL_HTTP_BEARER": None})
    _assert_same(hazards, _stored(app, "hazards", anonymous=False))
    assert len(hazards) > len(_stored(app, "hazards", anonymous=True))
