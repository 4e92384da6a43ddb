"""Proposed grids: a draft coverage that tiles a park, every enterprise in exactly one grid.

A proposal is pure data (a GeoDataFrame in EPSG:4326); nothing is stored
until it is adopted as one edit (:func:`geodata.services.edits.adopt_proposal`).
Geometry is computed in the park's metric CRS (metres).

Methods
-------
``"regular"``
    Axis-aligned rectangular blocks: the park's bounding box is cut
    recursively across its longer side at the weighted median of the balance
    weights (a k-d partition), so blocks are regular and balanced.
``"voronoi"``
    The same balanced partition of the weights gives one seed per cell (the
    weighted centre of each group); cells are the seeds' Voronoi regions, so
    boundaries are straight bisectors between neighbouring centres.
``"enterprise"``
    Cells are built from the enterprises: each enterprise's catchment (the
    Voronoi region of its site) is given to the group its site falls in, so
    boundaries run between enterprise lots rather than across them.

Balance
-------
``"area"`` (default)
    Weights are points spread evenly over the park: cells of about equal
    area.
``"enterprises"``
    Weights are enterprise sites (one each): cells with about the same number
    of enterprises (empty ground gets a tenth of the weight so it is still
    divided).
``"employees"``
    Weights are enterprise sites weighted by employees (blank counts as 1):
    cells with about the same number of employees.

Whatever the method, the largest enterprises (by site area for ``area``
balance, by employees otherwise) whose site is at least half a typical cell
get their own grid (``kind="enterprise"``) split into 2-4 workshop sub-grids
(``kind="workshop"``, strips of equal area); every other site is then moved
whole into the cell holding most of it, and detached fragments of cells join
the neighbour sharing the longest border, so the cells tile the park exactly.
"""

import numpy as np
import pandas as pd
import geopandas as gpd
import shapely

from geodata import editing
from geodata.crs import STORAGE_SRID, metric_epsg_for, to_metric, to_storage
from geodata.errors import ValidationError
from geodata.gridcodes import grid_code, reading_order

METHODS = ("voronoi", "regular", "enterprise")
BALANCES = ("area", "enterprises", "employees")
_SAMPLES_PER_CELL = 60
_OWN_SHARE_MAX = 0.25  # at most a quarter of the cells are single-enterprise grids
_SNAP_BACK_DEG = 1e-9
_NEAR_EDGE_M = 1e-3  # a gate point this close to a cell edge gets a notch (see _points_inside)


