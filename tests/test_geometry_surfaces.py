"""The same bad geometry gets the same answer on every surface that takes one.

* JSON: one table of bad geometries (RELIABILITY.md §2 items 2-18) is sent
  through every geometry member of the API (a hazard's and a visit's
  ``location``, the edit API's ``geometry`` for draw and reshape, the split
  ``line``), on both backends.  Each is 422 with the table's ``error.code``,
  names the member (``details.field``, and a JSON pointer under it) and
  changes nothing stored; a clockwise ring is accepted.  All members share
  :func:`geodata.geometry.geometry_member`.
* Files: the invalid shapes tests/test_import_geometry.py does not walk
  (bow-tie, spike, hole outside shell, lat 95, lat/lon swapped) in GeoJSON,
  GeoPackage, zipped Shapefile, CSV WKT and XLSX, through ``import grids``
  (new park, ``--diff``, ``--apply``), ``check --grids-file``, ``import
  parks`` and ``check --park-file``: exit 2 naming the file, feature and
  field, nothing stored changed; a clockwise file is stored counter-clockwise.
"""

import copy
import re
import json
import uuid

import pytest
import shapely
import sqlalchemy as sa

from geodata.models import Grid, Park
from tests.conftest import stored_snapshot
from tests.test_bad_input import ALTERNATIVES, _bodies
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)

#: ``(path, member, kind)`` of every JSON geometry member.
MEMBERS = [("/api/parks/{code}/hazards", "location", "point"),
           ("/api/parks/{code}/visits", "location", "point"),
           ("/api/parks/{code}/edits/draw", "geometry", "area"),
           ("/api/parks/{code}/edits/reshape", "geometry", "area"),
           ("/api/parks/{code}/edits/split", "line", "line")]


def _positions(coords, f):
    """``coords`` with every position ``[x, y]`` replaced by ``f([x, y])``."""
    if coords and not isinstance(coords[0], list):
        return f(coords)
    return [_positions(c, f) for c in coords]


def _first(coords):
    while isinstance(coords[0], list):
        coords = coords[0]
    return coords


def _with_first(geom, value):
    """``geom`` with its first number replaced by ``value``."""
    out = copy.deepcopy(geom)
    _first(out["coordinates"])[0] = value
    return out


def _moved(geom, f):
    return {**geom, "coordinates": _positions(geom["coordinates"], f)}


def _box(geom):
    (x0, y0), (x1, y1) = (shapely.geometry.shape(geom).bounds[:2],
                          shapely.geometry.shape(geom).bounds[2:])
    return x0, y0, x1, y1


def _polygon(*rings):
    return {"type": "Polygon", "coordinates": [list(map(list, r)) for r in rings]}


def _bowtie(g):
    x0, y0, x1, y1 = _box(g)
    return _polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])


def _spike(g):
    x0, y0, x1, y1 = _box(g)
    return _polygon([(x0, y0), (x1, y0), ((x0 + x1) / 2, y0), (x0, y0)])


def _hole_outside(g):
    x0, y0, x1, y1 = _box(g)
    w = x1 - x0
    return _polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)],
                    [(x1 + w, y0), (x1 + 2 * w, y0), (x1 + 2 * w, y1), (x1 + w, y0)])


def _dense(g, kind):
    """More than the API's cap of 20 000 vertices."""
    shape = shapely.geometry.shape(g)
    step = shape.length / 20_500
    return shapely.geometry.mapping(shapely.segmentize(shape, step))


def _other_type(g, kind):
    if kind == "point":
        x, y = g["coordinates"]
        return _polygon([(x, y), (x + 1e-4, y), (x + 1e-4, y + 1e-4), (x, y)])
    return {"type": "Point", "coordinates": _first(g["coordinates"])}


def _ring(g, f):
    return {**g, "coordinates": [f(g["coordinates"][0])] + g["coordinates"][1:]}


