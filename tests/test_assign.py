"""``geodata.spatial.assign_to_cells``: the fast point path and the Dask path give the
same cells as the per-pair reference, including points on shared edges and vertices."""

import os
import subprocess
import sys

import distributed
import numpy as np
import pytest
import shapely

from geodata.batch import local_cluster_options
from geodata.spatial import assign_to_cells


def reference_assign(geoms, cells, order=None):
    """The implementation before the point fast path, kept here as the oracle.

    An STRtree on the cells, one ``intersects`` test per (geometry, cell)
    pair, then per geometry: largest shared area, then lowest rank.  The
    only change is the last tie-break (lowest cell index among equal ranks),
    which the old code left to the tree's output order.
    """
    geoms = np.asarray(geoms, dtype=object)
    cells = np.asarray(cells, dtype=object)
    result = np.full(len(geoms), -1, dtype=np.int64)
    if len(geoms) == 0 or len(cells) == 0:
        return result
    rank = np.arange(len(cells)) if order is None else np.asarray(order)
    gi, ci = shapely.STRtree(cells).query(geoms, predicate="intersects")
    if len(gi) == 0:
        return result
    areal = shapely.get_dimensions(geoms[gi]) == 2
    share = np.zeros(len(gi))
    share[areal] = shapely.area(shapely.intersection(geoms[gi][areal], cells[ci][areal]))
    keys = np.lexsort((ci, rank[ci], -share, gi))
    gi, ci = gi[keys], ci[keys]
    first = np.r_[True, gi[1:] != gi[:-1]]
    result[gi[first]] = ci[first]
    return result


