"""Coverage check of park grids: gaps, overlaps, outside parts, invalid cells.

A park's grids (网格) must tile the park edge to edge with no overlaps
("横向到边、纵向到底"), and sub-grids must tile their parent grid
(大网格套小网格).  This module is the pure engine that verifies that; it knows
nothing about databases, Flask or the CLI.

Public API
----------
check_coverage(cells, codes, parent_codes=None, park=None, enterprises=None, *,
               tolerance_m=0.01, gap_width_m=0.0, metric_epsg=None) -> CoverageReport
    Run every check and return a :class:`CoverageReport`.
CoverageReport
    Dataclass of findings with ``to_dict()`` (JSON-ready), ``to_geojson()``
    (FeatureCollection of all problems, EPSG:4326), ``summary_line()`` and
    ``to_text()``.

CRS and units
-------------
Input and output geometries are EPSG:4326 (lon, lat in degrees).  Topology
(noding, unions, differences) is computed directly in EPSG:4326: shared
vertices are shared exactly there, and projecting 10^5 cells would cost a
quarter of the whole check.  Only the *problem* geometries are projected into
the metric CRS (``metric_epsg``, by default the CGCS2000 3-degree Gauss-Krüger
zone of the park, see :func:`geodata.crs.metric_epsg_for`), where areas (m²)
and widths (m) are measured.

Tolerance semantics
-------------------
A gap, overlap or outside part is *noise* when it is narrower than
``tolerance_m`` metres: eroding it by ``tolerance_m / 2`` (a negative buffer
in the metric CRS) leaves nothing.  Anything wider is reported, however small
its area (a 5 cm wide, 200 m long sliver is reported at the default 1 cm).
Noise counts as covered in ``covered_area_m2``.

Invalid cells
-------------
Cells that are not valid polygons (``shapely.is_valid_reason``), empty or not
polygonal are listed in ``invalid_grids``.  Invalid polygons are repaired with
``shapely.make_valid(method="structure")`` *for analysis only*, so a bow-tie
still covers its area and does not produce a cascade of spurious gaps; empty
and non-polygonal cells are left out of the analysis.

How it stays fast
-----------------
``shapely.coverage_invalid_edges`` (the GEOS coverage validator) localises
every cell involved in an overlap or a mismatched edge.  Pairwise
intersections are computed only for STRtree candidate pairs of those cells;
the union is ``coverage_union`` of the clean cells (linear time) plus an
overlay union of the few problem cells; gaps are ``park - union``.

With ``threads`` above 1 the GEOS calls that release the GIL run on a
thread pool: the coverage validation in vertical strips with a halo
(:func:`geodata.partition.halo_strips`; each cell's invalid edges are
computed against the same neighbours as in one call), and, while it runs,
the union of all level-1 cells and its differences with the park, kept when
the validator flags no cell (then they are the very calls the single thread
makes).  The findings are the same as with one thread.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import shapely

from geodata import crs

__all__ = ["check_coverage", "CoverageReport"]

_POLYGON = 3
_MULTIPOLYGON = 6
_POINTS = (0, 4)
# Negative buffers only decide "is anything left"; 2 segments per quarter
# circle are enough for that and keep the erosion cheap.
_ERODE_QUAD_SEGS = 2
_GEOJSON_DECIMALS = 9  # ~0.1 mm at the equator
#: Strips of the coverage validation per thread: more than one evens out
#: strips of unequal cost and the thread that runs the union first.
_STRIPS_PER_THREAD = 2


def default_threads():
    """Threads of one check by default: the cores this process may use, at most 2.

    The figures in docs/scaling.md come from a 2-core machine; more threads
    were not measured.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 2))