#: name: (make(valid geometry, kind) -> bad geometry, or None where the kind cannot say it,
#: the error code every member answers).
CASES = {
    "NaN": (lambda g, k: _with_first(g, float("nan")), "invalid_coordinate"),
    "Infinity": (lambda g, k: _with_first(g, float("-inf")), "invalid_coordinate"),
    "no type": (lambda g, k: {"coordinates": g["coordinates"]}, "invalid_geojson"),
    "misspelt type": (lambda g, k: {**g, "type": g["type"][:2] + g["type"][3:]},
                      "invalid_geojson"),
    "string coordinates": (lambda g, k: _with_first(g, str(_first(g["coordinates"])[0])),
                           "invalid_geojson"),
    "extra nesting": (lambda g, k: {**g, "coordinates": [g["coordinates"]]}, "invalid_geojson"),
    "not an object": (lambda g, k: json.dumps(g), "invalid_geojson"),
    "wrong type": (_other_type, "wrong_geometry_type"),
    "empty coordinates": (lambda g, k: {**g, "coordinates": []}, "empty_geometry"),
    "null": (lambda g, k: None, "empty_geometry"),
    "GeometryCollection": (lambda g, k: {"type": "GeometryCollection", "geometries": [g]},
                           "unsupported_geometry_type"),
    "empty GeometryCollection": (lambda g, k: {"type": "GeometryCollection", "geometries": []},
                                 "unsupported_geometry_type"),
    "3D": (lambda g, k: _moved(g, lambda p: p + [10.0]), "unsupported_dimension"),
    "lon 200": (lambda g, k: _moved(g, lambda p: [p[0] + 200, p[1]]),
                "coordinate_out_of_range"),
    "lat 95": (lambda g, k: _moved(g, lambda p: [p[0], p[1] + 61]), "coordinate_out_of_range"),
    # Too large to round to 6 decimals in NumPy (an overflow warning: a 500 before).
    "lon -1.7e305": (lambda g, k: _moved(g, lambda p: [-1.7e305, p[1]]),
                     "coordinate_out_of_range"),
    "lat/lon swapped": (lambda g, k: _moved(g, lambda p: [p[1], p[0]]),
                        "coordinate_out_of_range"),
    "too many vertices": (lambda g, k: None if k == "point" else _dense(g, k),
                          "too_many_vertices"),
    "bow-tie": (lambda g, k: _bowtie(g) if k == "area" else None, "invalid_geometry"),
    "unclosed ring": (lambda g, k: _ring(g, lambda r: r[:-1]) if k == "area" else None,
                      "invalid_geometry"),
    "ring of 3 positions": (lambda g, k: _ring(g, lambda r: [r[0], r[1], r[0]])
                            if k == "area" else None, "invalid_geometry"),
    "zero-area spike": (lambda g, k: _spike(g) if k == "area" else None, "invalid_geometry"),
    "hole outside shell": (lambda g, k: _hole_outside(g) if k == "area" else None,
                           "invalid_geometry"),
    "line of 1 position": (lambda g, k: {**g, "coordinates": g["coordinates"][:1]}
                           if k == "line" else None, "invalid_geometry"),
}


def _body(bodies, path, member, value):
    body = {k: v for k, v in bodies[path][1].items() if k not in ALTERNATIVES.get(member, ())}
    body[member] = value
    if "client_id" in body:  # else each would be a replay of the first
        body["client_id"] = str(uuid.uuid4())
    return body


@pytest.mark.parametrize("path, member, kind", MEMBERS,
                         ids=[m[0].split("/")[-1] + "." + m[1] for m in MEMBERS])
def test_every_bad_geometry_gets_one_answer_in_every_member(api, engine, path,  # noqa: F811
                                                            member, kind):
    bodies, ids = _bodies(api)
    role, valid = bodies[path]
    url = path.format(**ids)
    good = valid[member]
    wrong = []
    before = stored_snapshot(engine)
    for case, (make, code) in CASES.items():
        bad = make(good, kind)
        if bad is None and case != "null":
            continue
        response = api.call("POST", url, role, json.dumps(_body(bodies, path, member, bad)))
        error = (response.json or {}).get("error") or {}
        details = error.get("details") or {}
        got = (response.status_code, error.get("code"), details.get("field"),
               (details.get("pointer") or f"/{member}").startswith(f"/{member}"))
        if got != (422, code, member, True):
            wrong.append((case, got, error.get("message")))
        if stored_snapshot(engine) != before:
            wrong.append((case, "changed what is stored"))
            before = stored_snapshot(engine)
    assert not wrong, wrong
    if kind == "area":  # RFC 7946: parsers SHOULD NOT reject a clockwise ring
        clockwise = _ring(good, lambda r: r[::-1])
        response = api.call("POST", url, role, json.dumps(_body(bodies, path, member, clockwise)))
        # the test park is tiled already: a drawn grid's shape is accepted, then finds no ground
        assert response.status_code in (200, 201) or (
            path.endswith("draw") and response.json["error"]["code"] == "empty_result"), \
            response.json


# --- files: the same shapes through every reader and every command that reads a file ---

def _ring_case(make):
    """A file case from ``make(ring)`` -> list of rings (lon/lat) of feature BAD."""
    return lambda ring: shapely.Polygon(make(ring)[0], make(ring)[1:])


def _box_of(ring):
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _file_bowtie(r):
    x0, y0, x1, y1 = _box_of(r)
    return [[(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)]]


def _file_spike(r):
    x0, y0, x1, y1 = _box_of(r)
    return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0), ((x0 + x1) / 2, y0 - (y1 - y0)),
             (x0, y0)]]


def _file_hole_outside(r):
    x0, y0, x1, y1 = _box_of(r)
    w = (x1 - x0) / 4
    return [r, [(x0 - 2 * w, y0), (x0 - w, y0), (x0 - w, y0 + w), (x0 - 2 * w, y0)]]


