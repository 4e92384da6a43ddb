"""Vector tiles of the grid layer on both backends: ST_AsMVT on PostGIS, mapbox-vector-tile
on SpatiaLite; the same features and properties, an ETag that follows edits and hazards."""

import math
from datetime import date

import mapbox_vector_tile
import numpy as np
import pyproj
import pytest
import shapely

from geodata import schema
from geodata.errors import ValidationError
from geodata.services import ledger, tiles
from geodata.services.demo_loader import load_province
from geodata.services.edits import merge_grids
from geodata.services.parks import get_park, park_boundary
from geodata.services.tiles import BUFFER, EXTENT, LAYER, tile_bounds
from geodata.storage import make_engine, session_scope
from tests.browser import demo_url, empty_postgis_database  # noqa: F401
from tests.conftest import table_counts
from tests.ledger_helpers import ACTORS
from webmap import create_app

TODAY = date(2025, 11, 30)
MVT = "application/vnd.mapbox-vector-tile"
TO_MERCATOR = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)


def tile_of(lon, lat, z):
    """Web-mercator tile numbers holding a point."""
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def in_tile_units(geom, z, x, y):
    """A lon/lat geometry in the tile's own units (0–4096, y down), projected with pyproj."""
    minx, _, maxx, maxy = tile_bounds(z, x, y)
    scale = EXTENT / (maxx - minx)

    def project(coords):
        mx, my = TO_MERCATOR.transform(coords[:, 0], coords[:, 1])
        return np.column_stack(((mx - minx) * scale, (maxy - my) * scale))
    return shapely.transform(geom, project)


def decode(data):
    """The ``grids`` features of an MVT, geometries as shapely in tile units (y down)."""
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    return {f["properties"]["code"]: (f["properties"], shapely.geometry.shape(f["geometry"]))
            for f in layers[LAYER]["features"]} if data else {}


@pytest.fixture
def client(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True, "TODAY": TODAY})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("z, level", [(15, 1), (16, 1), (16, 2)])
def test_tile_holds_exactly_the_grids_it_shows(client, z, level):
    """Every grid reaching the tile is in it, clipped to the tile plus its buffer."""
    fc = client.get(f"/api/parks/FGKFQ/grids?level={level}").get_json()
    grids = {f["id"]: shapely.geometry.shape(f["geometry"]) for f in fc["features"]}
    summaries = client.get("/api/parks/FGKFQ/summaries").get_json()
    centre = shapely.union_all(list(grids.values())).centroid
    x, y = tile_of(centre.x, centre.y, z)
    response = client.get(f"/api/parks/FGKFQ/tiles/grids/{z}/{x}/{y}.mvt?level={level}")
    assert response.status_code == 200 and response.mimetype == MVT
    features = decode(response.data)
    inner = shapely.box(0, 0, EXTENT, EXTENT)
    buffered = shapely.box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    local = {code: in_tile_units(g, z, x, y) for code, g in grids.items()}
    must = {c for c, g in local.items() if g.intersection(inner).area > 4}
    may = {c for c, g in local.items() if g.intersects(buffered)}
    assert must and must <= set(features) <= may
    for code, (props, geom) in features.items():
        s = summaries[code]
        assert props["name"] == s["name"] and props["level"] == level == s["level"]
        assert props.get("parent_code") == s["parent_code"]
        assert (props["open_hazards"], props["overdue_hazards"]) == (
            s["open_hazards"], s["overdue_hazards"])
        # The clipped shape is the grid's, within the whole-unit snapping.
        expected = local[code].intersection(buffered)
        assert geom.symmetric_difference(expected).area <= max(0.01 * expected.area, 64)
    assert any(p["open_hazards"] for p, _ in features.values()) or level == 2


def test_tile_far_away_is_empty(client):
    response = client.get("/api/parks/FGKFQ/tiles/grids/14/0/0.mvt")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["ETag"]


