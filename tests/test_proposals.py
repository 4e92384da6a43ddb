"""Proposed grids: exact tiling, every enterprise in one grid, balance options, adoption."""

import json
from datetime import date

import geopandas as gpd
import pytest

from geodata.coverage import check_coverage
from geodata.demo import build_demo_park
from geodata.errors import ValidationError
from geodata.proposals import propose_grids, proposal_stats
from geodata.services.demo_loader import load_demo

METHODS = ("voronoi", "regular", "enterprise")


@pytest.fixture(scope="module")
def demo():
    """The demo park as data (no database)."""
    return build_demo_park(today=date(2025, 11, 30))


def _check(demo, frame):
    sites = demo.enterprises[["name", "credit_code", "geometry"]]
    return check_coverage(frame.geometry.to_numpy(), frame["code"], frame["parent_code"],
                          park=demo.park["boundary"], enterprises=sites,
                          metric_epsg=demo.metric_epsg)


@pytest.mark.parametrize("method", METHODS)
def test_proposal_tiles_the_park_with_every_site_in_one_grid(demo, method):
    frame = propose_grids(demo.park["boundary"], demo.enterprises, method, 60,
                          park_code="FGKFQ")
    report = _check(demo, frame)
    assert report.valid, report.summary_line()
    assert report.coverage_ratio == pytest.approx(1.0, abs=1e-9)
    assert report.enterprises == {"no_grid": [], "multi_grid": []}
    stats = proposal_stats(frame)
    assert 55 <= stats["cells"] <= 60 and stats["cv_area"] < 0.5
    own = frame[frame["kind"] == "enterprise"]
    assert len(own) >= 3
    subs = frame[frame["level"] == 2]
    assert set(subs["parent_code"]) == set(own["code"])
    assert set(subs["kind"]) == {"workshop"}
    assert frame.loc[frame["level"] == 1, "enterprises"].sum() == len(demo.enterprises)
    assert list(frame["code"][:2]) == ["FGKFQ-001", "FGKFQ-001-01"] or \
        frame["code"].iloc[0] == "FGKFQ-001"


@pytest.mark.parametrize("method", METHODS)
def test_balance_options_balance_what_they_say(demo, method):
    stats = {b: proposal_stats(propose_grids(demo.park["boundary"], demo.enterprises, method,
                                             60, b, park_code="FGKFQ"))
             for b in ("area", "enterprises", "employees")}
    assert stats["enterprises"]["cv_enterprises"] < stats["area"]["cv_enterprises"]
    assert stats["employees"]["cv_employees"] < stats["area"]["cv_employees"]


def test_without_enterprises_and_bad_options(demo):
    frame = propose_grids(demo.park["boundary"], None, "regular", 12)
    assert len(frame) == 12 and set(frame["kind"]) == {"area"}
    assert _check(demo, frame).valid
    with pytest.raises(ValidationError):
        propose_grids(demo.park["boundary"], None, "hexagons", 12)
    with pytest.raises(ValidationError):
        propose_grids(demo.park["boundary"], None, "voronoi", 12, "profit")


def test_propose_grids_cli_draft_then_adopt(runner, engine, tmp_path):
    load_demo(engine, today=date(2025, 11, 30))
    out = tmp_path / "draft.geojson"
    result = runner("propose-grids", "--park", "FGKFQ", "--method", "regular",
                    "--target-count", "40", "--balance", "enterprises", "--out", out)
    assert result.exit_code == 0, result.output
    assert "VALID" in result.output and "area min/median/max" in result.output
    assert len(gpd.read_file(out).query("level == 1")) <= 40
    assert runner("history", "--park", "FGKFQ").exit_code != 0  # not a top-level command
    assert "no edits yet" in runner("edit", "history", "--park", "FGKFQ").output
    result = runner("propose-grids", "--park", "FGKFQ", "--method", "voronoi",
                    "--target-count", "30", "--adopt", "--actor", "planner")
    assert result.exit_code == 0, result.output
    assert "adopt_proposal" in result.output and "retired FGKFQ-001" in result.output
    check = runner("check", "--park", "FGKFQ", "--format", "json")
    assert check.exit_code == 0, check.output[-500:]
    report = json.loads(check.output)
    assert report["rates"]["enterprises_in_grid"] == 1.0
    assert report["enterprises"]["multi_grid"] == []
    codes = [g for g in json.loads(runner("edit", "history", "--park", "FGKFQ", "--format",
                                          "json").output)[0]["grids"]]
    assert "FGKFQ-061" in codes  # new codes continue the park's sequence
