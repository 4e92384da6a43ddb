"""The coverage check of one large park, split into spatial partitions (Dask).

:func:`check_partitioned` gives the findings of
:func:`geodata.coverage.check_coverage` (park mode) with the level-1 stages,
the expensive ones, run per spatial partition on Dask workers
(``dask.distributed``) or, without a client, one after the other in this
process (the same code path, for tests).

Partitions
----------
The plane is cut into ``k`` rectangular tiles: columns at quantiles of the
level-1 cells' envelope centres, then rows at quantiles within each column,
so each tile *owns* about ``n / k`` cells (those whose envelope centre it
holds, half-open intervals: exactly one owner per cell).  The outer tiles
reach past the park and the cells, so the tiles cover the whole park.  A
partition is its tile, its owned cells and a *halo*: every cell whose
envelope meets the *halo box*, the box around the tile, the owned cells'
envelopes and the owned enterprise sites' envelopes.

Where the cells come from
-------------------------
Only envelopes are needed to cut tiles.  In memory (:func:`check_partitioned`
with ``cells``) each task carries its halo cells as one WKB buffer.  From a
database (``stored``, see :class:`StoredCells` and
:class:`geodata.batch.StoredGrids`) a task carries the halo box and the
park's id, and the worker reads the level-1 cells whose envelope meets the
box itself, through the spatial index.  Either way the worker gets the
*stored* geometry and validates and repairs it as
:func:`geodata.coverage.check_coverage` does (``_prepare_cells``, a per-cell
function, so the same cell gets the same repair everywhere); each partition
reports the invalid cells it owns.  The envelope that decides ownership is the
same number on both sides (``shapely.bounds`` in memory; one SQL expression
from the database).  An index may give cells whose envelope misses the box
(SpatiaLite rounds its R*Tree outwards to float32); the worker drops them.
A repaired cell lies inside its stored envelope, so the halo holds every
cell that matters to an owned cell.

This process reads codes, parent codes and envelopes, and the geometry of the
few cells it needs: sub-grids, level-1 parents of sub-grids, and cells with
no envelope (empty), which cannot be placed in a tile.

What each partition computes, and why the merge is exact
--------------------------------------------------------
* **Validity** of its owned cells: invalid reasons and the repair, as in one
  process; cells that are not usable (empty, not polygonal) come back by id.
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
* **Enterprise sites** it owns (envelope centre in the tile): the grids a
  site meets have envelopes meeting the site's, inside the halo box, so the
  site gets the same grids and shares as against all level-1 grids.

Computed centrally: the metric CRS, sub-grid levels (against the level-1
flags the partitions return), unreachable cells.

Findings come back in the single-process order (invalid grids, unmatched
edges, overlaps and outside parts by cell index, sites by site index),
except gaps, which come in the order of the merged union.  Geometries are
equal as point sets; gaps that cross a tile edge carry the extra vertices
where the edge cut them, and outside parts may differ from the
single-process ones in the last bits of their coordinates.

Geometry travels to and from the workers as WKB.
"""

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import shapely

from geodata import coverage
from geodata.coverage import check_coverage
from geodata.errors import ConflictError

__all__ = ["check_partitioned", "check_partition", "partition_tasks", "halo_strips",
           "StoredCells"]

#: Partitions per worker thread: enough to even out tiles of unequal cost.
PARTITIONS_PER_WORKER = 4


@dataclass
class StoredCells:
    """A stored park's cells, as :func:`check_partitioned` reads them from a database.

    Attributes
    ----------
    ids : ndarray of int
        Row id of each cell, aligned with the ``codes`` of the check.
    envelopes : ndarray of float, shape (n, 4)
        ``minx, miny, maxx, maxy`` (EPSG:4326 degrees) of each stored cell,
        NaN for a cell without one (empty); the same numbers ``reader``
        returns for the cell.
    load : callable
        ``load(ids)`` returns the stored geometries of those cells (shapely,
        EPSG:4326), in this process.
    reader : object
        Sent to the workers: ``reader.read(box)`` returns ``(ids,
        envelopes, geometries)`` of the level-1 cells whose envelope meets
        ``box``, in the order of the codes (e.g.
        :class:`geodata.batch.StoredGrids`).
    """

    ids: np.ndarray
    envelopes: np.ndarray
    load: Callable
    reader: Any
    _sorter: np.ndarray = field(default=None, init=False, repr=False)

    def geometries(self, index):
        """Stored geometries of the cells at ``index``."""
        return self.load(self.ids[index]) if len(index) else np.empty(0, dtype=object)

    def task_cells(self, index, box):
        """What a task carries to read the cells at ``index``: the halo box."""
        return _BoxRead(self.reader, tuple(float(v) for v in box))

    def index_of(self, keys):
        """Cell index of each id a worker returns."""
        if self._sorter is None:
            self._sorter = np.argsort(self.ids, kind="stable")
        sorter = self._sorter
        return sorter[np.searchsorted(self.ids, keys, sorter=sorter)]


