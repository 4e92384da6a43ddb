"""The files Chinese park planners hand over: encodings, CAD shapefiles, CRSs, exports back.

Grids are drawn in QGIS, ArcGIS or CAD on Chinese Windows: shapefiles in GBK
with or without a ``.cpg``, measured (M) polygons, CGCS2000 Gauss-Krüger
zones with and without the zone prefix, and now and then Xi'an 80 or
Beijing 54, which PROJ cannot move to WGS 84 without a datum grid.  Each
class is walked over every format and container it can arrive in.
"""

import json
import re
import struct
import zipfile
from datetime import datetime

import geopandas as gpd
import pyogrio
import pytest
import shapely
from openpyxl import Workbook, load_workbook
from pyproj import CRS, Transformer

from geodata.creditcode import make_credit_code
from geodata.errors import FeatureError, GridmapError
from geodata.formats import read_layer
from tests.conftest import metric_box, stored_snapshot

NAME = "东区第一网格"
LON, LAT = 114.3, 30.5


def _cell(crs=4326, lon=LON, lat=LAT, prefix=0.0):
    """A 100 m square with its south-west corner at (lon, lat), in ``crs``."""
    x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
    size = 100 if CRS.from_user_input(crs).is_projected else 0.001
    return shapely.box(x + prefix, y, x + prefix + size, y + size)


