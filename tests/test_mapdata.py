"""Map data service: coverage-preserving simplification, bbox filter, cache, summaries."""

import json
from datetime import date

import numpy as np
import pytest
import shapely

from geodata.services import mapdata
from geodata.services.parks import get_park
from geodata.storage import make_engine, session_scope
from tests.browser import demo_url, load_payload_park  # noqa: F401

TODAY = date(2025, 11, 30)


def test_tolerance_per_pair_of_zooms_and_stops_at_full_detail():
    assert mapdata.tolerance_for_zoom(10) == mapdata.tolerance_for_zoom(11)
    assert mapdata.tolerance_for_zoom(10) == pytest.approx(4 * mapdata.tolerance_for_zoom(12))
    assert mapdata.tolerance_for_zoom(mapdata.FULL_DETAIL_ZOOM) == 0.0


def test_coverage_simplify_keeps_neighbours_meeting():
    rng = np.random.default_rng(3)
    pts = shapely.multipoints(rng.uniform(0, 1, (200, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=shapely.box(0, 0, 1, 1)))
    cells = shapely.intersection(cells, shapely.box(0, 0, 1, 1))
    # densify edges so there is something to simplify
    cells = shapely.segmentize(cells, 0.002)
    out = mapdata._simplify_coverage(cells, 0.01)
    assert shapely.get_num_coordinates(out).sum() < shapely.get_num_coordinates(cells).sum() / 3
    assert shapely.is_valid(out).all()
    # no overlaps and no gaps: the pieces still add up to their union, which is the square
    union = shapely.union_all(out)
    assert shapely.area(out).sum() == pytest.approx(union.area, rel=1e-9)
    assert union.area == pytest.approx(1.0, rel=1e-9)


@pytest.fixture
def demo_session(demo_url):  # noqa: F811
    engine = make_engine(demo_url)
    with session_scope(engine) as session:
        yield session, get_park(session, "FGKFQ")
    engine.dispose()


def test_simplified_layer_is_smaller_and_still_a_coverage(demo_session):
    session, park = demo_session
    full = mapdata.grid_layer(session, park, today=TODAY)
    coarse = mapdata.grid_layer(session, park, zoom=13, today=TODAY)
    geoms = shapely.from_geojson([json.dumps(f["geometry"])
                                  for f in coarse["features"]])
    full_geoms = shapely.from_geojson([json.dumps(f["geometry"])
                                       for f in full["features"]])
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(
        full_geoms).sum()
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-6)
    assert union.area == pytest.approx(shapely.union_all(full_geoms).area, rel=0.02)


def test_bbox_filter_and_limit(demo_session):
    session, park = demo_session
    everything = mapdata.grid_layer(session, park, today=TODAY)
    minx, miny, maxx, maxy = shapely.bounds(shapely.union_all(shapely.from_geojson(
        [json.dumps(f["geometry"]) for f in everything["features"]])))
    west = mapdata.grid_layer(session, park, bbox=(minx, miny, (minx + maxx) / 2, maxy),
                              today=TODAY)
    assert 0 < west["numberMatched"] < everything["numberMatched"]
    limited = mapdata.grid_layer(session, park, limit=5, today=TODAY)
    assert limited["numberReturned"] == 5 and limited["numberMatched"] == 60
    empty = mapdata.grid_layer(session, park, bbox=(0, 0, 1, 1), today=TODAY)
    assert empty["features"] == [] and empty["numberMatched"] == 0


def test_summaries_count_sub_grid_hazards_in_their_parent(demo_session):
    session, park = demo_session
    summaries = mapdata.grid_summaries(session, park, TODAY)
    for code, s in summaries.items():
        if s["level"] == 2:
            assert summaries[s["parent_code"]]["open_hazards"] >= s["open_hazards"]
    overview = mapdata.park_overview(session, park, TODAY)
    assert sum(s["open_hazards"] for s in summaries.values() if s["level"] == 1) == \
        overview["open_hazards"]
    assert sum(s["overdue_hazards"] for s in summaries.values() if s["level"] == 1) == \
        overview["overdue_hazards"]


def test_cache_follows_edits(engine):
    load_payload_park(engine)
    from geodata.models import Grid
    from geodata.models.base import to_element, to_shapes

    with session_scope(engine) as session:
        park = get_park(session, "X")
        before = mapdata.grid_layer(session, park)
        assert before["numberMatched"] == 4
    with session_scope(engine, write=True) as session:
        grid = session.query(Grid).filter_by(code="X-004").one()
        geom = to_shapes([grid.geom])[0]
        grid.geom = to_element(shapely.MultiPolygon([shapely.box(*geom.bounds)]))
        grid.area_m2 = grid.area_m2 + 1.0
    with session_scope(engine) as session:
        park = get_park(session, "X")
        grid_ids = [f["id"] for f in mapdata.grid_layer(session, park)["features"]]
        assert grid_ids == ["X-001", "X-002", "X-003", "X-004"]
    with session_scope(engine, write=True) as session:
        session.query(Grid).filter_by(code="X-004").one().active_to = date(2025, 1, 1)
    with session_scope(engine) as session:
        park = get_park(session, "X")
        assert mapdata.grid_layer(session, park)["numberMatched"] == 3
