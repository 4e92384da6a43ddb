"""What the map and the JSON API show: per-grid summaries and GeoJSON layers.

Every route of the map page and of ``/api`` calls these functions; nothing
spatial happens in ``webmap``.  Geometries are EPSG:4326 (lon/lat degrees),
areas are m² measured in the park's metric CRS, bounding boxes are
``(minx, miny, maxx, maxy)`` in degrees.

Large layers are never sent whole: grid layers are filtered by bbox and, for
a zoom level, simplified as a *coverage* (``shapely.coverage_simplify``) so
neighbouring grids still share their edges.  The simplified coverage is
computed once per park, grid level and zoom, for the whole park (so the edge
between two grids is the same in every bbox), and cached in memory until the
park's grids change.  The authoritative geometry is one request away
(:func:`grid_feature`, or a layer request without ``zoom``).
"""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from geodata.caches import StampedCache
from geodata.errors import NotFoundError
from geodata.hidden import count_hidden_units, hidden_ids, hidden_units_among
from geodata.models import STAFF_ROLES, Enterprise, Grid, GridStaff, Hazard
from geodata.models.base import to_shapes
from geodata.periods import local_today
from geodata.services.grids import get_grid
from geodata.services.parks import park_boundary
from geodata.spatial import assign_to_cells
from geodata.storage import (bbox_filter, code_point_order, folded, id_list,
                             in_batches)

#: Coordinates are rounded to 7 decimals (~1 cm): more is noise in a browser.
COORD_DECIMALS = 7
#: Zoom at and beyond which grids are sent unsimplified.
FULL_DETAIL_ZOOM = 18
#: Largest page of hazards one request may ask for.
MAX_LIMIT = 10_000
#: Hazard statuses that count as open.
OPEN = ("found", "rectifying", "supervising")


def tolerance_for_zoom(zoom):
    """Simplification tolerance in degrees for a web-map zoom level.

    Half a pixel (at the equator) of the even zoom at or below ``zoom``, so
    two zoom levels share one cached simplification and the error stays
    under one pixel.  Returns 0 (no simplification) at
    :data:`FULL_DETAIL_ZOOM` and beyond.
    """
    zoom = int(zoom)
    if zoom >= FULL_DETAIL_ZOOM:
        return 0.0
    zoom = max(zoom - zoom % 2, 0)
    return 0.5 * 360.0 / (256 * 2 ** zoom)


# --------------------------------------------------------------------------
# GeoJSON helpers
# --------------------------------------------------------------------------

def _geojson_geometries(geoms):
    """Return GeoJSON dicts for a shapely array, coordinates rounded, vectorised."""
    import json

    if len(geoms) == 0:
        return []
    rounded = shapely.set_precision(geoms, 10 ** -COORD_DECIMALS, mode="pointwise")
    return [json.loads(t) for t in shapely.to_geojson(rounded)]


def feature_collection(features, **members):
    """Return a GeoJSON FeatureCollection dict with extra foreign members."""
    return {"type": "FeatureCollection", "features": features, **members}


def _features(geoms, properties, ids=None):
    geometries = _geojson_geometries(np.asarray(geoms, dtype=object))
    return [{"type": "Feature", **({"id": ids[i]} if ids is not None else {}),
             "properties": p, "geometry": g}
            for i, (p, g) in enumerate(zip(properties, geometries))]


def _bbox_mask(geoms, bbox):
    if bbox is None:
        return np.ones(len(geoms), dtype=bool)
    return shapely.intersects(geoms, shapely.box(*bbox))


def _day(value):
    return value.isoformat() if value else None


# --------------------------------------------------------------------------
# the grid geometry cache
# --------------------------------------------------------------------------

