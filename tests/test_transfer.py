"""Import and export through the CLI: formats, CRSs, and bad input that changes nothing."""

import json
import zipfile

import geopandas as gpd
import pytest
import shapely
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from tests.conftest import metric_box, metric_point, stored_snapshot

CELL = 500  # metres


def feature(geometry, **props):
    # Round-trip through JSON so coordinates are nested lists, editable in place.
    geo = geometry if isinstance(geometry, dict) else json.loads(shapely.to_geojson(geometry))
    return {"type": "Feature", "properties": props, "geometry": geo}


def write_geojson(path, features, **extra):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **extra},
                               ensure_ascii=False), encoding="utf-8")
    return path


def grid_features(n=2):
    """n x n cells of CELL metres tiling the test park, coded west→east, north→south."""
    feats = []
    for row in range(n):
        for col in range(n):
            y1 = (n - row) * CELL
            feats.append(feature(metric_box(col * CELL, y1 - CELL, (col + 1) * CELL, y1),
                                 code=f"T-{row * n + col + 1:03d}", name=f"第{row * n + col + 1}网格"))
    return feats


@pytest.fixture
def park_file(tmp_path):
    return write_geojson(tmp_path / "park.geojson", [feature(
        metric_box(0, 0, 2 * CELL, 2 * CELL), code="T", name="测试园区", division_code="411621")])


@pytest.fixture
def loaded(runner, park_file, tmp_path):
    """A park with four grids and two enterprises."""
    assert runner("import", "parks", park_file).exit_code == 0
    grids = write_geojson(tmp_path / "grids.geojson", grid_features())
    assert runner("import", "grids", grids, "--park", "T").exit_code == 0
    sites = write_geojson(tmp_path / "sites.geojson", [
        feature(metric_box(100, 100, 200, 200), name="甲公司",
                credit_code=make_credit_code("411621", 1)),
        feature(metric_point(150, 150), name="乙作坊", credit_code=make_credit_code("411621", 2),
                host_credit_code=make_credit_code("411621", 1), registered="false")])
    assert runner("import", "enterprises", sites, "--park", "T").exit_code == 0
    return tmp_path


def test_import_then_export_every_format_round_trips(runner, loaded, engine):
    for suffix in (".geojson", ".gpkg", ".zip", ".csv"):
        out = loaded / f"grids{suffix}"
        result = runner("export", "grids", out, "--park", "T")
        assert result.exit_code == 0, result.output
        if suffix == ".zip":
            assert {"grids.shp", "grids.prj", "grids.dbf"} <= set(zipfile.ZipFile(out).namelist())
        frame = gpd.read_file(out) if suffix != ".csv" else None
        if frame is not None:
            assert sorted(frame["code"]) == ["T-001", "T-002", "T-003", "T-004"]
            assert frame.crs.to_epsg() == 4326


def test_enterprise_grid_and_host_are_resolved(runner, loaded):
    out = loaded / "sites.gpkg"
    assert runner("export", "enterprises", out, "--park", "T").exit_code == 0
    frame = gpd.read_file(out).set_index("name")
    # (100..200, 100..200) m lies in the south-west cell, numbered third (rows north→south).
    assert frame.loc["甲公司", "grid_code"] == "T-003"
    assert frame.loc["乙作坊", "host_credit_code"] == make_credit_code("411621", 1)
    assert not frame.loc["乙作坊", "registered"]


def test_projected_input_is_transformed(runner, park_file, tmp_path):
    assert runner("import", "parks", park_file).exit_code == 0
    cells = gpd.GeoDataFrame.from_features(grid_features(), crs=4326).to_crs(3857)
    path = tmp_path / "grids3857.gpkg"
    cells.to_file(path)
    result = runner("import", "grids", path, "--park", "T")
    assert result.exit_code == 0, result.output
    out = tmp_path / "back.geojson"
    runner("export", "grids", out, "--park", "T")
    back = gpd.read_file(out).set_index("code").sort_index()
    original = gpd.GeoDataFrame.from_features(grid_features(), crs=4326).set_index("code")
    # Within 1 mm after 4326 → 3857 → 4326, measured in the park's metric CRS.
    assert back.to_crs(4547).geometry.hausdorff_distance(
        original.sort_index().to_crs(4547).geometry).max() < 1e-3