@dataclass
class _BoxRead:
    """A worker reads its cells from the database (``reader``) by halo box."""

    reader: Any
    box: tuple

    def read(self):
        ids, envelopes, geoms = self.reader.read(self.box)
        return np.asarray(ids, dtype=np.int64), envelopes, geoms


class _MemoryCells:
    """Cells passed in: each task carries its halo cells as one WKB buffer."""

    def __init__(self, cells):
        self.cells = cells
        self.envelopes = shapely.bounds(cells)
        self._wkb = None

    def geometries(self, index):
        return self.cells[index]

    def task_cells(self, index, box):
        if self._wkb is None:
            self._wkb = shapely.to_wkb(self.cells)
        return _Packed(index, self.envelopes[index], **_pack(self._wkb[index]))

    def index_of(self, keys):
        return np.asarray(keys, dtype=int)


@dataclass
class _Packed:
    """Cells as one WKB buffer: their indices, envelopes and where each WKB ends.

    Pickled, an array of a million small ``bytes`` costs seconds; one buffer
    and an integer array cost a copy.
    """

    keys: np.ndarray
    envelopes: np.ndarray
    wkb: bytes
    ends: np.ndarray

    def read(self):
        ends = self.ends.tolist()
        geoms = shapely.from_wkb([self.wkb[a:b] for a, b in zip([0] + ends[:-1], ends)])
        return self.keys, self.envelopes, np.asarray(geoms, dtype=object)


def _pack(wkb):
    """WKB strings as one buffer and their end offsets."""
    return {"wkb": b"".join(wkb), "ends": np.cumsum([len(w) for w in wkb], dtype=np.int64)}


def check_partitioned(cells, codes, parent_codes=None, park=None, enterprises=None, *,
                      tolerance_m=0.01, metric_epsg=None, client=None, partitions=None,
                      stored=None):
    """Run :func:`geodata.coverage.check_coverage` with the level-1 stages partitioned.

    Parameters
    ----------
    cells, codes, parent_codes, park, enterprises, tolerance_m, metric_epsg
        As :func:`geodata.coverage.check_coverage` (EPSG:4326, metres).
        ``park`` is required: without a park there is no area to tile.
        ``cells`` is None when ``stored`` is given.
    client : distributed.Client, optional
        Runs the partitions on this cluster's workers.  Default: one after
        the other in this process.
    partitions : int, optional
        Number of spatial partitions (default :data:`PARTITIONS_PER_WORKER`
        per worker thread of ``client``, or 4 without one).
    stored : StoredCells, optional
        The cells are in a database: the workers read and validate the
        level-1 cells of their partitions themselves.

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
    ConflictError
        ``park_changed``: the stored cells changed while the workers read them.
    """
    if park is None:
        raise ValueError("the partitioned coverage check needs a park boundary")
    if partitions is None:
        threads = sum(client.nthreads().values()) if client is not None else 1
        partitions = PARTITIONS_PER_WORKER * max(threads, 1)
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    if stored is None:
        cells = coverage._as_array(cells)
        source = _MemoryCells(cells)
    else:
        cells = np.full(len(stored.ids), None, dtype=object)
        source = stored
    epsg = int(coverage._choose_epsg(metric_epsg, park, None, None))
    sites = None if enterprises is None else coverage._site_table(enterprises)
    merged = {}

    def prepare(cells, codes, parent_codes, parent_idx):
        # Level-1 cells with an envelope go to the workers; the rest is read here.
        remote = (parent_idx == -1) & np.isfinite(source.envelopes).all(axis=1)
        collect = _submit(client, partition_tasks(
            source, np.flatnonzero(remote), park,
            np.empty(0, dtype=object) if sites is None else sites[2],
            partitions, epsg, tolerance_m))
        has_children = np.zeros(len(cells), dtype=bool)
        has_children[parent_idx[parent_idx >= 0]] = True
        if stored is not None:
            here = np.flatnonzero(~remote | has_children)
            cells[here] = stored.geometries(here)  # check_coverage's own array
        work = np.full(len(cells), None, dtype=object)
        use = np.zeros(len(cells), dtype=bool)
        central = np.flatnonzero(~remote)
        work[central], use[central], invalid, invalid_geoms = coverage._prepare_cells(
            cells[central], [codes[i] for i in central], [parent_codes[i] for i in central],
            parent_idx[central])
        # Level-1 parents: their repair is the containers of the next level.
        parents = np.flatnonzero(remote & has_children)
        work[parents] = coverage._prepare_cells(
            cells[parents], [codes[i] for i in parents], [None] * len(parents),
            np.full(len(parents), -1))[0]
        merged.update(_collect(source, collect(), np.flatnonzero(remote)), codes=codes)
        use[remote] = True
        use[merged["unusable"]] = False
        # Invalid cells in cell order, then orphans (as _prepare_cells lists them).
        orphans = int((parent_idx[central] == -2).sum())
        split = len(invalid) - orphans
        at = {codes[i]: i for i in central}
        bad = [(at[item["code"]], item, g)
               for item, g in zip(invalid[:split], invalid_geoms[:split])]
        bad += [(i, {"code": codes[i], "reason": reason}, g)
                for i, reason, g in merged["invalid"]]
        bad.sort(key=lambda b: b[0])
        return (work, use, [b[1] for b in bad] + invalid[split:],
                [b[2] for b in bad] + invalid_geoms[split:])

    def top_level(found, idx, geoms, park):
        return _merge(found, idx, park, merged)

    report = check_coverage(cells, codes, parent_codes, park=park, tolerance_m=tolerance_m,
                            metric_epsg=epsg, top_level=top_level, prepare=prepare)
    if sites is not None:
        report.enterprises = _merge_sites(merged, sites, merged["codes"])
    return report