@dataclass
class _GridLayer:
    """A park's active grids of one level: ids, codes, names, parents' codes and geometries.

    Plus simplified copies per zoom; the vector tiles of
    :mod:`geodata.services.tiles` read the same layer.
    """

    ids: np.ndarray
    codes: list
    names: list
    parent_codes: list
    geoms: np.ndarray
    tree: shapely.STRtree
    anchors: np.ndarray
    simplified: dict = field(default_factory=dict)

    def at_zoom(self, zoom):
        """Geometries simplified for ``zoom`` (None: authoritative), computed once."""
        tolerance = 0.0 if zoom is None else tolerance_for_zoom(zoom)
        if tolerance == 0.0:
            return self.geoms
        if tolerance not in self.simplified:
            self.simplified[tolerance] = _simplify_coverage(self.geoms, tolerance)
        return self.simplified[tolerance]


def _simplify_coverage(geoms, tolerance):
    """Topology-preserving simplification of a polygonal coverage (shared edges stay shared).

    Falls back to per-polygon ``simplify(preserve_topology=True)`` for any
    result that comes back empty or invalid (an invalid input coverage).
    """
    if len(geoms) == 0:
        return geoms
    out = shapely.coverage_simplify(geoms, tolerance, simplify_boundary=True)
    bad = shapely.is_empty(out) | ~shapely.is_valid(out)
    if bad.any():
        out[bad] = shapely.simplify(geoms[bad], tolerance, preserve_topology=True)
    return out


# The map's grid layer per park and level: {(database URL, park id, level): _GridLayer}.
_cache = StampedCache(16)
clear_cache = _cache.clear


def cached_grid_layer(session, park, level):
    """Return the cached :class:`_GridLayer`, reloaded when the park's grids changed.

    The cache key holds the database URL, the park, the level and a stamp of
    the grid rows (count, highest id, sum of versions and of areas: every
    insert, retirement or geometry edit of the services changes it) and the
    park's coverage stamp, which the database renews on any writer's change
    of a grid's geometry, code, parent, level or retirement (QGIS and raw
    SQL change neither version nor area).
    """
    from geodata.services.coverage import coverage_stamp

    active = sa.and_(Grid.park_id == park.id, Grid.active_to.is_(None), Grid.level == level)
    stamp = tuple(session.execute(sa.select(
        sa.func.count(), sa.func.max(Grid.id), sa.func.sum(Grid.version),
        sa.func.sum(Grid.area_m2)).where(active)).one()) + (coverage_stamp(session, park),)
    key = (str(session.get_bind().url), park.id, level)
    hit = _cache.get(key, stamp)
    if hit is not None:
        return hit
    parent = aliased(Grid)
    rows = session.execute(sa.select(Grid.id, Grid.code, Grid.geom, Grid.name, parent.code)
                           .outerjoin(parent, Grid.parent_id == parent.id).where(active)
                           .order_by(Grid.code)).all()
    geoms = to_shapes([r[2] for r in rows])
    layer = _GridLayer(ids=np.array([r[0] for r in rows], dtype=np.int64),
                       codes=[r[1] for r in rows], names=[r[3] for r in rows],
                       parent_codes=[r[4] for r in rows], geoms=geoms,
                       tree=shapely.STRtree(geoms),
                       anchors=shapely.get_coordinates(shapely.point_on_surface(geoms))
                       if len(geoms) else np.empty((0, 2)))
    _cache.put(key, stamp, layer)
    return layer


# --------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------

def _parents(session, park):
    """Map every grid id of the park to its parent's id (None for level 1)."""
    return dict(session.execute(sa.select(Grid.id, Grid.parent_id).where(
        Grid.park_id == park.id)).all())