def propose_grids(park_boundary, enterprises=None, method="voronoi", target_count=60,
                  balance="area", *, park_code="DRAFT", metric_epsg=None, seed=0):
    """Propose grids that tile ``park_boundary`` with every enterprise in exactly one grid.

    Parameters
    ----------
    park_boundary : Polygon or MultiPolygon, EPSG:4326
    enterprises : GeoDataFrame or None
        Sites (Polygon or Point, EPSG:4326) with optional ``employees``,
        ``name`` and ``credit_code`` columns.
    method : {"voronoi", "regular", "enterprise"}
    target_count : int
        Level-1 grids wanted (own-enterprise grids included); the result can
        have a few fewer when fragments are merged away.
    balance : {"area", "enterprises", "employees"}
    park_code : str
        Used for the draft codes (``<park>-001``...), renumbered on adoption.
    metric_epsg : int, optional
        Default: :func:`geodata.crs.metric_epsg_for` of the park.
    seed : int
        Seed for the jitter of the area sample points (results are deterministic).

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326, columns ``code, name, level, parent_code, kind,
        enterprises, employees, area_m2, geometry``; level-1 rows first.

    Raises
    ------
    ValidationError
        Unknown method or balance, or a target count below 1 or above 999.
    """
    if method not in METHODS:
        raise ValidationError(f"unknown method {method!r}; use one of {', '.join(METHODS)}",
                              code="invalid_value", details={"method": method})
    if balance not in BALANCES:
        raise ValidationError(f"unknown balance {balance!r}; use one of {', '.join(BALANCES)}",
                              code="invalid_value", details={"balance": balance})
    if not 1 <= int(target_count) <= 999:
        raise ValidationError("target count must be 1..999", code="invalid_value",
                              details={"target_count": target_count})
    epsg = metric_epsg or metric_epsg_for(park_boundary)
    park = editing.clean(to_metric(park_boundary, epsg))
    sites, employees = _sites(enterprises, epsg)
    rng = np.random.default_rng(seed)

    own, own_sites = _own_grids(park, sites, employees, target_count, balance)
    rest = editing.clean(shapely.difference(park, shapely.union_all(own))) if own else park
    k = max(1, int(target_count) - len(own))
    free = np.ones(len(sites), dtype=bool)
    free[own_sites] = False
    points, weights = _weights(rest, sites[free], employees[free], k, balance, rng)
    minx, miny, maxx, maxy = rest.bounds
    groups, boxes = _kd(points, weights, k, (minx - 1, miny - 1, maxx + 1, maxy + 1))
    if method == "regular":
        cells = [editing.clean(shapely.intersection(rest, shapely.box(*b))) for b in boxes]
    elif method == "voronoi" or not free.any():
        cells = _voronoi(rest, points, weights, groups)
    else:
        cells = _enterprise(rest, sites[free], boxes)
    cells = [c for c in cells if not c.is_empty]
    cells = _place_sites(_fragments(cells), sites[free])
    # Tidying fragments can carry part of a site along; placing again puts it back whole,
    # so the result may keep a few small detached parts but never splits a site.
    cells = _place_sites(_fragments(cells), sites[free])
    level1 = _points_inside(list(own) + list(cells), sites)
    own, cells = level1[:len(own)], level1[len(own):]
    return _frame(cells, own, sites, employees, park_boundary, epsg, park_code)


def _sites(enterprises, epsg):
    if enterprises is None or len(enterprises) == 0:
        return np.array([], dtype=object), np.array([], dtype=float)
    frame = enterprises.to_crs(STORAGE_SRID) if enterprises.crs else enterprises
    sites = to_metric(frame.geometry.to_numpy(), epsg)
    emp = (pd.to_numeric(frame["employees"], errors="coerce").fillna(1).to_numpy(dtype=float)
           if "employees" in frame else np.ones(len(frame)))
    return np.asarray(sites, dtype=object), np.maximum(emp, 1.0)


def _own_grids(park, sites, employees, target_count, balance):
    """Single-enterprise grids: the largest sites, at least half a typical cell, disjoint."""
    if len(sites) == 0:
        return [], []
    typical = park.area / target_count
    polygonal = shapely.get_dimensions(sites) == 2
    areas = np.where(polygonal, shapely.area(sites), 0.0)
    size = areas if balance == "area" else employees * (areas > 0)
    order = np.argsort(-size, kind="stable")
    tree = shapely.STRtree(sites)
    own, own_sites, taken = [], [], []
    limit = int(target_count * _OWN_SHARE_MAX)
    for i in order:
        if len(own) >= limit:
            break
        if areas[i] < typical / 2:
            if balance == "area":
                break  # sorted by area: no later site is large enough
            continue
        # A site inside another (a hidden unit) is not a candidate of its own.
        near = tree.query(sites[i], predicate="intersects")
        grid = editing.clean(shapely.intersection(
            shapely.union_all(list(sites[near]) + [sites[i]]), park))
        if any(shapely.area(shapely.intersection(grid, t)) > 0 for t in taken):
            continue
        if any(shapely.covered_by(sites[i], sites[j]) and j != i and areas[j] > areas[i]
               for j in near):
            continue
        own.append(grid)
        taken.append(grid)
        own_sites.extend(int(j) for j in near)
    return own, sorted(set(own_sites))


