"""Degenerate geometries and oversized files, refused by every reader before GEOS sees them.

Each degenerate case is written in every format that can express it
(GeoJSON, GeoPackage, zipped Shapefile, CSV WKT) and given to every command
that reads a grid file: ``import grids``, ``import grids --diff``,
``import grids --apply`` and ``check --grids-file``.  Each must exit 2 with
``FILE, feature N, field 'geometry': reason`` and change nothing stored.
Cases that segfaulted GEOS (an EMPTY interior ring or part reaching
``equals``) run in a child process, so a crash fails the test instead of
killing pytest.
"""

import json
import os
import re
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pyogrio
import pytest
import shapely
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.errors import ValidationError
from geodata.models import Grid, Park
from geodata.services.transfer import import_file
from geodata.storage import begin_write, make_engine, make_session_factory, session_scope
from tests.conftest import metric_box, metric_point, stored_snapshot
from tests.test_transfer import feature, grid_features, write_geojson

BAD = 2  # the feature made degenerate in every file


def _wkb_polygon(rings):
    out = struct.pack("<BII", 1, 3, len(rings))
    for ring in rings:
        out += struct.pack("<I", len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    return out


def _wkb_multipolygon(polygons):
    return struct.pack("<BII", 1, 6, len(polygons)) + b"".join(map(_wkb_polygon, polygons))


def _wkt_ring(ring):
    return "(" + ", ".join(f"{x!r} {y!r}" for x, y in ring) + ")"


# Each case turns the exterior ring of feature BAD (a list of [lon, lat]) into a
# degenerate geometry per format: GeoJSON geometry dict, raw WKB (GeoPackage and
# Shapefile), WKT text (CSV); None where the format cannot express it.
def _empty_ring(r):
    return ({"type": "Polygon", "coordinates": [r, []]}, _wkb_polygon([r, []]),
            f"POLYGON ({_wkt_ring(r)}, EMPTY)", None)


def _empty_part(r):
    return ({"type": "MultiPolygon", "coordinates": [[r], []]},
            _wkb_multipolygon([[r], []]), f"MULTIPOLYGON (({_wkt_ring(r)}), EMPTY)", None)


def _short_ring(r):
    tri = [r[0], r[10], r[0]]
    return ({"type": "Polygon", "coordinates": [tri]}, _wkb_polygon([tri]),
            f"POLYGON ({_wkt_ring(tri)})", _wkb_polygon([tri]))


def _two_point_ring(r):
    two = [r[0], r[0]]
    return ({"type": "Polygon", "coordinates": [two]}, _wkb_polygon([two]),
            f"POLYGON ({_wkt_ring(two)})", _wkb_polygon([two]))


def _unclosed(r):
    return ({"type": "Polygon", "coordinates": [r[:-1]]}, _wkb_polygon([r[:-1]]),
            f"POLYGON ({_wkt_ring(r[:-1])})", _wkb_polygon([r[:-1]]))


def _nan(r):
    bad = [r[0], [float("nan"), r[1][1]]] + r[2:]  # json.dumps writes NaN as it is
    return ({"type": "Polygon", "coordinates": [bad]}, _wkb_polygon([bad]),
            f"POLYGON ({_wkt_ring(bad)})", None)


def _out_of_range(r):
    far = [[x + 200, y] for x, y in r]
    return ({"type": "Polygon", "coordinates": [far]}, _wkb_polygon([far]),
            f"POLYGON ({_wkt_ring(far)})", _wkb_polygon([far]))


def _collection(r):
    geom = shapely.GeometryCollection([shapely.Polygon(r), shapely.Point(r[0])])
    return ({"type": "GeometryCollection", "geometries": [
        {"type": "Polygon", "coordinates": [r]}, {"type": "Point", "coordinates": r[0]}]},
        shapely.to_wkb(geom), geom.wkt, None)


def _empty(r):
    return ({"type": "Polygon", "coordinates": []}, shapely.to_wkb(shapely.Polygon()),
            "POLYGON EMPTY", None)


def _point(r):
    return ({"type": "Point", "coordinates": r[0]}, shapely.to_wkb(shapely.Point(r[0])),
            f"POINT ({r[0][0]!r} {r[0][1]!r})", None)


def _many_vertices(r):
    dense = shapely.segmentize(shapely.Polygon(r), 1e-5)
    coords = shapely.get_coordinates(dense).tolist()
    return ({"type": "Polygon", "coordinates": [coords]}, _wkb_polygon([coords]),
            dense.wkt, _wkb_polygon([coords]))


MAX_VERTICES = 60  # above the 41 vertices of a test cell, below a segmentized one
CASES = {  # name: (maker, reason pattern, runs in a child process)
    "empty_ring": (_empty_ring, r"interior ring 1 is empty|ring /coordinates/1 has 0 positions",
                   True),
    "empty_part": (_empty_part, r"part 1 is empty|polygon /coordinates/1 has no rings", True),
    "short_ring": (_short_ring, r"ring needs at least 4", False),
    "two_point_ring": (_two_point_ring, r"ring needs at least 4|cannot be read \(.*found 2|"
                       r"not valid WKT", False),
    "unclosed": (_unclosed, r"is not closed|cannot be read \(.*closed linestring|not valid WKT",
                 False),
    "nan": (_nan, r"non-finite coordinate|NaN is not a valid coordinate", False),
    "out_of_range": (_out_of_range, r"coordinates outside longitude/latitude range", False),
    "collection": (_collection, r"GeometryCollection is not supported", False),
    "empty": (_empty, r"geometry is empty|geometry has no coordinates", False),
    "point": (_point, r"Point is not accepted for grids", False),
    "many_vertices": (_many_vertices, rf"\d+ vertices exceed the cap of {MAX_VERTICES}", False),
}
FORMATS = ("geojson", "gpkg", "zip", "csv")
_SLOT = {"geojson": 0, "gpkg": 1, "csv": 2, "zip": 3}  # where each maker puts a format


def _expressible():
    """(case, format) pairs the format can express, found by running each maker once."""
    ring = shapely.get_coordinates(metric_box(0, 0, 500, 500)).tolist()
    return [pytest.param(case, fmt, id=f"{case}-{fmt}") for case, (maker, _, _) in CASES.items()
            for fmt in FORMATS if maker(ring)[_SLOT[fmt]] is not None]


def _write(tmp_path, fmt, name, rows, geometries, shape_type="Polygon"):
    """Write ``rows`` (property dicts) with per-format ``geometries`` to ``name.fmt``."""
    path = tmp_path / f"{name}.{fmt}"
    codes = np.array([r["code"] for r in rows], dtype=object)
    if fmt == "geojson":
        feats = [{"type": "Feature", "properties": r, "geometry": g}
                 for r, g in zip(rows, geometries)]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}),
                        encoding="utf-8")
    elif fmt == "csv":
        lines = ["code,wkt"] + [f'{r["code"]},"{g}"' for r, g in zip(rows, geometries)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "gpkg":
        pyogrio.raw.write(path, np.array(geometries, dtype=object), [codes], ["code"],
                          driver="GPKG", geometry_type="Unknown", crs="EPSG:4326")
    else:
        folder = tmp_path / name
        folder.mkdir()
        pyogrio.raw.write(folder / "cells.shp", np.array(geometries, dtype=object), [codes],
                          ["code"], driver="ESRI Shapefile", geometry_type=shape_type,
                          crs="EPSG:4326")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in folder.iterdir():
                archive.write(part, part.name)
    return path


def _bad_grid_file(tmp_path, case, fmt):
    """The park's four grid cells, feature BAD made degenerate; None if ``fmt`` cannot say it."""
    feats = grid_features()
    rows = [{"code": f["properties"]["code"]} for f in feats]
    ring = feats[BAD]["geometry"]["coordinates"][0]
    bad = CASES[case][0](ring)[_SLOT[fmt]]
    if bad is None:
        return None
    good = {"geojson": lambda g: g, "gpkg": lambda g: shapely.to_wkb(shapely.geometry.shape(g)),
            "zip": lambda g: shapely.to_wkb(shapely.geometry.shape(g)),
            "csv": lambda g: shapely.geometry.shape(g).wkt}[fmt]
    geometries = [bad if i == BAD else good(f["geometry"]) for i, f in enumerate(feats)]
    return _write(tmp_path, fmt, f"{case}_{fmt}", rows, geometries)


@pytest.fixture
def parks(runner, tmp_path, monkeypatch):
    """Park T with four grids, and park U (same ground) with none; then a low vertex cap."""
    box = metric_box(0, 0, 1000, 1000)
    path = write_geojson(tmp_path / "parks.geojson", [
        feature(box, code="T", name="测试园区", division_code="411621"),
        feature(box, code="U", name="空园区", division_code="411621")])
    assert runner("import", "parks", path).exit_code == 0
    grids = write_geojson(tmp_path / "grids.geojson", grid_features())
    assert runner("import", "grids", grids, "--park", "T").exit_code == 0
    monkeypatch.setenv("GRIDMAP_MAX_VERTICES", str(MAX_VERTICES))
    return tmp_path


def _commands(db_url, path):
    """Every command that reads a grid file (CSV WKT declares no CRS: say it)."""
    crs = ["--crs", "EPSG:4326"]
    return [["--db", db_url, "import", "grids", str(path), "--park", "U", *crs],
            ["--db", db_url, "import", "grids", str(path), "--park", "T", "--diff", *crs],
            ["--db", db_url, "import", "grids", str(path), "--park", "T", "--apply",
             "--actor", "tester", *crs],
            ["--db", db_url, "check", "--grids-file", str(path), *crs]]


# Runs CLI commands in one child process and prints one JSON line per command,
# flushed, so a segfault shows which command it hit.
_CHILD = """
import json, sys
from click.testing import CliRunner
from geodata.cli import main
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(main, args)
    print(json.dumps({"args": args, "exit": result.exit_code, "stderr": result.stderr,
                      "exception": repr(result.exception)}), flush=True)
"""


def _run_child(commands):
    env = dict(os.environ, GRIDMAP_MAX_VERTICES=str(MAX_VERTICES))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(commands)],
                          capture_output=True, text=True, env=env, cwd=os.getcwd())
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (f"child exited {proc.returncode} after {len(results)} of "
                                  f"{len(commands)} commands", proc.stderr[-2000:])
    return results