def write_shapefile(folder, stem="grids", *, encoding="UTF-8", cpg=True, crs=4326, names=(NAME,),
                    geometry=None, container="shp"):
    """Write a shapefile as GDAL does, then remove or replace its ``.cpg``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame({"code": [f"A-{i:02d}" for i in range(len(names))],
                              "name": list(names)},
                             geometry=[geometry or _cell(crs)] * len(names), crs=crs)
    shp = folder / f"{stem}.shp"
    pyogrio.write_dataframe(frame, shp, encoding=encoding)
    if cpg is not True:
        shp.with_suffix(".cpg").unlink()
        if cpg:
            shp.with_suffix(".cpg").write_text(cpg, encoding="ascii")
    return _contain(shp, container)


def _contain(shp, container):
    if container == "shp":
        return shp
    path = shp.with_suffix(".zip")
    with zipfile.ZipFile(path, "w") as archive:
        for part in sorted(shp.parent.glob(shp.stem + ".*")):
            if part.suffix != ".zip":
                archive.write(part, "folder/" + part.name)
    return path


def write_measured_shapefile(stem, z=False):
    """A PolygonM (or PolygonZM) shapefile as CAD exports write it; pyogrio cannot write M."""
    ring = [(LON, LAT), (LON, LAT + 0.001), (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT),
            (LON, LAT)]
    box = struct.pack("<4d", LON, LAT, LON + 0.001, LAT + 0.001)
    shape_type = 15 if z else 25  # PolygonZ carries M too; PolygonM
    body = struct.pack("<i", shape_type) + box + struct.pack("<3i", 1, len(ring), 0)
    body += b"".join(struct.pack("<2d", x, y) for x, y in ring)
    if z:
        body += struct.pack("<2d", 7, 7) + struct.pack("<d", 7) * len(ring)
    body += struct.pack("<2d", 0, 4) + b"".join(struct.pack("<d", m) for m in range(len(ring)))
    record = struct.pack(">2i", 1, len(body) // 2) + body

    def header(length):
        return (struct.pack(">i", 9994) + bytes(20) + struct.pack(">i", length // 2)
                + struct.pack("<2i", 1000, shape_type) + box + struct.pack("<4d", 0, 0, 0, 4))

    stem.with_suffix(".shp").write_bytes(header(100 + len(record)) + record)
    stem.with_suffix(".shx").write_bytes(header(108) + struct.pack(">2i", 50, len(body) // 2))
    dbf = struct.pack("<B3BIHH20x", 3, 124, 1, 1, 1, 65, 11)
    dbf += b"CODE".ljust(11, b"\0") + b"C" + bytes(4) + bytes([10, 0]) + bytes(14) + b"\r"
    stem.with_suffix(".dbf").write_bytes(dbf + b" " + b"A-01".ljust(10) + b"\x1a")
    stem.with_suffix(".prj").write_text(CRS.from_epsg(4326).to_wkt("WKT1_ESRI"))
    return stem.with_suffix(".shp")


def refused(path, code, **kwargs):
    with pytest.raises(GridmapError) as caught:
        read_layer(path, layer="grids", **kwargs)
    assert caught.value.code == code, str(caught.value)
    return caught.value


# --- shapefile text encodings -----------------------------------------------------------

GB_CPGS = ("GBK", "936", "CP936", "GB2312", "GB18030")
UTF8_CPGS = ("UTF-8", "utf8", "65001")


@pytest.mark.parametrize("container", ["shp", "zip"])
@pytest.mark.parametrize("encoding, cpg, outcome", [
    *[(enc, cpg, NAME) for enc in ("GBK", "GB18030") for cpg in GB_CPGS],
    *[("UTF-8", cpg, NAME) for cpg in UTF8_CPGS],
    ("UTF-8", None, NAME),                       # QGIS without the .cpg: UTF-8 detected
    ("GBK", None, NAME),                         # Chinese Windows: GBK detected, with a warning
    ("GB18030", None, NAME),
    *[(enc, cpg, "encoding_mismatch") for enc in ("GBK", "GB18030") for cpg in UTF8_CPGS],
    *[("UTF-8", cpg, "encoding_mismatch") for cpg in GB_CPGS],   # GBK would read mojibake
    ("GBK", "KLINGON", "unknown_encoding"),
])
def test_shapefile_text_is_read_in_its_encoding_or_refused(tmp_path, container, encoding, cpg,
                                                           outcome):
    path = write_shapefile(tmp_path, encoding=encoding, cpg=cpg or False, container=container,
                           names=(NAME, "化工园😀区" if encoding != "GBK" else "化工园区"))
    if outcome != NAME:
        error = refused(path, outcome)
        assert str(path) in str(error)
        return
    frame, warnings = read_layer(path, layer="grids")
    assert frame["name"].iloc[0] == NAME
    detected_gbk = cpg is None and encoding != "UTF-8"
    assert any("GBK" in w for w in warnings) == detected_gbk, warnings


@pytest.mark.parametrize("ldid, warned", [(0x4D, False), (0x7A, False), (0x57, True)])
def test_dbf_language_driver_id_declares_gbk(tmp_path, ldid, warned):
    """Without a .cpg, code page 936 in the .dbf header counts as declared; ANSI (0x57) does not."""
    shp = write_shapefile(tmp_path, encoding="GBK", cpg=False)
    dbf = bytearray(shp.with_suffix(".dbf").read_bytes())
    dbf[29] = ldid
    shp.with_suffix(".dbf").write_bytes(bytes(dbf))
    frame, warnings = read_layer(shp, layer="grids")
    assert frame["name"].tolist() == [NAME] and bool(warnings) == warned


def test_shapefile_field_names_in_gbk_and_upper_case(tmp_path):
    """ArcGIS writes CODE/NAME; Chinese field names come in the DBF's encoding too."""
    frame = gpd.GeoDataFrame({"CODE": ["A-01"], "NAME": [NAME], "备注": ["北门"]},
                             geometry=[_cell()], crs=4326)
    pyogrio.write_dataframe(frame, tmp_path / "g.shp", encoding="GBK")
    (tmp_path / "g.cpg").unlink()
    got, _ = read_layer(tmp_path / "g.shp", layer="grids")
    assert list(got.columns) == ["code", "name", "备注", "geometry"]
    assert got.iloc[0][["code", "name", "备注"]].tolist() == ["A-01", NAME, "北门"]
    twice = tmp_path / "twice.csv"
    twice.write_text(f'code,Code,wkt\nA,B,"{_cell().wkt}"\n', encoding="utf-8")
    refused(twice, "duplicate_column", crs="EPSG:4326")


# --- shapefile parts and geometry kinds -------------------------------------------------

@pytest.mark.parametrize("container", ["shp", "zip"])
@pytest.mark.parametrize("part, code", [(".shx", "incomplete_shapefile"),
                                        (".dbf", "incomplete_shapefile"),
                                        (".prj", "missing_crs")])
def test_shapefile_missing_a_part_is_refused_by_name(tmp_path, container, part, code):
    shp = write_shapefile(tmp_path)
    shp.with_suffix(part).unlink()
    error = refused(_contain(shp, container), code)
    assert part in str(error) or code == "missing_crs"
    # A CRS given on the command line never stands in for a missing .shx or .dbf.
    if code != "missing_crs":
        refused(_contain(shp, container), code, crs="EPSG:4326")


