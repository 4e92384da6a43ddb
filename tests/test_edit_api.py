"""The grid editing JSON API on both backends: roles, If-Match, refusals with the area."""

import json

import pytest
import shapely
import sqlalchemy as sa

from geodata.crs import to_metric, to_storage
from geodata.models import Grid, GridLineage
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.services.users import create_token
from geodata.storage import session_scope
from tests.conftest import stored_snapshot
from webmap import create_app

PARK = "FGKFQ"
EPSG = 4547
BASE = f"/api/parks/{PARK}/edits"


@pytest.fixture
def db_url(demo_db_url):
    """Every test here starts from the demo park of 2025-11-30 (a copy, see conftest)."""
    return demo_db_url


@pytest.fixture
def api(db_url, engine):
    tokens = {}
    with session_scope(engine, write=True) as session:
        for role in ("viewer", "inspector", "planner", "admin"):
            tokens[role], _ = create_token(session, role, "tests")
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})

    class Api:
        db_url = None

        def call(self, method, path, role="planner", body=None, headers=None, **kwargs):
            headers = dict(headers or {})
            if role:
                headers["Authorization"] = f"Bearer {tokens[role]}"
            if body is not None:
                kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
                kwargs.setdefault("content_type", "application/json")
            return app.test_client().open(BASE + path, method=method, headers=headers,
                                          **kwargs)

    Api.db_url = db_url
    yield Api()
    app.extensions["gridmap.engine"].dispose()


def cells(engine):
    """``{code: (metric geometry, version)}`` of the active level-1 grids."""
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK), level=1)
        geoms = to_metric(grid_geometries(rows), EPSG)
        return {g.code: (geom, g.version) for g, geom in zip(rows, geoms)}


def park_version(engine):
    with session_scope(engine) as session:
        return get_park(session, PARK).version


def geojson(metric_geom):
    return shapely.geometry.mapping(to_storage(metric_geom, EPSG))


def test_planner_splits_merges_and_reads_history(api, engine, runner):
    state = api.call("GET", "/state", role="viewer")
    assert state.status_code == 200
    assert state.headers["ETag"].startswith(f'"{park_version(engine)}.')
    assert state.json["coverage"]["valid"] is True
    features = {f["properties"]["code"]: f for f in state.json["grids"]["features"]}
    assert len(features) == 60 and features["FGKFQ-022"]["properties"]["version"] == 1

    grid = cells(engine)["FGKFQ-022"][0]
    (x0, _, x1, _), cy = grid.bounds, grid.centroid.y
    line = to_storage(shapely.LineString([(x0 - 5, cy), (x1 + 5, cy)]), EPSG)
    split = api.call("POST", "/split", body={
        "code": "FGKFQ-022", "line": shapely.geometry.mapping(line), "reason": "两家企业入驻",
        "expected_version": 1}, headers={"If-Match": state.headers["ETag"]})
    assert split.status_code == 200, split.json
    body = split.json
    assert body["retired"] == ["FGKFQ-022"] and len(body["added"]) == 2
    assert body["coverage"]["valid"] is True
    assert split.headers["ETag"] == f'"{body["park_version"]}"'
    for code in body["added"]:
        assert body["grids"][code]["geometry"]["type"] == "MultiPolygon"
    with session_scope(engine) as session:
        new_ids = session.execute(sa.select(Grid.id).where(Grid.code.in_(body["added"]))
                                  ).scalars().all()
        assert session.execute(sa.select(sa.func.count()).select_from(GridLineage).where(
            GridLineage.grid_id.in_(new_ids))).scalar() == 2

    merged = api.call("POST", "/merge", role="admin",
                      body={"codes": body["added"], "reason": "合并"},
                      headers={"If-Match": split.headers["ETag"]})
    assert merged.status_code == 200, merged.json
    assert sorted(merged.json["retired"]) == sorted(body["added"])
    # Move a shared boundary 10 m: the neighbour gives the ground in the same edit.
    grid = cells(engine)
    a = "FGKFQ-030"
    b = next(c for c, (g, _) in grid.items() if c != a and shapely.intersection(
        g, grid[a][0].buffer(1)).area > 100)
    moved = shapely.union(grid[a][0], shapely.intersection(
        grid[b][0], grid[a][0].buffer(10, join_style="mitre")))
    reshaped = api.call("POST", "/reshape", body={
        "code": a, "geometry": geojson(moved), "neighbours": [b], "expected_version": 1,
        "reason": "边界调整"}, headers={"If-Match": merged.headers["ETag"]})
    assert reshaped.status_code == 200, reshaped.json
    assert sorted(reshaped.json["reshaped"]) == sorted([a, b])
    assert reshaped.json["grids"][a]["area_m2"] > grid[a][0].area + 100
    history = api.call("GET", "", role="viewer").json
    assert [e["operation"] for e in history["edits"]] == ["reshape", "merge", "split"]
    assert [e["actor"] for e in history["edits"]] == ["planner", "admin", "planner"]
    assert history["edits"][2]["reason"] == "两家企业入驻"
    assert runner("check", "--park", PARK).exit_code == 0