@dataclass
class CoverageReport:
    """Findings of :func:`check_coverage`.

    Geometries are shapely objects in EPSG:4326; areas are m² measured in
    ``crs_used``.  ``to_dict()`` turns geometries into GeoJSON dicts.

    Attributes
    ----------
    valid : bool
        True when there are no gaps, overlaps, outside parts or invalid grids
        (in cells-only mode also no unmatched edges).
    crs_used : str
        Metric CRS of areas and widths, e.g. ``"EPSG:4547"``.
    park_area_m2, covered_area_m2, coverage_ratio : float or None
        Park area, park area covered by level-1 grids (noise gaps count as
        covered) and their ratio.  ``park_area_m2`` and ``coverage_ratio`` are
        None in cells-only mode, where ``covered_area_m2`` is the union area.
    gaps, overlaps, outside_park, invalid_grids, unmatched_edges : list of dict
        See :func:`check_coverage`.
    enterprises : dict
        ``{"no_grid": [...], "multi_grid": [...]}``.
    tolerance_m : float
        Width (m) below which gaps, overlaps and outside parts are ignored.
    cell_count : int
        Number of cells checked.
    """

    valid: bool
    crs_used: str
    park_area_m2: float | None
    covered_area_m2: float
    coverage_ratio: float | None
    gaps: list = field(default_factory=list)
    overlaps: list = field(default_factory=list)
    outside_park: list = field(default_factory=list)
    invalid_grids: list = field(default_factory=list)
    unmatched_edges: list = field(default_factory=list)
    enterprises: dict = field(default_factory=lambda: {"no_grid": [], "multi_grid": []})
    tolerance_m: float = 0.01
    cell_count: int = 0
    # Input geometry of each invalid grid (same order), for to_geojson() only.
    invalid_geometries: list = field(default_factory=list, repr=False)

    def to_dict(self):
        """Return the report as JSON-ready dict (geometries as GeoJSON, EPSG:4326)."""

        def with_geojson(items):
            if not items:
                return []
            geojson = _geojson_dicts([item["geometry"] for item in items])
            return [{**item, "geometry": g} for item, g in zip(items, geojson)]

        return {
            "valid": bool(self.valid),
            "crs_used": self.crs_used,
            "park_area_m2": self.park_area_m2,
            "covered_area_m2": self.covered_area_m2,
            "coverage_ratio": self.coverage_ratio,
            "gaps": with_geojson(self.gaps),
            "overlaps": with_geojson(self.overlaps),
            "outside_park": with_geojson(self.outside_park),
            "invalid_grids": [dict(item) for item in self.invalid_grids],
            "unmatched_edges": with_geojson(self.unmatched_edges),
            "enterprises": {
                "no_grid": [dict(e) for e in self.enterprises["no_grid"]],
                "multi_grid": [dict(e) for e in self.enterprises["multi_grid"]],
            },
            "tolerance_m": self.tolerance_m,
            "cell_count": self.cell_count,
        }

    def to_geojson(self):
        """Return all problems as one GeoJSON FeatureCollection in EPSG:4326.

        Every feature has a ``problem`` property (``gap``, ``overlap``,
        ``outside``, ``invalid``, ``unmatched_edge``) plus the codes and area
        of the finding, so a planner can style it in QGIS.  Invalid grids carry
        their input geometry (null when it is missing).
        """
        d = self.to_dict()
        features = []

        def add(problem, items):
            for item in items:
                props = {k: v for k, v in item.items() if k != "geometry"}
                if "codes" in props:
                    props["codes"] = ",".join(props["codes"])
                props["problem"] = problem
                features.append(
                    {"type": "Feature", "properties": props, "geometry": item.get("geometry")}
                )

        add("gap", d["gaps"])
        add("overlap", d["overlaps"])
        add("outside", d["outside_park"])
        invalid = [
            {**item, "geometry": g}
            for item, g in zip(d["invalid_grids"], _geojson_dicts(self.invalid_geometries))
        ] if self.invalid_geometries else d["invalid_grids"]
        add("invalid", invalid)
        add("unmatched_edge", d["unmatched_edges"])
        return {"type": "FeatureCollection", "features": features}

    def summary_line(self):
        """Return a one-line text summary, e.g. for a CLI or a log."""
        head = "VALID" if self.valid else "INVALID"
        ratio = "" if self.coverage_ratio is None else f", coverage {self.coverage_ratio:.4%}"
        return (
            f"{head}: {self.cell_count} cells{ratio}; "
            f"{len(self.gaps)} gaps ({_total(self.gaps):.2f} m²), "
            f"{len(self.overlaps)} overlaps ({_total(self.overlaps):.2f} m²), "
            f"{len(self.outside_park)} outside ({_total(self.outside_park):.2f} m²), "
            f"{len(self.invalid_grids)} invalid, {len(self.unmatched_edges)} unmatched edges, "
            f"{len(self.enterprises['no_grid'])} sites in no grid, "
            f"{len(self.enterprises['multi_grid'])} split sites [{self.crs_used}, "
            f"tol {self.tolerance_m} m]"
        )

    def to_text(self):
        """Return a human-readable multi-line report (areas in m²)."""
        lines = [self.summary_line()]
        if self.park_area_m2 is not None:
            lines.append(
                f"Park area {self.park_area_m2:.2f} m², covered {self.covered_area_m2:.2f} m²"
            )
        for g in self.gaps:
            where = f" in {g['parent_code']}" if g["parent_code"] else ""
            lines.append(f"  gap{where}: {g['area_m2']:.4f} m²")
        for o in self.overlaps:
            lines.append(f"  overlap {o['codes'][0]} / {o['codes'][1]}: {o['area_m2']:.4f} m²")
        for o in self.outside_park:
            lines.append(f"  outside {o['code']}: {o['area_m2']:.4f} m²")
        for i in self.invalid_grids:
            lines.append(f"  invalid {i['code']}: {i['reason']}")
        for u in self.unmatched_edges:
            lines.append(f"  unmatched edge (warning) {u['code']}")
        for e in self.enterprises["no_grid"]:
            lines.append(f"  site in no grid: {e['name']} ({e['credit_code']})")
        for e in self.enterprises["multi_grid"]:
            parts = ", ".join(f"{g['code']} {g['share']:.1%}" for g in e["grids"])
            lines.append(f"  site split: {e['name']} ({e['credit_code']}): {parts}")
        return "\n".join(lines)


