"""The coverage check of one large park, split into spatial partitions (Dask).

:func:`check_partitioned` gives the findings of
:func:`geodata.coverage.check_coverage` (park mode) with the level-1 stages,
the expensive ones, run per spatial partition on Dask workers
(``dask.distributed``) or, without a client, one after the other in this
process (the same code path, for tests).

Partitions
----------
The plane is cut into ``k`` rectangular tiles: columns at quantiles of the
cells' envelope centres, then rows at quantiles within each column, so each
tile *owns* about ``n / k`` cells (those whose envelope centre it holds,
half-open intervals: exactly one owner per cell).  The outer tiles reach
past the park and the cells, so the tiles cover the whole park.  A partition
is its tile, its owned cells and a *halo*: every cell whose envelope meets
the box around the tile and the owned cells' envelopes.

What each partition computes, and why the merge is exact
--------------------------------------------------------
* **Unmatched edges and flags** of its owned cells.  The GEOS coverage
  validator checks a cell against the cells whose envelopes meet its own,
  and the halo holds all of those, so an owned cell gets the same invalid
  edges as in the whole coverage.
* **Overlaps** of pairs with an owned flagged cell.  Every overlap leaves an
  invalid edge on at least one of its two cells (this is what
  ``check_coverage`` relies on too), and a cell's partners are in its
  halo, so every pair is found by the partition owning a flagged member.
  A pair whose two cells are flagged and owned by two partitions is found
  twice, with the same cells in the same order, hence the same result: the
  merge keeps one per pair.
* **Outside parts** of its owned cells (the cell minus the park, for cells
  crossing the park's boundary or outside it).  This is the cell's share of ``union - park``,
  so the per-cell pieces are the same point sets; their width filter is the
  same, because a piece narrower than the tolerance is dropped either way.
* **The park's uncovered area inside its tile**: ``(park ∩ tile) - union of
  the cells meeting the tile``.  The tiles share their edges exactly, so
  the union of the pieces of all tiles is ``park - union of all cells``; the
  gap findings (width filter, areas, coverage ratio) are computed from that
  union centrally, as in one process, so a gap crossing a tile edge stays
  one gap.

Computed centrally (cheap or needing the whole park): cell validation and
repair, the metric CRS, sub-grid levels (against the level-1 flags the
partitions return), unreachable cells and enterprise sites.

Findings come back in the single-process order (unmatched edges, overlaps
and outside parts by cell index), except gaps, which come in the order of the
merged union.  Geometries are equal as point sets; gaps that cross a tile
edge carry the extra vertices where the edge cut them, and outside parts may
differ from the single-process ones in the last bits of their coordinates.

Geometry travels to and from the workers as WKB.
"""

import numpy as np
import shapely

from geodata import coverage
from geodata.coverage import check_coverage

__all__ = ["check_partitioned", "check_partition", "partition_tasks"]

#: Partitions per worker thread: enough to even out tiles of unequal cost.
PARTITIONS_PER_WORKER = 4


def check_partitioned(cells, codes, parent_codes=None, park=None, enterprises=None, *,
                      tolerance_m=0.01, metric_epsg=None, client=None, partitions=None):
    """Run :func:`geodata.coverage.check_coverage` with the level-1 stages partitioned.

    Parameters
    ----------
    cells, codes, parent_codes, park, enterprises, tolerance_m, metric_epsg
        As :func:`geodata.coverage.check_coverage` (EPSG:4326, metres).
        ``park`` is required: without a park there is no area to tile.
    client : distributed.Client, optional
        Runs the partitions on this cluster's workers.  Default: one after
        the other in this process.
    partitions : int, optional
        Number of spatial partitions (default :data:`PARTITIONS_PER_WORKER`
        per worker thread of ``client``, or 4 without one).

    Returns
    -------
    CoverageReport
        The findings of the single-process check (see the module docstring
        for the order and the geometry of gaps).

    Raises
    ------
    ValueError
        If ``park`` is None or ``partitions`` is below 1, and as
        :func:`geodata.coverage.check_coverage`.
    """
    if park is None:
        raise ValueError("the partitioned coverage check needs a park boundary")
    if partitions is None:
        threads = sum(client.nthreads().values()) if client is not None else 1
        partitions = PARTITIONS_PER_WORKER * max(threads, 1)
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")

    def top_level(found, idx, geoms, park):
        tasks = partition_tasks(geoms, park, partitions, found.engine.epsg,
                                found.engine.tol)
        if client is None:
            results = [check_partition(task) for task in tasks]
        else:
            # Each partition is sent as soon as it is cut, so the workers start
            # while the next is cut.  Scattered, the geometry goes straight to
            # the workers rather than into the task graph the scheduler holds.
            results = client.gather([client.submit(check_partition, client.scatter([task])[0],
                                                   pure=False) for task in tasks])
        return _merge(found, idx, park, results)

    return check_coverage(cells, codes, parent_codes, park=park, enterprises=enterprises,
                          tolerance_m=tolerance_m, metric_epsg=metric_epsg,
                          top_level=top_level)