@pytest.mark.parametrize("role, status", [(None, 401), ("viewer", 403), ("inspector", 403)])
def test_only_planners_and_admins_edit(api, engine, role, status):
    snapshot = stored_snapshot(engine)
    for path, body in (("/split", {"code": "FGKFQ-022", "parts": 2}),
                       ("/merge", {"codes": ["FGKFQ-001", "FGKFQ-002"]}),
                       ("/retire", {"code": "FGKFQ-022"})):
        response = api.call("POST", path, role=role, body=body)
        assert response.status_code == status, response.json
        assert response.json["error"]["code"] == (
            "authentication_required" if status == 401 else "forbidden")
    assert stored_snapshot(engine) == snapshot


def test_stale_if_match_is_412_and_changes_nothing(api, engine):
    etag = f'"{park_version(engine)}"'
    assert api.call("POST", "/split", body={"code": "FGKFQ-020", "parts": 2},
                    headers={"If-Match": etag}).status_code == 200
    snapshot = stored_snapshot(engine)
    stale = api.call("POST", "/split", body={"code": "FGKFQ-015", "parts": 2},
                     headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json["error"]["code"] == "precondition_failed"
    conflict = api.call("POST", "/retire", body={"code": "FGKFQ-016", "expected_version": 9})
    assert conflict.status_code == 409 and conflict.json["error"]["code"] == "stale_version"
    assert stored_snapshot(engine) == snapshot


def test_refused_overlap_is_422_with_area_and_geometry(api, engine):
    grid = cells(engine)
    a = "FGKFQ-022"
    into = grid[a][0].buffer(25, join_style="mitre")
    snapshot = stored_snapshot(engine)
    response = api.call("POST", "/reshape", body={
        "code": a, "geometry": geojson(into), "neighbours": [], "reason": "test"})
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "grid_overlap" and "m²" in error["message"]
    assert error["details"]["area_m2"] > 100
    problem = error["details"]["problems"][0]
    assert problem["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert stored_snapshot(engine) == snapshot


@pytest.mark.parametrize("body, code", [
    ({"geometry": {"type": "Polygon", "coordinates": [[[114.3, 34.0], [114.31, 34.0],
                                                       [114.31, 34.01]]]}},
     "invalid_geometry"),
    ({"geometry": {"type": "Point", "coordinates": [114.3, 34.0]}}, "wrong_geometry_type"),
    ({"geometry": {"type": "Polygon"}}, "empty_geometry"),
    ({"geometry": [1, 2]}, "invalid_geojson"),
    ({}, "missing_field"),
    ({"geometry": None, "colour": "red"}, "unknown_property"),
    # a crs member was ignored: metres or another datum read as degrees
    ({"geometry": {"type": "Polygon", "crs": {"type": "name", "properties": {
        "name": "EPSG:3857"}}, "coordinates": [[[114.3, 34.0], [114.31, 34.0], [114.31, 34.01],
                                                [114.3, 34.0]]]}}, "unsupported_crs"),
    ({"geometry": {"type": "Polygon", "crs": {"type": "name", "properties": {
        "name": "EPSG:999999"}}, "coordinates": [[[114.3, 34.0], [114.31, 34.0], [114.31, 34.01],
                                                  [114.3, 34.0]]]}}, "unknown_crs"),
])
def test_bad_geometry_is_refused(api, engine, body, code):
    snapshot = stored_snapshot(engine)
    response = api.call("POST", "/draw", body=body)
    assert response.status_code in (400, 422), response.json
    assert response.json["error"]["code"] == code, response.json
    assert stored_snapshot(engine) == snapshot


def test_nan_and_wrong_media_type(api, engine):
    nan = ('{"geometry": {"type": "Polygon", "coordinates": [[[NaN, 34.0], [114.31, 34.0], '
           '[114.31, 34.01], [NaN, 34.0]]]}}')
    response = api.call("POST", "/draw", body=nan)
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_coordinate"
    form = api.call("POST", "/draw", data="geometry=x",
                    content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415


def test_editor_page_needs_a_planner(api, engine):
    app = create_app({"DATABASE_URL": api.db_url, "TESTING": True})
    try:
        client = app.test_client()
        anon = client.get(f"/parks/{PARK}/edit")
        assert anon.status_code == 302 and "/login" in anon.headers["Location"]
        for role, status in (("viewer", 403), ("planner", 200), ("admin", 200)):
            with session_scope(engine, write=True) as session:
                token, _ = create_token(session, role, "page")
            page = client.get(f"/parks/{PARK}/edit", headers={"Authorization": f"Bearer {token}"})
            assert page.status_code == status
            html = page.get_data(as_text=True)
            assert ("leaflet-geoman" in html) == (status == 200)
            # No executable inline script: only src= scripts and the JSON settings block.
            assert html.count("<script") == html.count("<script src=") + (status == 200)
            assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"].split(
                "script-src")[1].split(";")[0]
        assert client.get("/assets/geoman/../package.json").status_code == 404
        assert client.get("/assets/geoman/secret.js").status_code == 404
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_invalid_shape_is_422_and_a_stale_retired_grid_is_409(api, engine):
    before = stored_snapshot(engine)
    grid = cells(engine)["FGKFQ-022"][0]
    x0, y0, x1, y1 = grid.bounds
    bow_tie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    for path, body in (("/reshape", {"code": "FGKFQ-022", "geometry": geojson(bow_tie)}),
                       ("/draw", {"geometry": geojson(bow_tie)})):
        response = api.call("POST", path, body=body)
        assert response.status_code == 422, response.json
        error = response.json["error"]
        assert error["code"] == "invalid_geometry"
        assert error["details"]["reason"].startswith("invalid geometry: Self-intersection[")
    assert stored_snapshot(engine) == before
    retired = api.call("POST", "/retire", body={"code": "FGKFQ-022", "expected_version": 1})
    assert retired.status_code == 200, retired.json
    stale = api.call("POST", "/reshape", body={"code": "FGKFQ-022", "geometry": geojson(grid),
                                               "expected_version": 1})
    assert stale.status_code == 409 and stale.json["error"]["code"] == "stale_version"
    assert stale.json["error"]["details"]["current"] == 2


def test_a_reshape_that_leaves_nothing_of_the_grid_is_422_not_a_silent_retire(api, engine):
    """A shape outside the park, one outside the parent for a sub-grid, or one narrower than
    the tolerance: 422 ``empty_result``; the grid stays, nothing is stored."""
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK))
        sub = next(g.code for g in rows if g.parent_id is not None)
        parent = next(g.code for g in rows if g.id == next(
            r.parent_id for r in rows if r.code == sub))
    top = cells(engine)
    far = next(c for c in top if c != parent and not top[c][0].intersects(top[parent][0]))
    x0, y0 = top["FGKFQ-022"][0].bounds[:2]
    before = stored_snapshot(engine)
    for code, shape in ((sub, top[far][0]),  # a sub-grid moved out of its parent
                        ("FGKFQ-022", shapely.box(x0, y0, x0 + 0.004, y0 + 0.004)),  # a speck
                        ("FGKFQ-022", shapely.box(x0 - 5000, y0 - 5000, x0 - 4950,
                                                  y0 - 4950))):  # 5 km outside the park
        for neighbours in (None, []):
            body = {"code": code, "geometry": geojson(shape)}
            if neighbours is not None:
                body["neighbours"] = neighbours
            response = api.call("POST", "/reshape", body=body)
            assert response.status_code == 422, (code, response.json)
            assert response.json["error"]["code"] in ("empty_result", "outside_park",
                                                      "would_leave_gap"), response.json
        assert stored_snapshot(engine) == before
    # With its neighbours taking the ground, the speck was the case that retired the grid.
    response = api.call("POST", "/reshape", body={"code": "FGKFQ-022", "geometry": geojson(
        shapely.box(x0, y0, x0 + 0.004, y0 + 0.004))})
    assert response.json["error"]["code"] == "empty_result"
    assert "FGKFQ-022" in response.json["error"]["message"]