def _total(items):
    return float(sum(item["area_m2"] for item in items))


def _geojson_dicts(geoms):
    """Return GeoJSON dicts of EPSG:4326 geometries, coordinates rounded to ~1e-9 deg."""
    arr = np.asarray(geoms, dtype=object)
    rounded = shapely.transform(arr, lambda xy: np.round(xy, _GEOJSON_DECIMALS))
    return [None if s is None else json.loads(s) for s in shapely.to_geojson(rounded)]


class _Engine:
    """Metric helpers shared by the checks of one :func:`check_coverage` call."""

    def __init__(self, epsg, tolerance_m):
        self.epsg = epsg
        self.tol = tolerance_m

    def metric(self, geoms):
        return crs.to_metric(geoms, self.epsg)

    def wide_parts(self, geoms, owners, min_width=None):
        """Split geometries (EPSG:4326) into polygons and keep the wide ones.

        Parameters
        ----------
        geoms : ndarray of shapely geometries, EPSG:4326
        owners : ndarray of int
            One label per geometry, carried over to its parts.
        min_width : float, optional
            Width in metres below which a part is dropped (default tolerance).

        Returns
        -------
        parts : ndarray of Polygon (EPSG:4326)
        areas : ndarray of float, m²
        owners : ndarray of int
        """
        min_width = self.tol if min_width is None else min_width
        # Overlay results may be collections holding multipolygons: flatten twice.
        parts, idx = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
        parts, idx2 = shapely.get_parts(parts, return_index=True)
        idx = idx[idx2]
        poly = shapely.get_type_id(parts) == _POLYGON
        parts, own = parts[poly], np.asarray(owners)[idx[poly]]
        metric = self.metric(parts)
        areas = shapely.area(metric)
        if min_width > 0:
            keep = ~shapely.is_empty(
                shapely.buffer(metric, -min_width / 2, quad_segs=_ERODE_QUAD_SEGS)
            )
        else:
            keep = areas > 0
        return parts[keep], areas[keep], own[keep]


