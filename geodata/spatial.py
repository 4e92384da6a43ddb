"""Vectorised spatial assignment: which cell holds which site or point.

All inputs are shapely arrays in EPSG:4326.  Areas compared here are only
ranked against each other, so degrees² are fine; nothing is reported in
them.
"""

import numpy as np
import shapely


def assign_to_cells(geoms, cells, order=None, workers=None):
    """Return, for each geometry, the index of the cell holding most of it (-1 for none).

    Polygons go to the cell with the largest shared area.  A point lying on
    a shared boundary touches several cells; it goes to the first of them in
    ``order`` (default: cell index), so the rule is deterministic and
    documented: callers pass the cells sorted by code, meaning the lowest
    grid code wins.  Cells of equal rank fall to the lower cell index.

    Points take a faster path than other geometries: an STRtree is built on
    the points and queried with the cells' bounding boxes, then each
    candidate pair gets GEOS's point-in-polygon test on the prepared cell
    (``intersects_xy``, boundary included).  The result is the same as the
    general path's.  The cells passed in are not modified (copies are
    prepared).

    Parameters
    ----------
    geoms, cells : array-like of shapely geometries (EPSG:4326)
    order : array-like of int, optional
        Rank of each cell for breaking ties; lower wins.
    workers : int, optional
        Split the points into this many chunks and assign them in parallel
        on Dask (``dask.distributed``): on the current client if one is
        active (``distributed.Client`` as a context manager, or a client
        created earlier), else on a ``LocalCluster`` of this many
        single-threaded worker processes started for this call and closed
        after it.  ``None`` or 1 stays in this process and never imports
        Dask.

    Returns
    -------
    numpy.ndarray of int64
        Cell index per geometry, -1 where no cell intersects it.

    Raises
    ------
    ValueError
        If ``order`` does not have one rank per cell, or ``workers`` is not
        a positive integer.
    """
    geoms = np.asarray(geoms, dtype=object)
    cells = np.asarray(cells, dtype=object)
    result = np.full(len(geoms), -1, dtype=np.int64)
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"assign_to_cells: workers must be a positive integer, got {workers!r}")
    if order is not None and len(order) != len(cells):
        raise ValueError(f"assign_to_cells: order has {len(order)} ranks for {len(cells)} cells")
    if len(geoms) == 0 or len(cells) == 0:
        return result
    position = _rank_positions(cells, order)
    # Empty points intersect nothing and have no coordinates: they stay -1.
    is_point = (shapely.get_type_id(geoms) == 0) & ~shapely.is_empty(geoms)
    points = np.flatnonzero(is_point)
    if len(points):
        if workers is None or workers == 1:
            best = _best_positions(geoms[points], shapely.get_coordinates(geoms[points]),
                                   cells, position, len(position))
        else:
            best = _best_positions_dask(geoms[points], cells, position, int(workers))
        result[points] = _cells_at(best, position)
    others = np.flatnonzero(~is_point)
    if len(others):
        result[others] = _assign_general(geoms[others], cells, position)
    return result


def _rank_positions(cells, order):
    """Return each cell's place in tie-break order: by ``order``, then by cell index."""
    index = np.arange(len(cells))
    if order is None:
        return index
    position = np.empty(len(cells), dtype=np.int64)
    position[np.lexsort((index, np.asarray(order)))] = index
    return position


def _cells_at(best, position):
    """Map tie-break positions back to cell indices; ``len(position)`` (no cell) to -1."""
    by_position = np.full(len(position) + 1, -1, dtype=np.int64)
    by_position[position] = np.arange(len(position))
    return by_position[best]