@pytest.mark.parametrize("z", [False, True], ids=["PolygonM", "PolygonZM"])
def test_measured_cad_polygons_are_read_2d_with_warnings(tmp_path, z):
    frame, warnings = read_layer(write_measured_shapefile(tmp_path / "cad", z=z), layer="grids")
    geom = frame.geometry.iloc[0]
    assert not geom.has_z and not geom.has_m and geom.geom_type == "MultiPolygon"
    assert frame["code"].tolist() == ["A-01"]
    assert any("M (measure)" in w for w in warnings)
    assert any("Z values" in w for w in warnings) == z


@pytest.mark.parametrize("wkt", ["POLYGON M ((114.3 30.5 1, 114.31 30.5 1, 114.31 30.51 1, "
                                 "114.3 30.5 1))",
                                 "POLYGON ZM ((114.3 30.5 5 1, 114.31 30.5 5 1, 114.31 30.51 5 1, "
                                 "114.3 30.5 5 1))"])
def test_measured_wkt_is_dropped_to_2d(tmp_path, wkt):
    path = tmp_path / "m.csv"
    path.write_text(f'code,wkt\nA-01,"{wkt}"\n', encoding="utf-8")
    frame, warnings = read_layer(path, layer="grids", crs="EPSG:4326")
    assert not shapely.has_m(frame.geometry.iloc[0]) and not frame.geometry.iloc[0].has_z
    assert any("M (measure)" in w for w in warnings)


def test_multipart_null_and_empty_geometries(tmp_path):
    two = shapely.MultiPolygon([_cell(), _cell(lon=LON + 0.01)])
    pyogrio.write_dataframe(gpd.GeoDataFrame({"code": ["A"]}, geometry=[two], crs=4326),
                            tmp_path / "multi.shp")
    frame, _ = read_layer(tmp_path / "multi.shp", layer="grids")
    assert len(frame.geometry.iloc[0].geoms) == 2
    for ext in ("shp", "gpkg"):
        for bad in (None, shapely.Polygon()):
            path = tmp_path / f"bad_{ext}_{bad is None}.{ext}"
            pyogrio.write_dataframe(gpd.GeoDataFrame({"code": ["A", "B"]},
                                                     geometry=[_cell(), bad], crs=4326), path)
            error = refused(path, "empty_geometry")
            assert error.details["feature"] == 1


# --- CRSs planners use ------------------------------------------------------------------

# (114°E, 30°N) in CGCS2000 / 3-degree Gauss-Kruger CM 114E is easting 500 000 m (the
# central meridian) and northing 3 320 113.398 m (the GRS 80 meridian arc to 30°N).
KNOWN = (500_000.0, 3_320_113.398)


@pytest.mark.parametrize("epsg, easting", [(4547, KNOWN[0]), (4526, 38_000_000 + KNOWN[0])],
                         ids=["CM114E", "zone38-prefixed"])
@pytest.mark.parametrize("fmt", ["shp", "zip", "gpkg", "geojson", "csv"])
def test_gauss_kruger_known_point_lands_where_it_should(tmp_path, epsg, easting, fmt):
    point = shapely.Point(easting, KNOWN[1])
    cell = shapely.box(easting, KNOWN[1], easting + 100, KNOWN[1] + 100)
    path = _write(tmp_path, fmt, cell, epsg)
    frame, warnings = read_layer(path, layer="grids", crs=f"EPSG:{epsg}")
    corner = shapely.get_coordinates(frame.geometry.iloc[0])
    nearest = corner[((corner - [114, 30]) ** 2).sum(axis=1).argmin()]
    assert abs(nearest[0] - 114) < 1e-8 and abs(nearest[1] - 30) < 1e-8, (nearest, point)
    assert frame.crs.to_epsg() == 4326 and warnings == []


