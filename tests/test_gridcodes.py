"""Tests for geodata.gridcodes: code format and reading order."""

import numpy as np
import pytest
import shapely

from geodata.gridcodes import grid_code, reading_order


def test_grid_code_levels():
    assert grid_code("FGKFQ", 1) == "FGKFQ-001"
    assert grid_code("FGKFQ", 42, 3) == "FGKFQ-042-03"


@pytest.mark.parametrize(
    "park, seq, sub",
    [("fgkfq", 1, None), ("FGKFQ", 0, None), ("FGKFQ", 1000, None), ("FGKFQ", 1, 0),
     ("FGKFQ", 1, 100), ("FGKFQ", True, None), ("FGKFQ", 1.0, None)],
)
def test_grid_code_rejects(park, seq, sub):
    with pytest.raises(ValueError):
        grid_code(park, seq, sub)


def test_reading_order_rows_north_to_south_then_west_to_east():
    # a 3 x 2 block of 100 m squares, given in scrambled order; y grows northwards
    origins = [(100, 0), (0, 100), (200, 100), (0, 0), (200, 0), (100, 100)]
    boxes = [shapely.box(x, y, x + 100, y + 100) for x, y in origins]
    rank = reading_order(boxes)
    assert rank.tolist() == [4, 0, 2, 3, 5, 1]
    # a small northward jitter within a row must not break the row
    boxes[2] = shapely.box(200, 130, 300, 230)
    assert reading_order(boxes).tolist() == [4, 0, 2, 3, 5, 1]


def test_reading_order_storage_crs_matches_metric():
    from geodata.crs import to_storage

    boxes = np.array([shapely.box(x, y, x + 300, y + 300)
                      for y in (3_770_000, 3_770_400) for x in (535_000, 535_400, 535_800)])
    lonlat = to_storage(boxes, 4547)
    assert reading_order(lonlat, epsg=4326).tolist() == reading_order(boxes).tolist()


def test_reading_order_empty_input():
    assert reading_order([]).size == 0