def hazard_counts(session, park, today=None, grid_ids=None):
    """Open and overdue hazards per grid id, counted up the grid tree.

    A hazard is recorded on the deepest grid holding it; it counts for that
    grid and for each of its ancestors.  Overdue: open with ``deadline <
    today``.  With ``grid_ids``, only hazards of those grids and their
    descendants are read (the counts of those grids are then complete).

    Returns
    -------
    (dict, dict)
        ``{grid_id: open}`` and ``{grid_id: overdue}``.
    """
    today = today or local_today()
    overdue_expr = sa.case((Hazard.deadline < today, 1), else_=0)
    query = (sa.select(Hazard.grid_id, sa.func.count(), sa.func.sum(overdue_expr))
             .where(Hazard.park_id == park.id, Hazard.status.in_(OPEN))
             .group_by(Hazard.grid_id))
    if grid_ids is not None:
        # Only the wanted grids and their descendants, found level by level down the
        # tree (a map tile's few hundred grids, not the park's 10^5 parent links).
        parent = _descendants(session, grid_ids)
        family = list(parent)
        rows = []
        for start in range(0, len(family), _CHUNK):
            rows += session.execute(query.where(
                Hazard.grid_id.in_(family[start:start + _CHUNK]))).all()
    else:
        parent = _parents(session, park)
        rows = session.execute(query).all()
    open_, overdue = defaultdict(int), defaultdict(int)
    for grid_id, n, late in rows:
        g, depth = grid_id, 0
        while g is not None and depth < 32:
            open_[g] += int(n)
            overdue[g] += int(late or 0)
            g, depth = parent.get(g), depth + 1
    return dict(open_), dict(overdue)


#: Ids per ``IN (...)``: stays under SQLite's bound-variable limit.
_CHUNK = 5000


def _descendants(session, grid_ids):
    """``{grid id: parent id}`` for the grids and all grids below them (None for the grids).

    Walking up this map from any of them stops at a grid of ``grid_ids``.
    """
    parent = dict.fromkeys(grid_ids)
    frontier, depth = list(parent), 0
    while frontier and depth < 32:
        found = []
        for start in range(0, len(frontier), _CHUNK):
            found += session.execute(sa.select(Grid.id, Grid.parent_id).where(
                Grid.parent_id.in_(frontier[start:start + _CHUNK]))).all()
        parent.update(found)
        frontier, depth = [gid for gid, _ in found], depth + 1
    return parent


def withheld(published_only, grid_id):
    """True when only published contacts of grid ``grid_id`` may be shown.

    ``published_only`` is True (a visitor: everywhere), False (nowhere) or a
    grid member's set of grid ids (everywhere else).
    """
    if isinstance(published_only, (set, frozenset)):
        return grid_id not in published_only
    return bool(published_only)


def grid_summaries(session, park, today=None, codes=None, *, published_only=False,
                   limit=None, offset=0):
    """Per-grid figures for every active grid (or the grids in ``codes``).

    ``limit`` and ``offset`` take one page of the grids in code order (the
    API's pages, :func:`count_active_grids` counts them all); hazard counts
    are then read for that page's grids and their sub-grids only.

    ``published_only`` (see :func:`withheld`) lists only staff whose contact
    is published on the grid's board (公示): what anyone may see without
    logging in.

    Returns
    -------
    dict
        ``{grid code: {code, name, level, parent_code, kind, area_m2, staff,
        chief, enterprise_count, hidden_units, hidden_count, open_hazards,
        overdue_hazards}}``.  ``staff`` lists ``{name, phone, role, title,
        published}`` with the chief first; ``hidden_units`` lists ``{name, credit_code,
        host, reason}``.  Level-1 grids count the enterprises assigned to
        them; sub-grids count the sites lying mostly in them.
    """
    query = sa.select(Grid).where(Grid.park_id == park.id, Grid.active_to.is_(None))
    if codes is not None:
        query = query.where(Grid.code.in_(list(codes)))
    query = query.order_by(Grid.code)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    grids = session.execute(query).scalars().all()
    by_id = {g.id: g for g in grids}
    parent_ids = list({g.parent_id for g in grids if g.parent_id})
    all_codes = dict(session.execute(sa.select(Grid.id, Grid.code).where(
        Grid.id.in_(parent_ids))).all()) if parent_ids else {}
    open_, overdue = hazard_counts(session, park, today, grid_ids=None if (
        codes is None and limit is None) else list(by_id))
    staff = defaultdict(list)
    if by_id:
        role_rank = {r: i for i, r in enumerate(STAFF_ROLES)}
        rows = session.execute(sa.select(GridStaff).where(
            GridStaff.grid_id.in_(list(by_id))).order_by(GridStaff.id)).scalars()
        for s in sorted(rows, key=lambda s: (role_rank.get(s.role, 9), s.id)):
            if not s.published and withheld(published_only, s.grid_id):
                continue
            staff[s.grid_id].append({"name": s.name, "phone": s.phone, "role": s.role,
                                     "title": STAFF_ROLES.get(s.role, s.role),
                                     "published": s.published})
    # Each grid's enterprises (ids, in id order), then which of them are hidden, found
    # from the sites near them only (hidden_units_among), not the whole park's.
    firms = defaultdict(list)
    for batch in in_batches([g.id for g in grids if g.level == 1]):
        for e_id, gid in session.execute(sa.select(Enterprise.id, Enterprise.grid_id).where(
                Enterprise.park_id == park.id, Enterprise.grid_id.in_(batch))
                .order_by(Enterprise.id)):
            firms[gid].append(e_id)
    firms.update(_mostly_in(session, park, [g for g in grids if g.level > 1]))
    units = hidden_units_among(session, park, {e for ids in firms.values() for e in ids})
    result = {}
    for g in grids:
        members = staff.get(g.id, [])
        chief = next((s for s in members if s["role"] == "grid_chief"), None)
        hidden_units = [{"name": units[e].name, "credit_code": units[e].credit_code,
                         "host": units[e].host, "reason": units[e].reason}
                        for e in firms.get(g.id, []) if e in units]
        result[g.code] = {
            "code": g.code, "name": g.name, "level": g.level,
            "parent_code": all_codes.get(g.parent_id), "kind": g.kind,
            "area_m2": round(g.area_m2, 1), "staff": members, "chief": chief,
            "enterprise_count": len(firms.get(g.id, [])),
            "hidden_units": hidden_units, "hidden_count": len(hidden_units),
            "open_hazards": open_.get(g.id, 0), "overdue_hazards": overdue.get(g.id, 0),
        }
    return result