def _write(folder, fmt, geometry, crs, **props):
    props = {"code": "A-01", **props}
    frame = gpd.GeoDataFrame({k: [v] for k, v in props.items()}, geometry=[geometry], crs=crs)
    path = folder / f"cell.{'shp' if fmt == 'zip' else fmt}"
    if fmt == "csv":  # a CSV declares no CRS: --crs names it
        path.write_text(f"code,wkt\n{props['code']},\"{geometry.wkt}\"\n", encoding="utf-8")
        return path
    if fmt == "geojson":  # the legacy "crs" member GDAL still writes for a non-WGS 84 file
        doc = json.loads(frame.to_json())
        doc["crs"] = {"type": "name", "properties": {"name": CRS.from_user_input(crs)
                                                     .to_string()}}
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path
    pyogrio.write_dataframe(frame, path)
    return _contain(path, "zip") if fmt == "zip" else path


@pytest.mark.parametrize("fmt", ["shp", "zip", "gpkg", "geojson", "csv"])
@pytest.mark.parametrize("epsg, easting, suggested", [
    (4547, 38_000_000 + KNOWN[0], "EPSG:4526"),   # prefixed eastings in the CM 114E CRS
    (4526, KNOWN[0], "EPSG:4547"),                # bare eastings in the zone 38 CRS
])
def test_zone_prefix_mismatch_is_refused_with_the_right_crs(tmp_path, fmt, epsg, easting,
                                                            suggested):
    cell = shapely.box(easting, KNOWN[1], easting + 100, KNOWN[1] + 100)
    error = refused(_write(tmp_path, fmt, cell, epsg), "coordinate_out_of_range",
                    crs=f"EPSG:{epsg}")
    assert suggested in str(error) and "zone" in str(error)


@pytest.mark.parametrize("fmt", ["shp", "zip", "gpkg", "geojson", "csv"])
@pytest.mark.parametrize("epsg", [4610, 2383, 2362, 4214, 2435])
def test_datums_proj_cannot_shift_are_refused_not_moved(tmp_path, fmt, epsg):
    """Xi'an 80 and Beijing 54 (at Wuhan): PROJ's only way is a ballpark step."""
    error = refused(_write(tmp_path, fmt, _cell(epsg), epsg), "no_datum_transformation",
                    crs=f"EPSG:{epsg}")
    assert error.details["datum"] in ("Xian 1980", "Beijing 1954")


def test_beijing_54_where_a_published_shift_exists_is_moved_and_said(tmp_path):
    """In the Ordos basin EPSG has a 1 m Beijing 1954 → WGS 84 transformation."""
    cell = _cell(4214, lon=108.5, lat=38.0)
    frame, warnings = read_layer(_write(tmp_path, "gpkg", cell, 4214), layer="grids")
    assert any("Beijing 1954" in w and "accuracy 1 m" in w for w in warnings), warnings
    west, south = frame.geometry.iloc[0].bounds[:2]
    assert 0 < abs(west - 108.5) + abs(south - 38.0) < 0.01   # moved, by tens of metres


@pytest.mark.parametrize("prj", ["esri", "custom-cm"])
def test_wkt_only_prj_without_epsg_code(tmp_path, prj):
    """ArcGIS's ESRI WKT, and a CGCS2000 Gauss-Krüger on a local central meridian (no EPSG)."""
    if prj == "esri":
        wkt, (x, y) = CRS.from_epsg(4547).to_wkt("WKT1_ESRI"), KNOWN
    else:
        wkt = CRS.from_epsg(4547).to_wkt("WKT1_ESRI").replace(
            'PARAMETER["Central_Meridian",114.0]', 'PARAMETER["Central_Meridian",113.0]')
        assert CRS.from_wkt(wkt).to_epsg() is None
        x, y = Transformer.from_crs(4490, wkt, always_xy=True).transform(114, 30)
    shp = write_shapefile(tmp_path, geometry=shapely.box(x, y, x + 100, y + 100), crs=4547)
    shp.with_suffix(".prj").write_text(wkt, encoding="ascii")
    frame, _ = read_layer(shp, layer="grids")
    corner = shapely.get_coordinates(frame.geometry.iloc[0])
    assert abs(corner[:, 0] - 114).min() < 1e-8 and abs(corner[:, 1] - 30).min() < 1e-8


def test_gpkg_in_4490_is_stored_as_4326_unmoved(tmp_path):
    frame, warnings = read_layer(_write(tmp_path, "gpkg", _cell(), 4490), layer="grids")
    assert frame.crs.to_epsg() == 4326 and warnings == []
    assert frame.geometry.iloc[0].bounds[:2] == pytest.approx((LON, LAT), abs=1e-12)