def _best_positions(points, xy, cells, cell_position, no_cell):
    """For each point, the lowest position of a cell holding it (``no_cell`` if none).

    ``xy`` holds the points' coordinates, one row per point.  The tree
    holds the points and is queried with the cells' bounding boxes (the
    cheaper way round: one query per cell, not per point); the exact test
    is ``intersects_xy`` on the prepared cell, which includes the boundary,
    as ``intersects`` does.
    """
    if len(points) == 1:
        # One point (a hazard or visit logged through the API): the same test on the cells
        # as they are.  Building the tree and preparing copies cost ten times as much.
        hit = shapely.intersects_xy(cells, xy[0, 0], xy[0, 1])
        return np.array([cell_position[hit].min() if hit.any() else no_cell], dtype=np.int64)
    ci, pi = shapely.STRtree(points).query(cells)
    # Prepare copies, never the caller's geometries: preparing works in
    # place, and a cached cell array may be in use by another thread.
    prepared = cells.copy()
    fresh = ~shapely.is_prepared(cells)
    prepared[fresh] = shapely.transform(cells[fresh], lambda coords: coords)
    shapely.prepare(prepared[fresh])
    hit = shapely.intersects_xy(prepared[ci], xy[pi, 0], xy[pi, 1])
    best = np.full(len(points), no_cell, dtype=np.int64)
    np.minimum.at(best, pi[hit], cell_position[ci[hit]])
    return best


def _best_positions_task(part):
    """Dask task: ``_best_positions`` on coordinates and WKB, which ship cheaply."""
    xy, cells_wkb, cell_position, no_cell = part
    return _best_positions(shapely.points(xy), xy, shapely.from_wkb(cells_wkb), cell_position,
                           no_cell)


def _best_positions_dask(points, cells, position, workers):
    """``_best_positions`` in ``workers`` strips of points on Dask; see ``assign_to_cells``."""
    from distributed import Client, LocalCluster, default_client

    from geodata.batch import local_cluster_options

    xy = shapely.get_coordinates(points)
    # Strips of about equal point counts along x (cut at quantiles, no full
    # sort): each task gets only the cells whose bounds reach its strip, so
    # the work splits instead of repeating.
    cuts = np.quantile(xy[:, 0], np.arange(1, workers) / workers)
    strip_of = np.searchsorted(cuts, xy[:, 0])
    strips = [s for s in (np.flatnonzero(strip_of == k) for k in range(workers)) if len(s)]
    bounds = shapely.bounds(cells)
    parts = []
    for strip in strips:
        lo, hi = xy[strip, 0].min(), xy[strip, 0].max()
        near = np.flatnonzero((bounds[:, 0] <= hi) & (bounds[:, 2] >= lo))
        parts.append((xy[strip], shapely.to_wkb(cells[near]), position[near], len(position)))

    def run(client):
        # Scattered first (spread over the workers), so no large array
        # travels inside the task graph.
        futures = [client.submit(_best_positions_task, part, pure=False)
                   for part in client.scatter(parts)]
        best = np.empty(len(xy), dtype=np.int64)
        for strip, got in zip(strips, client.gather(futures)):
            best[strip] = got
        return best

    try:
        client = default_client()
    except ValueError:  # no client is active: start one for this call
        client = None
    if client is not None:
        return run(client)
    with LocalCluster(**local_cluster_options(workers)) as cluster, Client(cluster) as client:
        return run(client)


def _assign_general(geoms, cells, position):
    """Assign any geometries: most shared area first, then lowest position."""
    gi, ci = shapely.STRtree(cells).query(geoms, predicate="intersects")
    result = np.full(len(geoms), -1, dtype=np.int64)
    if len(gi) == 0:
        return result
    areal = shapely.get_dimensions(geoms[gi]) == 2
    share = np.zeros(len(gi))
    share[areal] = shapely.area(shapely.intersection(geoms[gi][areal], cells[ci][areal]))
    # Sort by geometry, then largest share, then lowest position; keep the first per geometry.
    keys = np.lexsort((position[ci], -share, gi))
    gi, ci = gi[keys], ci[keys]
    first = np.r_[True, gi[1:] != gi[:-1]]
    result[gi[first]] = ci[first]
    return result