def _assert_refused(results, path, pattern):
    expected = re.compile(rf"^error: {re.escape(str(path))}, feature {BAD}, "
                          rf"field '(geometry|wkt)': .*({pattern})")
    for r in results:
        assert r["exit"] == 2, r
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and expected.search(lines[0]), r
        assert "Traceback" not in r["stderr"]


@pytest.mark.parametrize("case, fmt", _expressible())
def test_degenerate_grid_geometry_is_refused_by_every_reader(parks, runner, db_url, engine,
                                                             case, fmt):
    path = _bad_grid_file(parks, case, fmt)
    before = stored_snapshot(engine)
    commands = _commands(db_url, path)
    if CASES[case][2]:
        results = _run_child(commands)
    else:
        results = []
        for args in commands:
            result = runner(*args[2:])
            results.append({"args": args, "exit": result.exit_code, "stderr": result.stderr})
    _assert_refused(results, path, CASES[case][1])
    assert stored_snapshot(engine) == before


def _site_ring():
    return shapely.get_coordinates(metric_box(100, 100, 200, 200)).tolist()


def _hazard_point():
    return list(metric_point(150, 150).coords[0])


def _multipoint_empty(p):
    geom = shapely.from_wkt(f"MULTIPOINT (({p[0]!r} {p[1]!r}), EMPTY)")
    return ({"type": "MultiPoint", "coordinates": [p, []]}, shapely.to_wkb(geom), geom.wkt)