def test_legacy_crs_member_as_gdal_and_qgis_write_it(runner, park_file, tmp_path, engine):
    """GDAL, QGIS and geopandas name lon/lat as ``urn:ogc:def:crs:OGC:1.3:CRS84``."""
    assert runner("import", "parks", park_file).exit_code == 0
    cells = gpd.GeoDataFrame.from_features(grid_features(), crs=4326)
    path = tmp_path / "from_gdal.geojson"
    cells.iloc[:2].to_file(path)
    assert "urn:ogc:def:crs:OGC:1.3:CRS84" in path.read_text(encoding="utf-8")
    result = runner("import", "grids", path, "--park", "T")
    assert result.exit_code == 0, result.output
    # An EPSG URN in the legacy member is transformed like a declared CRS.
    doc = json.loads(cells.iloc[2:].to_crs(3857).to_json())
    doc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    result = runner("import", "grids", write_geojson(tmp_path / "urn.geojson", doc["features"],
                                                     crs=doc["crs"]), "--park", "T")
    assert result.exit_code == 0, result.output
    assert runner("check", "--park", "T").exit_code == 0
    before = stored_snapshot(engine)
    for member in ("EPSG:4326", {"type": "name"}, {"properties": {"name": 4326}},
                   {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::999999"}}):
        bad = write_geojson(tmp_path / "bad.geojson", grid_features()[:1], crs=member)
        result = runner("import", "grids", bad, "--park", "T")
        assert result.exit_code == 2 and "Traceback" not in result.output, member
        assert "crs" in result.output.lower(), result.output
    assert stored_snapshot(engine) == before


def test_csv_with_lonlat_columns_imports_hazards(runner, loaded):
    point = metric_point(150, 150)
    csv = loaded / "hazards.csv"
    csv.write_text("lon,lat,category,level,description,found_date,status\n"
                   f"{point.x},{point.y},消防安全,一般,灭火器过期,2025-03-01,整改\n",
                   encoding="utf-8")
    result = runner("import", "hazards", csv, "--park", "T")
    assert result.exit_code == 0, result.output
    out = loaded / "h.geojson"
    runner("export", "hazards", out, "--park", "T")
    frame = gpd.read_file(out)
    assert frame.loc[0, "status"] == "rectifying"
    assert frame.loc[0, "grid_code"] == "T-003"
    # Both 甲公司's parcel and its hidden unit 乙作坊 (a gate point) hold the point:
    # hidden units come first.
    assert frame.loc[0, "credit_code"] == make_credit_code("411621", 2)


def test_3d_geometry_is_accepted_with_a_warning(runner, park_file, tmp_path):
    assert runner("import", "parks", park_file).exit_code == 0
    feats = grid_features()
    ring = feats[0]["geometry"]["coordinates"][0]
    feats[0]["geometry"]["coordinates"][0] = [[x, y, 12.5] for x, y in ring]
    result = runner("import", "grids", write_geojson(tmp_path / "z.geojson", feats),
                    "--park", "T")
    assert result.exit_code == 0
    assert "dropped Z" in result.stderr


def test_dry_run_writes_nothing(runner, park_file, engine):
    before = stored_snapshot(engine)
    result = runner("import", "parks", park_file, "--dry-run")
    assert result.exit_code == 0 and "would import 1 parks" in result.output
    assert stored_snapshot(engine) == before


def _bad_files(tmp_path):
    good = grid_features()
    cases = {}

    def case(name, content, expect):
        path = tmp_path / name
        if isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        cases[name] = (path, expect)

    text = json.dumps({"type": "FeatureCollection", "features": good})
    case("truncated.geojson", text[: len(text) // 2], "not valid JSON")
    bowtie = [dict(good[0], geometry={"type": "Polygon", "coordinates": [[
        list(metric_point(0, 0).coords[0]), list(metric_point(500, 500).coords[0]),
        list(metric_point(500, 0).coords[0]), list(metric_point(0, 500).coords[0]),
        list(metric_point(0, 0).coords[0])]]})] + good[1:]
    case("bowtie.geojson", {"type": "FeatureCollection", "features": bowtie},
         "feature 0, field 'geometry': invalid geometry: Self-intersection")
    swapped = json.loads(text)
    swapped["features"][1]["geometry"]["coordinates"][0] = [
        [y, x] for x, y in swapped["features"][1]["geometry"]["coordinates"][0]]
    swapped["features"][1]["geometry"]["coordinates"][0] = [
        [x, y + 80] for x, y in swapped["features"][1]["geometry"]["coordinates"][0]]
    case("swapped.geojson", swapped, "feature 1, field 'geometry': coordinates outside")
    dup = json.loads(text)
    dup["features"][2]["properties"]["code"] = " t-001"
    case("duplicate.geojson", dup, "feature 2: grid code 'T-001' is already used by feature 0")
    case("empty.geojson", {"type": "FeatureCollection", "features": []}, "has no features")
    case("blank.geojson", "", "the file is empty")
    mixed = json.loads(text)
    mixed["features"][3]["geometry"] = {"type": "GeometryCollection", "geometries": [
        good[0]["geometry"], {"type": "Point", "coordinates": [114.39, 34.06]}]}
    case("collection.geojson", mixed, "feature 3, field 'geometry': GeometryCollection")
    typed = json.loads(text)
    typed["features"][1]["properties"]["level"] = "high"
    case("typed.geojson", typed, "feature 1, field 'level': must be a whole number")
    unclosed = json.loads(text)
    unclosed["features"][0]["geometry"]["coordinates"][0].pop()
    case("unclosed.geojson", unclosed, "is not closed")
    nan = text.replace(str(good[0]["geometry"]["coordinates"][0][0][0]), "NaN", 1)
    case("nan.geojson", nan, "NaN is not a valid coordinate")
    point = json.loads(text)
    point["features"][0]["geometry"] = {"type": "Point", "coordinates": [114.39, 34.06]}
    case("point.geojson", point, "Point is not accepted for grids")
    return cases


def _no_crs_shapefile(tmp_path):
    frame = gpd.GeoDataFrame.from_features(grid_features(), crs=4326).to_crs(4547)
    shp = tmp_path / "noprj" / "cells.shp"
    shp.parent.mkdir()
    frame.to_file(shp)
    shp.with_suffix(".prj").unlink()
    archive = tmp_path / "noprj.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in shp.parent.iterdir():
            zf.write(part, part.name)
    return archive


def test_bad_grid_files_are_refused_and_change_nothing(runner, park_file, tmp_path, engine):
    assert runner("import", "parks", park_file).exit_code == 0
    stored = grid_features()[:1]
    stored[0]["properties"]["code"] = "X-001"
    assert runner("import", "grids", write_geojson(tmp_path / "first.geojson", stored),
                  "--park", "T").exit_code == 0
    before = stored_snapshot(engine)
    cases = _bad_files(tmp_path)
    cases["noprj.zip"] = (_no_crs_shapefile(tmp_path), "declares no CRS; give one with --crs")
    for name, (path, expect) in cases.items():
        result = runner("import", "grids", path, "--park", "T")
        assert result.exit_code == 2, (name, result.output)
        assert expect in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, name
        assert stored_snapshot(engine) == before, name


def test_stored_and_retired_codes_are_never_reused(runner, park_file, tmp_path, engine):
    assert runner("import", "parks", park_file).exit_code == 0
    retired = grid_features()[:1]
    retired[0]["properties"]["active_to"] = "2024-12-31"
    assert runner("import", "grids", write_geojson(tmp_path / "old.geojson", retired),
                  "--park", "T").exit_code == 0
    before = stored_snapshot(engine)
    again = grid_features()[:1]
    again[0]["properties"]["code"] = "ｔ-001 "  # full-width, lower case, trailing blank
    result = runner("import", "grids", write_geojson(tmp_path / "again.geojson", again),
                    "--park", "T")
    assert result.exit_code == 2
    assert "grid code 'T-001' is already used by a stored grid" in result.stderr
    assert stored_snapshot(engine) == before


def test_no_crs_shapefile_imports_with_crs_option(runner, park_file, tmp_path):
    assert runner("import", "parks", park_file).exit_code == 0
    result = runner("import", "grids", _no_crs_shapefile(tmp_path), "--park", "T",
                    "--crs", "EPSG:4547")
    assert result.exit_code == 0, result.stderr
    assert "imported 4 grids" in result.output


def test_bad_credit_codes_are_all_named(runner, loaded, engine):
    before = stored_snapshot(engine)
    good = make_credit_code("411621", 10)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    path = write_geojson(loaded / "bad_sites.geojson", [
        feature(metric_point(600, 600), name="丙", credit_code=good),
        feature(metric_point(610, 600), name="丁", credit_code=bad),
        feature(metric_point(620, 600), name="戊", credit_code="123")])
    result = runner("import", "enterprises", path, "--park", "T")
    assert result.exit_code == 2
    assert "feature 1, field 'credit_code'" in result.stderr
    assert "failing features: 1, 2" in result.stderr
    assert stored_snapshot(engine) == before


def test_imported_ledger_numbers_take_the_found_year(runner, loaded, engine):
    point = metric_point(150, 150)
    csv = loaded / "years.csv"
    csv.write_text("lon,lat,category,found_date,code\n"
                   f"{point.x},{point.y},消防安全,2025-12-30,\n"
                   f"{point.x},{point.y},消防安全,2026-01-02,\n"
                   f"{point.x},{point.y},消防安全,2026-01-03,YH2026-0007\n"
                   f"{point.x},{point.y},消防安全,2026-01-04,\n", encoding="utf-8")
    result = runner("import", "hazards", csv, "--park", "T")
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        codes = conn.execute(sa.text("SELECT code FROM hazards ORDER BY id")).scalars().all()
    assert codes == ["YH2025-0001", "YH2026-0008", "YH2026-0007", "YH2026-0009"]


def test_ledger_number_from_another_year_is_refused(runner, loaded, engine):
    before = stored_snapshot(engine)
    point = metric_point(150, 150)
    csv = loaded / "wrong_year.csv"
    csv.write_text("lon,lat,category,found_date,code\n"
                   f"{point.x},{point.y},消防安全,2026-02-01,YH2025-0823\n", encoding="utf-8")
    result = runner("import", "hazards", csv, "--park", "T")
    assert result.exit_code == 2
    assert "YH2025-0823 is from 2025 but the hazard was found in 2026" in result.stderr
    assert stored_snapshot(engine) == before


def test_hazard_outside_park_is_refused(runner, loaded, engine):
    before = stored_snapshot(engine)
    path = write_geojson(loaded / "far.geojson", [
        feature(metric_point(150, 150), category="用电安全"),
        feature(metric_point(5000, 5000), category="用电安全")])
    result = runner("import", "hazards", path, "--park", "T")
    assert result.exit_code == 2
    assert "feature 1" in result.stderr and "outside park" in result.stderr
    assert stored_snapshot(engine) == before


@pytest.mark.parametrize("cells, message", [
    ([feature(metric_box(0, 0, 550, 500), code="A"), feature(metric_box(500, 0, 1000, 500),
                                                             code="B")],
     "grids A and B overlap by 25000.00 m²"),
    ([feature(metric_box(0, 0, 500, 500), code="A"),
      feature(metric_box(400, 0, 600, 100), code="A-01", parent_code="A")],
     "grid A-01 has 10000.00 m² outside its parent"),
    ([feature(metric_box(900, 900, 1100, 1000), code="A")],
     "grid A has 10000.00 m² outside its park"),
])
def test_overlapping_or_outside_grids_are_refused(runner, park_file, tmp_path, engine, cells,
                                                  message):
    assert runner("import", "parks", park_file).exit_code == 0
    before = stored_snapshot(engine)
    result = runner("import", "grids", write_geojson(tmp_path / "bad.geojson", cells),
                    "--park", "T")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert stored_snapshot(engine) == before
