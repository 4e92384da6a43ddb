"""``gridmap check``: database mode on both backends, file mode, --all, exit codes."""

import json
from datetime import date

import geopandas as gpd
import pytest
import shapely
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import Enterprise, Grid
from geodata.models.base import to_element
from geodata.services.demo_loader import load_demo
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import metric_box
from tests.test_transfer import feature, write_geojson

CELL = 500


@pytest.fixture
def park(runner, tmp_path):
    """Park T (1000 m square) with cells T-001..T-003; T-004 (south-east) is missing."""
    write_geojson(tmp_path / "park.geojson", [feature(
        metric_box(0, 0, 1000, 1000), code="T", name="测试园区", division_code="411621")])
    assert runner("import", "parks", tmp_path / "park.geojson").exit_code == 0
    cells = [feature(metric_box(0, 500, 500, 1000), code="T-001"),
             feature(metric_box(500, 500, 1000, 1000), code="T-002"),
             feature(metric_box(0, 0, 500, 500), code="T-003"),
             feature(metric_box(0, 750, 250, 1000), code="T-001-01", parent_code="T-001"),
             feature(metric_box(250, 750, 500, 1000), code="T-001-02", parent_code="T-001")]
    result = runner("import", "grids", write_geojson(tmp_path / "grids.geojson", cells),
                    "--park", "T")
    assert result.exit_code == 0, result.output
    assert "gaps" in result.stderr  # the missing cell is a warning at import time
    return tmp_path


def _json(result):
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def test_gaps_at_both_levels_are_found_with_exact_areas(runner, park):
    report = _json(runner("check", "--park", "T", "--format", "json"))
    assert report["valid"] is False and report["crs_used"] == "EPSG:4547"
    assert "格中有人 grids with a chief and published contacts: 0.00%" in runner(
        "check", "--park", "T").output
    gaps = sorted((g["parent_code"] or "", round(g["area_m2"], 1)) for g in report["gaps"])
    assert gaps == [("", 250000.0), ("T-001", 125000.0)]
    assert report["coverage_ratio"] == pytest.approx(0.75, abs=1e-6)
    assert report["rates"]["grids_staffed"] == 0.0  # nobody is staffed yet
    geometry = shapely.geometry.shape(report["gaps"][0]["geometry"])
    assert geometry.is_valid and geometry.geom_type in ("Polygon", "MultiPolygon")


def test_stored_overlap_and_straddling_site_are_reported(runner, park, engine):
    # Written straight into the tables, as a QGIS edit on the database would be.
    with session_scope(engine, write=True) as session:
        p = get_park(session, "T")
        session.add(Grid(park_id=p.id, code="T-004", name="T-004", level=1, kind="area",
                         geom=to_element(shapely.MultiPolygon([metric_box(400, 0, 1000, 500)])),
                         area_m2=300000.0, active_from=date(2025, 1, 1)))
        session.add(Enterprise(park_id=p.id, name="跨格公司", registered=True,
                               credit_code=make_credit_code("411621", 5),
                               site=to_element(metric_box(400, 600, 600, 700))))
    report = _json(runner("check", "--park", "T", "--format", "json"))
    assert [sorted(o["codes"]) for o in report["overlaps"]] == [["T-003", "T-004"]]
    assert report["overlaps"][0]["area_m2"] == pytest.approx(50000.0, rel=1e-6)
    (split,) = report["enterprises"]["multi_grid"]
    shares = {g["code"]: g["share"] for g in split["grids"]}
    assert shares == pytest.approx({"T-001": 0.5, "T-002": 0.5}, abs=1e-6)


def test_demo_park_passes_on_both_backends(runner, engine):
    load_demo(engine, today=date(2025, 11, 30))
    result = runner("check", "--park", "FGKFQ", "--format", "json")
    assert result.exit_code == 0, result.output[:500]
    report = json.loads(result.output)
    assert report["valid"] and report["coverage_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert report["rates"] == {"enterprises_in_grid": 1.0, "grids_staffed": 1.0,
                               "records_complete": 1.0}
    text = runner("check", "--park", "FGKFQ").output.splitlines()
    assert text[0].startswith("VALID")
    assert text[-3:] == ["企业有格 enterprises in a grid: 100.00%",
                         "格中有人 grids with a chief and published contacts: 100.00%",
                         "一表在手 enterprises with complete records: 100.00%"]
    for args, key in ((("users", "list"), None), (("hazards", "list", "--limit", "3"), "hazards"),
                      (("edit", "history"), None), (("hidden-units", "--park", "FGKFQ"), None)):
        result = runner(*args, "--format", "json")
        assert result.exit_code == 0, (args, result.output[:300])
        data = json.loads(result.stdout)
        assert data[key] if key else isinstance(data, list), args