def _nan_point(p):
    wkb = struct.pack("<BIdd", 1, 1, float("nan"), p[1])
    return ({"type": "Point", "coordinates": [float("nan"), p[1]]}, wkb,
            f"POINT (nan {p[1]!r})")


# (layer, case, maker of (GeoJSON, WKB, WKT) from the good geometry's coordinates, pattern)
LAYER_CASES = [
    ("enterprises", "empty_ring", lambda: _empty_ring(_site_ring())[:3],
     r"interior ring 1 is empty|ring /coordinates/1 has 0 positions"),
    ("enterprises", "empty_part", lambda: _empty_part(_site_ring())[:3],
     r"part 1 is empty|polygon /coordinates/1 has no rings"),
    ("hazards", "multipoint_empty", lambda: _multipoint_empty(_hazard_point()),
     r"part 1 is empty|position at /coordinates/1 must be"),
    ("hazards", "nan", lambda: _nan_point(_hazard_point()),
     r"non-finite coordinate|NaN is not a valid coordinate"),
]


def _layer_file(tmp_path, layer, case, fmt, bad):
    """Two features of ``layer``; feature 1 holds ``bad`` (GeoJSON, WKB, WKT)."""
    if layer == "enterprises":
        good = shapely.Polygon(_site_ring())
        rows = [{"code": "x", "name": "甲", "credit_code": make_credit_code("411621", 1)},
                {"code": "y", "name": "乙", "credit_code": make_credit_code("411621", 2)}]
    else:
        good = shapely.Point(_hazard_point())
        rows = [{"code": "YH-1", "category": "用电安全"}, {"code": "YH-2", "category": "消防"}]
    slot = {"geojson": 0, "gpkg": 1, "csv": 2}[fmt]
    first = {"geojson": json.loads(shapely.to_geojson(good)), "gpkg": shapely.to_wkb(good),
             "csv": good.wkt}[fmt]
    path = tmp_path / f"{layer}_{case}.{fmt}"
    if fmt == "geojson":
        write_geojson(path, [{"type": "Feature", "properties": r, "geometry": g}
                             for r, g in zip(rows, [first, bad[slot]])])
    elif fmt == "csv":
        names = list(rows[0])
        lines = [",".join(names + ["wkt"])] + [
            ",".join([str(r[n]) for n in names] + [f'"{g}"']) for r, g in zip(rows, [first,
                                                                                     bad[slot]])]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        names = list(rows[0])
        pyogrio.raw.write(path, np.array([first, bad[slot]], dtype=object),
                          [np.array([r[n] for r in rows], dtype=object) for n in names], names,
                          driver="GPKG", geometry_type="Unknown", crs="EPSG:4326")
    return path


