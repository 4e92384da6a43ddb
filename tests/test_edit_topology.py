"""Border moves keep a clean topology: a property test over every neighbouring demo pair.

For every pair of neighbouring demo grids (level-1 grids, and sub-grids of
one parent), both ways, a strip 0.5, 3, 10 and 25 m wide along their shared
border goes from one to the other through the real reshape service.  Every
move must succeed with a valid coverage, the two grids must share their
border vertex for vertex, and no grid may gain a part under 1 m².  A sample
of the moves is written for real and checked with ``gridmap check``, an
export and ``import grids --diff`` (no change), then undone with a restore.
"""

from datetime import date

import numpy as np
import shapely
from sqlalchemy.orm import Session

from geodata.arrangement import GRID_SIZE_DEG, MIN_PART_M2
from geodata.crs import to_metric, to_storage
from geodata.services import edits
from geodata.services.demo_loader import load_demo
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.storage import session_scope

PARK = "FGKFQ"
EPSG = 4547
WIDTHS_M = (0.5, 3.0, 10.0, 25.0)
# A GeoJSON client sends about 7 decimals (~1 cm): half the moves come that way, so the
# proposed border is off the stored vertices and the neighbours' edges by up to 1 cm.
CLIENT_DECIMALS = 7
WRITE_EVERY = 23  # every 23rd pair is also written, checked, exported and restored


def _pairs(session, park):
    """``[(a, b)]`` of neighbouring grids with one parent, with their metric shapes."""
    rows = active_grids(session, park)
    metric = dict(zip((g.code for g in rows), to_metric(grid_geometries(rows), EPSG)))
    parent = {g.code: g.parent_id for g in rows}
    codes = sorted(metric)
    tree = shapely.STRtree([metric[c] for c in codes])
    pairs = []
    for i, j in zip(*tree.query([metric[c] for c in codes], predicate="intersects")):
        a, b = codes[i], codes[j]
        if a < b and parent[a] == parent[b] and \
                shapely.length(shapely.intersection(metric[a], metric[b])) > 1.0:
            pairs.append((a, b))
    return sorted(pairs), metric


def _proposal(metric, a, b, width_m, rounded):
    """``a`` grown into ``b`` by a strip ``width_m`` wide along their border (EPSG:4326)."""
    border = shapely.intersection(metric[a], metric[b])
    strip = shapely.intersection(metric[b], shapely.buffer(border, width_m))
    proposal = to_storage(shapely.union(metric[a], strip), EPSG)
    if rounded:
        proposal = shapely.transform(proposal, lambda xy: np.round(xy, CLIENT_DECIMALS))
    return proposal


def _small_parts(geoms):
    """``[(code, area m²)]`` of parts under :data:`MIN_PART_M2`."""
    out = []
    for code, geom in geoms.items():
        for part in shapely.get_parts(to_metric(geom, EPSG)):
            if part.area < MIN_PART_M2:
                out.append((code, part.area))
    return out


def _assert_move(preview, a, b, what):
    assert not preview.problems, (what, preview.problems)
    assert preview.report.valid, (what, preview.report.summary_line())
    assert a in preview.grids, (what, preview.reshaped)
    assert all(g.is_valid and g.geom_type == "MultiPolygon" for g in preview.grids.values())
    assert _small_parts(preview.grids) == [], what
    if b in preview.retired:  # a strip wider than the neighbour takes all of it
        return
    # One arrangement: the two grids share their border vertex for vertex.
    edges = shapely.coverage_invalid_edges([preview.grids[a], preview.grids[b]])
    assert shapely.is_empty(edges).all(), (what, edges)
    shared = shapely.intersection(preview.grids[a], preview.grids[b])
    assert shapely.area(to_metric(shared, EPSG)) == 0, what


def _assert_stored_park_clean(runner, engine, tmp_path):
    result = runner("check", "--park", PARK)
    assert result.exit_code == 0, result.output[-800:]
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK))
        geoms = dict(zip((g.code for g in rows), grid_geometries(rows)))
    assert _small_parts(geoms) == []
    assert {g.geom_type for g in geoms.values()} == {"MultiPolygon"}
    path = tmp_path / "grids.geojson"
    assert runner("export", "grids", path, "--park", PARK).exit_code == 0
    diff = runner("import", "grids", path, "--park", PARK, "--diff")
    assert diff.exit_code == 0, diff.output
    assert diff.output.startswith("no changes\n"), diff.output


def test_every_border_move_keeps_a_clean_topology(engine, runner, tmp_path):
    load_demo(engine, today=date(2025, 11, 30))
    with session_scope(engine) as session:
        pairs, metric = _pairs(session, get_park(session, PARK))
    levels = {len(a.split("-")) for a, _ in pairs}
    assert len(pairs) > 100 and levels == {2, 3}  # level-1 pairs and sub-grid pairs
    session = Session(engine)
    try:
        for n, (a, b) in enumerate(pairs):
            for x, y in ((a, b), (b, a)):
                for k, width in enumerate(WIDTHS_M):
                    what = f"{x} takes {width} m from {y}"
                    park = get_park(session, PARK)
                    preview = edits.reshape_grid(
                        session, park, x, _proposal(metric, x, y, width, rounded=k % 2 == 1),
                        neighbours=[y], actor="property-test", dry_run=True)
                    session.rollback()
                    _assert_move(preview, x, y, what)
            if n % WRITE_EVERY:
                continue
            with session_scope(engine, write=True) as writer:
                park = get_park(writer, PARK)
                out = edits.reshape_grid(writer, park, a, _proposal(metric, a, b, 10.0, True),
                                         neighbours=[b], actor="property-test")
                assert set(out.reshaped) >= {a, b}
            _assert_stored_park_clean(runner, engine, tmp_path)
            with session_scope(engine, write=True) as writer:
                park = get_park(writer, PARK)
                edits.restore_park(writer, park, out.edit.id - 1, actor="property-test")
    finally:
        session.close()
    _assert_stored_park_clean(runner, engine, tmp_path)


def test_grid_size_is_finer_than_the_tolerance():
    # 1e-9 degrees is ~0.1 mm: the snap-rounding moves nothing by more than noise.
    metres = shapely.length(to_metric(shapely.LineString(
        [(114.39, 34.06), (114.39 + GRID_SIZE_DEG, 34.06 + GRID_SIZE_DEG)]), EPSG))
    assert metres < edits.TOLERANCE_M / 50