def _lattice(cols, rows, size=0.01, x0=114.3, y0=34.0):
    """Cells of a cols x rows lattice (EPSG:4326) and its vertices and edge midpoints."""
    i = np.arange(cols * rows)
    cx, cy = x0 + (i % cols) * size, y0 + (i // cols) * size
    cells = shapely.box(cx, cy, cx + size, cy + size)
    vx, vy = np.meshgrid(x0 + np.arange(cols + 1) * size, y0 + np.arange(rows + 1) * size)
    vertices = shapely.points(vx.ravel(), vy.ravel())
    mids = shapely.points(np.r_[vx.ravel() + size / 2, vx.ravel()],
                          np.r_[vy.ravel(), vy.ravel() + size / 2])
    return cells, vertices, mids


def _points(seed, cols=7, rows=5, size=0.01, x0=114.3, y0=34.0):
    """Random points in and around the lattice, plus every vertex and edge midpoint."""
    cells, vertices, mids = _lattice(cols, rows, size, x0, y0)
    rng = np.random.default_rng(seed)
    n = 3000
    inside = shapely.points(rng.uniform(x0, x0 + cols * size, n),
                            rng.uniform(y0, y0 + rows * size, n))
    # A band around the lattice: some points fall outside every cell.
    around = shapely.points(rng.uniform(x0 - size, x0 + (cols + 1) * size, n),
                            rng.uniform(y0 - size, y0 + (rows + 1) * size, n))
    # Points on grid lines at random offsets along them: exactly on shared edges.
    on_lines = shapely.points(x0 + rng.integers(0, cols + 1, n) * size,
                              rng.uniform(y0, y0 + rows * size, n))
    points = np.concatenate([inside, around, on_lines, vertices, mids])
    return cells, points[rng.permutation(len(points))]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("ranked", [False, True])
def test_points_match_reference(seed, ranked):
    cells, points = _points(seed)
    order = np.random.default_rng(seed).permutation(len(cells)) if ranked else None
    expected = reference_assign(points, cells, order)
    got = assign_to_cells(points, cells, order)
    assert np.array_equal(got, expected)
    # The data really exercises ties and misses.
    hits = shapely.STRtree(cells).query(points, predicate="intersects")[0]
    assert (np.bincount(hits, minlength=len(points)) >= 2).sum() > 1000
    assert (expected == -1).sum() > 100


@pytest.mark.parametrize("ranked", [False, True])
def test_one_point_at_a_time_matches_reference(ranked):
    """A single point (the API's case) takes its own path: the same cells as the
    reference, on shared edges and vertices and outside every cell too."""
    cells, points = _points(5)
    order = np.random.default_rng(5).permutation(len(cells)) if ranked else None
    some = np.concatenate([points[:400], _lattice(7, 5)[1], _lattice(7, 5)[2]])
    expected = reference_assign(some, cells, order)
    got = [assign_to_cells([p], cells, order)[0] for p in some]
    assert got == expected.tolist()
    assert (expected == -1).sum() > 10 and len(set(expected.tolist())) > 20


def test_shared_vertex_goes_to_lowest_rank():
    cells, vertices, _ = _lattice(2, 2)
    centre = vertices[4]  # shared by all four cells
    assert assign_to_cells([centre], cells).tolist() == [0]
    assert assign_to_cells([centre], cells, order=[3, 2, 0, 1]).tolist() == [2]
    # Equal ranks fall to the lower cell index, on both paths.
    assert assign_to_cells([centre], cells, order=[1, 0, 0, 1]).tolist() == [1]
    sliver = shapely.buffer(centre, 1e-9)
    assert assign_to_cells([sliver], cells, order=[1, 0, 0, 1]).tolist() == [1]


def test_mixed_geometries_match_reference():
    """Polygons, lines, multipoints, empty and missing geometries keep the general path."""
    cells, points = _points(4)
    rng = np.random.default_rng(4)
    polys = shapely.buffer(points[:300], rng.uniform(0.001, 0.02, 300))
    lines = shapely.linestrings(
        np.stack([shapely.get_coordinates(points[300:400]),
                  shapely.get_coordinates(points[400:500])], axis=1))
    multi = shapely.multipoints(np.stack([shapely.get_coordinates(points[500:600]),
                                          shapely.get_coordinates(points[600:700])], axis=1))
    odd = np.array([None, shapely.Point(), shapely.Polygon()], dtype=object)
    geoms = np.concatenate([points[700:], polys, lines, multi, odd])
    geoms = geoms[rng.permutation(len(geoms))]
    order = rng.permutation(len(cells))
    got = assign_to_cells(geoms, cells, order)
    assert np.array_equal(got, reference_assign(geoms, cells, order))
    assert (got[[i for i, g in enumerate(geoms) if g is None or g.is_empty]] == -1).all()


def test_point_cells_and_empty_inputs():
    """Sites may be points (enterprises); a hazard on the site point goes to it."""
    sites = shapely.points([[114.0, 34.0], [114.1, 34.0]])
    pts = shapely.points([[114.1, 34.0], [114.05, 34.0]])
    assert assign_to_cells(pts, sites).tolist() == [1, -1]
    assert assign_to_cells([], sites).tolist() == []
    assert assign_to_cells(pts, []).tolist() == [-1, -1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_workers_must_be_positive_int(bad):
    cells, points = _points(5)
    with pytest.raises(ValueError, match="workers"):
        assign_to_cells(points, cells, workers=bad)


def test_order_length_checked():
    cells, points = _points(5)
    with pytest.raises(ValueError, match="order has 3 ranks for 35 cells"):
        assign_to_cells(points, cells, order=[0, 1, 2])


def test_two_dask_workers_match_reference():
    """workers=2 really runs on a two-process Dask LocalCluster and gives the same result."""
    cells, points = _points(6)
    geoms = np.concatenate([points, shapely.buffer(points[:50], 0.003)])
    order = np.random.default_rng(6).permutation(len(cells))
    expected = reference_assign(geoms, cells, order)
    # Without a client: one LocalCluster is started and closed for the call.
    assert np.array_equal(assign_to_cells(geoms, cells, order, workers=2), expected)
    # With a client: the call uses it, and both worker processes did a chunk.
    with distributed.LocalCluster(**local_cluster_options(2)) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            assert np.array_equal(assign_to_cells(geoms, cells, order, workers=2), expected)
        ran_on = {t["worker"] for t in stream.data if "_best_positions_task" in str(t["key"])}
        assert len(ran_on) == 2
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


def test_single_core_path_does_not_import_dask():
    code = ("import sys, shapely; from geodata.spatial import assign_to_cells; "
            "r = assign_to_cells(shapely.points([[0.5, 0.5]]), [shapely.box(0, 0, 1, 1)], "
            "workers=1); assert r.tolist() == [0], r; "
            "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


def test_cells_are_not_modified():
    """Preparing works in place; the caller's cells (maybe shared by threads) stay as given."""
    cells, points = _points(7)
    shapely.prepare(cells[:5])
    expected = reference_assign(points, cells)
    assert np.array_equal(assign_to_cells(points, cells), expected)
    assert shapely.is_prepared(cells[:5]).all() and not shapely.is_prepared(cells[5:]).any()