def test_tile_etag_and_not_modified(client):
    x, y = tile_of(114.39, 34.06, 14)
    url = f"/api/parks/FGKFQ/tiles/grids/14/{x}/{y}.mvt"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"')
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # Sub-grids are another layer with their own tag; tomorrow's overdue flags are another
    # tile exactly when they change its bytes (the tag is their digest).
    assert client.get(url + "?level=2").headers["ETag"] != etag
    client.application.config["TODAY"] = date(2025, 12, 1)
    tomorrow = client.get(url, headers={"If-None-Match": etag})
    assert tomorrow.status_code == (304 if client.get(url).data == first.data else 200)


@pytest.fixture
def small_park(db_url, engine):
    """A generated park of 30 grids (PV001) in a fresh database of the backend under test."""
    load_province(engine, parks=1, grids_per_park=30)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "TODAY": TODAY})
    yield app.test_client(), engine
    app.extensions["gridmap.engine"].dispose()


def _park_tile(client, z=15):
    fc = client.get("/api/parks/PV001/grids").get_json()
    grids = {f["id"]: shapely.geometry.shape(f["geometry"]) for f in fc["features"]}
    centre = shapely.union_all(list(grids.values())).centroid
    return grids, f"/api/parks/PV001/tiles/grids/{z}/%d/%d.mvt" % tile_of(centre.x, centre.y, z)


def test_edit_and_new_hazard_change_the_tile_and_its_etag(small_park):
    client, engine = small_park
    grids, url = _park_tile(client)
    before = client.get(url)
    codes = sorted(decode(before.data))
    a, b = codes[0], next(c for c in codes[1:] if grids[c].intersection(grids[codes[0]]).length)
    with session_scope(engine, write=True) as session:
        merge_grids(session, get_park(session, "PV001"), [a, b], actor="test", reason="tiles")
    after = client.get(url, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    merged = set(decode(after.data))
    assert a not in merged and b not in merged and len(merged) == len(codes) - 1
    new = (merged - set(codes)).pop()
    assert decode(after.data)[new][0]["open_hazards"] == 0
    # A hazard logged in the merged grid shows in its count, under a new tag.
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "PV001"),
                             point=grids[a].representative_point(), category="其他",
                             actor=ACTORS["admin"])
    logged = client.get(url, headers={"If-None-Match": after.headers["ETag"]})
    assert logged.status_code == 200 and logged.headers["ETag"] != after.headers["ETag"]
    assert decode(logged.data)[new][0]["open_hazards"] == 1
    assert client.get(url, headers={"If-None-Match": logged.headers["ETag"]}).status_code == 304


@pytest.mark.parametrize("path, status, code", [
    ("/api/parks/PV001/tiles/grids/3/8/0.mvt", 422, "invalid_tile"),
    ("/api/parks/PV001/tiles/grids/3/0/8.mvt", 422, "invalid_tile"),
    ("/api/parks/PV001/tiles/grids/23/0/0.mvt", 422, "invalid_tile"),
    ("/api/parks/PV001/tiles/grids/-1/0/0.mvt", 404, "not_found"),
    ("/api/parks/PV001/tiles/grids/3/0/x.mvt", 404, "not_found"),
    ("/api/parks/NOPE/tiles/grids/3/0/0.mvt", 404, "not_found"),
    ("/api/parks/PV001/tiles/grids/3/0/0.mvt?level=x", 400, "invalid_level"),
    ("/api/parks/PV001/tiles/grids/3/0/0.mvt?level=0", 422, "invalid_level"),
    ("/api/parks/PV001/tiles/grids/3/0/0.mvt?level=1&level=2", 400, "repeated_parameter"),
    ("/api/parks/PV001/tiles/grids/3/0/0.mvt?colour=red", 422, "unknown_parameter"),
])
def test_bad_tile_requests(small_park, path, status, code):
    client, engine = small_park
    before = table_counts(engine)
    response = client.get(path)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert table_counts(engine) == before