def _weights(region, sites, employees, k, balance, rng):
    """Weighted points that stand for what is to be balanced, inside ``region``."""
    n = max(_SAMPLES_PER_CELL * k, 200)
    minx, miny, maxx, maxy = region.bounds
    step = np.sqrt((maxx - minx) * (maxy - miny) / n)
    xs, ys = np.meshgrid(np.arange(minx + step / 2, maxx, step),
                         np.arange(miny + step / 2, maxy, step))
    xy = np.column_stack([xs.ravel(), ys.ravel()])
    xy += rng.uniform(-step / 4, step / 4, xy.shape)
    inside = shapely.contains_xy(region, xy[:, 0], xy[:, 1])
    lattice = xy[inside]
    if len(lattice) == 0:
        lattice = np.array([region.representative_point().coords[0]])
    if balance == "area" or len(sites) == 0:
        return lattice, np.ones(len(lattice))
    pts = shapely.get_coordinates(shapely.point_on_surface(sites))
    w = np.ones(len(sites)) if balance == "enterprises" else employees
    # Empty ground still gets divided: a tenth of the weight is spread evenly.
    spread = np.full(len(lattice), 0.1 * w.sum() / len(lattice))
    return np.vstack([pts, lattice]), np.concatenate([w, spread])


def _kd_split(xy, w, idx, k, box, out_groups, out_boxes):
    """Recursive weighted bisection of points ``idx`` into ``k`` groups (k-d partition)."""
    if k == 1 or len(idx) <= 1:
        out_groups.append(idx)
        out_boxes.append(box)
        return
    minx, miny, maxx, maxy = box
    axis = 0 if (maxx - minx) >= (maxy - miny) else 1
    k1 = k // 2
    order = idx[np.argsort(xy[idx, axis], kind="stable")]
    cum = np.cumsum(w[order])
    cut_at = int(np.searchsorted(cum, cum[-1] * k1 / k))
    cut_at = min(max(cut_at, 1), len(order) - 1)
    values = xy[order, axis]
    # Never cut through a point (sites on a lattice share coordinates): move the cut to
    # the nearest place between two different values.
    distinct = np.flatnonzero(values[1:] > values[:-1]) + 1
    if len(distinct):
        cut_at = int(distinct[np.argmin(np.abs(distinct - cut_at))])
    cut = (values[cut_at - 1] + values[cut_at]) / 2
    lo_box = (minx, miny, cut, maxy) if axis == 0 else (minx, miny, maxx, cut)
    hi_box = (cut, miny, maxx, maxy) if axis == 0 else (minx, cut, maxx, maxy)
    _kd_split(xy, w, order[:cut_at], k1, lo_box, out_groups, out_boxes)
    _kd_split(xy, w, order[cut_at:], k - k1, hi_box, out_groups, out_boxes)


def _kd(points, weights, k, bounds):
    groups, boxes = [], []
    _kd_split(points, weights, np.arange(len(points)), k, bounds, groups, boxes)
    return groups, boxes


def _voronoi(region, points, weights, groups):
    seeds = np.array([np.average(points[g], axis=0, weights=weights[g]) for g in groups
                      if len(g)])
    # Two seeds on one spot would give one Voronoi region for two groups.
    seeds = np.unique(np.round(seeds, 3), axis=0)
    if len(seeds) < 2:
        return [region]
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=region.envelope)
    return [editing.clean(shapely.intersection(region, c)) for c in shapely.get_parts(cells)]