def test_degenerate_sites_and_hazards_are_refused(parks, db_url, engine):
    """Enterprise and hazard imports, in a child process (GEOS crashed on EMPTY rings)."""
    before = stored_snapshot(engine)
    cases = []
    for layer, case, maker, pattern in LAYER_CASES:
        for fmt in ("geojson", "gpkg", "csv"):
            path = _layer_file(parks, layer, case, fmt, maker())
            cases.append((path, pattern, ["--db", db_url, "import", layer, str(path),
                                          "--park", "T", "--crs", "EPSG:4326"]))
    results = _run_child([args for _, _, args in cases])
    for (path, pattern, _), result in zip(cases, results):
        expected = re.compile(rf"^error: {re.escape(str(path))}, feature 1, "
                              rf"field 'geometry': .*({pattern})")
        assert result["exit"] == 2 and expected.search(result["stderr"]), result
        assert len(result["stderr"].strip().splitlines()) == 1, result
    assert stored_snapshot(engine) == before


def _points_file(tmp_path, fmt, n):
    """``n`` hazard points in ``fmt`` (csv: WKT; lonlat.csv: lon/lat columns)."""
    points = [metric_point(5 + i % 90 * 10, 5 + i // 90 * 10) for i in range(n)]
    rows = [{"code": f"YH-{i}", "category": "消防"} for i in range(n)]
    if fmt == "lonlat":
        path = tmp_path / "points_lonlat.csv"
        path.write_text("code,category,lon,lat\n" + "".join(
            f"{r['code']},{r['category']},{p.x!r},{p.y!r}\n" for r, p in zip(rows, points)),
            encoding="utf-8")
        return path
    wkb = [shapely.to_wkb(p) for p in points]
    geometries = {"geojson": [json.loads(shapely.to_geojson(p)) for p in points],
                  "csv": [p.wkt for p in points]}.get(fmt, wkb)
    return _write(tmp_path, fmt, "points", rows, geometries, shape_type="Point")


def _refuse_reading(monkeypatch):
    """Make every step that builds features fail: a cap must refuse before them."""
    def fail(*args, **kwargs):
        raise AssertionError("the file was read although it is over a cap")

    import geodata.formats

    monkeypatch.setattr(geodata.formats.pyogrio, "read_dataframe", fail)
    monkeypatch.setattr(geodata.formats, "parse_json", fail)
    monkeypatch.setattr(geodata.formats.shapely, "from_wkt", fail)
    monkeypatch.setattr(geodata.formats.shapely, "points", fail)


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "zip", "csv", "lonlat"])
def test_feature_cap_is_enforced_before_reading(parks, runner, engine, monkeypatch, fmt):
    path = _points_file(parks, fmt, 150)
    before = stored_snapshot(engine)
    monkeypatch.setenv("GRIDMAP_MAX_FEATURES", "100")
    _refuse_reading(monkeypatch)
    result = runner("import", "hazards", path, "--park", "T", "--crs", "EPSG:4326")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: 150 features exceed the cap of 100 "
                                    "(GRIDMAP_MAX_FEATURES)"), result.stderr
    assert stored_snapshot(engine) == before