def test_tile_with_too_many_grids_is_refused(small_park):
    """A low-zoom tile of a huge park would be seconds of work: 422 with the cap, no write."""
    client, engine = small_park
    _, url = _park_tile(client, z=12)
    z, x, y = (int(v) for v in url.rsplit("/", 3)[1:3] + [url.rsplit("/", 1)[1][:-4]])
    before = table_counts(engine)
    with session_scope(engine) as session:
        park = get_park(session, "PV001")
        assert decode(tiles.grid_tile(session, park, z, x, y, max_grids=30))
        with pytest.raises(ValidationError) as refused:
            tiles.grid_tile(session, park, z, x, y, max_grids=29)
    assert refused.value.code == "tile_too_large"
    assert refused.value.details["max_grids"] == 29
    assert table_counts(engine) == before


@pytest.fixture(scope="module")
def twin_parks(postgis_url, tmp_path_factory):
    """The same generated park of 2 000 grids (PV001) on SpatiaLite and on PostGIS."""
    urls = {"spatialite": f"sqlite:///{tmp_path_factory.mktemp('twin') / 'twin.sqlite'}",
            "postgis": empty_postgis_database(postgis_url, "gridmap_tile_twins")}
    engines = {}
    for name, url in urls.items():
        engines[name] = make_engine(url, create=True)
        schema.upgrade(engines[name])
        load_province(engines[name], parks=1, grids_per_park=2000)
    yield engines
    for engine in engines.values():
        engine.dispose()


def _tiles_over_park(session, z):
    """Every ``(z, x, y)`` tile reaching the park PV001's bounding box."""
    minx, miny, maxx, maxy = park_boundary(get_park(session, "PV001")).bounds
    (x0, y0), (x1, y1) = tile_of(minx, maxy, z), tile_of(maxx, miny, z)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


@pytest.mark.parametrize("z", [14, 16, 18])
def test_both_backends_give_the_same_tiles(twin_parks, z):
    """ST_AsMVT and the Python encoder agree tile by tile: the same grids with the same
    properties and shapes (within the snapping to whole units), none of them degenerate, so
    the map costs the browser the same on either backend."""
    with session_scope(twin_parks["postgis"]) as session:
        coords = _tiles_over_park(session, z)
    # deep zooms: a band across the park, with the tiles cut by its edge
    coords = coords if z < 18 else coords[:: max(1, len(coords) // 40)]
    built = {}
    for name, engine in twin_parks.items():
        with session_scope(engine) as session:
            park = get_park(session, "PV001")
            built[name] = [decode(tiles.grid_tile(session, park, *c, today=TODAY))
                           for c in coords]
    inner = shapely.box(0, 0, EXTENT, EXTENT)
    shown = 0
    for c, sl, pg in zip(coords, built["spatialite"], built["postgis"]):
        for features in (sl, pg):
            for code, (_, g) in features.items():
                assert g.geom_type in ("Polygon", "MultiPolygon"), (c, code)
                assert g.is_valid and not g.is_empty, (c, code)
                # whole units: a ring that kept its shape has at least half a unit²
                assert all(shapely.area(p) >= 0.5 for p in shapely.get_parts(g)), (c, code)
        # PostGIS clips with Wagyu, which rounds the points where an edge leaves the buffer
        # its own way: a sliver of a unit or two in the buffer may be in one tile only.
        seen = {code for code, (_, g) in {**sl, **pg}.items() if g.intersects(inner)}
        assert seen <= set(sl) & set(pg), c
        assert set(sl) ^ set(pg) <= {code for code, (_, g) in {**sl, **pg}.items()
                                     if g.area <= 8 and not g.intersects(inner)}, c
        for code in set(sl) & set(pg):
            (props, geom), (other_props, other) = sl[code], pg[code]
            assert props == other_props, (c, code)
            # the same shape, snapped to whole units either side of the clipping
            assert geom.symmetric_difference(other).area <= 0.5 * geom.length, (c, code)
        shown += len(seen)
    assert shown > 0
