"""Archives and containers that are unsafe, ambiguous or spoofed are refused before reading.

Each case goes through ``gridmap import parks`` on both backends: exit 2,
one line on stderr naming the reason, no traceback, nothing stored.
"""

import json
import zipfile

import geopandas as gpd
import pytest
import sqlalchemy as sa

from tests.conftest import metric_box, stored_snapshot, table_counts

PARK = {"code": "P", "name": "园区", "division_code": "411621"}


@pytest.fixture
def shapefile(tmp_path):
    """The sidecar files of a one-park shapefile (EPSG:4326, with .prj), by suffix."""
    folder = tmp_path / "shp"
    folder.mkdir()
    gpd.GeoDataFrame([{"code": "P", "name": "园区", "division": "411621"}],
                     geometry=[metric_box(0, 0, 500, 500)], crs=4326).to_file(folder / "p.shp")
    return {part.suffix: part.read_bytes() for part in folder.iterdir()}


def _zip(path, members, symlink=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            # ZipInfo keeps the name as given (ZipFile.write would strip a leading "/")
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return path


#: Member name patterns (``{}`` is ``p.shp`` etc.) and the expected error.
ARCHIVES = {
    "dotdot": ("../{}", "unsafe archive member"),
    "dotdot_inside": ("a/../../{}", "unsafe archive member"),
    "backslash_dotdot": ("..\\{}", "unsafe archive member"),
    "absolute": ("/tmp/{}", "unsafe archive member"),
    "absolute_backslash": ("\\tmp\\{}", "unsafe archive member"),
    "drive": ("C:/{}", "unsafe archive member"),
    "drive_relative": ("C:{}", "unsafe archive member"),
    "control": ("a\x01/{}", "unsafe archive member"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVES) + ["symlink", "members", "bomb",
                                                     "two_shp", "no_prj"])
def test_unsafe_or_oversized_archives_are_refused(runner, engine, tmp_path, shapefile, case):
    members = [(f"p{suffix}", data) for suffix, data in shapefile.items()]
    symlink = None
    if case in ARCHIVES:
        pattern, expect = ARCHIVES[case]
        members = [(pattern.format(name), data) for name, data in members]
    elif case == "symlink":
        symlink, expect = "q.txt", "unsafe archive member 'q.txt'"
    elif case == "members":
        members += [(f"pad{i}.txt", b"") for i in range(60)]
        expect = "archive too large"
    elif case == "bomb":  # 200 MB of zeros, 200 kB compressed: refused on the declared size
        members.append(("pad.bin", bytes(200 * 2**20)))
        expect = "archive too large"
    elif case == "two_shp":
        members.append(("q.shp", shapefile[".shp"]))
        expect = "exactly one .shp, found 2"
    else:
        members = [m for m in members if not m[0].endswith(".prj")]
        expect = "declares no CRS"
    path = _zip(tmp_path / f"{case}.zip", members, symlink)
    before = stored_snapshot(engine)
    result = runner("import", "parks", path)
    assert result.exit_code == 2, result.output
    assert expect in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stored_snapshot(engine) == before


def test_safe_archive_in_a_folder_imports(runner, engine, tmp_path, shapefile):
    path = _zip(tmp_path / "ok.zip", [(f"dir/p{s}", d) for s, d in shapefile.items()])
    result = runner("import", "parks", path)
    assert result.exit_code == 0, result.output
    assert table_counts(engine)["parks"] == 1


def test_geopackage_with_several_layers_is_refused(runner, engine, tmp_path):
    """GDAL would read the first layer only (geopandas just warns); each may have its CRS."""
    path = tmp_path / "two.gpkg"
    frame = gpd.GeoDataFrame([PARK], geometry=[metric_box(0, 0, 500, 500)], crs=4326)
    frame.to_file(path, layer="a")
    frame.to_crs(3857).to_file(path, layer="b")
    before = stored_snapshot(engine)
    result = runner("import", "parks", path)
    assert result.exit_code == 2
    assert "exactly one layer, found 2 (a, b)" in result.stderr
    assert stored_snapshot(engine) == before
    frame.to_file(tmp_path / "one.gpkg", layer="a")
    assert runner("import", "parks", tmp_path / "one.gpkg").exit_code == 0


@pytest.mark.parametrize("suffix, content, expect", [
    (".zip", json.dumps({"type": "FeatureCollection", "features": []}).encode(),
     "not a valid zip archive"),
    (".geojson", b"PK\x03\x04" + bytes(60), "not valid JSON"),
    (".gpkg", b"PK\x03\x04" + bytes(60), "cannot be read as GPKG"),
    (".gpkg", b"\x89PNG\r\n\x1a\n" + bytes(60), "cannot be read as GPKG"),
    # GBK and UTF-16 CSV are read (tests/test_planner_files.py); bytes no encoding reads are not.
    (".csv", b"code,name,wkt\nP,\x80\xff,POINT (1 1)\n", "neither UTF-8, UTF-16 nor GBK"),
    (".csv", b"\x89PNG\r\n\x1a\n" + bytes(60), "not a readable CSV"),
    (".csv", "code,name,name,division_code,wkt\nP,a,b,411621,POINT (1 1)\n".encode(),
     "names column(s) 'name' more than once"),
    (".csv", "\ufeffcode,code\nP,Q\n".encode(), "names column(s) 'code' more than once"),
])
def test_spoofed_or_ambiguous_files_are_refused(runner, engine, tmp_path, suffix, content,
                                                expect):
    path = tmp_path / f"spoof{suffix}"
    path.write_bytes(content)
    before = stored_snapshot(engine)
    result = runner("import", "parks", path, "--crs", "EPSG:4326")
    assert result.exit_code == 2, result.output
    assert expect in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert stored_snapshot(engine) == before


def _crs(name):
    return {"type": "name", "properties": {"name": name}}


@pytest.mark.parametrize("top, feature_crs, geometry_crs, field", [
    ("EPSG:3857", "EPSG:4326", None, "crs"),   # degrees that would be read as metres
    (None, "EPSG:3857", None, "crs"),
    (None, None, "EPSG:3857", "geometry"),
    ("EPSG:4490", None, "EPSG:3857", "geometry"),
    ("EPSG:3857", None, None, None),           # one CRS, declared once: imported
    ("EPSG:3857", "EPSG:3857", "urn:ogc:def:crs:EPSG::3857", None),
])
def test_mixed_crs_in_one_geojson_is_refused(runner, engine, tmp_path, top, feature_crs,
                                             geometry_crs, field):
    """GDAL reads only the top ``crs`` member; a feature's own one was silently ignored."""
    box = metric_box(0, 0, 500, 500)
    if top == "EPSG:3857" and feature_crs != "EPSG:4326":
        box = gpd.GeoSeries([box], crs=4326).to_crs(3857).iloc[0]
    feature = {"type": "Feature", "properties": PARK,
               "geometry": json.loads(gpd.GeoSeries([box]).to_json())["features"][0]["geometry"]}
    if feature_crs:
        feature["crs"] = _crs(feature_crs)
    if geometry_crs:
        feature["geometry"]["crs"] = _crs(geometry_crs)
    doc = {"type": "FeatureCollection", "features": [feature]}
    if top:
        doc["crs"] = _crs(top)
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    before = stored_snapshot(engine)
    result = runner("import", "parks", path)
    if field is None:  # stored where the file says, 500 m x 500 m
        assert result.exit_code == 0, result.output
        with engine.connect() as conn:
            area = conn.execute(sa.text("SELECT area_m2 FROM parks")).scalar_one()
        assert area == pytest.approx(250_000, rel=1e-3)
        return
    assert result.exit_code == 2, result.output
    assert f"feature 0, field '{field}': declares its own CRS" in result.stderr
    assert stored_snapshot(engine) == before