# --- CSV encodings ----------------------------------------------------------------------

ROWS = "code,name,wkt\nA-01,东区第一网格,\"POLYGON ((114.3 30.5, 114.31 30.5, 114.31 30.51, " \
       "114.3 30.5))\"\n"


@pytest.mark.parametrize("encoding, data, warned", [
    ("utf-8", ROWS.encode("utf-8"), False),
    ("utf-8-sig", ROWS.encode("utf-8-sig"), False),
    ("gbk", ROWS.encode("gbk"), True),                      # Excel "CSV" on Chinese Windows
    ("gb18030", ROWS.encode("gb18030"), True),
    ("utf-16 tab", ROWS.replace(",", "\t", 2).replace("A-01,", "A-01\t")
     .replace("网格,", "网格\t").encode("utf-16"), False),   # Excel "Unicode text"
    ("utf-16 comma", ROWS.encode("utf-16"), False),
    ("utf-16-be", b"\xfe\xff" + ROWS.encode("utf-16-be"), False),
])
def test_csv_in_the_encodings_excel_writes(tmp_path, encoding, data, warned):
    path = tmp_path / "grids.csv"
    path.write_bytes(data)
    frame, warnings = read_layer(path, layer="grids", crs="EPSG:4326")
    assert frame["name"].tolist() == [NAME], encoding
    assert any("GBK" in w for w in warnings) == warned


def test_csv_in_no_known_encoding_is_refused(tmp_path):
    path = tmp_path / "grids.csv"
    path.write_bytes(b"code,name,wkt\nA,\xff\xfe\x80\x81\xff,POINT (1 1)\n")
    refused(path, "unknown_encoding", crs="EPSG:4326")


# --- through the CLI, on both backends: stored as read, or nothing stored ---------------

@pytest.fixture
def park(runner, tmp_path):
    path = tmp_path / "park.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"code": "T", "name": "测试园区", "division_code": "411621"},
        "geometry": json.loads(shapely.to_geojson(metric_box(0, 0, 1000, 1000)))}]},
        ensure_ascii=False), encoding="utf-8")
    assert runner("import", "parks", path).exit_code == 0
    return "T"


def _cell_file(tmp_path, stem, **kwargs):
    return write_shapefile(tmp_path / stem, geometry=metric_box(0, 0, 500, 500), **kwargs)


def test_cli_stores_gbk_names_and_refuses_bad_files_unchanged(runner, park, tmp_path, engine):
    before = stored_snapshot(engine)
    bad = {
        "wrong cpg": _cell_file(tmp_path, "w", encoding="GBK", cpg="UTF-8"),
        "utf8 as gbk": _cell_file(tmp_path, "u", encoding="UTF-8", cpg="GBK",
                                  names=("东区第一网格",)),
        "no dbf": _contain(_cell_file(tmp_path, "d"), "shp"),
        "xian 80": _write(tmp_path, "gpkg", _cell(2383), 2383),
        "prefix": _write(tmp_path, "gpkg", shapely.box(38_500_000, 3_320_000, 38_500_100,
                                                       3_320_100), 4547),
    }
    bad["no dbf"].with_suffix(".dbf").unlink()
    for case, path in bad.items():
        result = runner("import", "grids", path, "--park", park)
        assert result.exit_code == 2, (case, result.output)
        assert "Traceback" not in result.output and str(path) in result.stderr, case
    assert stored_snapshot(engine) == before
    good = _cell_file(tmp_path, "g", encoding="GBK", cpg=False)
    result = runner("import", "grids", good, "--park", park)
    assert result.exit_code == 0, result.stderr
    assert "GBK" in result.stderr   # the warning says how the text was read
    exported = tmp_path / "out.gpkg"
    assert runner("export", "grids", exported, "--park", park).exit_code == 0
    assert pyogrio.read_dataframe(exported)["name"].tolist() == [NAME]


# --- exports read back ------------------------------------------------------------------

# Bidi overrides and control characters are refused on import (tests/test_hostile_text.py).
HOSTILE = ["化工园😀区", "<img src=x onerror=alert(1)>", "=HYPERLINK(\"http://x\")",
           "Ａ－０１　全角", "'quoted", "-1+2", "园" * 84, "名" * 200]


