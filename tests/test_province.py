"""``gridmap demo --parks N --grids-per-park M``: the province-scale generator and loader."""

import numpy as np
import pytest
import shapely

from geodata.coverage import check_coverage
from geodata.gridcodes import grid_code
from geodata.province import build_province
from tests.conftest import stored_snapshot, table_counts


def _wkb(parks):
    """Every geometry and table of generated parks, as bytes and records, to compare runs."""
    out = []
    for p in parks:
        out.append(shapely.to_wkb(p.park["boundary"]))
        for frame in (p.grids, p.enterprises, p.hazards):
            out.append(shapely.to_wkb(frame.geometry.to_numpy()).tolist())
            out.append(frame.drop(columns="geometry").to_dict("records"))
        out.append(p.staff.to_dict("records"))
    return out


def test_generator_is_deterministic_and_seeded():
    first = _wkb(build_province(3, 50, seed=5))
    assert first == _wkb(build_province(3, 50, seed=5))
    assert first != _wkb(build_province(3, 50, seed=6))
    # Park i depends only on the seed and i: more parks keep the first ones.
    assert _wkb(build_province(4, 50, seed=5))[:len(first)] == first


@pytest.mark.parametrize("n", [1, 7, 50, 1200])
def test_generated_grids_tile_the_park(n):
    (park,) = build_province(1, n, seed=3)
    grids = park.grids
    assert len(grids) == n and grids["code"].is_unique
    assert grids["code"].tolist() == sorted(grids["code"])
    width = max(3, len(str(n)))
    assert grids["code"].iloc[-1] == grid_code("PV001", n, width=width)
    boundary = park.park["boundary"]
    assert boundary.is_valid and boundary.geom_type == "Polygon"
    assert len(boundary.interiors) == (1 if n >= 50 else 0)
    report = check_coverage(grids.geometry.to_numpy(), grids["code"].tolist(), park=boundary)
    assert report.valid, report.to_dict()
    assert not report.gaps and not report.overlaps and not report.outside_park
    # Every point lies in a grid (the assignment the loaders use finds one).
    assert len(park.staff) == n and set(park.staff["grid_code"]) == set(grids["code"])
    for frame in (park.enterprises, park.hazards):
        assert len(frame) >= 1
        assert shapely.contains(boundary, frame.geometry.to_numpy()).all()


def test_parks_are_apart_and_in_china():
    parks = list(build_province(12, 20, seed=1))
    boundaries = np.array([p.park["boundary"] for p in parks])
    assert len({p.park["code"] for p in parks}) == 12
    tree = shapely.STRtree(boundaries)
    left, right = tree.query(boundaries, predicate="intersects")
    assert (left == right).all()
    x0, y0, x1, y1 = shapely.total_bounds(boundaries)
    assert 73 < x0 < x1 < 135 and 18 < y0 < y1 < 54


@pytest.mark.parametrize("parks, grids", [(0, 5), (2, 0), (True, 5), (2, 1.5)])
def test_generator_refuses_bad_sizes(parks, grids):
    with pytest.raises(ValueError, match="must be a positive integer"):
        list(build_province(parks, grids))


def test_cli_loads_checks_and_skips_on_rerun(runner, engine):
    result = runner("demo", "--parks", 3, "--grids-per-park", 50, "--seed", 9)
    assert result.exit_code == 0, result.output
    assert "3 parks loaded" in result.output
    counts = table_counts(engine)
    assert counts["parks"] == 3 and counts["grids"] == 150 and counts["grid_staff"] == 150
    assert counts["enterprises"] == 3 and counts["hazards"] == 3
    check = runner("check", "--all")
    assert check.exit_code == 0, check.output
    assert check.output.count("VALID") == 3
    # What is stored is what was generated, vertex for vertex.
    snapshot = stored_snapshot(engine)
    stored = shapely.from_wkb([g for _, g in snapshot["grids_geom"]])
    generated = np.concatenate([p.grids.geometry.to_numpy()
                                for p in build_province(3, 50, seed=9)])
    expected = [shapely.MultiPolygon([g]) for g in generated]
    assert shapely.equals_exact(stored, expected, tolerance=0).all()
    again = runner("demo", "--parks", 3, "--grids-per-park", 50, "--seed", 9)
    assert again.exit_code == 0 and "0 parks loaded, 3 already stored" in again.output
    assert stored_snapshot(engine) == snapshot


def test_cli_grids_per_park_needs_parks(runner, engine):
    before = table_counts(engine)
    result = runner("demo", "--grids-per-park", 50)
    assert result.exit_code == 2 and "--grids-per-park needs --parks" in result.output
    assert table_counts(engine) == before
