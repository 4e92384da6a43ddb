"""Pure geometry of grid edits (metric CRS, metres): areas conserved, no slivers born."""

import pytest
import shapely
from shapely.geometry import LineString, box

from geodata import editing
from geodata.errors import ValidationError


@pytest.fixture
def four():
    """A 200 m x 200 m park in four 100 m cells A (SW), B (SE), C (NW), D (NE)."""
    cells = {"A": box(0, 0, 100, 100), "B": box(100, 0, 200, 100),
             "C": box(0, 100, 100, 200), "D": box(100, 100, 200, 200)}
    return {k: shapely.segmentize(v, 25) for k, v in cells.items()}


def _total(geoms):
    return sum(g.area for g in geoms)


def _tiles(cells, park):
    union = shapely.union_all(list(cells))
    return (abs(union.area - park.area) < 1e-6 and abs(_total(cells) - park.area) < 1e-6)


def test_draw_clips_to_park_and_uncovered_ground_and_snaps():
    park = box(0, 0, 300, 100)
    cells = [box(0, 0, 100, 100)]
    # Drawn 0.3 m short of the neighbour and past the park edge.
    drawn = box(100.3, -20, 180, 120)
    grid = editing.draw(drawn, park, cells)
    assert grid.bounds == pytest.approx((100, 0, 180, 100))
    assert grid.area == pytest.approx(80 * 100)
    assert shapely.intersection(grid, cells[0]).area == 0


def test_draw_over_covered_ground_is_refused():
    park = box(0, 0, 100, 100)
    with pytest.raises(ValidationError) as err:
        editing.draw(box(10, 10, 50, 50), park, [park])
    assert err.value.code == "empty_result"


def test_reshape_moves_shared_boundary_both_ways(four):
    park = box(0, 0, 200, 200)
    new_a = box(0, 0, 130, 100)  # A takes 30 m from B
    changed = editing.reshape(four, "A", new_a)
    assert set(changed) == {"A", "B"}
    assert changed["A"].area == pytest.approx(13000)
    assert changed["B"].area == pytest.approx(7000)
    assert _tiles({**four, **changed}.values(), park)
    shrink = editing.reshape(four, "A", box(0, 0, 60, 100), neighbours=["B"])
    assert shrink["B"].area == pytest.approx(14000) and shrink["A"].area == pytest.approx(6000)


def test_reshape_into_a_non_neighbour_leaves_the_overlap_for_the_check(four):
    changed = editing.reshape(four, "A", box(0, 0, 130, 130), neighbours=["B"])
    assert "D" not in changed  # D was not allowed to give ground
    assert shapely.intersection(changed["A"], four["D"]).area == pytest.approx(900)


def test_split_by_line_and_equal_area(four):
    halves = editing.split_by_line(four["A"], LineString([(40, 0), (40, 100)]))
    assert sorted(round(h.area) for h in halves) == [4000, 6000]
    parts = editing.split_equal_area(shapely.Polygon([(0, 0), (300, 0), (300, 50), (0, 100)]), 3)
    areas = [p.area for p in parts]
    assert max(areas) - min(areas) < 1e-3 * areas[0]
    assert _total(parts) == pytest.approx(300 * 75)


def test_split_line_must_cross():
    with pytest.raises(ValidationError) as err:
        editing.split_by_line(box(0, 0, 100, 100), LineString([(10, 10), (20, 20)]))
    assert err.value.code == "split_line_does_not_cross"


def test_merge_needs_adjacent(four):
    merged = editing.merge([four["A"], four["B"]])
    assert merged.area == pytest.approx(20000) and len(merged.geoms) == 1
    assert len(merged.geoms[0].interiors) == 0
    with pytest.raises(ValidationError) as err:
        editing.merge([four["A"], four["D"]])  # corner only
    assert err.value.code == "not_adjacent"


def test_retire_gives_ground_to_longest_border():
    cells = {"A": box(0, 0, 100, 100), "B": box(100, 0, 200, 100), "C": box(0, 100, 300, 200),
             "S": box(200, 0, 300, 100)}
    changed = editing.retire(cells, "S")
    assert set(changed) == {"C"} or set(changed) == {"B"}
    (receiver, geom), = changed.items()
    assert geom.area == pytest.approx(cells[receiver].area + 10000)
    assert editing.retire(cells, "S", to="B")["B"].area == pytest.approx(20000)


def test_absorb_sliver_cell_part_and_gap():
    cells = {"A": box(0, 0, 100, 100), "B": box(100.5, 0, 200, 100),
             "S": box(0, 100, 200, 100.4)}
    park = box(0, 0, 200, 100.4)
    changed, retired, filled = editing.absorb_slivers(cells, park=park, max_width_m=1.0)
    assert retired == ["S"]
    after = {**{k: v for k, v in cells.items() if k not in retired}, **changed}
    assert _total(after.values()) == pytest.approx(park.area)
    assert filled == pytest.approx(0.5 * 100)


def test_children_follow_a_split_parent():
    parent = box(0, 0, 100, 100)
    old = {"P-01": box(0, 0, 50, 100), "P-02": box(50, 0, 100, 100)}
    left = box(0, 0, 70, 100)
    kids = editing.children_for(left, old)
    assert sorted((round(g.area), tuple(s)) for g, s in kids) == [
        (2000, ("P-02",)), (5000, ("P-01",))]
    assert _total(g for g, _ in kids) == pytest.approx(left.area)
    merged = editing.children_for(box(0, 0, 200, 100), old, new_for_wide=True)
    assert sorted(round(g.area) for g, _ in merged) == [5000, 5000, 10000]
    assert parent.area == 10000
