"""Border moves keep a clean topology: a property test over every neighbouring demo pair.

For every pair of neighbouring demo grids (level-1 grids, and sub-grids of
one parent), both ways, a strip 0.5, 3, 10 and 25 m wide along their shared
border goes from one to the other through the real reshape service.  Every
move must succeed with a valid coverage, the two grids must share their
border vertex for vertex, and no grid may gain a part under 1 m².  A sample
of the moves is written for real and checked with ``gridmap check``, an
export and ``import grids --diff`` (no change), then undone with a restore.
"""

import numpy as np
import pytest
import shapely
from sqlalchemy.orm import Session

from geodata.arrangement import GRID_SIZE_DEG, MIN_PART_M2
from geodata.crs import to_metric, to_storage
from geodata.errors import (ConflictError, NotFoundError, PreconditionFailedError,
                            ValidationError)
from geodata.services import edits
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import stored_snapshot

PARK = "FGKFQ"
EPSG = 4547
WIDTHS_M = (0.5, 3.0, 10.0, 25.0)
# A GeoJSON client sends about 7 decimals (~1 cm): half the moves come that way, so the
# proposed border is off the stored vertices and the neighbours' edges by up to 1 cm.
CLIENT_DECIMALS = 7
WRITE_EVERY = 23  # every 23rd pair is also written, checked, exported and restored


@pytest.fixture
def db_url(demo_db_url):
    """Every database test here starts from the demo park of 2025-11-30 (a copy, see conftest)."""
    return demo_db_url


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


# --------------------------------------------------------------------------
# regressions: invalid input, stale edits of retired grids, export and --diff
# --------------------------------------------------------------------------

def _bad_shapes(metric, code):
    """Invalid drawings over grid ``code`` (EPSG:4326), with the start of their reason."""
    x0, y0, x1, y1 = metric[code].bounds
    w, h = x1 - x0, y1 - y0
    inner = shapely.box(x0 + w / 4, y0 + h / 4, x1 - w / 4, y1 - h / 4)
    far = shapely.box(x1 + w, y1 + h, x1 + 2 * w, y1 + 2 * h)
    shapes = {
        "bow-tie": (shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]),
                    "Self-intersection"),
        "hole outside its shell": (shapely.Polygon(inner.exterior.coords, [far.exterior.coords]),
                                   "Hole lies outside shell"),
        "duplicate parts": (shapely.MultiPolygon([inner, inner]), "Self-intersection"),
    }
    return {k: (to_storage(g, EPSG), reason) for k, (g, reason) in shapes.items()}


def test_invalid_input_is_422_with_the_reason_and_stores_nothing(engine, runner):
    with session_scope(engine) as session:
        _, metric = _pairs(session, get_park(session, PARK))
    code = "FGKFQ-022"
    before = stored_snapshot(engine)
    for name, (shape, reason) in _bad_shapes(metric, code).items():
        for label, call in (
                ("draw", lambda s, p: edits.draw_grid(s, p, shape, actor="t")),
                ("reshape", lambda s, p: edits.reshape_grid(s, p, code, shape, actor="t"))):
            with pytest.raises(ValidationError) as err:
                with session_scope(engine, write=True) as session:
                    call(session, get_park(session, PARK))
            assert err.value.http_status == 422, (name, label)
            assert err.value.code == "invalid_geometry", (name, label, err.value.code)
            assert shapely.is_valid_reason(shape) in err.value.message, (name, label)
            assert err.value.details["reason"].endswith(shapely.is_valid_reason(shape))
            assert err.value.details["reason"].startswith(f"invalid geometry: {reason}")
        result = runner("edit", "reshape", code, "--geometry", shape.wkt, "--actor", "t",
                        "--park", PARK)
        assert result.exit_code == 2 and reason in result.stderr, (name, result.output)
        assert "Traceback" not in result.output + result.stderr
    bad_line = shapely.LineString([(114.39, 34.06), (114.39, 34.06)])
    with pytest.raises(ValidationError) as err:
        with session_scope(engine, write=True) as session:
            edits.split_grid(session, get_park(session, PARK), code, line=bad_line, actor="t")
    assert err.value.code == "invalid_geometry" and "Too few points" in err.value.message
    assert stored_snapshot(engine) == before


def test_stale_edit_of_a_retired_grid_is_a_conflict_not_404(engine):
    with session_scope(engine) as session:
        pairs, metric = _pairs(session, get_park(session, PARK))
    a, b = next((a, b) for a, b in pairs if "-" not in a[len(PARK) + 1:])
    with session_scope(engine, write=True) as session:
        edits.retire_grid(session, get_park(session, PARK), a, to=b, actor="t",
                          expected_version=1)
    proposal = to_storage(metric[a], EPSG)
    cases = ((1, ConflictError, 409), ('"1"', PreconditionFailedError, 412))
    for expected, error, status in cases:
        for call in (
                lambda s, p: edits.reshape_grid(s, p, a, proposal, actor="t",
                                                expected_version=expected),
                lambda s, p: edits.split_grid(s, p, a, parts=2, actor="t",
                                              expected_version=expected),
                lambda s, p: edits.retire_grid(s, p, a, actor="t", expected_version=expected),
                lambda s, p: edits.merge_grids(s, p, [a, b], actor="t",
                                               expected_versions={a: expected})):
            with pytest.raises(error) as err:
                with session_scope(engine, write=True) as session:
                    call(session, get_park(session, PARK))
            assert err.value.http_status == status
            assert err.value.details["grid"] == a and err.value.details["current"] == 2
    # Without a version there is nothing stale: the grid is simply not active.
    with pytest.raises(NotFoundError):
        with session_scope(engine, write=True) as session:
            edits.reshape_grid(session, get_park(session, PARK), a, proposal, actor="t")


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".csv"])
def test_export_never_writes_a_geometry_collection(tmp_path, suffix):
    import geopandas as gpd

    from geodata.formats import write_layer

    square = shapely.box(114.39, 34.06, 114.391, 34.061)
    frame = gpd.GeoDataFrame({"code": ["G1", "G2"]}, geometry=[
        shapely.MultiPolygon([square]),
        shapely.GeometryCollection([square, shapely.Point(114.3905, 34.0605)])], crs=4326)
    path = tmp_path / f"grids{suffix}"
    with pytest.raises(ValidationError) as err:
        write_layer(frame, path)
    assert err.value.code == "unsupported_geometry_type" and "(G2)" in err.value.message
    assert not path.exists()


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg"])
def test_diff_of_an_unchanged_export_says_no_changes(engine, runner, tmp_path, suffix):
    before = stored_snapshot(engine)
    path = tmp_path / f"grids{suffix}"
    assert runner("export", "grids", path, "--park", PARK).exit_code == 0
    diff = runner("import", "grids", path, "--park", PARK, "--diff")
    assert diff.exit_code == 0, diff.output + diff.stderr
    lines = diff.output.splitlines()
    assert lines[0] == "no changes" and "added: -" in lines and "unchanged: 85" in lines
    assert stored_snapshot(engine) == before