def _enterprise(region, sites, boxes):
    anchors = shapely.point_on_surface(sites)
    xy_unique, first = np.unique(np.round(shapely.get_coordinates(anchors), 3), axis=0,
                                 return_index=True)
    if len(xy_unique) < 2:
        return [region]
    box_geoms = shapely.box(*np.asarray(boxes).T)
    hit_pt, hit_box = shapely.STRtree(box_geoms).query(shapely.points(xy_unique),
                                                       predicate="intersects")
    site_group = np.zeros(len(xy_unique), dtype=int)
    # A point on a shared box edge hits two boxes: the first one wins.
    site_group[hit_pt[::-1]] = hit_box[::-1]
    regions = shapely.get_parts(shapely.voronoi_polygons(
        shapely.multipoints(xy_unique), extend_to=region.envelope))
    owner = shapely.STRtree(regions).query(shapely.points(xy_unique), predicate="within")
    region_group = np.full(len(regions), -1)
    region_group[owner[1]] = site_group[owner[0]]
    cells = []
    for g in range(len(boxes)):
        mine = regions[region_group == g]
        if len(mine):
            cells.append(editing.clean(shapely.intersection(region, shapely.union_all(mine))))
    return cells


def _fragments(cells):
    """Detached parts of a cell, and cells under a tenth of the mean, join a neighbour."""
    cells = [editing.clean(c) for c in cells if not c.is_empty]
    mean = np.mean([c.area for c in cells]) if cells else 0
    work = dict(enumerate(cells))
    for i in sorted(work, key=lambda i: work[i].area):
        if i not in work:
            continue
        if work[i].area < mean / 10 and len(work) > 1:
            piece = work.pop(i)
            j = editing.best_receiver(piece, work, list(work), 0.01)
            if j is None:
                work[i] = piece
            else:
                work[j] = editing.clean(shapely.union(work[j], piece))
    for i in list(work):
        parts = list(shapely.get_parts(work[i]))
        if len(parts) < 2:
            continue
        main = max(parts, key=lambda p: p.area)
        for p in parts:
            if p is main:
                continue
            others = [j for j in work if j != i]
            j = editing.best_receiver(p, work, others, 0.01)
            if j is not None:
                work[i] = editing.clean(shapely.difference(work[i], p))
                work[j] = editing.clean(shapely.union(work[j], p))
    return list(work.values())


def _place_sites(cells, sites):
    """Move every polygonal site whole into the cell holding most of it."""
    if len(sites) == 0 or not cells:
        return cells
    areal = np.flatnonzero(shapely.get_dimensions(sites) == 2)
    order = areal[np.argsort(-shapely.area(sites[areal]), kind="stable")]
    cells = list(cells)
    for _ in range(2):
        moved = False
        tree = shapely.STRtree(cells)
        for s in order:
            hit = tree.query(sites[s], predicate="intersects")
            if len(hit) < 2:
                continue
            shares = shapely.area(shapely.intersection(np.asarray(cells, dtype=object)[hit],
                                                       sites[s]))
            real = hit[shares > 1e-6]
            if len(real) < 2:
                continue
            best = hit[int(np.argmax(shares))]
            for j in real:
                if j != best:
                    piece = editing.clean(shapely.intersection(cells[j], sites[s]))
                    cells[j] = editing.clean(shapely.difference(cells[j], sites[s]))
                    cells[best] = editing.clean(shapely.union(cells[best], piece))
                    moved = True
            tree = shapely.STRtree(cells)
        if not moved:
            break
    return cells


def _points_inside(cells, sites):
    """Give a gate point on (or within 1 mm of) a cell edge a 1 m square inside one cell.

    On an edge in metres, a point can fall a hair outside both cells once
    projected to EPSG:4326; the notch keeps it inside one.
    """
    points = np.flatnonzero(shapely.get_dimensions(sites) == 0)
    if len(points) == 0:
        return cells
    arr = np.asarray(cells, dtype=object)
    tree = shapely.STRtree(arr)
    for s in points:
        hit = tree.query(sites[s], predicate="dwithin", distance=_NEAR_EDGE_M)
        if len(hit) == 0 or (shapely.distance(shapely.boundary(arr[hit]), sites[s])
                             > _NEAR_EDGE_M).all():
            continue
        notch = shapely.buffer(sites[s], 0.5, cap_style="square")
        best = int(hit.min())
        for j in hit:
            piece = editing.clean(shapely.intersection(arr[j], notch))
            if j != best and not piece.is_empty:
                arr[j] = editing.clean(shapely.difference(arr[j], notch))
                arr[best] = editing.clean(shapely.union(arr[best], piece))
    return list(arr)