def _submit(client, tasks):
    """Start the tasks; return a function that waits for their results."""
    if client is None:
        return lambda: [check_partition(task) for task in tasks]
    # Each partition is sent as soon as it is cut, so the workers start
    # while the next is cut.  Scattered (random keys), a task's geometry or
    # database URL goes straight to a worker, never into the task graph the
    # scheduler holds and its dashboard shows.
    futures = [client.submit(check_partition, client.scatter([task], hash=False)[0],
                             pure=False) for task in tasks]
    return lambda: client.gather(futures)


def partition_tasks(source, remote, park, sites, k, epsg, tolerance_m):
    """Cut level-1 cells into about ``k`` partitions; yield one task dict each.

    Parameters
    ----------
    source : StoredCells or _MemoryCells
        Envelopes of all cells, and how a task reads its cells.
    remote : ndarray of int
        Indices of the level-1 cells with an envelope, ascending.
    park : Polygon or MultiPolygon, EPSG:4326
    sites : ndarray of shapely geometries, EPSG:4326
        Enterprise sites (may be empty).
    k : int
        Wanted number of partitions.
    epsg : int
        Metric CRS of areas and widths.
    tolerance_m : float
        Metres, as :func:`geodata.coverage.check_coverage`.

    Yields
    ------
    dict
        One per partition, with keys ``cells`` (an object whose ``read()``
        gives the cells whose envelope meets the halo box: keys, envelopes,
        stored geometries), ``tile`` and ``halo`` (minx, miny, maxx, maxy),
        ``park`` (WKB), ``sites`` (owned site indices and their WKB), ``epsg``,
        ``tolerance_m``.
    """
    bounds = source.envelopes[remote]
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    site_bounds = shapely.bounds(sites).reshape(-1, 4)
    scx = (site_bounds[:, 0] + site_bounds[:, 2]) / 2
    scy = (site_bounds[:, 1] + site_bounds[:, 3]) / 2
    extent = np.r_[np.minimum(bounds[:, :2].min(axis=0, initial=np.inf), park.bounds[:2]),
                   np.maximum(bounds[:, 2:].max(axis=0, initial=-np.inf), park.bounds[2:])]
    # The outer tile edges lie a degree beyond everything, so the tiles hold the park.
    pad = 1.0
    nx = int(np.ceil(np.sqrt(k)))
    ny = int(np.ceil(k / nx))
    xs = _edges(cx, nx, extent[0] - pad, extent[2] + pad)
    col, site_col = _bin(cx, xs), _bin(scx, xs)
    park_wkb = shapely.to_wkb(park)
    for c in range(nx):
        in_col = np.flatnonzero(col == c)
        sites_in_col = np.flatnonzero(site_col == c)
        ys = _edges(cy[in_col], ny, extent[1] - pad, extent[3] + pad)
        row, site_row = _bin(cy[in_col], ys), _bin(scy[sites_in_col], ys)
        for r in range(ny):
            tile = (xs[c], ys[r], xs[c + 1], ys[r + 1])
            owned_sites = sites_in_col[site_row == r]
            if (tile[0] >= tile[2] or tile[1] >= tile[3]) and not len(owned_sites):
                continue
            owned = in_col[row == r]
            box = np.array(tile)
            # fmin/fmax: an empty site has no envelope (NaN).
            for b in (bounds[owned], site_bounds[owned_sites]):
                box[:2] = np.fmin(box[:2], b[:, :2].min(axis=0, initial=np.inf))
                box[2:] = np.fmax(box[2:], b[:, 2:].max(axis=0, initial=-np.inf))
            halo = remote[_meets(bounds, box)]
            yield {
                "cells": source.task_cells(halo, box), "halo": tuple(float(v) for v in box),
                "tile": tuple(float(v) for v in tile), "park": park_wkb,
                "sites": (owned_sites, shapely.to_wkb(sites[owned_sites])),
                "epsg": int(epsg), "tolerance_m": float(tolerance_m),
            }