def _group_parts(parts, areas, owners):
    """Merge polygon parts per owner into MultiPolygons; return (owners, geoms, areas)."""
    if len(parts) == 0:
        return np.empty(0, dtype=int), np.empty(0, dtype=object), np.empty(0)
    uniq, inverse = np.unique(owners, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    geoms = shapely.multipolygons(parts[order], indices=inverse[order])
    sums = np.bincount(inverse, weights=areas, minlength=len(uniq))
    # Single-part results are reported as plain polygons.
    single = shapely.get_num_geometries(geoms) == 1
    geoms[single] = shapely.get_geometry(geoms[single], 0)
    return uniq, geoms, sums


def _overlap_pairs(geoms, flagged, group):
    """Return unique pairs (i < j) of same-group cells that intersect.

    Only cells flagged by the coverage validator are queried, because any
    overlap leaves an invalid edge on at least one of the two cells.
    """
    idx = np.flatnonzero(flagged)
    if len(idx) == 0:
        return np.empty(0, dtype=int), np.empty(0, dtype=int)
    tree = shapely.STRtree(geoms)
    q_src, q_dst = tree.query(geoms[idx], predicate="intersects")
    a, b = idx[q_src], q_dst
    keep = (a != b) & (group[a] == group[b])
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _invalid_edges(geoms, pool, threads, meanwhile=None):
    """``shapely.coverage_invalid_edges`` of a coverage, in halo strips on ``pool`` if given.

    The validator compares each cell with the cells whose envelopes meet
    its own (without a gap width), and a strip's halo holds all of those,
    so every cell gets the same invalid edges as in one call.  With a pool,
    ``meanwhile`` (if given) runs in this thread while the strips are validated.
    """
    if pool is None or len(geoms) < 2:
        return shapely.coverage_invalid_edges(geoms)
    from geodata.partition import halo_strips

    strips = list(halo_strips(shapely.bounds(geoms), _STRIPS_PER_THREAD * threads))
    runs = [pool.submit(shapely.coverage_invalid_edges, geoms[halo]) for _, halo in strips]
    if meanwhile is not None:
        meanwhile()
    edges = np.empty(len(geoms), dtype=object)
    for (owned, halo), run in zip(strips, runs):
        edges[owned] = run.result()[np.searchsorted(halo, owned)]
    return edges


def _park_overlay(geoms, park):
    """Union of level-1 cells none of which is flagged, the park minus it and it minus the park."""
    union = _union(geoms, np.zeros(len(geoms), dtype=bool))
    return union, shapely.difference(park, union), shapely.difference(union, park)


def _union(geoms, flagged):
    """Union of cells: coverage_union of clean cells, overlay union of the rest."""
    clean = shapely.coverage_union_all(geoms[~flagged])
    if not flagged.any():
        return clean
    return shapely.union(clean, shapely.union_all(geoms[flagged]))


def _as_array(geoms):
    if hasattr(geoms, "geometry") and hasattr(geoms, "crs"):
        geoms = _to_4326(geoms)
    values = getattr(geoms, "values", geoms)
    return np.asarray(values, dtype=object).ravel()


def _to_4326(frame):
    if frame.crs is not None and frame.crs.to_epsg() != crs.STORAGE_SRID:
        frame = frame.to_crs(crs.STORAGE_SRID)
    return frame.geometry if hasattr(frame, "columns") else frame


def _parent_index(codes, parent_codes):
    """Index of each cell's parent cell: -1 for level-1 cells, -2 for unknown parents."""
    # list.count runs in C: a generator over 10^5 codes costs 2% of the coverage validation.
    if parent_codes.count(None) == len(parent_codes):
        return np.full(len(codes), -1, dtype=int)
    index = {c: i for i, c in enumerate(codes)}
    return np.array([-1 if p is None else index.get(p, -2) for p in parent_codes], dtype=int)


def _prepare_cells(cells, codes, parent_codes, parent_idx):
    """Validate cells; return analysis geometries, use-mask and invalid findings."""
    missing = shapely.is_missing(cells)
    safe = np.where(missing, shapely.Polygon(), cells)
    type_id = shapely.get_type_id(safe)
    polygonal = np.isin(type_id, [_POLYGON, _MULTIPOLYGON])
    empty = shapely.is_empty(safe)
    valid = shapely.is_valid(safe)
    bad = ~valid | empty | ~polygonal
    reasons = np.empty(len(cells), dtype=object)
    reasons[bad & ~valid] = shapely.is_valid_reason(safe[bad & ~valid])
    reasons[empty] = "Empty geometry"
    reasons[~polygonal & ~empty] = [
        f"Not a polygon ({shapely.get_type_id(g)})" for g in safe[~polygonal & ~empty]
    ]
    reasons[missing] = "Missing geometry"

    work = safe.copy()
    repair = bad & polygonal & ~empty
    if repair.any():
        fixed = shapely.make_valid(safe[repair], method="structure", keep_collapsed=False)
        work[repair] = fixed
    use = ~(empty | ~polygonal) & ~shapely.is_empty(work)

    invalid = [
        {"code": codes[i], "reason": str(reasons[i])} for i in np.flatnonzero(bad)
    ]
    invalid_geoms = list(cells[bad])
    # A cell whose parent code is unknown cannot be placed in the hierarchy.
    orphan = parent_idx == -2
    invalid += [
        {"code": codes[i], "reason": f"Unknown parent code {parent_codes[i]}"}
        for i in np.flatnonzero(orphan)
    ]
    invalid_geoms += list(cells[orphan])
    return work, use & ~orphan, invalid, invalid_geoms


def _levels(parent_idx, use):
    """Yield (level number, cell indices, parent cell index per cell) top-down."""
    current = np.flatnonzero((parent_idx == -1) & use)
    level = 1
    while len(current):
        yield level, current, parent_idx[current]
        nxt = np.flatnonzero(np.isin(parent_idx, current) & use)
        current, level = nxt, level + 1


def check_coverage(
    cells,
    codes,
    parent_codes=None,
    park=None,
    enterprises=None,
    *,
    tolerance_m=0.01,
    gap_width_m=0.0,
    metric_epsg=None,
    top_level=None,
    prepare=None,
    threads=1,
):
    """Check that grids tile the park and that sub-grids tile their parents.

    Parameters
    ----------
    cells : array-like of shapely Polygon or MultiPolygon, EPSG:4326
        Grid cells of all levels (a GeoSeries works too).
    codes : sequence of str
        Unique grid code per cell.
    parent_codes : sequence of str or None, optional
        Parent grid code per cell; None marks a level-1 grid.  Default: all
        cells are level-1.
    park : shapely Polygon or MultiPolygon, EPSG:4326, optional
        Park boundary, holes allowed.  Without it the level-1 cells are checked
        as a coverage among themselves (cells-only mode, like GEOS/PostGIS
        coverage validation): overlaps, unmatched edges and gaps narrower than
        ``gap_width_m``.
    enterprises : sequence of (name, credit_code, geometry) or GeoDataFrame, optional
        Enterprise sites (Polygon or Point, EPSG:4326), checked against the
        level-1 grids.  A GeoDataFrame needs columns ``name``, ``credit_code``
        and a geometry; it is reprojected to EPSG:4326 if needed.
    tolerance_m : float, default 0.01
        Metres; gaps, overlaps and outside parts narrower than this are noise.
    gap_width_m : float, default 0
        Metres; cells-only mode reports gaps narrower than this (wider holes
        are taken as intended), as GEOS ``coverage_invalid_edges(gap_width)``.
    metric_epsg : int, optional
        Metric CRS for areas and widths.  Default
        :func:`geodata.crs.metric_epsg_for` of the park (or of the cells'
        bounding box).
    top_level : callable, optional
        Runs the level-1 stages of park mode (unmatched edges, overlaps, park
        gaps and outside parts) in place of this process, e.g. on Dask
        workers (:func:`geodata.partition.check_partitioned`).  Called as
        ``top_level(found, idx, geoms, park)``; it appends to ``found`` like
        the stages do and returns the cells the coverage validator flagged.
    prepare : callable, optional
        Validates and repairs the cells in place of this process (with
        ``top_level``, where the workers validate the level-1 cells they
        own).  Called as ``prepare(cells, codes, parent_codes, parent_idx)``;
        returns what the internal ``_prepare_cells`` returns for all cells.
    threads : int, default 1
        Threads of this process for the GEOS work that releases the GIL (see
        the module docstring); the findings do not depend on it.

    Returns
    -------
    CoverageReport
        ``gaps``: ``{area_m2, parent_code, geometry}`` per gap polygon (park or
        parent area covered by no child); ``overlaps``: ``{codes, area_m2,
        geometry}`` per pair of level-1 grids or sibling sub-grids whose
        interiors intersect; ``outside_park``: ``{code, area_m2, geometry}``
        for level-1 area outside the park (holes included) or sub-grid area
        outside its parent; ``invalid_grids``: ``{code, reason}``;
        ``unmatched_edges``: ``{code, geometry}`` from
        ``shapely.coverage_invalid_edges`` per cell (warnings unless in
        cells-only mode); ``enterprises``: ``no_grid`` ``[{name,
        credit_code}]`` and ``multi_grid`` ``[{name, credit_code, grids:
        [{code, share}]}]`` (a point on a shared edge is in one grid).

    Raises
    ------
    ValueError
        If ``codes`` (or ``parent_codes``) do not match ``cells`` in length,
        codes are not unique or ``threads`` is below 1.

    Notes
    -----
    The check runs as named stages: arguments, metric CRS, then per level
    (top down) unmatched edges, overlaps, and gaps and outside parts (cells
    only, against the park, or against the parents); then the whole park as
    a gap when no level-1 grid is usable, unreachable cells and enterprises.
    """
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if int(threads) == 1:
        return _check(cells, codes, parent_codes, park, enterprises, tolerance_m, gap_width_m,
                      metric_epsg, top_level, prepare, None, 1)
    with ThreadPoolExecutor(int(threads), thread_name_prefix="coverage") as pool:
        return _check(cells, codes, parent_codes, park, enterprises, tolerance_m, gap_width_m,
                      metric_epsg, top_level, prepare, pool, int(threads))


def _check(cells, codes, parent_codes, park, enterprises, tolerance_m, gap_width_m, metric_epsg,
           top_level, prepare, pool, threads):
    """The stages of :func:`check_coverage`; ``pool``: a thread pool of ``threads``, or None."""
    cells, codes, parent_codes = _arguments(cells, codes, parent_codes)
    parent_idx = _parent_index(codes, parent_codes)
    prepare = prepare or _prepare_cells
    work, use, invalid, invalid_geoms = prepare(cells, codes, parent_codes, parent_idx)
    engine = _Engine(int(_choose_epsg(metric_epsg, park, work, use)), float(tolerance_m))
    found = _Findings(engine, np.asarray(codes, dtype=object), pool, threads)
    top = np.empty(0, dtype=int)
    # Cells the coverage validator flagged at their own level (global index).
    flagged_any = np.zeros(len(cells), dtype=bool)
    visited = np.zeros(len(cells), dtype=bool)
    sites = None

    def level1_sites():
        # This thread's share while the pool validates level 1: the sites
        # (they need only the level-1 cells) and this thread's PROJ transformer.
        nonlocal sites
        crs.transformer(crs.STORAGE_SRID, engine.epsg)
        sites = _check_enterprises(enterprises, work[top], found.codes[top], engine)

    for level, idx, parents in _levels(parent_idx, use):
        visited[idx] = True
        geoms = work[idx]
        if level == 1:
            top = idx
            group = np.zeros(len(idx), dtype=int)
            container_idx = None
        else:
            container_idx, group = np.unique(parents, return_inverse=True)
        cells_only = level == 1 and park is None
        if level == 1 and park is not None and top_level is not None:
            flagged_any[idx] = top_level(found, idx, geoms, park)
            continue
        # Started before the validation, so it runs beside it on the pool.
        overlay = (pool.submit(_park_overlay, geoms, park)
                   if pool is not None and level == 1 and park is not None else None)
        flagged = _unmatched_edges(found, idx, geoms, group, level, cells_only, gap_width_m,
                                   level1_sites if level == 1 else None)
        flagged_any[idx] = flagged
        _overlaps(found, idx, geoms, flagged, group)
        if cells_only:
            _cells_only_gaps(found, geoms, flagged, gap_width_m)
        elif level == 1:
            _park_gaps_and_outside(found, idx, geoms, flagged, park, overlay)
        else:
            _parent_gaps_and_outside(found, idx, geoms, flagged, group, work[container_idx],
                                     found.codes[container_idx],
                                     flagged_any[container_idx])
    if park is not None and len(top) == 0:
        _whole_park_gap(found, park)
    unreachable = np.flatnonzero(use & ~visited)
    invalid += _unreachable(found, unreachable)
    invalid_geoms += list(cells[unreachable])
    if sites is None:
        sites = _check_enterprises(enterprises, work[top], found.codes[top], engine)
    return found.report(invalid, invalid_geoms, sites, tolerance_m, len(cells))


@dataclass
class _Findings:
    """What the stages of one :func:`check_coverage` call find (they append to it)."""

    engine: _Engine
    codes: np.ndarray
    pool: ThreadPoolExecutor | None = None
    threads: int = 1
    gaps: list = field(default_factory=list)
    overlaps: list = field(default_factory=list)
    outside: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)
    park_area: float | None = None
    covered: float | None = None
    ratio: float | None = None
    cells_only_invalid: bool = False

    def report(self, invalid, invalid_geoms, sites, tolerance_m, cell_count):
        """The :class:`CoverageReport` of these findings."""
        is_valid = not (self.gaps or self.overlaps or self.outside or invalid
                        or self.cells_only_invalid)
        return CoverageReport(
            valid=is_valid,
            crs_used=f"EPSG:{self.engine.epsg}",
            park_area_m2=self.park_area,
            covered_area_m2=self.covered if self.covered is not None else 0.0,
            coverage_ratio=self.ratio,
            gaps=self.gaps,
            overlaps=self.overlaps,
            outside_park=self.outside,
            invalid_grids=invalid,
            unmatched_edges=self.unmatched,
            enterprises=sites,
            tolerance_m=float(tolerance_m),
            cell_count=cell_count,
            invalid_geometries=invalid_geoms,
        )