@pytest.mark.parametrize("layer", ["grids", "parks"])
@pytest.mark.parametrize("ext", ["gpkg", "geojson", "zip", "csv"])
def test_every_export_reads_back_the_stored_text(runner, park, tmp_path, layer, ext):
    # 84 Chinese characters fill a DBF field (254 bytes); longer is refused (next test).
    hostile = HOSTILE[:-1] if ext == "zip" else HOSTILE
    cells = [{"type": "Feature", "properties": {"code": f"A-{i:02d}", "name": name},
              "geometry": json.loads(shapely.to_geojson(metric_box(i * 100, 0, i * 100 + 100,
                                                                   100)))}
             for i, name in enumerate(hostile)]
    grids = tmp_path / "grids.geojson"
    grids.write_text(json.dumps({"type": "FeatureCollection", "features": cells},
                                ensure_ascii=False), encoding="utf-8")
    result = runner("import", "grids", grids, "--park", park)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / f"out.{ext}"
    assert runner("export", layer, out, "--park", park).exit_code == 0
    frame, _ = read_layer(out, crs="EPSG:4326")
    names = hostile if layer == "grids" else ["测试园区"]
    assert sorted(frame["name"]) == sorted(names)
    if ext == "zip":   # a shapefile of Chinese text says its encoding
        with zipfile.ZipFile(out) as archive:
            cpg = [n for n in archive.namelist() if n.endswith(".cpg")]
            assert cpg and archive.read(cpg[0]).strip() == b"UTF-8"


@pytest.mark.parametrize("ext", ["zip", "shp"])
def test_shapefile_export_refuses_text_a_dbf_would_cut(runner, park, tmp_path, ext):
    long_name = "园" * 200   # 600 bytes of UTF-8; a DBF field holds 254
    cells = [{"type": "Feature", "properties": {"code": "A-01", "name": long_name},
              "geometry": json.loads(shapely.to_geojson(metric_box(0, 0, 100, 100)))}]
    grids = tmp_path / "grids.geojson"
    grids.write_text(json.dumps({"type": "FeatureCollection", "features": cells},
                                ensure_ascii=False), encoding="utf-8")
    assert runner("import", "grids", grids, "--park", park).exit_code == 0
    out = tmp_path / f"out.{ext}"
    result = runner("export", "grids", out, "--park", park)
    assert result.exit_code == 2 and "A-01" in result.stderr and "name" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == []
    assert runner("export", "grids", tmp_path / "whole.gpkg", "--park", park).exit_code == 0
    assert pyogrio.read_dataframe(tmp_path / "whole.gpkg")["name"].tolist() == [long_name]


# --- Excel workbooks --------------------------------------------------------------------

SITE_HEADER = ["name", "credit_code", "lon", "lat"]


def workbook(path, fill):
    """Save a workbook that ``fill(book)`` fills; return its path."""
    book = Workbook()
    fill(book)
    book.save(path)
    return path