def _mostly_in(session, park, cells):
    """``{grid id: enterprise ids}``: the sites lying mostly in each of the sub-grids ``cells``.

    A site belongs to the active grid of the cell's level that holds most of
    it, a tie to the lowest code (:func:`~geodata.spatial.assign_to_cells`),
    whichever grids are asked about: one grid, a page of them or all give
    each grid the same sites.  Only the sites meeting the cells' bounding box
    are read, and the grids of those levels meeting theirs (every grid a site
    touches).  Ids are in id order.
    """
    found = defaultdict(list)
    if not cells:
        return found
    box = shapely.total_bounds(to_shapes([g.geom for g in cells]))
    ents = session.execute(sa.select(Enterprise.id, Enterprise.site).where(
        Enterprise.park_id == park.id, bbox_filter(session, Enterprise, Enterprise.site, box))
        .order_by(Enterprise.id)).all()
    if not ents:
        return found
    sites = to_shapes([e[1] for e in ents])
    near = shapely.total_bounds(sites)
    wanted = {g.id for g in cells}
    for level in sorted({g.level for g in cells}):
        rivals = sorted(session.execute(sa.select(Grid.code, Grid.id, Grid.geom).where(
            Grid.park_id == park.id, Grid.active_to.is_(None), Grid.level == level,
            bbox_filter(session, Grid, Grid.geom, near))).all())
        where = assign_to_cells(sites, to_shapes([r[2] for r in rivals]))
        for (e_id, _), k in zip(ents, where):
            if k >= 0 and rivals[k][1] in wanted:
                found[rivals[k][1]].append(e_id)
    return found


def count_active_grids(session, park, level=None):
    """How many active grids the park has (of one ``level``, or of every level)."""
    where = [Grid.park_id == park.id, Grid.active_to.is_(None)]
    if level is not None:
        where.append(Grid.level == level)
    return int(session.execute(sa.select(sa.func.count()).where(*where)).scalar())


def grid_summary(session, park, code, today=None, *, published_only=False):
    """The summary of one grid (see :func:`grid_summaries`).

    Raises
    ------
    NotFoundError
        No active grid with that code in the park.
    """
    grid = get_grid(session, park, code)
    summary = grid_summaries(session, park, today, codes=[grid.code],
                             published_only=published_only).get(grid.code)
    if summary is None:
        raise NotFoundError(f"grid {code!r} of park {park.code} is retired",
                            details={"park": park.code, "grid": code})
    return summary


