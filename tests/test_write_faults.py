"""A write command cut off mid-way (Ctrl-C, a lost database) changes nothing; a re-run works.

Every CLI command that writes grids, sites or hazards is run with a fault
injected at its first and at its third write statement (any INSERT, UPDATE
or DELETE, or a WITH holding one, on every engine: the command makes its own): a
``KeyboardInterrupt`` (Ctrl-C) and an ``OperationalError`` (the database
went away).  The stored state, geometry by geometry, must be what it was,
no file may be left beside the target, and the same command run again
must succeed.
"""

import json

import geopandas as gpd
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from geodata.creditcode import make_credit_code
from tests.conftest import metric_box, metric_point, stored_snapshot, writes_rows


class _Fault:
    """Raise ``error`` at the ``at``-th write statement of any engine, once."""

    def __init__(self, error, at):
        self.error, self.at, self.seen = error, at, 0

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if writes_rows(statement):
            self.seen += 1
            if self.seen == self.at:
                raise self.error


def _file(path, props, geoms):
    gpd.GeoDataFrame(props, geometry=geoms, crs=4326).to_file(path)
    return str(path)


@pytest.fixture
def park_p(runner, tmp_path):
    """Park P (400 x 200 m), gridded up to x = 300 m (P-001, P-002), one site, one hazard."""
    steps = [
        ("parks", _file(tmp_path / "p.gpkg", {
            "code": ["P"], "name": ["园"], "division_code": ["411621"]},
            [metric_box(0, 0, 400, 200)])),
        ("grids", _file(tmp_path / "g.gpkg", {"code": ["P-001", "P-002"]},
                        [metric_box(0, 0, 200, 200), metric_box(200, 0, 300, 200)])),
        ("enterprises", _file(tmp_path / "e.gpkg", {
            "name": ["甲"], "credit_code": [make_credit_code("411621", 1)]},
            [metric_box(50, 50, 80, 80)])),
        ("hazards", _file(tmp_path / "h.gpkg", {"category": ["消防安全"], "level": ["一般"],
                                                "description": ["灭火器过期"]},
                          [metric_point(300, 60)])),
    ]
    for layer, path in steps:
        extra = () if layer == "parks" else ("--park", "P")
        result = runner("import", layer, path, *extra)
        assert result.exit_code == 0, result.output
    return tmp_path


def _files(folder):
    """The files in ``folder`` but the SpatiaLite database's own."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("gridmap.sqlite"))


def _geojson(geom):
    return json.dumps(json.loads(gpd.GeoSeries([geom]).to_json())["features"][0]["geometry"])


def _staff(folder):
    path = folder / "staff.csv"
    path.write_text("grid_code,name,phone,role,published\n"
                    "P-001,王五,13800000000,网格长,true\nP-002,赵六,13800000001,网格长,true\n",
                    encoding="utf-8")
    return str(path)


def _apply_file(tmp_path):
    """The park's grids as a QGIS user leaves them: P-001 cut in two (both keep the code)."""
    shapes = [metric_box(0, 0, 200, 100), metric_box(0, 100, 200, 200),
              metric_box(200, 0, 300, 200)]
    return _file(tmp_path / "apply.gpkg", {"code": ["P-001", "P-001", "P-002"]}, shapes)


COMMANDS = {
    "import grids": lambda d: ("import", "grids", _file(
        d / "east.gpkg", {"code": ["P-003", "P-004"]},
        [metric_box(300, 0, 400, 100), metric_box(300, 100, 400, 200)]), "--park", "P"),
    "import staff": lambda d: ("import", "staff", _staff(d), "--park", "P"),
    "edit merge": lambda d: ("edit", "merge", "P-001", "P-002", "--park", "P", "--actor", "t"),
    "edit retire": lambda d: ("edit", "retire", "P-002", "--to", "P-001", "--park", "P",
                              "--actor", "t"),
    "edit reshape": lambda d: ("edit", "reshape", "P-001", "--geometry", _geojson(
        metric_box(0, 0, 250, 200)), "--neighbour", "P-002", "--park", "P", "--actor", "t"),
    "import enterprises": lambda d: ("import", "enterprises", _file(
        d / "e2.gpkg", {"name": ["乙", "丙"], "credit_code": [
            make_credit_code("411621", 2), make_credit_code("411621", 3)]},
        [metric_box(290, 50, 320, 80), metric_box(100, 100, 120, 120)]), "--park", "P"),
    "import hazards": lambda d: ("import", "hazards", _file(
        d / "h2.gpkg", {"category": ["消防安全"] * 2, "level": ["一般"] * 2,
                        "description": ["a", "b"]},
        [metric_point(60, 60), metric_point(150, 150)]), "--park", "P"),
    "import grids --apply": lambda d: ("import", "grids", _apply_file(d), "--park", "P",
                                       "--apply", "--actor", "t", "--allow-problems"),
    "edit split": lambda d: ("edit", "split", "P-001", "--parts", "3", "--park", "P",
                             "--actor", "t"),
    "edit draw": lambda d: ("edit", "draw", "--geometry", _geojson(metric_box(300, 0, 400, 200)),
                            "--park", "P", "--actor", "t"),
}


@pytest.mark.parametrize("error", [KeyboardInterrupt(), sa.exc.OperationalError(
    "INSERT", {}, Exception("server closed the connection unexpectedly"))],
    ids=["ctrl-c", "db-lost"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_write_cut_off_changes_nothing_and_a_rerun_works(park_p, runner, engine, command,
                                                           error):
    args = COMMANDS[command](park_p)
    files = _files(park_p)
    before = stored_snapshot(engine)
    for at in (1, 3):
        fault = _Fault(error, at)
        event.listen(Engine, "before_cursor_execute", fault)
        try:
            result = runner(*args)
        finally:
            event.remove(Engine, "before_cursor_execute", fault)
        if fault.seen < at:  # it writes fewer statements: this run was the re-run
            assert result.exit_code == 0, result.output
            assert stored_snapshot(engine) != before
            return
        # Ctrl-C is 130 (never 1, "the check found problems"); a lost database is 2.
        assert result.exit_code == (130 if isinstance(error, KeyboardInterrupt) else 2), (
            at, result.output)
        assert "Traceback" not in result.output and (
            "rolled back" in result.output or "database" in result.output)
        assert stored_snapshot(engine) == before, at
        assert _files(park_p) == files
    result = runner(*args)
    assert result.exit_code == 0, result.output
    assert stored_snapshot(engine) != before