def test_geojson_output_opens_as_a_layer(runner, park):
    out = park / "problems.geojson"
    result = runner("check", "--park", "T", "--format", "geojson", "--out", out)
    assert result.exit_code == 1
    frame = gpd.read_file(out)
    assert sorted(frame["problem"]) == ["gap", "gap"]
    assert frame.crs.to_epsg() == 4326


def test_all_parks_one_line_each_and_workers_agree(runner, park, tmp_path):
    write_geojson(tmp_path / "park2.geojson", [feature(
        metric_box(2000, 0, 2500, 500), code="U", name="第二园区", division_code="411621")])
    assert runner("import", "parks", tmp_path / "park2.geojson").exit_code == 0
    write_geojson(tmp_path / "u.geojson", [feature(metric_box(2000, 0, 2500, 500), code="U-001")])
    assert runner("import", "grids", tmp_path / "u.geojson", "--park", "U").exit_code == 0
    serial = runner("check", "--all")
    parallel = runner("check", "--all", "--workers", "2")
    assert serial.exit_code == parallel.exit_code == 1
    assert serial.output == parallel.output
    lines = serial.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["T", "U"]
    assert lines[1].startswith("U: VALID")


def test_all_with_no_parks(runner):
    empty = runner("check", "--all")
    assert empty.exit_code == 0 and "no parks found" in empty.output
    assert runner("check", "--all", "--require-parks").exit_code == 1


def test_file_mode_in_web_mercator(runner, tmp_path):
    park = gpd.GeoDataFrame({"code": ["T"]}, geometry=[metric_box(0, 0, 1000, 1000)], crs=4326)
    cells = gpd.GeoDataFrame({"code": ["A", "B"]}, geometry=[
        metric_box(0, 0, 500, 1000), metric_box(500, 0, 1000, 950)], crs=4326)
    park.to_crs(3857).to_file(tmp_path / "park.gpkg")
    cells.to_crs(3857).to_file(tmp_path / "cells.gpkg")
    result = runner("check", "--park-file", tmp_path / "park.gpkg", "--grids-file",
                    tmp_path / "cells.gpkg", "--format", "json")
    report = _json(result)
    assert result.exit_code == 1
    (gap,) = report["gaps"]
    assert gap["area_m2"] == pytest.approx(500 * 50, rel=1e-4)


def test_cells_only_mode_reports_overlap(runner, tmp_path):
    cells = [feature(metric_box(0, 0, 500, 500), code="A"),
             feature(metric_box(450, 0, 1000, 500), code="B")]
    path = write_geojson(tmp_path / "cells.geojson", cells)
    report = _json(runner("check", "--grids-file", path, "--format", "json"))
    assert report["valid"] is False and len(report["overlaps"]) == 1
    assert report["park_area_m2"] is None


def test_threads_give_the_same_report_and_exit_code(runner, engine):
    """``--threads`` shares the geometry work of one process; the JSON stays byte for byte.

    On the demo park with planted problems at both levels: overlaps, a gap,
    an invalid (bow-tie) grid, a sub-grid outside its parent, a site split
    across two grids and one in no grid.
    """
    from tests.test_partition import plant_problems

    load_demo(engine, today=date(2025, 11, 30))
    plant_problems(engine)
    outputs = {}
    for threads in ("1", "2", "3"):
        for fmt in ("json", "geojson"):
            result = runner("check", "--park", "FGKFQ", "--format", fmt, "--threads", threads)
            assert result.exit_code == 1, result.output[:500]
            outputs[threads, fmt] = result.output
    report = json.loads(outputs["1", "json"])
    assert report["overlaps"] and report["gaps"] and report["invalid_grids"]
    assert report["outside_park"] and report["enterprises"]["no_grid"]
    assert report["enterprises"]["multi_grid"]
    for fmt in ("json", "geojson"):
        assert outputs["2", fmt] == outputs["1", fmt] == outputs["3", fmt]
    assert runner("check", "--park", "FGKFQ", "--format", "json").output == outputs["1", "json"]


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one of"),
    (["--park", "NOPE"], "no park with code 'NOPE'"),
    (["--park", "NOPE", "--threads", "0"], "0 is not in the range"),
    (["--all", "--threads", "2"], "--threads works with --park or files"),
    (["--park", "NOPE", "--workers", "2", "--threads", "2"], "--threads works with"),
])
def test_bad_usage_exits_2(runner, args, message):
    result = runner("check", *args)
    assert result.exit_code == 2 and message in result.output + result.stderr


def test_grids_file_without_codes_exits_2(runner, tmp_path):
    path = write_geojson(tmp_path / "nocode.geojson", [feature(metric_box(0, 0, 10, 10))])
    result = runner("check", "--grids-file", path)
    assert result.exit_code == 2 and "need a 'code' column" in result.stderr