def park_overview(session, park, today=None):
    """Headline counts of a park: grids per level, enterprises, hidden units, hazards."""
    return park_overviews(session, [park], today)[park.id]


def park_overviews(session, parks, today=None):
    """:func:`park_overview` of each of ``parks``, ``{park id: counts}``, in four grouped queries.

    The park list shows them for every park: a province's 100 parks cost one
    query per kind, not five per park.
    """
    today = today or local_today()
    ids = [p.id for p in parks]
    levels = defaultdict(dict)
    for park_id, level, n in session.execute(
            sa.select(Grid.park_id, Grid.level, sa.func.count()).where(
                Grid.park_id.in_(ids), Grid.active_to.is_(None)).group_by(
                    Grid.park_id, Grid.level)):
        levels[park_id][level] = n
    firms = dict(session.execute(sa.select(Enterprise.park_id, sa.func.count()).where(
        Enterprise.park_id.in_(ids)).group_by(Enterprise.park_id)).all())
    hazards = {park_id: (n, late) for park_id, n, late in session.execute(
        sa.select(Hazard.park_id, sa.func.count(),
                  sa.func.count().filter(Hazard.deadline < today))
        .where(Hazard.park_id.in_(ids), Hazard.status.in_(OPEN)).group_by(Hazard.park_id))}
    hidden = count_hidden_units(session, parks)
    return {p.id: {
        "code": p.code, "name": p.name, "area_m2": round(p.area_m2, 1),
        "grids": int(levels[p.id].get(1, 0)),
        "sub_grids": int(sum(n for lv, n in levels[p.id].items() if lv > 1)),
        "enterprises": int(firms.get(p.id, 0)),
        "hidden_units": hidden[p.id],
        "open_hazards": int(hazards.get(p.id, (0, 0))[0]),
        "overdue_hazards": int(hazards.get(p.id, (0, 0))[1]),
    } for p in parks}


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------

def park_feature(session, park, zoom=None, today=None, overview=None):
    """The park boundary (holes kept) as a GeoJSON Feature with its overview counts.

    ``overview``: the park's :func:`park_overview`, when the caller read it
    with other parks' (:func:`park_overviews`).
    """
    boundary = park_boundary(park)
    if zoom is not None and tolerance_for_zoom(zoom):
        boundary = shapely.simplify(boundary, tolerance_for_zoom(zoom), preserve_topology=True)
    props = dict(overview or park_overview(session, park, today))
    props["bbox"] = list(park_boundary(park).bounds)
    return _features([boundary], [props])[0]


def grid_layer(session, park, *, level=1, bbox=None, zoom=None, today=None, limit=None,
               offset=0, published_only=False):
    """A park's active grids of one level as a FeatureCollection.

    Parameters
    ----------
    level : int
        Grid level (1: grids, 2: sub-grids).
    bbox : tuple of 4 floats, optional
        ``(minx, miny, maxx, maxy)`` in degrees: only grids intersecting it.
    zoom : int, optional
        Web-map zoom: geometries are coverage-simplified for it.  Omitted:
        the authoritative geometries.
    limit, offset : int, optional
        At most ``limit`` grids (in code order) from the ``offset``-th one on;
        ``numberMatched`` tells how many matched.

    Returns
    -------
    dict
        Features with ``id`` = grid code and properties ``code, name, level,
        parent_code, kind, area_m2, enterprise_count, hidden_count,
        open_hazards, overdue_hazards, staff, hidden_units`` (staff: ``name,
        phone, title``; hidden_units: names; anchor: a [lon, lat] inside the grid).
    """
    layer = cached_grid_layer(session, park, level)
    if bbox is None:
        picked = np.arange(len(layer.codes))
    else:
        picked = np.sort(layer.tree.query(shapely.box(*bbox), predicate="intersects"))
    matched = len(picked)
    picked = picked[offset:None if limit is None else offset + limit]
    codes = [layer.codes[i] for i in picked]
    summaries = grid_summaries(session, park, today, codes=codes,
                               published_only=published_only) if codes else {}
    props = []
    for i, c in zip(picked, codes):
        s = summaries[c]
        props.append({k: s[k] for k in (
            "code", "name", "level", "parent_code", "kind", "area_m2", "enterprise_count",
            "hidden_count", "open_hazards", "overdue_hazards")}
            | {"staff": [{k: m[k] for k in ("name", "phone", "title")} for m in s["staff"]],
               "hidden_units": [u["name"] for u in s["hidden_units"]],
               "anchor": [round(float(v), COORD_DECIMALS) for v in layer.anchors[i]]})
    geoms = layer.at_zoom(zoom)[picked]
    return feature_collection(_features(geoms, props, ids=codes), numberMatched=matched,
                              numberReturned=len(codes), zoom=zoom, simplified=bool(
                                  zoom is not None and tolerance_for_zoom(zoom)))