#: name: (make(ring) -> shapely geometry, reason pattern); each not walked by
#: tests/test_import_geometry.py, which has the structural cases.
FILE_CASES = {
    "bow-tie": (_ring_case(_file_bowtie), r"invalid geometry: Self-intersection\["),
    "spike": (_ring_case(_file_spike), r"invalid geometry: (Ring )?Self-intersection\["),
    "hole outside shell": (_ring_case(_file_hole_outside), r"invalid geometry: Hole lies "
                           r"outside shell\[|a counter-clockwise ring \(a hole\) lies outside"),
    "lat 95": (_ring_case(lambda r: [[(x, y + 61) for x, y in r]]),
               r"outside longitude/latitude range"),
    "lat/lon swapped": (_ring_case(lambda r: [[(y, x) for x, y in r]]),
                        r"outside longitude/latitude range.*lat/lon swapped"),
    "lon -1.7e305": (_ring_case(lambda r: [[(x - 1.7e305, y) for x, y in r]]),
                     r"outside longitude/latitude range"),
}
FILE_FORMATS = ("geojson", "gpkg", "zip", "csv", "xlsx")


def _write_file(tmp_path, fmt, name, codes, geoms):
    from tests.test_import_geometry import _write
    from tests.test_planner_files import workbook

    if fmt == "xlsx":
        def fill(book):
            book.active.append(["code", "wkt"])
            for code, geom in zip(codes, geoms):
                book.active.append([code, geom.wkt])
        return workbook(tmp_path / f"{name}.xlsx", fill)
    as_written = {"geojson": shapely.geometry.mapping, "csv": lambda g: g.wkt}.get(
        fmt, shapely.to_wkb)
    rows = [{"code": c} for c in codes]
    geometries = [json.loads(json.dumps(as_written(g))) if fmt == "geojson" else as_written(g)
                  for g in geoms]
    return _write(tmp_path, fmt, name, rows, geometries)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_every_bad_shape_gets_one_answer_from_every_file_command(runner, db_url, engine,
                                                                 tmp_path, fmt):
    from tests.test_import_geometry import BAD, _commands
    from tests.test_transfer import feature, grid_features, write_geojson

    box = shapely.Polygon(grid_features()[0]["geometry"]["coordinates"][0]).envelope
    whole = shapely.box(*shapely.union_all([shapely.geometry.shape(f["geometry"])
                                            for f in grid_features()]).bounds)
    assert runner("import", "parks", write_geojson(tmp_path / "parks.geojson", [
        feature(whole, code=c, name=c, division_code="411621") for c in ("T", "U")])
    ).exit_code == 0
    feats = grid_features()
    good_grids = write_geojson(tmp_path / "grids.geojson", feats)
    assert runner("import", "grids", good_grids, "--park", "T").exit_code == 0
    codes = [f["properties"]["code"] for f in feats]
    cells = [shapely.geometry.shape(f["geometry"]) for f in feats]
    wrong = []
    before = stored_snapshot(engine)
    for case, (make, pattern) in FILE_CASES.items():
        ring = shapely.get_coordinates(cells[BAD].exterior).tolist()
        bad = make(ring)
        grids = _write_file(tmp_path, fmt, f"grids_{case.replace('/', '_')}", codes,
                            [bad if i == BAD else c for i, c in enumerate(cells)])
        park = _write_file(tmp_path, fmt, f"park_{case.replace('/', '_')}", ["V", "W"],
                           [box, bad])
        expected = {}
        for args in _commands(db_url, grids):
            expected[tuple(args[2:])] = (grids, BAD)
        crs = ["--crs", "EPSG:4326"]
        expected[("import", "parks", str(park), *crs)] = (park, 1)
        expected[("check", "--park-file", str(park), "--grids-file", str(good_grids), *crs)] = (
            park, 1)
        for args, (path, index) in expected.items():
            result = runner(*args)
            # GDAL reads a shapefile's hole outside its shell as another part, without
            # saying which feature: the file is refused, by name
            at = "" if fmt == "zip" and case == "hole outside shell" else f"feature {index}, "
            line = rf"^error: {re.escape(str(path))}, {at}field '(geometry|wkt)': "
            if result.exit_code != 2 or not re.search(line + ".*" + pattern, result.stderr):
                wrong.append((case, args[:2], result.exit_code, result.stderr))
            if stored_snapshot(engine) != before:
                wrong.append((case, args[:2], "changed what is stored"))
                before = stored_snapshot(engine)
    assert not wrong, wrong
    # RFC 7946: a clockwise exterior ring is accepted, and stored counter-clockwise
    clockwise = _write_file(tmp_path, fmt, "clockwise", codes,
                            [shapely.Polygon(c.exterior.coords[::-1]) for c in cells])
    result = runner("import", "grids", clockwise, "--park", "U", "--crs", "EPSG:4326")
    assert result.exit_code == 0, result.stderr
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.ST_AsBinary(Grid.geom)).join(
            Park, Park.id == Grid.park_id).where(Park.code == "U")).scalars().all()
    rings = [p.exterior for p in shapely.get_parts(shapely.from_wkb(stored))]
    assert len(rings) == len(cells) and all(r.is_ccw for r in rings)