def _arguments(cells, codes, parent_codes):
    """Stage 1: cells as an array, codes and parent codes as lists of str (or None)."""
    cells = _as_array(cells)
    codes = [str(c) for c in codes]
    n = len(cells)
    if len(codes) != n:
        raise ValueError(f"{len(codes)} codes for {n} cells")
    if len(set(codes)) != n:
        raise ValueError("grid codes must be unique")
    if parent_codes is None:
        parent_codes = [None] * n
    parent_codes = [None if p is None or p != p else str(p) for p in parent_codes]
    if len(parent_codes) != n:
        raise ValueError(f"{len(parent_codes)} parent codes for {n} cells")
    return cells, codes, parent_codes


def _choose_epsg(metric_epsg, park, work, use):
    """Stage 2: the metric CRS (given, else the park's, else the usable cells')."""
    if metric_epsg is not None:
        return int(metric_epsg)
    if park is not None:
        return crs.metric_epsg_for(park)
    if use.any():
        return crs.metric_epsg_for(shapely.box(*shapely.total_bounds(work[use])))
    # Nothing usable to locate (no park, every cell invalid): no area will
    # be measured, so any metric CRS will do.
    return crs.metric_epsg(0.0, 0.0)


def _unmatched_edges(found, idx, geoms, group, level, cells_only, gap_width_m, meanwhile=None):
    """Stage 3 (per level): GEOS coverage validation; return the cells it flagged.

    ``meanwhile`` is called in this thread while the pool validates, if there is one.
    """
    engine = found.engine
    if cells_only and gap_width_m > 0:
        # GEOS measures gap width in CRS units, so this one runs in metres.
        edges = crs.to_storage(
            shapely.coverage_invalid_edges(engine.metric(geoms), gap_width=gap_width_m),
            engine.epsg,
        )
    else:
        edges = _invalid_edges(geoms, found.pool, found.threads, meanwhile)
    flagged = ~shapely.is_empty(edges)

    if level == 1:
        report_edges = flagged
    else:
        # Unmatched edges between cousins are legitimate (different parents
        # are cut differently); re-validate sibling groups that were flagged.
        report_edges = np.zeros(len(idx), dtype=bool)
        by_group = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[by_group], np.arange(group.max() + 2))
        for g in np.unique(group[flagged]):
            members = by_group[bounds[g]:bounds[g + 1]]
            sib_edges = shapely.coverage_invalid_edges(geoms[members])
            edges[members] = sib_edges
            report_edges[members] = ~shapely.is_empty(sib_edges)
    found.unmatched += [
        {"code": found.codes[idx[i]], "geometry": edges[i]}
        for i in np.flatnonzero(report_edges)
    ]
    if cells_only and report_edges.any():
        found.cells_only_invalid = True
    return flagged


