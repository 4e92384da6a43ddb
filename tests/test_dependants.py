"""What hangs off the grids follows every write of the grids or the sites, on both backends.

Enterprises, open hazards and open requests store the grid they are in.  Any
write that adds, reshapes or retires a grid, or adds a site, must leave each
of them pointing at the grid the spatial rule gives now, and never at a
retired grid.  :func:`stale_links` recomputes every link and lists those that
disagree; each step of the table below must leave none.
"""

import json

import geopandas as gpd
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import (Enterprise, Grid, GridStaff, Hazard, Park, ServiceRequest,
                            User, UserGrid)
from geodata.request_workflow import DONE
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.ledger import relocation
from geodata.services.sites import enterprises_of, site_geometries
from geodata.spatial import assign_to_cells
from geodata.storage import session_scope
from tests.conftest import metric_box, metric_point, stored_snapshot


def stale_links(engine):
    """Every stored grid/enterprise link that disagrees with the spatial rule, as tuples."""
    stale = []
    with session_scope(engine) as session:
        for park in session.execute(sa.select(Park).order_by(Park.id)).scalars():
            level1 = active_grids(session, park, level=1)
            firms = enterprises_of(session, park)
            wanted = assign_to_cells(site_geometries(firms), grid_geometries(level1))
            stale += [("enterprise", e.credit_code, e.grid_id, level1[k].id if k >= 0 else None)
                      for e, k in zip(firms, wanted)
                      if e.grid_id != (level1[k].id if k >= 0 else None)]
            stale += [("hazard", m["id"], m["was"], [m["grid_id"], m["enterprise_id"]])
                      for m in relocation(session, park)]
            stale += [("request", r.id, r.grid_id) for r, grid in session.execute(
                sa.select(ServiceRequest, Enterprise.grid_id)
                .join(Enterprise, Enterprise.id == ServiceRequest.enterprise_id)
                .where(ServiceRequest.park_id == park.id, ServiceRequest.status.not_in(DONE)))
                if r.grid_id != grid]
        retired = sa.select(Grid.id).where(Grid.active_to.is_not(None))
        for model, where in ((Enterprise, True), (Hazard, Hazard.status != "closed"),
                             (ServiceRequest, ServiceRequest.status.not_in(DONE)),
                             (GridStaff, True), (UserGrid, True)):
            stale += [(model.__tablename__, i, "retired grid") for i in session.execute(
                sa.select(model.id).where(model.grid_id.in_(retired), where)).scalars()]
    return stale


def _file(path, frame):
    gpd.GeoDataFrame(frame["props"], geometry=frame["geoms"], crs=4326).to_file(path)
    return path