def test_a_neighbour_that_cannot_share_ground_is_422_invalid_neighbour(api, engine):
    """The grid itself, or a grid under another parent, as a neighbour: named, not ignored."""
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK))
        sub = next(g.code for g in rows if g.parent_id is not None)
    grid = cells(engine)["FGKFQ-022"][0]
    before = stored_snapshot(engine)
    for code, neighbours, named in (("FGKFQ-022", ["FGKFQ-022"], "FGKFQ-022"),
                                    ("FGKFQ-022", [sub], sub),
                                    (sub, ["FGKFQ-022"], "FGKFQ-022")):
        response = api.call("POST", "/reshape", body={
            "code": code, "geometry": geojson(grid.buffer(5, join_style="mitre")),
            "neighbours": neighbours})
        assert response.status_code == 422, response.json
        error = response.json["error"]
        assert error["code"] == "invalid_neighbour" and error["details"]["grid"] == named
    assert stored_snapshot(engine) == before


@pytest.mark.parametrize("name", ["urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:4326",
                                  "urn:ogc:def:crs:EPSG::4326"])
def test_a_lon_lat_crs_member_is_accepted_by_the_strict_reader(name):
    from geodata.geometry import geometry_from_geojson

    geom = geometry_from_geojson({"type": "Polygon", "crs": {"type": "name", "properties": {
        "name": name}}, "coordinates": [[[114.3, 34.0], [114.31, 34.0], [114.31, 34.01],
                                         [114.3, 34.0]]]})
    assert geom.bounds == (114.3, 34.0, 114.31, 34.01)