def _overlaps(found, idx, geoms, flagged, group):
    """Stage 4 (per level): overlaps between same-group cells."""
    a, b, geoms, areas = overlap_findings(found.engine, geoms, flagged, group)
    found.overlaps += [
        {"codes": [found.codes[idx[i]], found.codes[idx[j]]], "area_m2": float(area),
         "geometry": geom}
        for i, j, geom, area in zip(a, b, geoms, areas)
    ]


def overlap_findings(engine, geoms, flagged, group):
    """Wide overlaps of same-group cells: (cells a, cells b, geometries, areas m²).

    Pairs are ``a < b`` (indices into ``geoms``) in ascending order.
    """
    a, b = _overlap_pairs(geoms, flagged, group)
    if not len(a):
        return a, b, np.empty(0, dtype=object), np.empty(0)
    inter = shapely.intersection(geoms[a], geoms[b])
    parts, areas, own = engine.wide_parts(inter, np.arange(len(a)))
    pair_ids, pair_geoms, pair_areas = _group_parts(parts, areas, own)
    return a[pair_ids], b[pair_ids], pair_geoms, pair_areas


def _cells_only_gaps(found, geoms, flagged, gap_width_m):
    """Stage 5a (level 1, no park): the union's area and its holes narrower than gap_width_m."""
    engine = found.engine
    union = _union(geoms, flagged)
    found.covered = float(shapely.area(engine.metric(union)))
    if gap_width_m <= 0:
        return
    rings, owner = shapely.get_rings(shapely.get_parts(union), return_index=True)
    # get_rings lists each polygon's shell first; the rest are holes.
    shell = np.r_[True, owner[1:] != owner[:-1]]
    holes = shapely.polygons(rings[~shell])
    parts, areas, _ = engine.wide_parts(holes, np.zeros(len(holes), dtype=int))
    metric = engine.metric(parts)
    narrow = shapely.is_empty(
        shapely.buffer(metric, -gap_width_m / 2, quad_segs=_ERODE_QUAD_SEGS)
    )
    found.gaps += [
        {"area_m2": float(ar), "parent_code": None, "geometry": g}
        for g, ar in zip(parts[narrow], areas[narrow])
    ]