def grid_feature(session, park, code, today=None, *, published_only=False):
    """One grid with its authoritative geometry and full summary, as a GeoJSON Feature."""
    grid = get_grid(session, park, code)
    summary = grid_summary(session, park, grid.code, today, published_only=published_only)
    return _features(to_shapes([grid.geom]), [summary], ids=[grid.code])[0]


def enterprise_layer(session, park, *, bbox=None, hidden=None, limit=None, offset=0):
    """A park's enterprise sites (Polygon or Point) with the hidden flag.

    Properties: ``name, credit_code, industry, grid, hidden, host, reason``.
    ``hidden`` (bool filter) keeps only hidden units (True) or only the others.
    ``limit`` and ``offset`` take one page of the matching sites (in id
    order); ``numberMatched`` counts them all.

    Without filters the page is cut in SQL and counted with ``COUNT``; a
    ``bbox`` reads the ids and sites near it only (spatial index, then the
    exact test); the ``hidden`` filter takes the park's cached detection
    (:func:`~geodata.hidden.hidden_ids`) into SQL.  The page's own hidden flags
    come from :func:`~geodata.hidden.hidden_units_among`.
    """
    where = [Enterprise.park_id == park.id]
    ids = None
    if bbox is not None:
        near = session.execute(sa.select(Enterprise.id, Enterprise.site).where(
            *where, bbox_filter(session, Enterprise, Enterprise.site, bbox))
            .order_by(Enterprise.id)).all()
        mask = _bbox_mask(to_shapes([r[1] for r in near]), bbox) if near else []
        ids = [r[0] for r, hit in zip(near, mask) if hit]
    if hidden is not None:
        units = hidden_ids(session, [park])
        if ids is not None:
            members = set(units.tolist())
            ids = [i for i in ids if (i in members) == hidden]
        elif hidden:
            ids = units.tolist()
        else:
            where.append(sa.not_(Enterprise.id.in_(id_list(units))))
    query = (sa.select(Enterprise.id, Enterprise.name, Enterprise.credit_code,
                       Enterprise.industry, Enterprise.site, Grid.code)
             .outerjoin(Grid, Enterprise.grid_id == Grid.id).where(*where)
             .order_by(Enterprise.id))
    if ids is None:
        matched = session.execute(sa.select(sa.func.count()).where(*where)).scalar()
        rows = session.execute(query.limit(limit).offset(offset)).all()
    else:
        matched, rows = len(ids), []
        for batch in in_batches(ids[offset:None if limit is None else offset + limit]):
            rows += session.execute(query.where(Enterprise.id.in_(batch))).all()
    units = hidden_units_among(session, park, [r[0] for r in rows])
    props = []
    for r in rows:
        u = units.get(r[0])
        props.append({"name": r[1], "credit_code": r[2], "industry": r[3], "grid": r[5],
                      "hidden": u is not None, "host": u.host if u else None,
                      "reason": u.reason if u else None})
    return feature_collection(_features(to_shapes([r[4] for r in rows]), props),
                              numberMatched=int(matched), numberReturned=len(props))


@dataclass
class HazardQuery:
    """Validated hazard filters (the API checks values before building this)."""

    status: tuple = ()
    level: tuple = ()
    grid: str = None
    overdue: bool = None
    bbox: tuple = None
    limit: int = 1000
    offset: int = 0