@pytest.mark.parametrize("fmt, message", [
    ("geojson", r"MB exceed the cap of 0.005 MB \(GRIDMAP_MAX_FILE_MB\)"),
    ("csv", r"MB exceed the cap of 0.005 MB \(GRIDMAP_MAX_FILE_MB\)"),
    ("zip", r"archive too large \(over 50 members or 0.005 MB uncompressed"),
])
def test_file_size_cap_is_enforced_before_reading(parks, runner, engine, monkeypatch, fmt,
                                                  message):
    path = _points_file(parks, fmt, 150)
    if fmt == "zip":
        assert path.stat().st_size < 0.005 * 2**20  # compressed under the cap, members over it
    before = stored_snapshot(engine)
    monkeypatch.setenv("GRIDMAP_MAX_FILE_MB", "0.005")
    _refuse_reading(monkeypatch)
    result = runner("import", "hazards", path, "--park", "T", "--crs", "EPSG:4326")
    assert result.exit_code == 2 and re.search(message, result.stderr), result.stderr
    assert stored_snapshot(engine) == before


def _bowtie_file(tmp_path):
    feats = grid_features()
    ring = feats[BAD]["geometry"]["coordinates"][0]
    feats[BAD]["geometry"]["coordinates"][0] = [ring[0], ring[20], ring[10], ring[30], ring[0]]
    return write_geojson(tmp_path / "bowtie.geojson", feats)


def _hold_write_lock(db_url):
    """Open a transaction holding what an import's write needs: SQLite's write lock, the
    parks' row locks on PostgreSQL.  Return its engine and session."""
    other = make_engine(db_url)
    session = make_session_factory(other)()
    begin_write(session)
    session.execute(sa.select(Park.id).with_for_update()).all()
    return other, session


def test_validation_needs_no_write_lock(parks, runner, db_url, engine, monkeypatch):
    """A bad file is refused while another writer holds the lock, instead of waiting on it."""
    monkeypatch.setenv("GRIDMAP_SQLITE_BUSY_TIMEOUT_S", "0.5")
    before = stored_snapshot(engine)
    other, session = _hold_write_lock(db_url)
    try:
        result = runner("import", "grids", _bowtie_file(parks), "--park", "U")
    finally:
        session.rollback()
        session.close()
        other.dispose()
    assert result.exit_code == 2
    assert f"feature {BAD}, field 'geometry': invalid geometry: Self-intersection" in \
        result.stderr, result.stderr
    assert stored_snapshot(engine) == before


def test_others_write_while_an_import_is_validated(parks, db_url, engine):
    """Between validation and writing, another writer commits; the import re-checks and refuses.

    The other writer uses no busy timeout, so it would fail at once if the
    paused import held SQLite's write lock.  It stores a grid in park U that
    overlaps the file's grids; the import's write transaction then sees it.
    """
    path = write_geojson(parks / "cells.geojson", grid_features())
    intruder = write_geojson(parks / "intruder.geojson", [
        feature(metric_box(100, 100, 200, 200), code="Z-001")])
    quick = make_engine(db_url, busy_timeout_s=0)
    paused = []

    def meanwhile():
        paused.append(stored_snapshot(engine))
        import_file(quick, "grids", intruder, park_code="U")

    try:
        with pytest.raises(ValidationError) as refused:
            import_file(engine, "grids", path, park_code="U", before_write=meanwhile)
    finally:
        quick.dispose()
    assert refused.value.code == "grid_overlap" and "Z-001" in refused.value.message
    assert len(paused) == 1
    with session_scope(engine) as session:
        codes = session.execute(sa.select(Grid.code)).scalars().all()
    assert sorted(codes) == ["T-001", "T-002", "T-003", "T-004", "Z-001"]