def _park_gaps_and_outside(found, idx, geoms, flagged, park, overlay=None):
    """Stage 5b (level 1): park area no grid covers, and grid area outside the park.

    ``overlay`` is the future of :func:`_park_overlay` started beside the
    validation; its result is the one wanted when no cell was flagged.
    """
    engine = found.engine
    if overlay is not None and not flagged.any():
        union, uncovered, outside = overlay.result()
    else:
        union = _union(geoms, flagged)
        uncovered, outside = shapely.difference(park, union), shapely.difference(union, park)
    park_gaps(found, park, uncovered)
    out_parts, _, _ = engine.wide_parts([outside], np.zeros(1, dtype=int))
    if len(out_parts):
        tree = shapely.STRtree(geoms)
        q_part, q_cell = tree.query(out_parts, predicate="intersects")
        pieces = shapely.intersection(geoms[q_cell], out_parts[q_part])
        _add_outside(found.outside, engine, pieces, q_cell, idx, found.codes)


def park_gaps(found, park, uncovered):
    """Level-1 gaps: the wide parts of ``uncovered`` (park area no grid covers)."""
    engine = found.engine
    found.park_area = float(shapely.area(engine.metric(park)))
    parts, areas, _ = engine.wide_parts([uncovered], np.zeros(1, dtype=int))
    found.gaps += [
        {"area_m2": float(ar), "parent_code": None, "geometry": g}
        for g, ar in zip(parts, areas)
    ]
    found.covered = found.park_area - float(areas.sum())
    found.ratio = found.covered / found.park_area if found.park_area else None


def _parent_gaps_and_outside(found, idx, geoms, flagged, group, containers, container_codes,
                             containers_flagged):
    """Stage 5c (sub-grids): parent area no child covers, and child area outside its parent."""
    engine = found.engine
    shapely.prepare(containers)
    mine = containers[group]
    out = np.flatnonzero(~shapely.covered_by(geoms, mine))
    strays = np.empty(0, dtype=int)
    if len(out):
        pieces = shapely.difference(geoms[out], mine[out])
        strays = _add_outside(found.outside, engine, pieces, out, idx, found.codes)
    shapely.destroy_prepared(containers)
    # A child sticking out of its parent must not fill a gap of another
    # parent (e.g. a child filed under the wrong parent code), so only its
    # part inside its own parent counts towards the union.
    clipped = geoms.copy()
    clipped[strays] = shapely.intersection(geoms[strays], mine[strays])
    stray_mask = np.zeros(len(idx), dtype=bool)
    stray_mask[strays] = True
    union = _union(clipped, flagged | stray_mask)
    # Parents that passed their own level's validation form a coverage.
    raw_gaps = shapely.difference(_union(containers, containers_flagged), union)
    gap_parts, _, _ = engine.wide_parts([raw_gaps], np.zeros(1, dtype=int))
    if not len(gap_parts):
        return
    # A gap may straddle two parents that both lack children there.
    ctree = shapely.STRtree(containers)
    q_gap, q_cont = ctree.query(gap_parts, predicate="intersects")
    pieces = shapely.intersection(gap_parts[q_gap], containers[q_cont])
    parts, areas, own = engine.wide_parts(pieces, q_cont)
    found.gaps += [
        {"area_m2": float(ar), "parent_code": container_codes[o], "geometry": g}
        for g, ar, o in zip(parts, areas, own)
    ]