def test_every_grid_and_site_write_keeps_the_links(runner, engine, tmp_path):
    park = {"props": {"code": ["P"], "name": ["测试园区"], "division_code": ["411621"]},
            "geoms": [metric_box(0, 0, 400, 200)]}
    assert runner("import", "parks", _file(tmp_path / "park.gpkg", park)).exit_code == 0
    e1, e2 = make_credit_code("411621", 1), make_credit_code("411621", 2)

    # Hazards logged before any site or grid: in no grid, no enterprise.
    hazards = {"props": {"category": ["消防安全"] * 2, "level": ["一般"] * 2,
                         "description": ["灭火器过期", "通道堵塞"]},
               "geoms": [metric_point(60, 60), metric_point(310, 60)]}
    steps = [("import", "hazards", _file(tmp_path / "h.gpkg", hazards), "--park", "P")]
    # Sites before grids: in no grid yet; the hazard at (60, 60) is now on e1's site.
    sites = {"props": {"name": ["甲", "乙"], "credit_code": [e1, e2]},
             "geoms": [metric_box(50, 50, 80, 80), metric_box(300, 50, 330, 80)]}
    steps.append(("import", "enterprises", _file(tmp_path / "e.gpkg", sites), "--park", "P"))
    # Grids afterwards: every site and open hazard is in one now.
    grids = {"props": {"code": ["P-001", "P-002"], "name": ["西", "东"]},
             "geoms": [metric_box(0, 0, 200, 200), metric_box(200, 0, 400, 200)]}
    steps.append(("import", "grids", _file(tmp_path / "g.gpkg", grids), "--park", "P"))
    # A grid member limited to the east grid, and its grid chief.
    steps.append(("users", "add", "member", "--role", "inspector", "--password",
                  "Member-pass-2025!", "--grid", "P-002", "--park", "P"))
    staff = tmp_path / "staff.csv"
    staff.write_text("grid_code,name,phone,role,published\nP-002,王五,13800000000,网格长,true\n",
                     encoding="utf-8")
    steps.append(("import", "staff", staff, "--park", "P"))
    steps += [("edit", "split", "P-002", "--parts", "2", "--park", "P", "--actor", "t"),
              ("edit", "merge", "P-003", "P-004", "--park", "P", "--actor", "t"),
              ("edit", "retire", "P-005", "--to", "P-001", "--park", "P", "--actor", "t"),
              ("edit", "restore", "--edit", "0", "--park", "P", "--actor", "t")]
    member_grids = {"split": ["P-003", "P-004"], "merge": ["P-005"], "retire": ["P-001"]}
    for step in steps:
        result = runner(*step)
        assert result.exit_code == 0, (step, result.output)
        assert stale_links(engine) == [], step
        if step[:2] in (("edit", "split"), ("edit", "merge"), ("edit", "retire")):
            # The member limited to P-002 follows its ground: to both halves, to the merged
            # grid, to the grid that took it.
            with session_scope(engine) as session:
                member = session.execute(sa.select(User).where(User.username == "member")
                                         ).scalar_one()
                assert sorted(g.grid.code for g in member.grids) == member_grids[step[1]]
    assert runner("check", "--park", "P").exit_code == 0
    # The QGIS round trip: the file's P-001 is split in two features (QGIS copies the code).
    out = tmp_path / "grids.geojson"
    assert runner("export", "grids", out, "--park", "P").exit_code == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    west = next(f for f in doc["features"] if f["properties"]["code"] == "P-001")
    doc["features"].remove(west)
    for box in (metric_box(0, 0, 200, 100), metric_box(0, 100, 200, 200)):
        doc["features"].append({"type": "Feature", "properties": dict(west["properties"]),
                                "geometry": json.loads(gpd.GeoSeries([box]).to_json())[
                                    "features"][0]["geometry"]})
    out.write_text(json.dumps(doc), encoding="utf-8")
    result = runner("import", "grids", out, "--park", "P", "--apply", "--actor", "t")
    assert result.exit_code == 0, result.output
    assert stale_links(engine) == []
    with session_scope(engine) as session:
        firm = session.execute(sa.select(Enterprise).where(Enterprise.credit_code == e1)
                               ).scalar_one()
        assert firm.grid.active_to is None and firm.grid.code not in ("P-001", "P-002")
        hazard = session.execute(sa.select(Hazard).where(Hazard.description == "灭火器过期")
                                 ).scalar_one()
        assert (hazard.grid_id, hazard.enterprise_id) == (firm.grid_id, firm.id)
    assert runner("check", "--park", "P").exit_code == 0


def test_a_refused_grid_import_moves_no_link(runner, engine, tmp_path):
    park = {"props": {"code": ["P"], "name": ["园"], "division_code": ["411621"]},
            "geoms": [metric_box(0, 0, 400, 200)]}
    assert runner("import", "parks", _file(tmp_path / "park.gpkg", park)).exit_code == 0
    sites = {"props": {"name": ["甲"], "credit_code": [make_credit_code("411621", 1)]},
             "geoms": [metric_box(50, 50, 80, 80)]}
    assert runner("import", "enterprises", _file(tmp_path / "e.gpkg", sites),
                  "--park", "P").exit_code == 0
    before = stored_snapshot(engine)
    # The second grid overlaps the first by 10 m: the whole file is refused.
    grids = {"props": {"code": ["P-001", "P-002"]},
             "geoms": [metric_box(0, 0, 200, 200), metric_box(190, 0, 400, 200)]}
    result = runner("import", "grids", _file(tmp_path / "g.gpkg", grids), "--park", "P")
    assert result.exit_code == 2 and "overlap" in result.output
    assert stored_snapshot(engine) == before


