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
    "registered", "host_credit_code", "site_kind", "grid_code", "geometry", "location",
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
        geometry, location``.  ``site_kind`` is ``"parcel"`` (Polygon),
        ``"gate"`` (Point), ``"hidden_polygon"`` or ``"hidden_point"`` (inside
        the host's parcel); ``grid_code`` is the level-1 grid holding the
        site.  ``geometry`` mixes Polygons and Points; ``location`` is a Point
        inside every site, for a POINT column.
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
    metric : dict
        The level-1 ``cells`` (array of MultiPolygons) and ``subs`` (list of
        (cell index, MultiPolygon)) in the metric CRS, in metres, as built.
    """

    park: dict
    grids: gpd.GeoDataFrame
    enterprises: gpd.GeoDataFrame
    staff: pd.DataFrame
    hazards: gpd.GeoDataFrame
    metric_epsg: int
    seed: int
    today: date
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
    # a few dozen vertices with jitter: outlines of planned land follow roads
    # and field edges, not smooth curves
    theta = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    theta += rng.uniform(-0.3, 0.3, theta.size) * (2 * np.pi / theta.size)
    radius = 1 + rng.uniform(-0.03, 0.03, theta.size)
    for k in range(2, 7):
        radius += rng.uniform(0.04, 0.09) * 2 / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rot = rng.uniform(-0.3, 0.3)
    ux, uy = 1.3 * radius * np.cos(theta), 0.8 * radius * np.sin(theta)
    unit = np.column_stack([ux * np.cos(rot) - uy * np.sin(rot),
                            ux * np.sin(rot) + uy * np.cos(rot)])
    unit_area = shapely.area(shapely.polygons(unit))

    def holes_at(scale, rng_holes):
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

    # the holes get their own generator, re-seeded on each pass, so that the
    # fixed-point iteration on the scale draws the same village every time;
    # holes are clipped to stay _HOLE_MARGIN_M inside the outer ring
    hole_seed = int(rng.integers(2**31))
    scale = np.sqrt(PARK_AREA_M2 / unit_area)
    for _ in range(3):
        outer = shapely.polygons(unit * scale)
        holes = shapely.intersection(holes_at(scale, np.random.default_rng(hole_seed)),
                                     shapely.buffer(outer, -_HOLE_MARGIN_M))
        # outer area = target + holes: the park (outer minus holes) is the target
        scale = np.sqrt((PARK_AREA_M2 + shapely.area(holes).sum()) / unit_area)
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
        seeds = np.column_stack([np.bincount(label, pts[:, 0], n),
                                 np.bincount(label, pts[:, 1], n)])
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

    ent_cells = _pick_enterprise_cells(rng, cells, owner, n_enterprise_grids)
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
        cut_lines.extend(shapely.intersection(
            lines, shapely.buffer(parent, 0.5, join_style="mitre")))
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


def _pick_enterprise_cells(rng, cells, owner, n):
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
    lo = np.broadcast_to(origin + (t.min() - 10) * u, (ts.size, 2))
    hi = origin + np.outer(ts, u)
    # half-planes up to each position: their overlap with the parent is the
    # area swept so far, which is monotone and can be inverted by interpolation
    boxes = shapely.polygons(np.stack([lo - reach * v, hi - reach * v,
                                       hi + reach * v, lo + reach * v], axis=1))
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
        if ok.size == 0:  # too few large plots: any plot will do
            ok = n_big + np.flatnonzero(count[n_big:] < 4)
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


# --------------------------------------------------------------------------
# names and contacts
# --------------------------------------------------------------------------

_SURNAMES = list("王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈曾彭吕"
                 "苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国志新海东文斌俊峰"
              "鹏辉波宁晓燕飞雪梅琳浩宇振宏永庆春利亮小云凤林德福")
# 字号 characters; names of companies named in the source articles are left out
# so the invented hazards are never pinned on a real firm
_BRAND = list("恒瑞鑫源华泰金丰盛隆宏达兴旺永康润博信诚佳美中原豫东汇通凯祥德利宇航天成"
              "安顺鸿运富民腾飞联创亿嘉锦锐晟坤")
_AVOID_BRANDS = {"昌茂", "嘉辉", "水天", "中恒", "元坤", "耕德"}
_REGIONS = ["扶沟县", "河南", "周口", "河南省", "扶沟"]
_REGION_P = [0.45, 0.3, 0.1, 0.05, 0.1]
_INDUSTRY_WORDS = {
    "纺织印染": ["纺织", "纺织印染", "印染", "棉纺", "织造"],
    "服装": ["服装", "服饰", "制衣", "服装科技"],
    "食品加工": ["食品", "食品科技", "农产品加工", "粮油"],
    "装备制造": ["机械", "机械制造", "智能装备", "重工"],
    "电子制造": ["电子", "电子科技", "光电科技"],
    "新材料": ["新材料", "新材料科技", "复合材料"],
    "物流仓储": ["物流", "仓储物流", "供应链管理"],
}
_HIDDEN_WORDS = {
    "纺织印染": "织带", "服装": "服装", "食品加工": "食品", "装备制造": "五金",
    "电子制造": "电子元件", "新材料": "塑料制品", "物流仓储": "仓储",
}
_WORKSHOPS = {
    "纺织印染": ["纺纱车间", "织造车间", "印染车间", "后整理车间", "动力班组"],
    "服装": ["裁剪车间", "缝制一车间", "缝制二车间", "整烫车间", "成品仓库"],
    "食品加工": ["原料车间", "加工车间", "包装车间", "冷库班组", "动力班组"],
    "装备制造": ["下料车间", "焊接车间", "机加工车间", "装配车间", "涂装班组"],
    "电子制造": ["SMT车间", "组装车间", "测试车间", "包装车间", "仓储班组"],
    "新材料": ["配料车间", "生产车间", "成型车间", "检测班组", "仓储班组"],
    "物流仓储": ["一号库区", "二号库区", "分拣中心", "冷链库区", "车队班组"],
}
# zones of the park and the industries their enterprises mostly follow
_ZONES = [
    ("纺织服装区", ["纺织印染", "服装"]),
    ("食品加工区", ["食品加工"]),
    ("装备制造区", ["装备制造"]),
    ("电子信息区", ["电子制造"]),
    ("新材料区", ["新材料"]),
    ("物流仓储区", ["物流仓储"]),
]
_INDUSTRIES = list(_INDUSTRY_WORDS)
_MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150",
                    "151", "152", "155", "156", "157", "158", "159", "180", "181", "182",
                    "183", "185", "186", "187", "188", "189"]


class _People:
    """Draws unique-enough Chinese personal names and unique mobile numbers."""

    def __init__(self, rng):
        self.rng = rng
        self.phones = set()

    def name(self):
        """A surname and a one- or two-character given name."""
        rng = self.rng
        given = "".join(rng.choice(_GIVEN, size=int(rng.choice([1, 2], p=[0.3, 0.7]))))
        return str(rng.choice(_SURNAMES)) + given

    def phone(self):
        """An 11-digit mainland mobile number not handed out before."""
        while True:
            number = str(self.rng.choice(_MOBILE_PREFIXES)) + f"{self.rng.integers(10**8):08d}"
            if number not in self.phones:
                self.phones.add(number)
                return number


def _brand(rng, used):
    """A two-character 字号 not yet used (and not a real firm's from the articles)."""
    while True:
        brand = "".join(rng.choice(_BRAND, size=2, replace=False))
        if brand not in used and brand not in _AVOID_BRANDS:
            used.add(brand)
            return brand


def _company_name(rng, industry, brand):
    """Region + 字号 + industry word + company form, e.g. 扶沟县恒瑞纺织有限公司."""
    region = str(rng.choice(_REGIONS, p=_REGION_P))
    word = str(rng.choice(_INDUSTRY_WORDS[industry]))
    suffix = str(rng.choice(["有限公司", "有限责任公司", "股份有限公司"], p=[0.75, 0.2, 0.05]))
    return region + brand + word + suffix


def _hidden_name(rng, industry, brand):
    """A sole trader's workshop name, e.g. 扶沟县恒瑞服装加工厂."""
    suffix = str(rng.choice(["加工厂", "加工部", "厂", "经营部"]))
    return "扶沟县" + brand + _HIDDEN_WORDS[industry] + suffix


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------

def _zones(rng, cells):
    """Zone index per cell: nearest of six well-spread zone centres (farthest-point picks)."""
    xy = shapely.get_coordinates(shapely.centroid(cells))
    picks = [int(rng.integers(len(xy)))]
    for _ in range(len(_ZONES) - 1):
        d = np.min([np.hypot(*(xy - xy[p]).T) for p in picks], axis=0)
        picks.append(int(np.argmax(d)))
    d = np.stack([np.hypot(*(xy - xy[p]).T) for p in picks], axis=1)
    return d.argmin(axis=1)


def _grid_table(rng, layout):
    """Level-1 and level-2 grids with codes in reading order (EPSG:4326)."""
    cells = layout["cells"]
    layout["zone"] = _zones(rng, cells)
    rank = reading_order(cells)
    layout["cell_code"] = np.array([grid_code(PARK_CODE, r + 1) for r in rank], dtype=object)
    layout["cell_seq"] = rank + 1
    ent = layout["enterprise_cells"]
    # one enterprise per enterprise cell; its 字号 and industry name the grid
    brands, used = [], set()
    industries = []
    for k in ent:
        brands.append(_brand(rng, used))
        industries.append(str(rng.choice(_ZONES[layout["zone"][k]][1])))
    layout["brands_used"] = used
    layout["ent_brand"], layout["ent_industry"] = brands, industries
    ent_pos = {int(k): i for i, k in enumerate(ent)}

    rows = []
    for k, cell in enumerate(cells):
        seq = int(layout["cell_seq"][k])
        if k in ent_pos:
            i = ent_pos[k]
            short = brands[i] + _INDUSTRY_WORDS[industries[i]][0]
            rows.append(dict(code=layout["cell_code"][k], name=f"第{seq}网格（{short}）",
                             level=1, parent_code=None, kind="enterprise",
                             active_from=date(2025, 4, 1), geometry=cell))
        else:
            zone = _ZONES[layout["zone"][k]][0]
            rows.append(dict(code=layout["cell_code"][k], name=f"第{seq}网格（{zone}）",
                             level=1, parent_code=None, kind="area",
                             active_from=date(2025, 3, 1), geometry=cell))
    subs_by_parent = {}
    for k, geom in layout["subs"]:
        subs_by_parent.setdefault(k, []).append(geom)
    layout["sub_codes"] = {}
    for k in ent:
        geoms = np.array(subs_by_parent[int(k)], dtype=object)
        sub_rank = reading_order(geoms)
        i = ent_pos[int(k)]
        names = _WORKSHOPS[industries[i]]
        parent = layout["cell_code"][k]
        codes = []
        for j in np.argsort(sub_rank):
            n = int(sub_rank[j]) + 1
            code = grid_code(PARK_CODE, int(layout["cell_seq"][k]), n)
            codes.append(code)
            rows.append(dict(code=code, name=brands[i] + names[n - 1], level=2,
                             parent_code=parent, kind="workshop",
                             active_from=date(2025, 5, 1), geometry=geoms[j]))
        layout["sub_codes"][int(k)] = codes
    table = pd.DataFrame(rows, columns=_GRID_COLUMNS)
    table["geometry"] = to_storage(table["geometry"].to_numpy(), _epsg())
    table = table.sort_values(["level", "code"], kind="stable").reset_index(drop=True)
    table["parent_code"] = _nones(table["parent_code"])
    return gpd.GeoDataFrame(table, geometry="geometry", crs=STORAGE_SRID)


def _nones(column):
    """``column`` as objects with None (not NaN) for missing values, as databases expect."""
    return column.astype(object).where(column.notna(), None)


def _epsg():
    """The park's metric CRS (EPSG:4547, CGCS2000 GK zone of 114°E)."""
    return metric_epsg(*PARK_CENTRE)


def _credit_serials(rng, n):
    """``n`` distinct 8-digit serials for credit codes, in draw order."""
    draws = rng.integers(10**7, 10**8, size=2 * n + 16)
    _, first = np.unique(draws, return_index=True)
    return draws[np.sort(first)][:n]


def _enterprise_table(rng, layout, sites, grids, today):
    """Enterprises: big works, plot holders, gate-only firms, then hidden units (EPSG:4326)."""
    people = _People(rng)
    layout["people"] = people
    used = layout["brands_used"]
    zone = layout["zone"]
    cell_code = layout["cell_code"]
    n_big, n_parcel = len(sites["big"]), len(sites["parcels"])
    n_gate, n_hidden = len(sites["gates"]), len(sites["hidden"])

    # employees: heavy-tailed, matched to plot size with noise so that the
    # biggest plots mostly hold the biggest employers
    emp = np.clip(np.round(rng.lognormal(np.log(55), 0.85, n_parcel)), 8, 950).astype(int)
    plot_area = sites["parcels"][:, 2] * sites["parcels"][:, 3]
    plot_rank = np.argsort(np.argsort(-plot_area * rng.lognormal(0, 0.4, n_parcel)))
    emp_parcel = np.sort(emp)[::-1][plot_rank]
    emp_big = rng.integers(1100, 3600, n_big)
    emp_gate = rng.integers(5, 40, n_gate)
    emp_hidden = rng.integers(3, 80, n_hidden)

    def industry_of(k):
        if rng.random() < 0.75:
            return str(rng.choice(_ZONES[zone[k]][1]))
        return str(rng.choice(_INDUSTRIES))

    rows = []
    for i, k in enumerate(layout["enterprise_cells"]):
        industry, brand = layout["ent_industry"][i], layout["ent_brand"][i]
        rows.append(dict(name=_company_name(rng, industry, brand), industry=industry,
                         employees=int(emp_big[i]), site_kind="parcel",
                         grid_code=cell_code[k], registered=True))
    for i in range(n_parcel):
        k = sites["parcel_cell"][i]
        industry = industry_of(k)
        rows.append(dict(name=_company_name(rng, industry, _brand(rng, used)),
                         industry=industry, employees=int(emp_parcel[i]), site_kind="parcel",
                         grid_code=cell_code[k], registered=True))
    for i in range(n_gate):
        k = sites["gate_cell"][i]
        industry = str(rng.choice(["物流仓储", "服装", "食品加工"]))
        rows.append(dict(name=_company_name(rng, industry, _brand(rng, used)),
                         industry=industry, employees=int(emp_gate[i]), site_kind="gate",
                         grid_code=cell_code[k], registered=True))
    host_rows = sites["hidden_host"]  # index into big + parcels == enterprise row index
    for i in range(n_hidden):
        host = rows[host_rows[i]]
        industry = host["industry"] if rng.random() < 0.6 else str(rng.choice(["服装", "食品加工"]))
        point_only = sites["hidden"][i, 2] == 0
        rows.append(dict(name=_hidden_name(rng, industry, _brand(rng, used)),
                         industry=industry, employees=int(emp_hidden[i]),
                         site_kind="hidden_point" if point_only else "hidden_polygon",
                         grid_code=host["grid_code"], registered=bool(rng.random() < 0.15)))

    n = len(rows)
    serials = _credit_serials(rng, n)
    division = rng.choice(["411621", "411600", "410100"], size=n, p=[0.8, 0.15, 0.05])
    for i, row in enumerate(rows):
        hidden = row["site_kind"].startswith("hidden")
        # hidden units are mostly sole traders (个体工商户, type code 92)
        org_type = "2" if hidden else "1"
        row["credit_code"] = make_credit_code("411621" if hidden else str(division[i]),
                                              int(serials[i]), org_type=org_type)
        row["contact_name"] = people.name()
        row["contact_phone"] = people.phone()
        row["host_credit_code"] = None
    for i in range(n_hidden):
        rows[n_big + n_parcel + n_gate + i]["host_credit_code"] = rows[host_rows[i]]["credit_code"]

    hidden_geom = np.where(sites["hidden"][:, 2] > 0, _rect_polygons(sites["hidden"]),
                           shapely.points(sites["hidden"][:, :2]))
    geoms = np.concatenate([_rect_polygons(sites["big"]), _rect_polygons(sites["parcels"]),
                            shapely.points(sites["gates"]), hidden_geom])
    table = pd.DataFrame(rows)
    table["host_credit_code"] = _nones(table["host_credit_code"])
    table["geometry"] = to_storage(geoms, _epsg())
    # one Point per enterprise for a NOT NULL POINT column: a polygon's centre
    # (inside, as the plots are rectangles) or the point site itself
    table["location"] = gpd.GeoSeries(shapely.point_on_surface(table["geometry"].to_numpy()),
                                      crs=STORAGE_SRID)
    table = gpd.GeoDataFrame(table[_ENTERPRISE_COLUMNS], geometry="geometry", crs=STORAGE_SRID)
    layout["site_metric"] = geoms
    return table


def _staff_table(rng, layout, grids, enterprises, n_instructors, unpublished_grids):
    """Grid staff: one chief and full-time members per level-1 grid, part-timers, instructors."""
    people = layout["people"]
    ent_cells = [int(k) for k in layout["enterprise_cells"]]
    rows = []

    def add(role, grid, name=None, phone=None, credit_code=None):
        rows.append(dict(name=name or people.name(), phone=phone or people.phone(), role=role,
                         grid_code=grid, published=True, credit_code=credit_code))

    by_grid = {code: df for code, df in enterprises.groupby("grid_code", sort=True)}
    level1 = grids[grids["level"] == 1]
    cell_of_code = {c: k for k, c in enumerate(layout["cell_code"])}
    for code in level1["code"]:
        k = cell_of_code[code]
        # grid chiefs are management-committee cadres (包企干部)
        add("grid_chief", code)
        members = by_grid.get(code)
        if k in ent_cells:
            # the enterprise head is the full-time member: 让听得见炮声的人指挥战斗
            head = members[members["site_kind"] == "parcel"].iloc[0]
            add("full_time", code, head["contact_name"], head["contact_phone"],
                head["credit_code"])
            add("part_time", code, credit_code=head["credit_code"])  # the safety officer
            for sub in layout["sub_codes"][k]:
                add("part_time", sub, credit_code=head["credit_code"])  # workshop heads
        else:
            for _ in range(int(rng.integers(1, 3))):
                add("full_time", code)
            if members is not None and len(members):
                for _ in range(int(rng.integers(0, 3))):
                    firm = members.iloc[int(rng.integers(len(members)))]
                    add("part_time", code, credit_code=firm["credit_code"])
    codes = level1["code"].to_numpy()
    ent_codes = [layout["cell_code"][k] for k in ent_cells]
    rest = np.array([c for c in codes if c not in ent_codes], dtype=object)
    n_rest = max(n_instructors - len(ent_codes), 0)
    picked = ent_codes[:n_instructors] + sorted(rng.choice(rest, size=min(n_rest, len(rest)),
                                                           replace=False).tolist())
    for code in picked:
        add("party_instructor", code)
    staff = pd.DataFrame(rows, columns=_STAFF_COLUMNS)
    staff["credit_code"] = _nones(staff["credit_code"])
    if unpublished_grids:
        hidden_boards = rng.choice(codes, size=unpublished_grids, replace=False)
        staff.loc[staff["grid_code"].isin(hidden_boards), "published"] = False
    return staff


_HAZARDS = {
    "消防安全": (0.30, ["灭火器过期未更换", "消防通道被货物占用", "室内消火栓水带缺失",
                    "应急照明灯损坏", "疏散指示标志不亮", "消防控制室无人值守"],
             ["自动喷水灭火系统主管网无水", "仓库违规住人"]),
    "用电安全": (0.22, ["配电箱未上锁", "电线私拉乱接", "插座超负荷使用", "配电柜前堆放杂物",
                    "电缆桥架盖板缺失"], ["车间电气线路严重老化"]),
    "安全通道": (0.12, ["安全出口上锁", "疏散通道堆放原料", "车间通道未划线"],
             ["疏散楼梯被封堵"]),
    "特种设备": (0.10, ["叉车超期未检验", "行车限位器失效", "压力表超期未校验",
                    "电梯维保记录缺失"], ["锅炉安全阀失效"]),
    "危化品": (0.08, ["危化品未分类存放", "化学品安全技术说明书缺失", "染料仓库通风不良"],
            ["危化品仓库未设置防爆电气", "危化品超量储存"]),
    "有限空间": (0.06, ["污水池未设置警示标识", "有限空间作业台账不全"],
             ["有限空间作业未经审批"]),
    "粉尘防爆": (0.06, ["除尘器未定期清灰", "车间积尘未及时清扫"],
             ["除尘系统未设置泄爆装置"]),
    "劳动防护": (0.06, ["员工未佩戴防护用品", "机械传动部位防护罩缺失"],
             ["冲压设备光电保护失效"]),
}
_CATEGORIES = list(_HAZARDS)


def _hazard_dates(rng, n, today):
    """Split ``n`` hazards like the seed ledger and draw their dates.

    Dates span the 328 days up to ``today`` (6 January to 30 November for
    the default ``today``), so the ledger looks the same whichever day the
    demo is loaded on.

    Of 920: 872 fixed at once, 18 closed after a deadline, 30 open of which 8
    are overdue; the open ones are 4 just found, 16 rectifying, 10 under
    supervision (督导).
    """
    n_open = int(round(n * 30 / 920))
    n_now = int(round(n * 872 / 920))
    n_later = n - n_open - n_now
    n_found = int(round(n_open * 4 / 30))
    n_sup = int(round(n_open * 10 / 30))
    n_rect = n_open - n_found - n_sup
    n_overdue = int(round(n_open * 8 / 30))
    status = (["closed"] * (n_now + n_later) + ["found"] * n_found
              + ["rectifying"] * n_rect + ["supervising"] * n_sup)
    immediate = np.zeros(n, dtype=bool)
    immediate[:n_now] = True
    # overdue ones: most still rectifying, a couple awaiting supervision
    overdue = np.zeros(n, dtype=bool)
    n_over_sup = min(n_sup, n_overdue // 4)
    start_rect = n_now + n_later + n_found
    overdue[start_rect:start_rect + n_overdue - n_over_sup] = True
    overdue[start_rect + n_rect:start_rect + n_rect + n_over_sup] = True

    span = 328
    start = today - timedelta(days=span)
    found, deadline = [], []
    for i in range(n):
        if immediate[i]:
            f = start + timedelta(days=int(rng.integers(0, span)))
            d = None
        elif status[i] == "closed":
            f = start + timedelta(days=int(rng.integers(0, span - 75)))
            d = f + timedelta(days=int(rng.choice([7, 15, 30])))
        elif status[i] == "found":
            f = today - timedelta(days=int(rng.integers(0, 3)))
            d = None
        elif overdue[i]:
            f = today - timedelta(days=int(rng.integers(25, 60)))
            d = f + timedelta(days=int(rng.choice([7, 15])))
        else:
            f = today - timedelta(days=int(rng.integers(1, 20)))
            d = max(f + timedelta(days=int(rng.choice([15, 30]))), today + timedelta(days=1))
        found.append(f)
        deadline.append(d)
    return np.array(status, dtype=object), immediate, found, deadline


def _stamp(day, rng, after=None):
    """A Beijing-time timestamp on ``day`` in working hours, not before ``after``."""
    at = datetime.combine(day, time(8), tzinfo=CST) + timedelta(minutes=int(rng.integers(0, 540)))
    if after is not None and at <= after:
        at = after + timedelta(minutes=int(rng.integers(10, 120)))
    return at


def _history(rng, status, immediate, found, deadline, today, finder, firm, chief, desc):
    """Status transitions (at, actor, from_status, to_status, note) ending at ``status``."""
    t0 = _stamp(found, rng)
    steps = [dict(at=t0, actor=finder, from_status=None, to_status="found",
                  note=f"排查发现：{desc}")]
    if status == "found":
        return steps
    if immediate:
        t1 = t0 + timedelta(minutes=int(rng.integers(10, 90)))
        steps.append(dict(at=t1, actor=firm, from_status="found", to_status="rectifying",
                          note="即时整改"))
        t2 = t1 + timedelta(minutes=int(rng.integers(10, 180)))
        steps.append(dict(at=t2, actor=firm, from_status="rectifying", to_status="supervising",
                          note="整改完成，申请复核"))
        t3 = t2 + timedelta(minutes=int(rng.integers(20, 300)))
        note = "督导复核合格，销号"
        if rng.random() < 0.1:
            note += "；回头看复查无反弹"
        steps.append(dict(at=t3, actor=chief, from_status="supervising", to_status="closed",
                          note=note))
        return steps
    t1 = t0 + timedelta(minutes=int(rng.integers(30, 240)))
    steps.append(dict(at=t1, actor=chief, from_status="found", to_status="rectifying",
                      note=f"限期整改，期限至{deadline.isoformat()}"))
    if status == "rectifying":
        return steps
    last = min(deadline, today) if status == "supervising" else deadline
    days = max((last - found).days, 1)
    t2 = _stamp(found + timedelta(days=int(rng.integers(1, days + 1))), rng, after=t1)
    steps.append(dict(at=t2, actor=firm, from_status="rectifying", to_status="supervising",
                      note="整改完成，申请督导验收"))
    if status == "supervising":
        return steps
    t3 = _stamp(t2.date() + timedelta(days=int(rng.integers(1, 6))), rng, after=t2)
    steps.append(dict(at=t3, actor=chief, from_status="supervising", to_status="closed",
                      note="督导验收合格，销号；回头看复查无反弹"))
    return steps


def _hazard_table(rng, layout, sites, enterprises, staff, n, today):
    """The hazard ledger (排查-整改-督导-销号) as Points in EPSG:4326."""
    status, immediate, found, deadline = _hazard_dates(rng, n, today)
    # ~92 % are found inside an enterprise, more often in bigger ones
    in_firm = rng.random(n) < 0.92
    weights = np.sqrt(enterprises["employees"].to_numpy(dtype=float))
    firm = np.where(in_firm, rng.choice(len(enterprises), size=n, p=weights / weights.sum()), -1)

    rect_of = np.vstack([sites["big"], sites["parcels"], np.zeros((len(sites["gates"]), 5)),
                         sites["hidden"]])
    xy = np.zeros((n, 2))
    uv = rng.uniform(-0.42, 0.42, size=(n, 2))
    for i in np.flatnonzero(firm >= 0):
        r = rect_of[firm[i]]
        if r[2] > 0:
            xy[i] = _rect_points(r[None, :], uv[i, 0], uv[i, 1])[0]
        else:  # a gate or hidden point site: the hazard is reported there
            xy[i] = shapely.get_coordinates(layout["site_metric"][firm[i]])[0]
    cells = layout["cells"]
    ent = set(int(k) for k in layout["enterprise_cells"])
    area_cells = [k for k in range(len(cells)) if k not in ent]
    for i in np.flatnonzero(firm < 0):
        # public land: roadside or vacant plots of an area grid
        while True:
            k = int(rng.choice(area_cells))
            inner = shapely.buffer(cells[k], -2.0)
            p = rng.uniform(inner.bounds[:2], inner.bounds[2:])
            pt = shapely.points(p)
            if shapely.within(pt, inner) and not shapely.intersects(pt, sites["occupied"]):
                xy[i] = p
                break
    points = shapely.points(xy)
    cell_idx = _assign(points, cells)
    grid = layout["cell_code"][cell_idx]

    category = rng.choice(_CATEGORIES, size=n, p=[v[0] for v in _HAZARDS.values()])
    public = firm < 0
    # off-site hazards are about roads and power lines, not workshops
    category[public] = rng.choice(["安全通道", "用电安全", "消防安全"], size=public.sum())
    major = np.zeros(n, dtype=bool)
    not_now = np.flatnonzero(~immediate)
    major[rng.choice(not_now, size=min(int(round(0.03 * n)), not_now.size), replace=False)] = True

    chiefs = staff[staff["role"] == "grid_chief"].set_index("grid_code")["name"]
    finders = staff[staff["role"] == "full_time"].groupby("grid_code")["name"].first()
    # plain arrays: a pandas row lookup per hazard would dominate the build time
    contact = enterprises["contact_name"].to_numpy(dtype=object)
    credit = enterprises["credit_code"].to_numpy(dtype=object)
    rows = []
    for i in range(n):
        general, severe = _HAZARDS[category[i]][1:]
        desc = str(rng.choice(severe if major[i] else general))
        on_site = firm[i] >= 0
        doer = contact[firm[i]] if on_site else finders[grid[i]]
        history = _history(rng, status[i], immediate[i], found[i], deadline[i], today,
                           finders[grid[i]], doer, chiefs[grid[i]], desc)
        rows.append(dict(category=str(category[i]), level="major" if major[i] else "general",
                         description=desc, found_date=found[i], deadline=deadline[i],
                         status=str(status[i]),
                         credit_code=str(credit[firm[i]]) if on_site else None,
                         grid_code=grid[i], history=history))
    table = pd.DataFrame(rows)
    table["geometry"] = to_storage(points, _epsg())
    table["credit_code"] = _nones(table["credit_code"])
    table["deadline"] = _nones(table["deadline"])
    # ledger numbers follow discovery time, like a paper 台账, and restart each
    # year: the year in YH<year>-<seq> is the found date's year
    first_at = np.array([h[0]["at"] for h in table["history"]])
    table = table.iloc[np.argsort(first_at, kind="stable")].reset_index(drop=True)
    years = table["found_date"].map(lambda d: d.year)
    seq = years.groupby(years).cumcount() + 1
    table["code"] = [f"YH{y}-{n:04d}" for y, n in zip(years, seq)]
    return gpd.GeoDataFrame(table[_HAZARD_COLUMNS], geometry="geometry", crs=STORAGE_SRID)


def summary(demo):
    """Count what the demo park holds (for tests and the README).

    Parameters
    ----------
    demo : DemoPark

    Returns
    -------
    dict
        Plain ints and floats; areas in km² measured in ``demo.metric_epsg``.
    """
    from geodata.crs import area_m2

    grids, ents, staff, haz = demo.grids, demo.enterprises, demo.staff, demo.hazards
    boundary = demo.park["boundary"]
    open_ = haz["status"] != "closed"
    overdue = open_ & haz["deadline"].map(lambda d: d is not None and d < demo.today)
    immediate = haz["deadline"].isna() & ~open_
    return dict(
        park_area_km2=round(float(area_m2(boundary, demo.metric_epsg)) / 1e6, 4),
        park_holes=int(sum(len(p.interiors) for p in boundary.geoms)),
        grids_level1=int((grids["level"] == 1).sum()),
        grids_enterprise=int((grids["kind"] == "enterprise").sum()),
        grids_level2=int((grids["level"] == 2).sum()),
        enterprises=len(ents),
        enterprises_parcel=int((ents["site_kind"] == "parcel").sum()),
        enterprises_gate_only=int((ents["site_kind"] == "gate").sum()),
        enterprises_hidden=int(ents["host_credit_code"].notna().sum()),
        enterprises_registered=int(ents["registered"].sum()),
        employees=int(ents["employees"].sum()),
        staff=len(staff),
        **{f"staff_{role}": int(n)
           for role, n in staff["role"].value_counts().sort_index().items()},
        staff_published_rate=float(staff["published"].mean()),
        hazards=len(haz),
        hazards_major=int((haz["level"] == "major").sum()),
        **{f"hazards_{s}": int((haz["status"] == s).sum())
           for s in ("found", "rectifying", "supervising", "closed")},
        hazards_closed_immediately=int(immediate.sum()),
        hazards_overdue=int(overdue.sum()),
    )