def _saved_formula_value(path, cell, value):
    """Give a formula cell the value Excel saves with it (openpyxl writes none)."""
    with zipfile.ZipFile(path) as archive:
        parts = {n: archive.read(n) for n in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode("utf-8")
    sheet, count = re.subn(rf'<c r="{cell}"([^>]*)><f>(.*?)</f><v\s*/?>(</v>)?',
                           rf'<c r="{cell}"\1 t="str"><f>\2</f><v>{value}</v>', sheet)
    assert count == 1, sheet
    parts["xl/worksheets/sheet1.xml"] = sheet.encode("utf-8")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def _rows(*rows):
    def fill(book):
        book.active.append(SITE_HEADER)
        for row in rows:
            book.active.append(list(row))
    return fill


def test_xlsx_as_planners_keep_it(tmp_path):
    """An empty sheet first, a hidden notes sheet, numbers and full-width text, a saved formula."""
    def fill(book):
        book.active.title = "封面"
        sheet = book.create_sheet("企业名录")
        sheet.append(SITE_HEADER + ["employees", "registered_on"])
        sheet.append(["=\"甲\"&\"公司\"", "91420100MA4KXXXX0X", "１１４．３", 30.5, 12.0,
                      datetime(2024, 3, 1)])
        sheet.append([None] * 6)   # a blank row between records
        sheet.append(["乙公司", "91420100MA4KYYYY0Y", 114.31, 30.51, 7, None])
        notes = book.create_sheet("备注")
        notes.append(["内部备注"])
        notes.sheet_state = "hidden"
    path = workbook(tmp_path / "sites.xlsx", fill)
    with zipfile.ZipFile(path) as archive:   # the formula lives on the second sheet
        names = archive.namelist()
    assert "xl/worksheets/sheet2.xml" in names
    with zipfile.ZipFile(path) as archive:
        parts = {n: archive.read(n) for n in names}
    parts["xl/worksheets/sheet1.xml"], parts["xl/worksheets/sheet2.xml"] = (
        parts["xl/worksheets/sheet2.xml"], parts["xl/worksheets/sheet1.xml"])
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    _saved_formula_value(path, "A2", "甲公司")
    frame, warnings = read_layer(path, layer="enterprises")
    assert frame["name"].tolist() == ["甲公司", "乙公司"]
    assert frame["employees"].tolist() == ["12", "7"]
    assert frame["registered_on"].tolist() == ["2024-03-01", None]
    assert shapely.get_coordinates(frame.geometry).tolist() == [[114.3, 30.5], [114.31, 30.51]]
    assert warnings == ["skipped the hidden sheet '备注'"]


@pytest.mark.parametrize("fill, code", [
    (_rows(["=\"甲\"&\"公司\"", "91420100MA4KXXXX0X", 114.3, 30.5]), "formula_without_value"),
    (_rows(["甲", 914201000000000000, 114.3, 30.5]), "number_too_long"),   # shown as 9.14E+17
    (_rows(["甲", "9.14E+17", 114.3, 30.5]), None),     # the CSV way: refused on import, named
    (_rows(["甲", "X", 114.3, 30.5], ["乙", "Y", 114.3, 30.5]), "merged_cells"),
    (_rows(["甲", "X", "=1/0", 30.5]), "spreadsheet_error"),
    (lambda book: book.active.append([]), "empty_file"),
    (lambda book: (_rows(["甲", "X", 114.3, 30.5])(book), book.create_sheet("第二").append(["x"])),
     "multiple_layers"),
])
def test_xlsx_that_cannot_be_read_as_meant_is_refused(tmp_path, fill, code):
    path = workbook(tmp_path / "sites.xlsx", fill)
    if code == "merged_cells":
        book = load_workbook(path)
        book.active.merge_cells("A2:A3")
        book.save(path)
    if code == "spreadsheet_error":
        book = load_workbook(path)
        book.active["C2"] = "#DIV/0!"
        book.active["C2"].data_type = "e"
        book.save(path)
    if code is None:
        frame, _ = read_layer(path, layer="enterprises")
        assert frame["credit_code"].tolist() == ["9.14E+17"]
        return
    error = refused(path, code)
    if isinstance(error, FeatureError):
        assert error.details["feature"] == 0 and error.details["field"]


def test_old_xls_or_renamed_file_is_refused(tmp_path):
    path = tmp_path / "sites.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))   # an OLE2 .xls
    assert ".xls" in str(refused(path, "unreadable_file"))


def test_cli_imports_enterprises_from_excel_files(runner, park, tmp_path, engine):
    """GBK CSV and XLSX enterprise lists import on both backends; a ruined code changes nothing."""
    good = make_credit_code("411621", 1), make_credit_code("411621", 2)
    here = shapely.get_coordinates(metric_box(100, 100, 101, 101))[0]
    lines = ["name,credit_code,lon,lat",
             f"甲化工有限公司,{good[0]},{here[0]},{here[1]}",
             f"乙科技,{good[1].translate(str.maketrans('0123456789', '０１２３４５６７８９'))},"
             f"{here[0]},{here[1]}"]
    gbk = tmp_path / "sites_gbk.csv"
    gbk.write_bytes("\r\n".join(lines).encode("gbk"))
    ruined = tmp_path / "ruined.xlsx"
    workbook(ruined, _rows(["丙", 914201000000000000, here[0], here[1]]))
    sci = tmp_path / "sci.csv"
    sci.write_text(f"name,credit_code,lon,lat\n丙,9.14E+17,{here[0]},{here[1]}\n",
                   encoding="utf-8")
    before = stored_snapshot(engine)
    for path, words in ((ruined, "18 digits"), (sci, "scientific notation")):
        result = runner("import", "enterprises", path, "--park", park)
        assert result.exit_code == 2 and words in result.stderr, result.output
        assert "feature 0" in result.stderr and "credit_code" in result.stderr
    assert stored_snapshot(engine) == before
    result = runner("import", "enterprises", gbk, "--park", park)
    assert result.exit_code == 0, result.stderr
    xlsx = workbook(tmp_path / "more.xlsx", _rows(
        ["丁公司", make_credit_code("411621", 3), here[0], here[1]]))
    assert runner("import", "enterprises", xlsx, "--park", park).exit_code == 0
    out = tmp_path / "sites.gpkg"
    assert runner("export", "enterprises", out, "--park", park).exit_code == 0
    stored = pyogrio.read_dataframe(out).sort_values("credit_code")
    assert stored["name"].tolist() == ["甲化工有限公司", "乙科技", "丁公司"]
    assert stored["credit_code"].tolist() == sorted([*good, make_credit_code("411621", 3)])


@pytest.mark.parametrize("ext", ["gpkg", "geojson", "zip", "shp", "csv", "xlsx"])
def test_every_layer_exports_to_every_format_whole_or_refused_cleanly(runner, park, tmp_path,
                                                                      ext):
    """Each layer × each extension: the file reads back with every row, or exit 2 and no file."""
    cells = [{"type": "Feature", "properties": {"code": "A-01", "name": NAME},
              "geometry": json.loads(shapely.to_geojson(metric_box(0, 0, 500, 500)))}]
    here = shapely.get_coordinates(metric_box(100, 100, 101, 101))[0]
    parcel = metric_box(100, 100, 200, 200).wkt
    collection = {"type": "FeatureCollection", "features": cells}
    files = {"grids": ("grids.geojson", json.dumps(collection, ensure_ascii=False)),
             "enterprises": ("sites.csv", "name,credit_code,wkt\n"
                                          f"甲,{make_credit_code('411621', 1)},\"{parcel}\"\n"
                                          f"乙,{make_credit_code('411621', 2)},"
                                          f"\"POINT ({here[0]} {here[1]})\"\n"),
             "staff": ("staff.csv", "grid_code,name,phone,role\nA-01,张三,13800000000,网格长\n"),
             "hazards": ("hazards.csv", f"category,description,found_date,lon,lat\n"
                                        f"消防,=通道堵塞,2025-01-02,{here[0]},{here[1]}\n")}
    expected = {"parks": 1}
    for layer, (name, text) in files.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        extra = ("--crs", "EPSG:4326") if layer == "enterprises" else ()
        result = runner("import", layer, path, "--park", park, *extra)
        assert result.exit_code == 0, (layer, result.stderr)
        expected[layer] = len(text.strip().splitlines()) - 1 if name.endswith(".csv") else 1
    for layer, count in expected.items():
        out = tmp_path / "out" / layer / f"{layer}.{ext}"
        out.parent.mkdir(parents=True)
        result = runner("export", layer, out, "--park", park)
        if result.exit_code == 0:
            frame, _ = read_layer(out, geometry=layer != "staff", crs="EPSG:4326")
            assert len(frame) == count, (layer, ext)
        else:
            assert result.exit_code == 2 and "Traceback" not in result.output, result.output
            assert str(out) in result.stderr and list(out.parent.iterdir()) == []
            assert (layer, ext) in {("staff", "gpkg"), ("staff", "geojson"), ("staff", "zip"),
                                    ("staff", "shp"), ("enterprises", "zip"),
                                    ("enterprises", "shp"), *((lay, "xlsx") for lay in expected)}


@pytest.mark.parametrize("part", ["[Content_Types].xml", "xl/workbook.xml",
                                  "xl/_rels/workbook.xml.rels", "xl/worksheets/sheet1.xml"])
def test_damaged_workbook_is_unreadable_not_a_crash(tmp_path, part):
    path = workbook(tmp_path / "sites.xlsx", _rows(["甲", "X", 114.3, 30.5]))
    with zipfile.ZipFile(path) as archive:
        parts = {n: archive.read(n) for n in archive.namelist()}
    parts[part] = b"<<<not xml"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    refused(path, "unreadable_file")