def test_park_without_grids_is_one_whole_gap(runner, tmp_path, engine):
    """An empty coverage is not a valid one: the whole park is a gap (issue 9, item 8)."""
    write_geojson(tmp_path / "park.geojson", [feature(
        metric_box(0, 0, 1000, 1000), code="E", name="空园区", division_code="411621")])
    assert runner("import", "parks", tmp_path / "park.geojson").exit_code == 0
    result = runner("check", "--park", "E", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["valid"] is False and report["coverage_ratio"] == 0.0
    assert report["park_area_m2"] == pytest.approx(1e6, rel=1e-6)
    (gap,) = report["gaps"]
    assert gap["area_m2"] == pytest.approx(1e6, rel=1e-6) and gap["parent_code"] is None
    text = runner("check", "--park", "E")
    assert text.exit_code == 1 and text.output.startswith("INVALID") and "gap:" in text.output


@pytest.mark.parametrize("fmt", ["text", "json", "geojson"])
def test_file_mode_reports_codes_as_given(runner, tmp_path, fmt):
    """Codes are normalised only to find duplicates: G22b is not reported as G22B."""
    park = write_geojson(tmp_path / "park.geojson", [feature(metric_box(0, 0, 1000, 1000),
                                                             code="P")])
    cells = [feature(metric_box(0, 0, 500, 1000), code="G22b"),
             feature(metric_box(450, 0, 1000, 1000), code="g23"),
             feature(metric_box(0, 0, 500, 400), code="G22b-1", parent_code="g22B")]
    path = write_geojson(tmp_path / "cells.geojson", cells)
    result = runner("check", "--park-file", park, "--grids-file", path, "--format", fmt)
    assert result.exit_code == 1, result.output
    assert "G22B" not in result.output and "G23" not in result.output
    if fmt == "json":
        report = json.loads(result.output)
        assert report["overlaps"][0]["codes"] == ["G22b", "g23"]
        assert [g["parent_code"] for g in report["gaps"]] == ["G22b"]
    else:
        assert "G22b" in result.output and "g23" in result.output


def test_file_mode_refuses_codes_that_normalise_alike(runner, tmp_path):
    cells = [feature(metric_box(0, 0, 500, 500), code="G22b"),
             feature(metric_box(500, 0, 1000, 500), code="g22B ")]
    path = write_geojson(tmp_path / "cells.geojson", cells)
    result = runner("check", "--grids-file", path)
    assert result.exit_code == 2
    assert "'G22b' and 'g22B' are the same code" in result.stderr


def test_rates_count_unpublished_chiefless_and_incomplete(runner, engine):
    """The three rates drop by exactly the grids and records made to fail them."""
    load_demo(engine, today=date(2025, 11, 30))
    with engine.begin() as conn:
        level1 = conn.execute(sa.text(
            "SELECT g.id FROM grids g JOIN parks p ON p.id = g.park_id WHERE p.code = 'FGKFQ' "
            "AND g.level = 1 AND g.active_to IS NULL ORDER BY g.code")).scalars().all()
        # One grid loses its chief, another publishes nobody, a third keeps one hidden contact.
        conn.execute(sa.text("DELETE FROM grid_staff WHERE grid_id = :g AND role = 'grid_chief'"),
                     {"g": level1[0]})
        conn.execute(sa.text("UPDATE grid_staff SET published = :f WHERE grid_id = :g"),
                     {"g": level1[1], "f": False})
        one = conn.execute(sa.text("SELECT min(id) FROM grid_staff WHERE grid_id = :g"),
                           {"g": level1[2]}).scalar()
        conn.execute(sa.text("UPDATE grid_staff SET published = :f WHERE id = :i"),
                     {"i": one, "f": False})
        enterprises = conn.execute(sa.text(
            "SELECT e.id FROM enterprises e JOIN parks p ON p.id = e.park_id "
            "WHERE p.code = 'FGKFQ' ORDER BY e.id")).scalars().all()
        conn.execute(sa.text("UPDATE enterprises SET industry = NULL WHERE id = :i"),
                     {"i": enterprises[0]})
        conn.execute(sa.text("UPDATE enterprises SET contact_phone = '' WHERE id = :i"),
                     {"i": enterprises[1]})
    result = runner("check", "--park", "FGKFQ", "--format", "json")
    rates = json.loads(result.stdout)["rates"]
    assert rates == {"enterprises_in_grid": 1.0,
                     "grids_staffed": round((len(level1) - 3) / len(level1), 6),
                     "records_complete": round((len(enterprises) - 2) / len(enterprises), 6)}