def hazard_layer(session, park, query=None, today=None):
    """A park's hazards as Point features, filtered, newest ledger numbers last.

    ``grid`` selects hazards in that grid or any of its sub-grids.  Properties:
    ``code, category, level, status, description, found_date, deadline,
    overdue, grid, enterprise, id`` (the ledger API's hazard id) and ``escalation``.

    Raises
    ------
    NotFoundError
        ``grid`` is not a grid of the park.
    """
    query = query or HazardQuery()
    today = today or local_today()
    where = [Hazard.park_id == park.id]
    if query.status:
        where.append(Hazard.status.in_(query.status))
    if query.level:
        where.append(Hazard.level.in_(query.level))
    if query.grid is not None:
        grid = get_grid(session, park, query.grid)
        # Down from the grid (its few sub-grids), not every parent link of the park.
        where.append(Hazard.grid_id.in_(list(_descendants(session, [grid.id]))))
    late = sa.and_(Hazard.status.in_(OPEN), Hazard.deadline < today)
    if query.overdue is True:
        where.append(late)
    elif query.overdue is False:
        where.append(sa.not_(late) | Hazard.deadline.is_(None))
    if query.bbox is not None:
        minx, miny, maxx, maxy = query.bbox
        x, y = sa.func.ST_X(Hazard.location), sa.func.ST_Y(Hazard.location)
        where += [x >= minx, x <= maxx, y >= miny, y <= maxy]
    matched = session.execute(sa.select(sa.func.count()).where(*where)).scalar()
    rows = session.execute(
        sa.select(Hazard.code, Hazard.category, Hazard.level, Hazard.status,
                  Hazard.description, Hazard.found_date, Hazard.deadline,
                  Grid.code, Enterprise.name, Hazard.location, Hazard.id, Hazard.escalation)
        .outerjoin(Grid, Hazard.grid_id == Grid.id)
        .outerjoin(Enterprise, Hazard.enterprise_id == Enterprise.id)
        .where(*where).order_by(Hazard.code).limit(query.limit).offset(query.offset)).all()
    props = [{"code": r[0], "category": r[1], "level": r[2], "status": r[3],
              "description": r[4], "found_date": _day(r[5]), "deadline": _day(r[6]),
              "overdue": r[3] in OPEN and r[6] is not None and r[6] < today,
              "grid": r[7], "enterprise": r[8], "id": r[10], "escalation": r[11]}
             for r in rows]
    return feature_collection(_features(to_shapes([r[9] for r in rows]), props,
                                        ids=[r[0] for r in rows]),
                              numberMatched=int(matched), numberReturned=len(props))


def search(session, park, q, limit=20):
    """Grids whose code or name contains ``q``, then enterprises whose name does.

    Both sides are compared folded (:func:`geodata.storage.fold_text`: width
    and case ignored) in the database, and ordered by code point, so every
    backend gives the same answer in the same order and only the hits are
    read: a city's park holds 10^5 grids.  ``q`` is folded by the database
    too, by the same expression as the names: PostgreSQL's recipe and
    Python's ``casefold`` disagree on some marked text (``ᾳ̈``: the iota of
    the ypogegrammeni goes after the diaeresis in PostgreSQL's NFD), and a
    name must find itself.

    Returns
    -------
    list of dict
        ``{kind: "grid"|"enterprise", code, name, grid, bbox}`` with bbox in
        degrees, grids first, at most ``limit`` results.
    """
    needle = (q or "").strip()
    if not needle:
        return []
    needle = session.execute(sa.select(folded(session, sa.literal(needle, sa.String)))).scalar()
    if not needle:
        return []

    def contains(column):
        return folded(session, column).contains(needle, autoescape=True)

    grids = session.execute(
        sa.select(Grid.code, Grid.name, Grid.geom).where(
            Grid.park_id == park.id, Grid.active_to.is_(None),
            sa.or_(contains(Grid.code), contains(Grid.name)))
        .order_by(Grid.level, code_point_order(session, Grid.code)).limit(limit)).all()
    results = [{"kind": "grid", "code": r.code, "name": r.name, "grid": r.code,
                "bbox": list(g.bounds)}
               for r, g in zip(grids, to_shapes([r.geom for r in grids]))]
    if len(results) < limit:
        ents = session.execute(
            sa.select(Enterprise.credit_code, Enterprise.name, Enterprise.site, Grid.code)
            .outerjoin(Grid, Enterprise.grid_id == Grid.id)
            .where(Enterprise.park_id == park.id, contains(Enterprise.name))
            .order_by(code_point_order(session, Enterprise.name), Enterprise.id)
            .limit(limit - len(results))).all()
        results += [{"kind": "enterprise", "code": r[0], "name": r[1], "grid": r[3],
                     "bbox": list(g.bounds)}
                    for r, g in zip(ents, to_shapes([r[2] for r in ents]))]
    return results


