"""A deterministic demo park: 扶沟县先进制造业开发区 with grids, enterprises, staff, hazards.

Everything is pure data (shapely geometries, pandas/geopandas frames, dates);
nothing touches a database.  Geometries are built in metres in the park's
CGCS2000 3-degree Gauss-Krüger zone (:func:`geodata.crs.metric_epsg`,
EPSG:4547 for this park) and returned in the storage CRS EPSG:4326.

The numbers follow the source articles: a park of 12.53 km² with 621
enterprises of which 117 are hidden production units (园中园/厂中厂), grids
nested 大网格套小网格 by workshop, 21 party-building instructors, and a hazard
ledger of 920 entries of which 872 were fixed at once and the rest rectified
within deadlines, a few of them overdue.

Topology guarantees, all in both CRSs:

* level-1 grids are a polygonal coverage of the park: they share edges with
  identical vertices, do not overlap and their union is the park boundary;
* level-2 sub-grids are a coverage of their parent with the same vertices;
* every enterprise parcel and gate point lies inside exactly one level-1 grid;
  hidden units lie inside their host's parcel; parcels never overlap.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geodata.creditcode import make_credit_code
from geodata.crs import STORAGE_SRID, metric_epsg, to_storage, transformer
from geodata.gridcodes import grid_code, reading_order

DEFAULT_SEED = 20251130
PARK_CODE = "FGKFQ"
PARK_NAME = "扶沟县先进制造业开发区"
DIVISION_CODE = "411621"  # 扶沟县
PARK_AREA_M2 = 12.53e6
PARK_CENTRE = (114.39, 34.06)  # lon, lat (EPSG:4326)
CST = timezone(timedelta(hours=8), "CST")  # history timestamps are Beijing time

# Snap-rounding grid for noding, in metres: 1 mm keeps noding robust while far
# below any tolerance a test or a planner would use.
_NODING_GRID_M = 0.001
_ROAD_SETBACK_M = 10.0  # half a park road: parcels keep this far from grid edges
_HOLE_MARGIN_M = 150.0  # holes stay this far inside the outer boundary

_GRID_COLUMNS = ["code", "name", "level", "parent_code", "kind", "active_from", "geometry"]
_ENTERPRISE_COLUMNS = [
    "name", "credit_code", "industry", "employees", "contact_name", "contact_phone",
    "registered", "host_credit_code", "site_kind", "grid_code", "geometry",
]
_STAFF_COLUMNS = ["name", "phone", "role", "grid_code", "published", "credit_code"]
_HAZARD_COLUMNS = [
    "code", "category", "level", "description", "found_date", "deadline", "status",
    "credit_code", "grid_code", "history", "geometry",
]


@dataclass(eq=False)
class DemoPark:
    """The demo park as plain data; all geometries in EPSG:4326 (degrees).

    Attributes
    ----------
    park : dict
        ``code``, ``name``, ``division_code`` and ``boundary`` (MultiPolygon
        with holes for a river reach, a pond and excluded village land).
    grids : geopandas.GeoDataFrame
        Columns ``code, name, level, parent_code, kind, active_from, geometry``
        (MultiPolygon).  Level-1 rows come first in code order, then level 2.
    enterprises : geopandas.GeoDataFrame
        Columns ``name, credit_code, industry, employees, contact_name,
        contact_phone, registered, host_credit_code, site_kind, grid_code,
        geometry``.  ``site_kind`` is ``"parcel"`` (Polygon), ``"gate"``
        (Point), ``"hidden_polygon"`` or ``"hidden_point"`` (inside the host's
        parcel); ``grid_code`` is the level-1 grid holding the site.
    staff : pandas.DataFrame
        Columns ``name, phone, role, grid_code, published, credit_code``.
    hazards : geopandas.GeoDataFrame
        Columns ``code, category, level, description, found_date, deadline,
        status, credit_code, grid_code, history, geometry`` (Point).
    metric_epsg : int
        The metric CRS used to build the park (EPSG:4547).
    seed : int
        The seed the park was built from.
    today : datetime.date
        The reference date for open and overdue hazards.
    """

    park: dict
    grids: gpd.GeoDataFrame
    enterprises: gpd.GeoDataFrame
    staff: pd.DataFrame
    hazards: gpd.GeoDataFrame
    metric_epsg: int
    seed: int
    today: date
    # metric geometries kept for tests and planners (EPSG ``metric_epsg``, metres)
    metric: dict = field(default_factory=dict, repr=False)


def build_demo_park(seed=DEFAULT_SEED, *, n_enterprises=621, n_hidden=117, n_grids=60,
                    n_hazards=920, today=date(2025, 11, 30), n_enterprise_grids=8,
                    n_gate_only=10, n_party_instructors=21, unpublished_grids=0):
    """Build the demo park deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed gives equal
        codes, attributes and geometry WKB.
    n_enterprises : int
        All enterprises, including hidden units and gate-only ones.
    n_hidden : int
        Hidden production units (园中园/厂中厂) sited inside a host's parcel.
    n_grids : int
        Level-1 grids tiling the park.
    n_hazards : int
        Hazard ledger entries.
    today : datetime.date
        Reference date: open hazards with an earlier deadline are overdue.
    n_enterprise_grids : int
        Largest enterprises that get their own level-1 grid, each split into
        2-5 workshop sub-grids.
    n_gate_only : int
        Enterprises known only by a gate point (no surveyed parcel).
    n_party_instructors : int
        Party-building instructors (党建指导员), one per chosen grid.
    unpublished_grids : int
        Level-1 grids whose contact board (网格员信息公示牌) is not yet put up;
        0 gives the 100 % publication rate of a finished demo.

    Returns
    -------
    DemoPark
        Geometries in EPSG:4326; areas in the docstrings are m² in the metric CRS.

    Raises
    ------
    ValueError
        If the counts cannot be satisfied (e.g. more hidden units than enterprises).
    """
    n_parcels = n_enterprises - n_hidden - n_gate_only
    if n_parcels <= n_enterprise_grids or n_hidden < 0 or n_gate_only < 0:
        raise ValueError("need more enterprises than hidden, gate-only and enterprise-grid ones")
    if not 2 * n_enterprise_grids <= n_grids <= 999:
        raise ValueError("n_grids must be at least twice n_enterprise_grids and at most 999")
    rng = np.random.default_rng(seed)
    epsg = metric_epsg(*PARK_CENTRE)

    park_m = _park_shape(rng, epsg)
    layout = _grid_layout(rng, park_m, n_grids, n_enterprise_grids)
    sites = _sites(rng, layout, n_parcels - n_enterprise_grids, n_hidden, n_gate_only)
    grids = _grid_table(rng, layout)
    enterprises = _enterprise_table(rng, layout, sites, grids, today)
    staff = _staff_table(rng, layout, grids, enterprises, n_party_instructors,
                         unpublished_grids)
    hazards = _hazard_table(rng, layout, sites, enterprises, staff, n_hazards, today)

    level1 = grids[grids["level"] == 1]
    boundary = _as_multipolygon(shapely.coverage_union_all(level1.geometry.values))
    park = dict(code=PARK_CODE, name=PARK_NAME, division_code=DIVISION_CODE,
                boundary=boundary)
    metric = dict(cells=layout["cells"], subs=layout["subs"])
    return DemoPark(park=park, grids=grids, enterprises=enterprises, staff=staff,
                    hazards=hazards, metric_epsg=epsg, seed=seed, today=today,
                    metric=metric)


# --------------------------------------------------------------------------
# geometry (metric CRS, metres)
# --------------------------------------------------------------------------

def _park_shape(rng, epsg):
    """Return the park polygon with holes in metric CRS ``epsg``, area PARK_AREA_M2 (m²)."""
    cx, cy = transformer(STORAGE_SRID, epsg).transform(*PARK_CENTRE)
    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0.02, 0.06) * 2 / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rot = rng.uniform(-0.3, 0.3)
    ux, uy = 1.3 * radius * np.cos(theta), 0.8 * radius * np.sin(theta)
    unit = np.column_stack([ux * np.cos(rot) - uy * np.sin(rot),
                            ux * np.sin(rot) + uy * np.cos(rot)])
    unit_area = shapely.area(shapely.polygons(unit))

    def holes_at(scale):
        def place(xy):
            x, y = xy[:, 0], xy[:, 1]
            return np.column_stack([x * np.cos(rot) - y * np.sin(rot),
                                    x * np.sin(rot) + y * np.cos(rot)])
        # river reach: a meandering old channel cut off by the park road
        t = np.linspace(0, 1, 24)
        river = np.column_stack([(-0.75 + 0.65 * t) * 1.3 * scale,
                                 0.3 * 0.8 * scale + 45 * np.sin(t * 3 * np.pi)])
        river = shapely.buffer(shapely.linestrings(place(river)), 22, quad_segs=2,
                               cap_style="flat")
        # pond: an ellipse of ~140 m x 90 m
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        pond = np.column_stack([0.45 * 1.3 * scale + 140 * np.cos(a),
                                -0.3 * 0.8 * scale + 90 * np.sin(a)])
        # excluded village land: irregular, 150-230 m across its centre
        b = np.linspace(0, 2 * np.pi, 9, endpoint=False)
        r = rng_holes.uniform(150, 230, b.size)
        village = np.column_stack([-0.35 * 1.3 * scale + r * np.cos(b),
                                   -0.4 * 0.8 * scale + r * np.sin(b)])
        return [river, shapely.polygons(place(pond)), shapely.polygons(place(village))]

    # the holes' own random numbers come from a child seed so that the
    # fixed-point iteration below draws the same village each time
    hole_seed = int(rng.integers(2**31))
    scale = np.sqrt(PARK_AREA_M2 / unit_area)
    for _ in range(3):
        rng_holes = np.random.default_rng(hole_seed)
        outer = shapely.polygons(unit * scale)
        holes = shapely.intersection(holes_at(scale), shapely.buffer(outer, -_HOLE_MARGIN_M))
        hole_area = shapely.area(holes).sum()
        scale = np.sqrt((PARK_AREA_M2 + hole_area) / unit_area)
    outer = shapely.polygons(unit * scale)
    park = shapely.difference(outer, shapely.union_all(holes))
    return shapely.transform(park, lambda xy: xy + (cx, cy))


def _faces(lines):
    """Node ``lines`` on the snap-rounding grid and return the faces of the planar graph."""
    noded = shapely.union_all(lines, grid_size=_NODING_GRID_M)
    return shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))


def _assign(points, polygons):
    """Index of the polygon holding each point (-1 if none); first match wins."""
    tree = shapely.STRtree(polygons)
    pt_idx, poly_idx = tree.query(points, predicate="within")
    out = np.full(len(points), -1, dtype=np.intp)
    out[pt_idx[::-1]] = poly_idx[::-1]
    missing = np.flatnonzero(out < 0)
    if missing.size:
        # a representative point on a shared edge after snap rounding: nearest wins
        out[missing] = tree.query_nearest(points[missing], all_matches=False)[1]
    return out


def _spread_points(rng, park, n):
    """Return ``n`` well-spread seed points (metres): Lloyd iterations on samples of the park."""
    minx, miny, maxx, maxy = park.bounds
    pts = rng.uniform((minx, miny), (maxx, maxy), size=(150 * n, 2))
    pts = pts[shapely.contains_xy(park, pts[:, 0], pts[:, 1])]
    seeds = pts[rng.choice(len(pts), n, replace=False)]
    for _ in range(30):
        # |p - s|² without the |p|² term, which does not change the argmin
        label = ((seeds ** 2).sum(axis=1)[None, :] - 2 * pts @ seeds.T).argmin(axis=1)
        count = np.bincount(label, minlength=n)
        seeds = np.column_stack([np.bincount(label, pts[:, 0], n), np.bincount(label, pts[:, 1], n)])
        seeds /= np.maximum(count, 1)[:, None]
    return seeds


def _cells_from_faces(faces, owner, n):
    """Coverage-union the faces of each owner into MultiPolygons (metres)."""
    return np.array([_as_multipolygon(shapely.coverage_union_all(faces[owner == k]))
                     for k in range(n)], dtype=object)


def _as_multipolygon(geom):
    """Return ``geom`` (Polygon or MultiPolygon) as a MultiPolygon."""
    return shapely.multipolygons(shapely.get_parts(geom))


def _grid_layout(rng, park, n_grids, n_enterprise_grids):
    """Tile the park with level-1 cells and split the enterprise cells into workshops.

    Cells are Voronoi cells of well-spread seeds, cut by the park boundary.  All
    boundaries are noded together and polygonised, so neighbouring cells share
    identical vertices; disconnected slivers of a cell go to the neighbour with
    the longest shared edge.  Workshop cut lines are added to the same noding,
    so parents, neighbours and sub-grids carry the same vertices.

    Returns
    -------
    dict
        ``cells`` (MultiPolygons, m), ``subs`` (list of (parent index, MultiPolygon)),
        ``enterprise_cells`` (indices), ``axis`` per enterprise cell.
    """
    seeds = _spread_points(rng, park, n_grids)
    frame = shapely.box(*shapely.buffer(park, 1000).bounds)
    voronoi = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds),
                                                         extend_to=frame))
    base_lines = np.concatenate([shapely.boundary(voronoi), [shapely.boundary(park)]])
    faces = _faces(base_lines)
    faces = faces[shapely.contains(park, shapely.point_on_surface(faces))]
    owner = _assign(shapely.point_on_surface(faces), voronoi)
    owner = _merge_fragments(faces, owner, len(voronoi))
    cells = _cells_from_faces(faces, owner, len(voronoi))

    ent_cells = _pick_enterprise_cells(rng, cells, faces, owner, n_enterprise_grids)
    cut_lines, cuts = [], {}
    for k in ent_cells:
        parent = cells[k]
        origin, u, v, t_cuts = _workshop_cuts(rng, parent, int(rng.integers(2, 6)))
        cuts[k] = (origin, u, t_cuts)
        reach = 2 * np.sqrt(shapely.area(parent)) + 1000
        a = origin + np.outer(t_cuts, u) - reach * v
        b = origin + np.outer(t_cuts, u) + reach * v
        lines = shapely.linestrings(np.stack([a, b], axis=1))
        # cuts overshoot the parent by 0.5 m so they node with its edges; the
        # overshoots are dangles that polygonize drops
        cut_lines.extend(shapely.intersection(lines, shapely.buffer(parent, 0.5,
                                                                   join_style="mitre")))
    if cut_lines:
        faces = _faces(np.concatenate([base_lines, cut_lines]))
        faces = faces[shapely.contains(park, shapely.point_on_surface(faces))]
        owner = _assign(shapely.point_on_surface(faces), cells)
        cells = _cells_from_faces(faces, owner, len(cells))
    reps = shapely.point_on_surface(faces)
    subs = []
    for k in ent_cells:
        origin, u, t_cuts = cuts[k]
        mine = np.flatnonzero(owner == k)
        t = (shapely.get_coordinates(reps[mine]) - origin) @ u
        strip = np.searchsorted(t_cuts, t)
        for s in np.unique(strip):
            subs.append((k, _as_multipolygon(shapely.coverage_union_all(faces[mine[strip == s]]))))
    return dict(park=park, cells=cells, subs=subs, enterprise_cells=np.array(ent_cells))


def _merge_fragments(faces, owner, n):
    """Give each disconnected part but the largest of a cell to its longest-sharing neighbour."""
    owner = owner.copy()
    for k in range(n):
        mine = np.flatnonzero(owner == k)
        if mine.size < 2:
            continue
        parts = shapely.get_parts(shapely.coverage_union_all(faces[mine]))
        if parts.size < 2:
            continue
        main = parts[np.argmax(shapely.area(parts))]
        for f in mine:
            if shapely.within(shapely.point_on_surface(faces[f]), main):
                continue
            others = np.flatnonzero(owner != k)
            shared = shapely.length(shapely.intersection(shapely.boundary(faces[f]),
                                                         shapely.boundary(faces[others])))
            if shared.max() > 0:
                owner[f] = owner[others[np.argmax(shared)]]
    return owner


def _pick_enterprise_cells(rng, cells, faces, owner, n):
    """Choose ``n`` compact, single-face, non-adjacent cells of at least median area."""
    area = shapely.area(cells)
    convexity = area / shapely.area(shapely.convex_hull(cells))
    single = np.bincount(owner, minlength=len(cells)) == 1
    order = rng.permutation(len(cells))
    chosen = []
    for min_convexity in (0.95, 0.9, 0.0):
        for k in order:
            if len(chosen) == n:
                return chosen
            if k in chosen or not single[k] or convexity[k] < min_convexity:
                continue
            if area[k] < np.median(area):
                continue
            if any(shapely.intersects(cells[k], cells[j]) for j in chosen):
                continue
            chosen.append(int(k))
    if len(chosen) < n:
        raise ValueError(f"cannot find {n} separate cells for enterprise grids")
    return chosen


def _workshop_cuts(rng, parent, k):
    """Positions along the parent's long axis that split it into ``k`` strips (m).

    Strip areas follow a Dirichlet draw, so workshops differ in size the way
    a weaving shed and a boiler-room team do.
    """
    corners = shapely.get_coordinates(shapely.oriented_envelope(parent))[:4]
    e1, e2 = corners[1] - corners[0], corners[2] - corners[1]
    long_edge = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    u = long_edge / np.hypot(*long_edge)
    v = np.array([-u[1], u[0]])
    origin = shapely.get_coordinates(shapely.centroid(parent))[0]
    t = (shapely.get_coordinates(parent) - origin) @ u
    ts = np.linspace(t.min(), t.max(), 201)
    reach = t.max() - t.min() + 100
    lo = origin + (t.min() - 10) * u
    hi = origin + np.outer(ts, u)
    boxes = shapely.polygons(np.stack([lo - reach * v + 0 * hi, hi - reach * v,
                                       hi + reach * v, lo + reach * v + 0 * hi], axis=1))
    swept = shapely.area(shapely.intersection(parent, boxes))
    share = np.cumsum(rng.dirichlet(np.full(k, 4.0)))[:-1]
    t_cuts = np.interp(share * swept[-1], swept, ts)
    return origin, u, v, t_cuts


# --------------------------------------------------------------------------
# sites: rotated rectangles given as (cx, cy, w, h, angle) in metres/radians
# --------------------------------------------------------------------------

def _rect_polygons(r):
    """Polygons for rectangles ``r`` of shape (n, 5): centre x/y, width, depth (m), angle (rad)."""
    cx, cy, w, h, ang = r.T
    du = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])
    dv = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])
    lu, lv = du[None, :] * w[:, None], dv[None, :] * h[:, None]
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    x = cx[:, None] + lu * c - lv * s
    y = cy[:, None] + lu * s + lv * c
    return shapely.polygons(np.stack([x, y], axis=2))


def _rect_points(r, u, v):
    """Points at local fractions ``u, v`` (in -0.5..0.5) of rectangles ``r`` (m)."""
    cx, cy, w, h, ang = r.T
    lu, lv = u * w, v * h
    return np.column_stack([cx + lu * np.cos(ang) - lv * np.sin(ang),
                            cy + lu * np.sin(ang) + lv * np.cos(ang)])


def _parcel_candidates(rng, cell, base_angle):
    """Lay rows of plots across one area cell; keep the plots inside its road setback."""
    inner = shapely.buffer(cell, -_ROAD_SETBACK_M, join_style="mitre")
    if shapely.is_empty(inner):
        return np.zeros((0, 5))
    ang = base_angle + rng.normal(0, np.radians(3))
    c0 = shapely.get_coordinates(shapely.centroid(cell))[0]
    rot = np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
    local = (shapely.get_coordinates(inner) - c0) @ rot.T
    (x0, y0), (x1, y1) = local.min(axis=0), local.max(axis=0)
    rects = []
    y = y1
    while y > y0:
        depth = rng.choice([50.0, 60.0, 75.0, 90.0, 110.0, 140.0])
        x = x0 + rng.uniform(0, 20)
        while x < x1:
            width = float(np.clip(rng.lognormal(np.log(70), 0.5), 30, 230))
            rects.append((x + width / 2, y - depth / 2, width, depth))
            x += width + rng.uniform(4, 10)  # fire lanes between neighbours
        y -= depth + rng.uniform(12, 18)  # a branch road between rows
    if not rects:
        return np.zeros((0, 5))
    rects = np.array(rects)
    centre = rects[:, :2] @ rot + c0
    out = np.column_stack([centre, rects[:, 2], rects[:, 3], np.full(len(rects), ang)])
    return out[shapely.within(_rect_polygons(out), inner)]


def _big_site(cell):
    """The largest centred rectangle (m) found inside an enterprise cell's road setback."""
    inner = shapely.buffer(cell, -_ROAD_SETBACK_M, join_style="mitre")
    inner = shapely.get_parts(inner)[np.argmax(shapely.area(shapely.get_parts(inner)))]
    circle = shapely.maximum_inscribed_circle(inner)
    (cx, cy), edge = shapely.get_coordinates(circle)
    radius = np.hypot(*(edge - (cx, cy)))
    corners = shapely.get_coordinates(shapely.oriented_envelope(inner))[:4]
    e1, e2 = corners[1] - corners[0], corners[2] - corners[1]
    ang = np.arctan2(e1[1], e1[0])
    scales = np.linspace(0.95, 0.2, 40)
    cand = np.column_stack([np.full(40, cx), np.full(40, cy), scales * np.hypot(*e1),
                            scales * np.hypot(*e2), np.full(40, ang)])
    # a square inscribed in the largest circle always fits: the fallback
    side = radius * np.sqrt(2) * 0.98
    cand = np.vstack([cand, [cx, cy, side, side, ang]])
    inside = shapely.within(_rect_polygons(cand), inner)
    return cand[np.argmax(inside)]