def partition_tasks(geoms, park, k, epsg, tolerance_m):
    """Cut level-1 cells into about ``k`` partitions; yield one task dict each.

    Parameters
    ----------
    geoms : ndarray of Polygon or MultiPolygon, EPSG:4326
        Usable level-1 cells (repaired, non-empty).
    park : Polygon or MultiPolygon, EPSG:4326
    k : int
        Wanted number of partitions.
    epsg : int
        Metric CRS of areas and widths.
    tolerance_m : float
        Metres, as :func:`geodata.coverage.check_coverage`.

    Yields
    ------
    dict
        One per partition, with keys ``cells`` (indices into ``geoms``, ascending), ``wkb`` and
        ``ends`` (their geometry: WKB strings end to end, and where each
        ends), ``owned`` (mask over ``cells``), ``tile``
        (minx, miny, maxx, maxy), ``park`` (WKB), ``epsg``, ``tolerance_m``.
    """
    bounds = shapely.bounds(geoms)
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    extent = np.r_[np.minimum(bounds[:, :2].min(axis=0, initial=np.inf), park.bounds[:2]),
                   np.maximum(bounds[:, 2:].max(axis=0, initial=-np.inf), park.bounds[2:])]
    # The outer tile edges lie a degree beyond everything, so the tiles hold the park.
    pad = 1.0
    nx = int(np.ceil(np.sqrt(k)))
    ny = int(np.ceil(k / nx))
    xs = _edges(cx, nx, extent[0] - pad, extent[2] + pad)
    col = _bin(cx, xs)
    park_wkb = shapely.to_wkb(park)
    wkb = shapely.to_wkb(geoms)
    for c in range(nx):
        in_col = np.flatnonzero(col == c)
        ys = _edges(cy[in_col], ny, extent[1] - pad, extent[3] + pad)
        row = _bin(cy[in_col], ys)
        for r in range(ny):
            tile = (xs[c], ys[r], xs[c + 1], ys[r + 1])
            if tile[0] >= tile[2] or tile[1] >= tile[3]:
                continue
            owned = in_col[row == r]
            box = np.array(tile)
            if len(owned):
                box[:2] = np.minimum(box[:2], bounds[owned, :2].min(axis=0))
                box[2:] = np.maximum(box[2:], bounds[owned, 2:].max(axis=0))
            cells = np.flatnonzero((bounds[:, 0] <= box[2]) & (bounds[:, 2] >= box[0])
                                   & (bounds[:, 1] <= box[3]) & (bounds[:, 3] >= box[1]))
            yield {
                "cells": cells, **_pack(wkb[cells]),
                "owned": np.isin(cells, owned, assume_unique=True),
                "tile": tuple(float(v) for v in tile), "park": park_wkb,
                "epsg": int(epsg), "tolerance_m": float(tolerance_m),
            }


def _pack(wkb):
    """WKB strings as one buffer and their end offsets.

    Pickled, an array of a million small ``bytes`` costs seconds; one buffer
    and an integer array cost a copy.
    """
    return {"wkb": b"".join(wkb), "ends": np.cumsum([len(w) for w in wkb], dtype=np.int64)}


def _unpack(task):
    """The geometries of :func:`_pack`."""
    buf, ends = task["wkb"], task["ends"].tolist()
    return shapely.from_wkb([buf[a:b] for a, b in zip([0] + ends[:-1], ends)])


def _edges(values, n, low, high):
    """``n + 1`` tile edges from ``low`` to ``high`` at quantiles of ``values``."""
    if len(values) == 0:
        return np.linspace(low, high, n + 1)
    edges = np.quantile(values, np.linspace(0, 1, n + 1))
    edges[0], edges[-1] = low, high
    return edges