def grid_page(session, park, code, today=None, *, published_only=False):
    """Everything the grid page shows: summary, staff, enterprises and hazards.

    Enterprise contacts are for logged-in users, as in the OGC API: where
    ``published_only`` withholds unpublished staff (:func:`withheld`: a
    visitor everywhere, a grid member outside their grids), they are left out.
    """
    grid = get_grid(session, park, code)
    summary = grid_summary(session, park, grid.code, today, published_only=published_only)
    subs = session.execute(sa.select(Grid.code, Grid.name).where(
        Grid.parent_id == grid.id, Grid.active_to.is_(None)).order_by(Grid.code)).all()
    if grid.level == 1:
        ents = session.execute(sa.select(Enterprise).where(
            Enterprise.grid_id == grid.id).order_by(Enterprise.name)).scalars().all()
    else:
        inside = set(_mostly_in(session, park, [grid])[grid.id])
        near = bbox_filter(session, Enterprise, Enterprise.site, to_shapes([grid.geom])[0].bounds)
        ents = [e for e in session.execute(sa.select(Enterprise).where(
            Enterprise.park_id == park.id, near).order_by(Enterprise.name)).scalars()
            if e.id in inside]
    hidden = hidden_units_among(session, park, [e.id for e in ents])

    def shown(e):
        return not withheld(published_only, e.grid_id)

    enterprises = [{"name": e.name, "credit_code": e.credit_code, "industry": e.industry,
                    "contact_name": e.contact_name if shown(e) else None,
                    "contact_phone": e.contact_phone if shown(e) else None,
                    "hidden": e.id in hidden,
                    "host": hidden[e.id].host if e.id in hidden else None}
                   for e in ents]
    hazards = hazard_layer(session, park, HazardQuery(grid=grid.code, limit=MAX_LIMIT),
                           today)["features"]
    return {"park": {"code": park.code, "name": park.name}, "grid": summary,
            "sub_grids": [{"code": c, "name": n} for c, n in subs],
            "enterprises": enterprises, "hazards": [f["properties"] for f in hazards]}


def coverage_available():
    """True when the coverage engine (:mod:`geodata.services.coverage`) is installed."""
    try:
        from geodata.services.coverage import check_park  # noqa: F401
    except ImportError:
        return False
    return True


def coverage_version(session, park):
    """The version of the park's coverage layer: its coverage stamp (None when it has none).

    One indexed read, for a conditional request's 304; :func:`coverage_layer`
    is valid for the same value.
    """
    from geodata.services.coverage import coverage_stamp

    return coverage_stamp(session, park)


def coverage_layer(session, park):
    """Coverage problems (gaps, overlaps, parts outside) as ``(version, FeatureCollection)``.

    The findings of :func:`geodata.services.coverage.check_park` (the same
    check as ``gridmap check``), computed once per state of the park's grids
    and boundary (:func:`geodata.services.coverage.coverage_features`):
    ``features`` is a shared tuple, to slice, never to change.  ``version``
    is the coverage stamp they are valid for.  Returns None when the
    coverage engine is not there.
    """
    if not coverage_available():
        return None
    from geodata.services.coverage import coverage_features

    stamp, features = coverage_features(session, park)
    return stamp, {"type": "FeatureCollection", "features": features}