def halo_strips(envelopes, k):
    """Cut cells into ``k`` vertical strips; yield (owned, halo) index arrays per strip.

    For the threads of one process (:func:`geodata.coverage.check_coverage`
    with ``threads``): the strips are cut at quantiles of the envelope
    centres' x, as :func:`partition_tasks` cuts its columns, and each cell is
    owned by the strip holding its centre (half-open, exactly one owner).
    The halo is every cell whose envelope meets the strip's box widened by
    its owned cells' envelopes, so it holds every cell whose envelope meets
    an owned cell's: what the GEOS coverage validator compares a cell with.

    Parameters
    ----------
    envelopes : ndarray of float, shape (n, 4)
        ``minx, miny, maxx, maxy`` of each cell (finite).
    k : int
        Wanted number of strips (fewer when cells share their centres).

    Yields
    ------
    owned, halo : ndarray of int
        Ascending cell indices; ``owned`` is a subset of ``halo``.
    """
    cx = (envelopes[:, 0] + envelopes[:, 2]) / 2
    xs = _edges(cx, k, -np.inf, np.inf)
    strip = _bin(cx, xs)
    for c in range(k):
        owned = np.flatnonzero(strip == c)
        if not len(owned):
            continue
        box = np.array([min(xs[c], envelopes[owned, 0].min()), -np.inf,
                        max(xs[c + 1], envelopes[owned, 2].max()), np.inf])
        yield owned, np.flatnonzero(_meets(envelopes, box))