def _bin(values, edges):
    """Tile number of each value: half-open ``[edge, next edge)``."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def check_partition(task):
    """Level-1 stages of one partition (runs on a Dask worker).

    Parameters
    ----------
    task : dict
        One item of :func:`partition_tasks`.

    Returns
    -------
    dict
        ``flagged`` (cell indices of the owned cells the validator flagged)
        and ``edges`` (their invalid edges, WKB); ``overlaps``: list of
        ``(cell a, cell b, area m², WKB)``; ``outside``: list of ``(cell,
        area m², WKB)``; ``uncovered``: WKB of the park area inside the tile
        that no cell covers.  Cell indices are those of the task's ``cells``.
    """
    geoms = _unpack(task)
    cells, owned = task["cells"], task["owned"]
    engine = coverage._Engine(task["epsg"], task["tolerance_m"])
    park = shapely.from_wkb(task["park"])
    tile = shapely.box(*task["tile"])

    edges = shapely.coverage_invalid_edges(geoms)
    flagged = ~shapely.is_empty(edges)
    mine = owned & flagged
    a, b, overlap_geoms, overlap_areas = coverage.overlap_findings(
        engine, geoms, mine, np.zeros(len(geoms), dtype=int))

    near = shapely.STRtree(geoms).query(tile, predicate="intersects")
    uncovered = shapely.difference(shapely.intersection(park, tile),
                                   coverage._union(geoms[near], flagged[near]))

    out = np.flatnonzero(owned)
    out = out[_may_stick_out(park, geoms[out])]
    parts, areas, own = engine.wide_parts(shapely.difference(geoms[out], park), out)
    out_cells, out_geoms, out_areas = coverage._group_parts(parts, areas, own)
    return {
        "flagged": cells[mine],
        "edges": shapely.to_wkb(edges[mine]),
        "overlaps": [(int(cells[i]), int(cells[j]), float(area), shapely.to_wkb(g))
                     for i, j, g, area in zip(a, b, overlap_geoms, overlap_areas)],
        "outside": [(int(cells[c]), float(area), shapely.to_wkb(g))
                    for c, g, area in zip(out_cells, out_geoms, out_areas)],
        "uncovered": shapely.to_wkb(uncovered),
    }


def _may_stick_out(park, geoms):
    """Mask of the cells (EPSG:4326) that may have area outside ``park``.

    A prepared ``covered_by`` would cost as much as the coverage validation.
    A polygon that does not meet the park's boundary is connected, so it
    lies wholly inside or wholly outside the park; the parts of a
    multipolygon are looked at one by one, since one part may lie inside
    and another outside without either meeting the boundary.
    """
    edge = shapely.boundary(park)
    shapely.prepare(park)
    shapely.prepare(edge)
    maybe = shapely.intersects(edge, geoms) | ~shapely.intersects(park, geoms)
    multi = np.flatnonzero(~maybe & (shapely.get_num_geometries(geoms) > 1))
    parts, owner = shapely.get_parts(geoms[multi], return_index=True)
    maybe[multi[owner[~shapely.intersects(park, parts)]]] = True
    return maybe


def _merge(found, idx, park, results):
    """Add the partitions' findings to ``found``; return the level-1 flags."""
    flagged = np.zeros(len(idx), dtype=bool)
    edges, overlaps, outside, uncovered = {}, {}, {}, []
    for result in results:
        flagged[result["flagged"]] = True
        edges.update(zip(result["flagged"].tolist(), result["edges"]))
        # A pair of flagged cells owned by two partitions comes twice, the same.
        overlaps.update({(a, b): (area, g) for a, b, area, g in result["overlaps"]})
        outside.update({c: (area, g) for c, area, g in result["outside"]})
        uncovered.append(result["uncovered"])
    code = found.codes[idx]
    found.unmatched += [{"code": code[c], "geometry": shapely.from_wkb(edges[c])}
                        for c in sorted(edges)]
    found.overlaps += [{"codes": [code[a], code[b]], "area_m2": overlaps[a, b][0],
                        "geometry": shapely.from_wkb(overlaps[a, b][1])}
                       for a, b in sorted(overlaps)]
    found.outside += [{"code": code[c], "area_m2": outside[c][0],
                       "geometry": shapely.from_wkb(outside[c][1])}
                      for c in sorted(outside)]
    coverage.park_gaps(found, park, shapely.union_all(shapely.from_wkb(uncovered)))
    return flagged
