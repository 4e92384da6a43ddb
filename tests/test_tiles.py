"""Vector tiles of the grid layer: ST_AsMVT on PostGIS, a clear 501 on SpatiaLite."""

import math
from datetime import date

import mapbox_vector_tile
import pytest

from tests.browser import demo_url  # noqa: F401
from webmap import create_app

TODAY = date(2025, 11, 30)


def tile_of(lon, lat, z):
    """Web-mercator tile numbers holding a point."""
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.fixture
def client(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True, "TODAY": TODAY})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


@pytest.fixture
def backend(demo_url):  # noqa: F811
    """The backend of the demo database under test."""
    return "postgis" if demo_url.startswith("postgresql") else "spatialite"


def test_tile_over_the_park_holds_its_grids(client, backend):
    x, y = tile_of(114.39, 34.06, 14)
    response = client.get(f"/api/parks/FGKFQ/tiles/grids/14/{x}/{y}.mvt")
    if backend == "spatialite":
        assert response.status_code == 501
        assert response.get_json()["error"]["code"] == "vector_tiles_unsupported"
        return
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.mapbox-vector-tile"
    layer = mapbox_vector_tile.decode(response.data)["grids"]
    codes = {f["properties"]["code"] for f in layer["features"]}
    assert codes and all(c.startswith("FGKFQ-") and c.count("-") == 1 for c in codes)
    # Open-hazard counts in the tile agree with the JSON summaries.
    summaries = client.get("/api/parks/FGKFQ/summaries").get_json()
    for feature in layer["features"]:
        props = feature["properties"]
        assert props["open_hazards"] == summaries[props["code"]]["open_hazards"]


def test_tile_far_away_is_empty(client, backend):
    response = client.get("/api/parks/FGKFQ/tiles/grids/14/0/0.mvt")
    if backend == "spatialite":
        assert response.status_code == 501
    else:
        assert response.status_code == 200 and response.data == b""


@pytest.mark.parametrize("path, status", [
    ("/api/parks/FGKFQ/tiles/grids/3/8/0.mvt", 422),
    ("/api/parks/FGKFQ/tiles/grids/23/0/0.mvt", 422),
    ("/api/parks/NOPE/tiles/grids/3/0/0.mvt", 404),
    ("/api/parks/FGKFQ/tiles/grids/3/0/0.mvt?level=x", 400),
    ("/api/parks/FGKFQ/tiles/grids/3/0/0.mvt?colour=red", 422),
])
def test_bad_tile_requests(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert "error" in response.get_json()