def test_edit_commands_refuse_degenerate_geometry(parks, db_url, engine):
    """``edit draw/reshape --geometry`` (WKT, GeoJSON or @FILE), in a child process."""
    ring = grid_features()[BAD]["geometry"]["coordinates"][0]
    geojson, _, wkt, _ = _empty_ring(ring)
    gpkg = _bad_grid_file(parks, "empty_ring", "gpkg")
    before = stored_snapshot(engine)
    edit = ["--db", db_url, "edit"]
    who = ["--park", "T", "--actor", "tester"]
    cases = [("--geometry", [*edit, "reshape", "T-003", "--geometry", wkt, *who]),
             ("--geometry", [*edit, "reshape", "T-003", "--geometry", json.dumps(geojson),
                             *who]),
             ("--geometry", [*edit, "draw", "--geometry", wkt, *who]),
             (str(gpkg), [*edit, "reshape", "T-003", "--geometry", f"@{gpkg}", *who])]
    results = _run_child([args for _, args in cases])
    for (source, _), result in zip(cases, results):
        assert result["exit"] == 2, result
        assert re.search(rf"^error: {re.escape(source)}(, feature \d+)?, field 'geometry': "
                         r"(interior ring 1 is empty|ring /coordinates/1 has 0 positions)",
                         result["stderr"]), result
    assert stored_snapshot(engine) == before


def _inline(ring, **extra):
    return json.dumps({"type": "Polygon", "coordinates": [ring], **extra})


INLINE_CASES = {
    "unclosed": (lambda r: _inline(r[:-1]), "is not closed"),
    "three_positions": (lambda r: _inline([r[0], r[1], r[0]]), "has 3 positions"),
    "string_coordinate": (lambda r: _inline([[str(r[0][0]), r[0][1]], *r[1:]]),
                          "must be a list of 2 or 3 numbers"),
    "nan": (lambda r: _inline(r).replace(str(r[1][0]), "NaN", 1), "NaN"),
    "empty": (lambda r: json.dumps({"type": "Polygon", "coordinates": []}), "no coordinates"),
    "collection": (lambda r: json.dumps({"type": "GeometryCollection", "geometries": [
        json.loads(_inline(r))]}), "GeometryCollection is not supported"),
    "crs": (lambda r: _inline(r, crs={"type": "name", "properties": {"name": "EPSG:3857"}}),
            "declares the CRS"),
    "feature_crs": (lambda r: json.dumps({
        "type": "Feature", "properties": {}, "geometry": json.loads(_inline(r)),
        "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}}), "declares the CRS"),
}


@pytest.mark.parametrize("case", sorted(INLINE_CASES))
def test_inline_geojson_of_edit_commands_is_read_strictly(parks, runner, engine, case):
    """``--geometry '{...}'`` goes through the file and API reader, not ``shapely.shape()``.

    shape() closed an unclosed ring and read ``"114.0"`` as a number; the
    drawn grid was stored.
    """
    ring = [list(p) for p in shapely.get_coordinates(metric_box(0, 0, 500, 500))]
    make, expect = INLINE_CASES[case]
    before = stored_snapshot(engine)
    result = runner("edit", "draw", "--park", "U", "--actor", "t", "--geometry", make(ring))
    assert result.exit_code == 2, result.output
    assert expect in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert stored_snapshot(engine) == before


@pytest.mark.parametrize("form", ["geojson", "wkt"])
def test_inline_z_is_dropped_with_a_warning(parks, runner, engine, form):
    box = metric_box(0, 0, 500, 500)
    ring = [[x, y, 7.0] for x, y in shapely.get_coordinates(box)]
    text = _inline(ring) if form == "geojson" else shapely.Polygon(ring).wkt
    result = runner("edit", "draw", "--park", "U", "--actor", "t", "--geometry", text)
    assert result.exit_code == 0, result.output
    assert "dropped Z" in result.stderr
    with session_scope(engine) as session:
        stored = session.execute(sa.select(sa.func.ST_AsBinary(Grid.geom)).join(
            Park, Grid.park_id == Park.id).where(Park.code == "U")).scalar_one()
    assert not shapely.has_z(shapely.from_wkb(bytes(stored)))