def _meets(bounds, box):
    """Mask of the envelopes (rows of ``bounds``) that meet ``box``."""
    return ((bounds[:, 0] <= box[2]) & (bounds[:, 2] >= box[0])
            & (bounds[:, 1] <= box[3]) & (bounds[:, 3] >= box[1]))


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
        Cells are named by their keys (cell index in memory, row id from a
        database).  ``owned``: keys of the cells this partition owns;
        ``invalid``: ``(key, reason, stored WKB)`` of its owned invalid
        cells; ``unusable``: keys of its owned cells left out of the
        analysis; ``flagged`` (keys of the owned cells the validator
        flagged) and ``edges`` (their invalid edges, WKB); ``overlaps``:
        list of ``(key a, key b, area m², WKB)``; ``outside``: list of
        ``(key, area m², WKB)``; ``uncovered``: WKB of the park area inside
        the tile that no cell covers; ``sites``: the owned sites' findings as
        :func:`geodata.coverage.check_coverage` gives them, with site indices
        for names and keys for grid codes.
    """
    keys, envelopes, raw = task["cells"].read()
    # A spatial index may give cells whose envelope misses the box.
    near = _meets(envelopes, task["halo"])
    keys, envelopes, raw = keys[near], envelopes[near], raw[near]
    x0, y0, x1, y1 = task["tile"]
    cx = (envelopes[:, 0] + envelopes[:, 2]) / 2
    cy = (envelopes[:, 1] + envelopes[:, 3]) / 2
    owned_all = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    n = len(keys)
    work, use, invalid, invalid_geoms = coverage._prepare_cells(
        raw, keys.tolist(), [None] * n, np.full(n, -1))
    owned_keys = set(keys[owned_all].tolist())
    mine_invalid = [(item["code"], item["reason"], shapely.to_wkb(g))
                    for item, g in zip(invalid, invalid_geoms) if item["code"] in owned_keys]
    cells, owned, geoms = keys[use], owned_all[use], work[use]

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

    site_idx, site_wkb = task["sites"]
    # The check of the owned sites against the usable cells here, with the
    # site index as name and the cell key as grid code (mapped back centrally).
    sites = coverage._check_enterprises(
        [(int(i), None, g) for i, g in zip(site_idx, shapely.from_wkb(site_wkb))],
        geoms, cells, engine) if len(site_idx) else {"no_grid": [], "multi_grid": []}
    return {
        "owned": keys[owned_all],
        "invalid": mine_invalid,
        "unusable": keys[owned_all & ~use],
        "flagged": cells[mine],
        "edges": shapely.to_wkb(edges[mine]),
        "overlaps": [(int(cells[i]), int(cells[j]), float(area), shapely.to_wkb(g))
                     for i, j, g, area in zip(a, b, overlap_geoms, overlap_areas)],
        "outside": [(int(cells[c]), float(area), shapely.to_wkb(g))
                    for c, g, area in zip(out_cells, out_geoms, out_areas)],
        "uncovered": shapely.to_wkb(uncovered),
        "sites": sites,
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


def _collect(source, results, remote):
    """The partitions' results with cell indices for keys; checks one owner per cell.

    Raises
    ------
    ConflictError
        ``park_changed`` when the owned cells are not the level-1 cells this
        process read (the stored grids changed in between).
    """
    owned = np.sort(np.concatenate([source.index_of(r["owned"]) for r in results]
                                   or [np.empty(0, dtype=int)]))
    if not np.array_equal(owned, remote):
        raise ConflictError("the park's grids changed during the check; run it again",
                            code="park_changed")
    merged = {"invalid": [], "unusable": [], "flagged": [], "edges": [], "overlaps": {},
              "outside": {}, "uncovered": [], "sites": {"no_grid": [], "multi_grid": []}}
    for r in results:
        index = source.index_of
        merged["invalid"] += [(int(i), reason, shapely.from_wkb(g)) for i, (_, reason, g) in
                              zip(index([k for k, _, _ in r["invalid"]]), r["invalid"])]
        merged["unusable"] += index(r["unusable"]).tolist()
        merged["flagged"] += index(r["flagged"]).tolist()
        merged["edges"] += list(r["edges"])
        # A pair of flagged cells owned by two partitions comes twice, the same.
        if r["overlaps"]:
            ab = index(np.array([(a, b) for a, b, _, _ in r["overlaps"]]).ravel()).reshape(-1, 2)
            merged["overlaps"].update({(int(a), int(b)): (area, g) for (a, b), (_, _, area, g)
                                       in zip(ab, r["overlaps"])})
        if r["outside"]:
            cells = index([c for c, _, _ in r["outside"]])
            merged["outside"].update({int(c): (area, g)
                                      for c, (_, area, g) in zip(cells, r["outside"])})
        merged["uncovered"].append(r["uncovered"])
        for key in ("no_grid", "multi_grid"):
            merged["sites"][key] += r["sites"][key]
    merged["index_of"] = source.index_of
    return merged


def _merge(found, idx, park, merged):
    """Add the partitions' findings to ``found``; return the level-1 flags over ``idx``."""
    flagged = np.zeros(len(found.codes), dtype=bool)
    flagged[merged["flagged"]] = True
    edges = dict(zip(merged["flagged"], merged["edges"]))
    overlaps, outside, code = merged["overlaps"], merged["outside"], found.codes
    found.unmatched += [{"code": code[c], "geometry": shapely.from_wkb(edges[c])}
                        for c in sorted(edges)]
    found.overlaps += [{"codes": [code[a], code[b]], "area_m2": overlaps[a, b][0],
                        "geometry": shapely.from_wkb(overlaps[a, b][1])}
                       for a, b in sorted(overlaps)]
    found.outside += [{"code": code[c], "area_m2": outside[c][0],
                       "geometry": shapely.from_wkb(outside[c][1])}
                      for c in sorted(outside)]
    coverage.park_gaps(found, park, shapely.union_all(shapely.from_wkb(merged["uncovered"])))
    return flagged[idx]


def _merge_sites(merged, sites, codes):
    """The partitions' site findings with names, credit codes and grid codes, in site order."""
    names, credit, _ = sites
    index_of = merged["index_of"]

    def named(item):
        return {"name": names[item["name"]], "credit_code": credit[item["name"]]}

    multi = sorted(merged["sites"]["multi_grid"], key=lambda item: item["name"])
    grids = [index_of([g["code"] for g in item["grids"]]) for item in multi]
    return {
        "no_grid": [named(item) for item in
                    sorted(merged["sites"]["no_grid"], key=lambda item: item["name"])],
        "multi_grid": [
            {**named(item), "grids": [{"code": codes[c], "share": g["share"]}
                                      for c, g in zip(cells, item["grids"])]}
            for item, cells in zip(multi, grids)],
    }
