"""Conditional reads against writers outside the service (QGIS, raw SQL), on every ETag route.

Only gridmap's services bump versions; QGIS editing the tables directly
changes a grid's geometry or name, an enterprise's name, without them.  So
for every GET the OpenAPI document declares ``If-None-Match`` on (a new
route must be listed in :data:`RAW`): GET, change what it shows by one raw
``UPDATE`` (as QGIS does), GET with the ETag held: not 304, and the new
answer shows the change.  The converse: a raw change of something the
answer does not show keeps the 304.
"""

import math

import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from tests.conftest import metric_box
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from webmap.api import openapi_document

#: A firm of the fixture's park, and a tile (z 15) holding its grids.
FIRM = make_credit_code("411621", 1)
Z = 15


def _tile():
    centre = metric_box(0, 0, 1000, 1000).centroid
    n = 2 ** Z
    x = int((centre.x + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(centre.y))) / math.pi) / 2 * n)
    return {"z": Z, "x": x, "y": y}


SHRUNK = ("UPDATE grids SET geom = ST_Multi(ST_GeomFromText(:wkt, 4326)) WHERE code = 'T-001'",
          {"wkt": metric_box(0, 500, 300, 1000).wkt})
RENAMED = ("UPDATE grids SET name = '外部改名' WHERE code = :code", {})

#: path → (raw change of what it shows and its parameters, or None when the answer shows only
#: the services' own records; how the new answer shows the change).
RAW = {
    "/api/hazards/{hazard_id}": ((RENAMED[0], {"code": "T-004"}),
                                 lambda r: r.json["grid"]["name"] == "外部改名"),
    "/api/requests/{request_id}": (
        ("UPDATE enterprises SET name = '外部改名企业' WHERE credit_code = :firm",
         {"firm": FIRM}), lambda r: r.json["enterprise"]["name"] == "外部改名企业"),
    "/api/parks/{code}/edits/state": (
        (RENAMED[0], {"code": "T-001"}),
        lambda r: {f["id"]: f["properties"]["name"]
                   for f in r.json["grids"]["features"]}["T-001"] == "外部改名"),
    "/api/parks/{code}/coverage": (SHRUNK, lambda r: any(
        f["properties"]["problem"] == "gap" for f in r.json["features"])),
    "/api/parks/{code}/tiles/grids/{z}/{x}/{y}.mvt": (SHRUNK, lambda r: r.data != b""),
    # The same tile, renamed: its name property (the SpatiaLite tile's cached layer keeps
    # names; they are read with the tile).
    "/api/parks/{code}/tiles/grids/{z}/{x}/{y}.mvt?name": (
        (RENAMED[0], {"code": "T-001"}), lambda r: "外部改名".encode() in r.data),
    # Its own edit records only: grid_edits, which no outside writer keeps.
    "/api/parks/{code}/edits": (None, None),
}
#: A raw change none of the answers shows (the park's name).
UNRELATED = ("UPDATE parks SET name = '外部改名园区' WHERE code = 'T'", {})
#: Not in the walk: a photo's ETag is the digest of its stored bytes, which nobody rewrites.
CONTENT_ADDRESSED = {"/api/photos/{photo_id}", "/api/photos/{photo_id}/thumbnail"}


def _conditional_reads():
    return {path for path, operations in openapi_document()["paths"].items()
            if any(p["in"] == "header" and p["name"] == "If-None-Match"
                   for p in operations.get("get", {}).get("parameters", ()))}


def test_every_conditional_read_is_walked():
    assert _conditional_reads() - CONTENT_ADDRESSED == {p.split("?")[0] for p in RAW}


def _raw(engine, change):
    sql, params = change
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _ids(api):  # noqa: F811
    hazard = api.create().json
    request = api.call("POST", "/api/parks/T/requests", "admin", {
        "enterprise": FIRM, "category": "用地", "description": "用地问题",
        "source": "phone"}).json
    return {"code": "T", "hazard_id": hazard["id"], "request_id": request["id"], **_tile()}


@pytest.mark.parametrize("path", sorted(RAW))
def test_a_raw_change_of_what_a_read_shows_is_never_a_304(api, engine, path):  # noqa: F811
    url = path.split("?")[0].format(**_ids(api))
    first = api.call("GET", url, "admin")
    assert first.status_code == 200, (path, first.data[:200])
    etag = first.headers["ETag"]
    held = {"If-None-Match": etag}
    assert api.call("GET", url, "admin", headers=held).status_code == 304, path
    _raw(engine, UNRELATED)
    again = api.call("GET", url, "admin", headers=held)
    assert again.status_code == 304 and again.headers["ETag"] == etag, path
    change, shows = RAW[path]
    if change is None:
        # what other writers change is not shown: a grid renamed keeps the history's 304
        _raw(engine, (RENAMED[0], {"code": "T-001"}))
        assert api.call("GET", url, "admin", headers=held).status_code == 304, path
        return
    _raw(engine, change)
    after = api.call("GET", url, "admin", headers=held)
    assert after.status_code == 200 and after.headers["ETag"] != etag, path
    assert shows(after), (path, after.data[:300])
    # and the new tag is current again
    assert api.call("GET", url, "admin",
                    headers={"If-None-Match": after.headers["ETag"]}).status_code == 304, path


def test_a_read_etag_is_still_the_if_match_of_its_writes(api, engine):  # noqa: F811
    ids = _ids(api)
    read = api.call("GET", f"/api/hazards/{ids['hazard_id']}", "inspector")
    _raw(engine, (RENAMED[0], {"code": "T-004"}))
    # The hazard itself did not move: the tag read before the rename still locks its version.
    moved = api.call("POST", f"/api/hazards/{ids['hazard_id']}/transitions", "inspector",
                     {"to": "rectifying", "deadline": "2099-01-01"},
                     headers={"If-Match": read.headers["ETag"]})
    assert moved.status_code == 200, moved.json
    stale = api.call("POST", f"/api/hazards/{ids['hazard_id']}/transitions", "inspector",
                     {"to": "rectifying"}, headers={"If-Match": read.headers["ETag"]})
    assert (stale.status_code, stale.json["error"]["code"]) == (412, "precondition_failed")


@pytest.mark.parametrize("url, shows", [
    ("/api/parks/T/grids?level=1",
     lambda r: {f["id"]: f["properties"]["name"] for f in r.json["features"]}["T-001"]),
    ("/api/parks/T/search?q=外部改名",
     lambda r: [g["code"] for g in r.json if g["kind"] == "grid"]),
])
def test_reads_of_the_cached_grid_layer_show_a_raw_rename(api, engine, url, shows):  # noqa: F811
    """Reads without an ETag show a raw rename at once: the grid layer takes its shapes from
    the process's cached layer (keyed on the coverage stamp, which a rename does not renew)
    and its names from the rows; search reads the rows."""
    before = api.call("GET", url, "admin")
    assert before.status_code == 200, before.data[:200]
    _raw(engine, (RENAMED[0], {"code": "T-001"}))
    after = api.call("GET", url, "admin")
    assert after.status_code == 200
    assert shows(after) in ("外部改名", ["T-001"]), (url, after.data[:300])
    assert shows(before) != shows(after)
