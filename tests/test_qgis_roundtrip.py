"""The QGIS round trip: export grids to GeoPackage, edit as a planner would, --diff, --apply."""

import json

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import shapely.ops
import sqlalchemy as sa

from geodata.crs import to_metric, to_storage
from geodata.models import GridEdit
from geodata.storage import session_scope
from tests.conftest import stored_snapshot

EPSG = 4547


def back(geom):
    """Metric shape to EPSG:4326, snap-rounded to 1 µm first as QGIS's own precision would."""
    return to_storage(shapely.set_precision(geom, 1e-6), EPSG)


@pytest.fixture
def db_url(demo_db_url):
    """Every database test here starts from the demo park of 2025-11-30 (a copy, see conftest)."""
    return demo_db_url


@pytest.fixture
def exported(runner, engine, tmp_path):
    """The demo park's grids exported to a GeoPackage, read back as a planner's layer."""
    path = tmp_path / "park.gpkg"
    result = runner("export", "grids", path, "--park", "FGKFQ")
    assert result.exit_code == 0, result.output
    return path, gpd.read_file(path)


def _touching(frame, code):
    """Level-1 grids sharing a border with ``code`` (metric CRS)."""
    top = frame[frame["level"] == 1]
    geom = to_metric(top.set_index("code").geometry[code], EPSG)
    out = []
    for c, g in zip(top["code"], to_metric(top.geometry.to_numpy(), EPSG)):
        if c != code and shapely.length(shapely.intersection(g.boundary, geom.buffer(0.01))) > 10:
            out.append(c)
    return out


def _planner_edit(frame):
    """Move the A|B boundary 20 m into B and split C with a line, as QGIS would."""
    childless = set(frame.loc[frame["level"] == 1, "code"]) - set(frame["parent_code"].dropna())
    a = "FGKFQ-014" if "FGKFQ-014" in childless else sorted(childless)[10]
    b = next(c for c in _touching(frame, a) if c in childless)
    c = sorted(set(frame["parent_code"].dropna()))[0]  # a grid with workshop sub-grids
    geoms = frame.set_index("code").geometry
    ma, mb = to_metric(geoms[a], EPSG), to_metric(geoms[b], EPSG)
    grow = shapely.intersection(mb, ma.buffer(20, join_style="mitre"))
    new_a, new_b = shapely.union(ma, grow), shapely.difference(mb, grow)
    edited = frame.copy()
    edited.loc[edited["code"] == a, "geometry"] = back(new_a)
    edited.loc[edited["code"] == b, "geometry"] = back(new_b)
    # QGIS's split tool keeps both halves with the same attributes (the same code).
    mc = to_metric(geoms[c], EPSG)
    x = mc.centroid.x
    halves = shapely.ops.split(mc.geoms[0] if mc.geom_type == "MultiPolygon" else mc,
                               shapely.LineString([(x, mc.bounds[1] - 10),
                                                   (x, mc.bounds[3] + 10)])).geoms
    row = edited[edited["code"] == c]
    pieces = gpd.GeoDataFrame(
        [row.iloc[0].to_dict() for _ in halves], crs=edited.crs,
        geometry=[back(shapely.MultiPolygon([h])) for h in halves])
    edited = gpd.GeoDataFrame(pd.concat([edited[edited["code"] != c], pieces],
                                        ignore_index=True), crs=frame.crs)
    return edited, a, b, c


def test_diff_then_apply_a_planners_edits(runner, engine, exported, tmp_path):
    path, frame = exported
    edited, a, b, c = _planner_edit(frame)
    edited.to_file(path, driver="GPKG")
    snapshot = stored_snapshot(engine)

    diff = runner("import", "grids", path, "--park", "FGKFQ", "--diff")
    assert diff.exit_code == 0, diff.output
    lines = dict(line.split(": ", 1) for line in diff.output.strip().splitlines())
    assert lines["reshaped"] == ", ".join(sorted([a, b]))
    assert lines["added"].count("FGKFQ-0") >= 2 and "FGKFQ-061" in lines["added"]
    assert c in lines["retired"].split(", ")
    assert lines["coverage after"].startswith("VALID")
    assert stored_snapshot(engine) == snapshot  # --diff writes nothing

    applied = runner("import", "grids", path, "--park", "FGKFQ", "--apply", "--actor", "qgis",
                     "--reason", "road widening")
    assert applied.exit_code == 0, applied.output
    assert "edit 1 (import)" in applied.output
    check = runner("check", "--park", "FGKFQ", "--format", "json")
    assert check.exit_code == 0, check.output[-600:]
    report = json.loads(check.output)
    assert report["covered_area_m2"] == pytest.approx(report["park_area_m2"], abs=1.0)
    history = json.loads(runner("edit", "history", "--park", "FGKFQ", "--grid", a,
                                "--format", "json").output)
    assert [v["operation"] for v in history["versions"]] == ["initial", "import"]
    assert history["versions"][1]["actor"] == "qgis"
    split = json.loads(runner("edit", "history", "--park", "FGKFQ", "--grid", "FGKFQ-061",
                              "--format", "json").output)
    assert {link["source"] for link in split["lineage"]} == {c}