def _whole_park_gap(found, park):
    """Stage 6: no usable level-1 grid, so the whole park is a gap.

    An empty coverage is not a valid one: nothing is covered, the ratio is 0.
    """
    park_gaps(found, park, park)
    found.covered, found.ratio = 0.0, 0.0


def _unreachable(found, unreachable):
    """Stage 7: cells below an unusable parent, or in a parent cycle, were never checked."""
    return [
        {"code": found.codes[i], "reason": "Not reachable from a level-1 grid "
         "(its parent is unusable or the parent codes form a cycle)"}
        for i in unreachable
    ]


def _add_outside(outside, engine, pieces, owners, idx, codes_arr):
    """Append per-cell findings for wide outside pieces; return the cells' level-local ids."""
    parts, areas, own = engine.wide_parts(pieces, owners)
    cell_ids, geoms, sums = _group_parts(parts, areas, own)
    outside += [
        {"code": codes_arr[idx[c]], "area_m2": float(s), "geometry": g}
        for c, g, s in zip(cell_ids, geoms, sums)
    ]
    return cell_ids


def _site_table(enterprises):
    """Return (names, credit_codes, geometries in EPSG:4326) of enterprise sites."""
    if hasattr(enterprises, "columns"):
        geoms = _as_array(_to_4326(enterprises))
        return list(enterprises["name"]), list(enterprises["credit_code"]), geoms
    rows = list(enterprises)
    names = [r[0] for r in rows]
    credit = [r[1] for r in rows]
    geoms = np.asarray([r[2] for r in rows], dtype=object)
    return names, credit, geoms


def _check_enterprises(enterprises, grids, grid_codes, engine):
    """Sites in no level-1 grid and sites split across several (area shares)."""
    result = {"no_grid": [], "multi_grid": []}
    if enterprises is None:
        return result
    names, credit, sites = _site_table(enterprises)
    if len(sites) == 0:
        return result
    tree = shapely.STRtree(grids)
    q_site, q_grid = tree.query(sites, predicate="intersects")
    # In grid order per site (the tree's order is its own), so equal shares
    # keep the grids' order however the grids were split (geodata.partition).
    order = np.lexsort((q_grid, q_site))
    q_site, q_grid = q_site[order], q_grid[order]
    is_point = np.isin(shapely.get_type_id(sites), _POINTS)

    # Points: any intersecting grid (a point on a shared edge hits two) means "in a grid".
    hits = np.bincount(q_site, minlength=len(sites))
    # Areal sites: only overlaps wider than the tolerance count as a share.
    areal = ~is_point[q_site]
    pair_site, pair_grid = q_site[areal], q_grid[areal]
    pieces = shapely.intersection(sites[pair_site], grids[pair_grid])
    _, areas, own = engine.wide_parts(pieces, np.arange(len(pair_site)))
    pair_area = np.bincount(own, weights=areas, minlength=len(pair_site))
    site_area = shapely.area(engine.metric(sites))
    real = pair_area > 0
    n_grids = np.bincount(pair_site[real], minlength=len(sites))
    in_grid = np.where(is_point, hits > 0, n_grids > 0)

    for s in np.flatnonzero(~in_grid):
        result["no_grid"].append({"name": names[s], "credit_code": credit[s]})
    # Group the real pairs by site once instead of scanning them per site.
    real_idx = np.flatnonzero(real)
    real_idx = real_idx[np.argsort(pair_site[real_idx], kind="stable")]
    starts = np.searchsorted(pair_site[real_idx], np.arange(len(sites) + 1))
    for s in np.flatnonzero(~is_point & (n_grids > 1)):
        sel = real_idx[starts[s]:starts[s + 1]]
        shares = pair_area[sel] / site_area[s]
        order = np.argsort(-shares, kind="stable")
        result["multi_grid"].append(
            {
                "name": names[s],
                "credit_code": credit[s],
                "grids": [
                    {"code": grid_codes[pair_grid[sel[k]]], "share": round(float(shares[k]), 4)}
                    for k in order
                ],
            }
        )
    return result