def _sites(rng, layout, n_area_parcels, n_hidden, n_gate_only):
    """Place parcels, hidden units and gate points (all metres) in the level-1 cells.

    Returns
    -------
    dict
        ``big`` (rects, one per enterprise cell), ``parcels`` (rects in area
        cells), ``parcel_cell`` (cell index per parcel), ``hidden`` (rects of
        hidden units; a zero width marks a point site), ``hidden_host`` (index
        into ``big`` + ``parcels`` stacked), ``gates`` (points, m) and ``gate_cell``.
    """
    cells = layout["cells"]
    ent = set(layout["enterprise_cells"].tolist())
    base_angle = rng.uniform(-0.2, 0.2)
    cand, cand_cell = [], []
    for k, cell in enumerate(cells):
        if k in ent:
            continue
        c = _parcel_candidates(rng, cell, base_angle)
        cand.append(c)
        cand_cell.append(np.full(len(c), k))
    cand, cand_cell = np.vstack(cand), np.concatenate(cand_cell)
    while len(cand) < n_area_parcels:
        # not enough plots: split the biggest one in two along its width
        i = int(np.argmax(cand[:, 2] * cand[:, 3]))
        cx, cy, w, h, a = cand[i]
        off = (w / 4 + 1) * np.array([np.cos(a), np.sin(a)])
        halves = np.array([[cx - off[0], cy - off[1], w / 2 - 2, h, a],
                           [cx + off[0], cy + off[1], w / 2 - 2, h, a]])
        cand = np.vstack([np.delete(cand, i, axis=0), halves])
        cand_cell = np.concatenate([np.delete(cand_cell, i), [cand_cell[i]] * 2])
    keep = np.sort(rng.choice(len(cand), n_area_parcels, replace=False))
    parcels, parcel_cell = cand[keep], cand_cell[keep]
    big = np.array([_big_site(cells[k]) for k in layout["enterprise_cells"]])

    # hidden units: several in each big works (园中园), the rest in large plots (厂中厂)
    hosts = np.vstack([big, parcels])
    host_area = hosts[:, 2] * hosts[:, 3]
    count = np.zeros(len(hosts), dtype=int)
    n_big = len(big)
    count[:n_big] = rng.integers(3, 7, n_big)
    scale = n_hidden / max(count[:n_big].sum(), 1)
    if scale < 1:  # few hidden units asked for: thin the big-works share
        count[:n_big] = np.floor(count[:n_big] * scale).astype(int)
    eligible = np.flatnonzero(host_area >= 4000)
    eligible = eligible[eligible >= n_big]
    for _ in range(n_hidden - count.sum()):
        ok = eligible[count[eligible] < 4]
        if ok.size == 0:
            ok = np.arange(n_big, len(hosts))[count[n_big:] < 4] + 0
        p = host_area[ok] / host_area[ok].sum()
        count[rng.choice(ok, p=p)] += 1
    hidden, hidden_host = [], []
    for h in np.flatnonzero(count):
        cx, cy, w, d, a = hosts[h]
        k = count[h]
        long_is_w = w >= d
        length, short = (w, d) if long_is_w else (d, w)
        slot = length / k
        size_l, size_s = min(0.6 * slot, 50.0), min(0.45 * short, 40.0)
        for j in range(k):
            pos_l = -length / 2 + slot * (j + 0.5)
            pos_s = 0.2 * short  # at the back of the plot, behind the host's own sheds
            lu, lv = (pos_l, pos_s) if long_is_w else (pos_s, pos_l)
            x = cx + lu * np.cos(a) - lv * np.sin(a)
            y = cy + lu * np.sin(a) + lv * np.cos(a)
            point_only = rng.random() < 0.35
            sw, sd = (size_l, size_s) if long_is_w else (size_s, size_l)
            hidden.append((x, y, 0.0 if point_only else sw, 0.0 if point_only else sd, a))
            hidden_host.append(h)
    hidden = np.array(hidden).reshape(-1, 5)

    # gate-only enterprises: a gate on vacant land of an area cell
    area_cells = np.array(sorted(set(range(len(cells))) - ent))
    occupied = shapely.union_all(_rect_polygons(hosts))
    gates, gate_cell = [], []
    while len(gates) < n_gate_only:
        k = int(rng.choice(area_cells))
        inner = shapely.buffer(cells[k], -_ROAD_SETBACK_M, join_style="mitre")
        x0, y0, x1, y1 = inner.bounds
        xy = rng.uniform((x0, y0), (x1, y1))
        pt = shapely.points(xy)
        if shapely.within(pt, inner) and not shapely.intersects(pt, occupied):
            gates.append(xy)
            gate_cell.append(k)
    return dict(big=big, parcels=parcels, parcel_cell=parcel_cell, hidden=hidden,
                hidden_host=np.array(hidden_host, dtype=int), gates=np.array(gates).reshape(-1, 2),
                gate_cell=np.array(gate_cell, dtype=int), occupied=occupied)