def test_overlapping_layer_is_refused_unless_problems_are_allowed(runner, engine, exported):
    path, frame = exported
    a = "FGKFQ-020"
    b = _touching(frame, a)[0]
    geoms = frame.set_index("code").geometry
    ma = to_metric(geoms[a], EPSG)
    grown = shapely.union(ma, shapely.intersection(to_metric(geoms[b], EPSG),
                                                   ma.buffer(15, join_style="mitre")))
    edited = frame.copy()
    edited.loc[edited["code"] == a, "geometry"] = back(shapely.MultiPolygon(
        list(shapely.get_parts(grown))))
    edited.to_file(path, driver="GPKG")
    snapshot = stored_snapshot(engine)

    diff = runner("import", "grids", path, "--park", "FGKFQ", "--diff")
    assert diff.exit_code == 1
    assert "new overlap" in diff.output and "would be refused" in diff.output
    refused = runner("import", "grids", path, "--park", "FGKFQ", "--apply", "--actor", "qgis")
    assert refused.exit_code == 2
    assert "overlap" in refused.stderr and "m²" in refused.stderr
    assert stored_snapshot(engine) == snapshot

    allowed = runner("import", "grids", path, "--park", "FGKFQ", "--apply", "--actor", "qgis",
                     "--allow-problems")
    assert allowed.exit_code == 0, allowed.output
    assert "recorded 1 coverage problems" in allowed.stderr
    assert runner("check", "--park", "FGKFQ").exit_code == 1
    with session_scope(engine) as session:
        (problems,) = session.execute(sa.select(GridEdit.problems)).scalars().all()
    (problem,) = json.loads(problems)
    assert problem["problem"] == "overlap" and sorted(problem["codes"]) == sorted([a, b])
    assert problem["area_m2"] > 100


def test_retired_codes_are_never_reused(runner, engine, exported):
    path, frame = exported
    assert runner("edit", "retire", "FGKFQ-033", "--park", "FGKFQ", "--actor", "x").exit_code == 0
    result = runner("import", "grids", path, "--park", "FGKFQ", "--diff")
    assert result.exit_code == 2 and "never reused" in result.stderr


def test_a_layer_asking_for_what_apply_cannot_do_is_refused(runner, engine, exported, tmp_path):
    """A new parent for a stored grid, or a kind out of the domain, is 422, not ignored or a
    database error; nothing is stored, and `check` still passes."""
    path, frame = exported
    kid = frame[frame["parent_code"].notna()].iloc[0]
    other = next(c for c in frame.loc[frame["level"] == 1, "code"] if c != kid["parent_code"])
    cases = [("keeps its parent", lambda f: f.assign(parent_code=f["parent_code"].where(
                 f["code"] != kid["code"], other))),
             ("keeps its parent", lambda f: f.assign(parent_code=f["parent_code"].where(
                 f["code"] != kid["code"], None))),
             ("kind", lambda f: pd.concat([f, f[f["code"] == other].assign(
                 code=None, kind="factory")], ignore_index=True))]
    before = stored_snapshot(engine)
    for words, change in cases:
        edited = gpd.GeoDataFrame(change(frame.copy()), crs=frame.crs)
        edited.to_file(tmp_path / "bad.gpkg", driver="GPKG")
        for mode in ("--diff", "--apply"):
            result = runner("import", "grids", tmp_path / "bad.gpkg", "--park", "FGKFQ", mode,
                            "--actor", "t", "--format", "json")
            assert result.exit_code == 2 and words in result.output, result.output
            assert "database error" not in result.output
        assert stored_snapshot(engine) == before
    assert runner("check", "--park", "FGKFQ").exit_code == 0


def test_a_renamed_grid_is_reported_not_silently_kept(runner, engine, exported, tmp_path):
    """A name or kind changed in QGIS is not applied by the round trip (it edits shapes):
    --diff and --apply say so for that grid, in text and JSON, instead of "no changes"
    alone; a reshape in the same file still goes through; the stored name is kept."""
    path, frame = exported
    _, *edited_codes = _planner_edit(frame)
    code = next(c for c in frame.loc[frame["level"] == 1, "code"] if c not in edited_codes)
    stored_name = frame.loc[frame["code"] == code, "name"].iloc[0]
    edited = frame.copy()
    edited.loc[edited["code"] == code, "name"] = "改名网格"
    edited.loc[edited["code"] == code, "kind"] = "enterprise"
    edited.to_file(tmp_path / "renamed.gpkg", driver="GPKG")
    before = stored_snapshot(engine)
    result = runner("import", "grids", tmp_path / "renamed.gpkg", "--park", "FGKFQ", "--diff")
    assert result.exit_code == 0 and "no changes" in result.stdout
    assert f"grid {code}: name '改名网格' is not applied" in result.stderr
    assert f"grid {code}: kind 'enterprise' is not applied" in result.stderr
    result = runner("import", "grids", tmp_path / "renamed.gpkg", "--park", "FGKFQ", "--diff",
                    "--format", "json")
    warnings = json.loads(result.stdout)["warnings"]
    assert [w.split(f"grid {code}: ")[1].split(" is")[0] for w in warnings] == [
        "name '改名网格'", "kind 'enterprise'"]
    assert stored_snapshot(engine) == before
    plain = runner("import", "grids", path, "--park", "FGKFQ", "--diff", "--format", "json")
    assert json.loads(plain.stdout)["warnings"] == []
    # With a real change in the file, --apply writes it and still names what it kept.
    changed = _planner_edit(edited)[0]
    changed.to_file(tmp_path / "both.gpkg", driver="GPKG")
    result = runner("import", "grids", tmp_path / "both.gpkg", "--park", "FGKFQ", "--apply",
                    "--actor", "t")
    assert result.exit_code == 0, result.output
    assert f"grid {code}: name '改名网格' is not applied" in result.stderr
    with engine.connect() as conn:
        name = conn.execute(sa.text("SELECT name FROM grids WHERE code = :c"), {"c": code})
        assert name.scalar_one() == stored_name
