"""Splits keep a clean topology: random lines and part counts over the demo grids.

For a seeded sample of demo grids (level-1 grids, grids with sub-grids, and
sub-grids), random split lines at random angles through a random point of
the grid, half of them sent at 7 decimals as a GeoJSON client would, some
through a stored vertex, and splits into 2-5 parts of equal area, go
through the real split service.  Each one either succeeds with a valid
coverage (no new problem, every grid a valid MultiPolygon without parts
under 1 m², the pieces and their neighbours sharing their borders vertex for
vertex) or is refused with a 422 that says why.  A sample is written for
real and checked with ``gridmap check``, then undone with a restore.
"""

from datetime import date

import numpy as np
import shapely
from sqlalchemy.orm import Session

from geodata.crs import to_metric, to_storage
from geodata.errors import ValidationError
from geodata.services import edits
from geodata.services.demo_loader import load_demo
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.test_edit_topology import CLIENT_DECIMALS, EPSG, PARK, _small_parts

CASES = 80
WRITE_EVERY = 9
#: The refusals a random split may meet: a line that misses, or a piece too thin to keep.
REFUSALS = {"split_line_does_not_cross", "empty_result", "invalid_value"}


def _line(metric, rng, rounded, through_vertex):
    """A random line across ``metric`` (a grid in metres) in EPSG:4326."""
    if through_vertex:
        coords = shapely.get_coordinates(metric.boundary)
        anchor = shapely.Point(coords[rng.integers(len(coords))])
    else:
        anchor = shapely.Point(np.asarray(metric.representative_point().coords[0])
                               + rng.normal(0, 5, 2))
    angle = rng.uniform(0, np.pi)
    reach = 2 * shapely.length(metric.exterior if hasattr(metric, "exterior")
                               else metric.geoms[0].exterior)
    dx, dy = reach * np.cos(angle), reach * np.sin(angle)
    line = to_storage(shapely.LineString([(anchor.x - dx, anchor.y - dy),
                                          (anchor.x + dx, anchor.y + dy)]), EPSG)
    if rounded:
        line = shapely.transform(line, lambda xy: np.round(xy, CLIENT_DECIMALS))
    return line


def _assert_split(preview, code, what):
    assert not preview.problems, (what, preview.problems)
    assert preview.report.valid, (what, preview.report.summary_line())
    assert code in preview.retired and len(preview.added) >= 2, (what, preview.added)
    assert all(g.is_valid and g.geom_type == "MultiPolygon" for g in preview.grids.values()), what
    assert _small_parts(preview.grids) == [], what
    # The pieces, and the sub-grids of each piece, share their borders vertex for vertex.
    groups = {}
    for c, g in preview.grids.items():
        groups.setdefault(c.rsplit("-", 1)[0] if c.count("-") > 1 else None, []).append(g)
    for geoms in groups.values():
        edges = shapely.coverage_invalid_edges(geoms)
        assert shapely.is_empty(edges).all(), (what, edges)


def test_random_splits_keep_a_clean_topology(engine, runner, rng):
    load_demo(engine, today=date(2025, 11, 30))
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK))
        metric = dict(zip((g.code for g in rows), to_metric(grid_geometries(rows), EPSG)))
        parents = {g.parent_id for g in rows if g.parent_id}
        with_kids = sorted(g.code for g in rows if g.id in parents)
    codes = sorted(metric)
    sample = list(rng.choice(codes, CASES - 8, replace=False)) + with_kids[:8]
    session = Session(engine)
    done = refused = 0
    try:
        for n, code in enumerate(sample):
            kind = n % 4
            if kind == 3:
                options = {"parts": int(rng.integers(2, 6))}
            else:
                options = {"line": _line(metric[code], rng, rounded=kind == 1,
                                         through_vertex=kind == 2)}
            what = f"split {code} {options.get('parts') or ['line', 'rounded', 'vertex'][kind]}"
            try:
                preview = edits.split_grid(session, get_park(session, PARK), code,
                                           actor="property-test", dry_run=True, **options)
            except ValidationError as exc:
                assert exc.code in REFUSALS, (what, exc.code, exc.message)
                refused += 1
                continue
            finally:
                session.rollback()
            _assert_split(preview, code, what)
            done += 1
            if n % WRITE_EVERY:
                continue
            with session_scope(engine, write=True) as writer:
                out = edits.split_grid(writer, get_park(writer, PARK), code,
                                       actor="property-test", **options)
            result = runner("check", "--park", PARK)
            assert result.exit_code == 0, (what, result.output[-800:])
            with session_scope(engine, write=True) as writer:
                edits.restore_park(writer, get_park(writer, PARK), out.edit.id - 1,
                                   actor="property-test")
    finally:
        session.close()
    assert done > CASES // 2, (done, refused)
    assert runner("check", "--park", PARK).exit_code == 0