def _workshops(grid):
    k = int(np.clip(round(np.sqrt(grid.area) / 150), 2, 4))
    try:
        return editing.split_equal_area(grid, k)
    except ValidationError:
        return [grid]


def _frame(cells, own, sites, employees, park_boundary, epsg, park_code):
    level1 = list(own) + list(cells)
    kinds = ["enterprise"] * len(own) + ["area"] * len(cells)
    rank = reading_order(level1)
    order = np.argsort(rank)
    rows = []
    ref = shapely.boundary(park_boundary)
    for seq, i in enumerate(order, start=1):
        code = _code(park_code, seq)
        rows.append((code, None, 1, kinds[i], level1[i]))
        if kinds[i] == "enterprise":
            subs = _workshops(level1[i])
            if len(subs) > 1:
                for sub, j in enumerate(np.argsort(reading_order(subs)), start=1):
                    rows.append((f"{code}-{sub:02d}", code, 2, "workshop", subs[j]))
    geoms_m = np.array([r[4] for r in rows], dtype=object)
    geoms = to_storage(geoms_m, epsg)
    geoms = np.array([_snap_multi(g, ref) for g in geoms], dtype=object)
    counts, people = _tally(geoms_m, [r[2] for r in rows], sites, employees)
    return gpd.GeoDataFrame({
        "code": [r[0] for r in rows], "name": [r[0] for r in rows],
        "level": np.array([r[2] for r in rows], dtype=np.int32),
        "parent_code": [r[1] for r in rows], "kind": [r[3] for r in rows],
        "enterprises": counts, "employees": people,
        "area_m2": np.round(shapely.area(geoms_m), 3)}, geometry=geoms, crs=STORAGE_SRID)


def _snap_multi(geom, ref):
    snapped = shapely.snap(geom, ref, _SNAP_BACK_DEG)
    geom = snapped if snapped.is_valid else geom
    if not geom.is_valid:
        geom = shapely.make_valid(geom, method="structure")
    return shapely.MultiPolygon(list(shapely.get_parts(editing.clean(geom))))


def _code(park_code, seq):
    try:
        return grid_code(park_code, seq)
    except ValueError:
        return f"{park_code}-{seq:03d}"


def _tally(geoms, levels, sites, employees):
    counts = np.zeros(len(geoms), dtype=np.int64)
    people = np.zeros(len(geoms), dtype=np.int64)
    if len(sites) == 0:
        return counts, people
    from geodata.spatial import assign_to_cells

    top = np.flatnonzero(np.asarray(levels) == 1)
    where = assign_to_cells(sites, geoms[top])
    for s, c in enumerate(where):
        if c >= 0:
            counts[top[c]] += 1
            people[top[c]] += int(employees[s])
    return counts, people


def proposal_stats(frame, metric_epsg=None):
    """Spread of a proposal's level-1 cells: count, area min/median/max (m²) and CVs.

    ``cv_area``, ``cv_enterprises`` and ``cv_employees`` are coefficients of
    variation (standard deviation / mean) over the level-1 cells.
    """
    top = frame[frame["level"] == 1]
    areas = top["area_m2"].to_numpy(dtype=float)

    def cv(v):
        v = np.asarray(v, dtype=float)
        return round(float(v.std() / v.mean()), 4) if len(v) and v.mean() else None

    return {"cells": int(len(top)), "sub_grids": int((frame["level"] > 1).sum()),
            "area_min_m2": round(float(areas.min()), 1),
            "area_median_m2": round(float(np.median(areas)), 1),
            "area_max_m2": round(float(areas.max()), 1), "cv_area": cv(areas),
            "cv_enterprises": cv(top["enterprises"]), "cv_employees": cv(top["employees"])}