def test_a_grid_import_never_leaves_what_check_calls_invalid(runner, engine, tmp_path):
    """Sub-grids need a parent in force; grids given as retired are history, not cover."""
    park = {"props": {"code": ["P"], "name": ["园"], "division_code": ["411621"]},
            "geoms": [metric_box(0, 0, 400, 200)]}
    assert runner("import", "parks", _file(tmp_path / "park.gpkg", park)).exit_code == 0
    grids = {"props": {"code": ["P-001", "P-002"]},
             "geoms": [metric_box(0, 0, 200, 200), metric_box(200, 0, 400, 200)]}
    assert runner("import", "grids", _file(tmp_path / "g.gpkg", grids),
                  "--park", "P").exit_code == 0
    assert runner("edit", "retire", "P-002", "--to", "P-001", "--park", "P",
                  "--actor", "t").exit_code == 0
    before = stored_snapshot(engine)
    result = runner("users", "add", "late", "--role", "inspector", "--password",
                    "Member-pass-2025!", "--grid", "P-002", "--park", "P")
    assert result.exit_code == 2 and "no grid in force" in result.output, result.output
    refused = [
        # under a stored retired grid
        ({"code": ["P-002-01"], "parent_code": ["P-002"]}, [metric_box(200, 0, 300, 200)],
         "retired"),
        # under a grid the same file gives as retired
        ({"code": ["P-009", "P-009-01"], "parent_code": [None, "P-009"],
          "active_to": ["2020-01-01", None]},
         [metric_box(0, 0, 100, 100), metric_box(0, 0, 50, 50)], "retired"),
        # retired before it came into force
        ({"code": ["P-010"], "active_from": ["2021-01-01"], "active_to": ["2020-01-01"]},
         [metric_box(0, 0, 100, 100)], "before active_from"),
    ]
    for props, geoms, words in refused:
        result = runner("import", "grids", _file(tmp_path / "bad.gpkg",
                                                 {"props": props, "geoms": geoms}),
                        "--park", "P")
        assert result.exit_code == 2 and words in result.output, result.output
        assert stored_snapshot(engine) == before
        assert runner("check", "--park", "P").exit_code == 0
    # A grid of the past (with active_to) over ground a grid in force covers is history.
    old = {"props": {"code": ["P-011"], "active_from": ["2019-01-01"],
                     "active_to": ["2020-01-01"]}, "geoms": [metric_box(0, 0, 100, 100)]}
    result = runner("import", "grids", _file(tmp_path / "old.gpkg", old), "--park", "P")
    assert result.exit_code == 0, result.output
    assert runner("check", "--park", "P").exit_code == 0
    assert stale_links(engine) == []


def test_a_hazard_placed_while_a_site_import_commits_is_placed_again(engine, monkeypatch):
    """The API places a hazard before it takes the write lock; a site imported in between
    (another process) must not leave the hazard without the enterprise it lies on."""
    import pandas as pd

    from geodata.services import ledger
    from geodata.services.parks import get_park
    from geodata.services.sites import import_enterprises
    from tests.ledger_helpers import ACTORS, build_park

    build_park(engine, users=False)
    point = metric_point(850, 850)  # T-002, on no site yet
    real_start_write = ledger.start_write

    def site_import_commits_meanwhile(session):
        with session_scope(engine, write=True) as other:
            park = get_park(other, "T", lock=True)
            import_enterprises(other, park, gpd.GeoDataFrame(pd.DataFrame([{
                "name": "丙公司", "credit_code": make_credit_code("411621", 3)}]),
                geometry=[metric_box(800, 800, 900, 900)], crs=4326))
        monkeypatch.setattr(ledger, "start_write", real_start_write)
        real_start_write(session)

    monkeypatch.setattr(ledger, "start_write", site_import_commits_meanwhile)
    with session_scope(engine) as session:
        hazard = ledger.create_hazard(session, get_park(session, "T"), point=point,
                                      category="其他", actor=ACTORS["inspector"])
        assert hazard.enterprise is not None and hazard.enterprise.name == "丙公司"
    assert stale_links(engine) == []


def test_every_function_that_writes_grids_lets_the_dependants_follow():
    """A source scan: a function that makes a grid (``Grid(...)``) or changes one's ground or
    state (``<grid>.geom = ``, ``<grid>.active_to = ``) calls ``follow_grids`` itself, so
    the next writer of grids cannot leave sites and hazards behind."""
    import ast
    from pathlib import Path

    import geodata

    def writes_grids(node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and getattr(sub.func, "id", None) == "Grid":
                return True
            targets = sub.targets if isinstance(sub, ast.Assign) else []
            for target in targets:
                for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(t, ast.Attribute) and t.attr in ("geom", "active_to") and \
                            "grid" in ast.unparse(t.value).lower():
                        return True
        return False

    found, missing = [], []
    for path in sorted(Path(geodata.__file__).parent.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # revisions write the schema of their time, not today's rows
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and writes_grids(node):
                found.append(node.name)
                if "follow_grids" not in {getattr(n, "id", None) for n in ast.walk(node)}:
                    missing.append(f"{path.name}:{node.name}")
    assert {"import_grids", "_write"} <= set(found)
    assert missing == []
