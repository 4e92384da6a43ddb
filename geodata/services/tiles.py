"""Mapbox vector tiles of a park's grid layer, on both backends.

For parks too large for the bbox GeoJSON layer, the map page draws the
grids from web-mercator (EPSG:3857) tiles.  PostGIS cuts, clips and encodes
each tile itself (``ST_AsMVTGeom``/``ST_AsMVT``); on SpatiaLite, which has
no encoder, the grids come from the cached grid layer of
:mod:`geodata.services.mapdata` (an STRtree over EPSG:4326 geometries) and
are projected, clipped and snapped in the tile's own coordinates here, then
encoded with ``mapbox-vector-tile``.  Both give one layer, ``grids``, whose
features carry the same properties (:data:`PROPERTIES`).

A tile's :func:`tile_etag` is a digest of its bytes: it changes exactly
when what the tile shows does, whoever changed it (a grid edit, QGIS or raw
SQL on the grids, a hazard, the day for "overdue"), so clients revalidate
with ``If-None-Match`` and get 304 without the tile's transfer.
"""

import hashlib
import math

import mapbox_vector_tile
import numpy as np
import shapely
import sqlalchemy as sa

from geodata.errors import ValidationError
from geodata.models import Grid
from geodata.periods import local_today
from geodata.services.mapdata import cached_grid_layer, hazard_counts
from geodata.storage import backend_name

#: Tile extent and buffer in tile units (the MVT defaults).
EXTENT, BUFFER = 4096, 64
#: The one layer of every tile.
LAYER = "grids"
#: Feature properties, the same on both backends (``parent_code`` is absent on level 1).
PROPERTIES = ("code", "name", "level", "parent_code", "open_hazards", "overdue_hazards")
#: Deepest zoom served (the map's own limit is 20; PostGIS accepts up to 22 here).
MAX_ZOOM = 22
#: Bumped when the encoding or the properties change, so cached tiles are refetched.
TILE_FORMAT = 2
#: Most grids one tile may hold: a z8 tile of a 10^5-grid park would take seconds of
#: database or Python work and megabytes; the map page never asks for more than ~4 000.
MAX_TILE_GRIDS = 20_000

_R = 6378137.0  # EPSG:3857 sphere radius, metres
_HALF = math.pi * _R  # half the world's width in EPSG:3857 metres

# Only the grids in the tile are touched: the GiST index finds them, a recursive
# walk down parent_id finds their sub-grids, and a hazard counts for its own
# (deepest) grid and every ancestor, as in the JSON summaries.
_CELLS = """
    SELECT g.id, g.code, g.name, g.level, g.parent_id, g.geom FROM grids g CROSS JOIN bounds
    WHERE g.park_id = :park AND g.level = :level AND g.active_to IS NULL
      AND g.geom && ST_Transform(ST_Expand(bounds.merc, (ST_XMax(bounds.merc)
          - ST_XMin(bounds.merc)) * CAST(:buffer AS float8) / :extent), 4326)"""
_BOUNDS = "bounds AS (SELECT ST_TileEnvelope(:z, :x, :y) AS merc)"
_COUNT_SQL = sa.text(f"WITH {_BOUNDS} SELECT count(*) FROM ({_CELLS} LIMIT :cap) AS cells")
_TILE_SQL = sa.text(f"""
WITH RECURSIVE {_BOUNDS},
cells AS ({_CELLS}),
down(root, id) AS (
    SELECT id, id FROM cells
    UNION ALL
    SELECT down.root, g.id FROM down JOIN grids g ON g.parent_id = down.id),
counts AS (
    SELECT down.root, count(*) AS open_hazards,
           count(*) FILTER (WHERE h.deadline < :today) AS overdue_hazards
    FROM down JOIN hazards h ON h.grid_id = down.id
    WHERE h.status <> 'closed' GROUP BY down.root),
features AS (
    SELECT c.code, c.name, c.level, p.code AS parent_code,
           coalesce(n.open_hazards, 0)::int AS open_hazards,
           coalesce(n.overdue_hazards, 0)::int AS overdue_hazards,
           ST_AsMVTGeom(ST_Transform(c.geom, 3857), bounds.merc, :extent, :buffer, true) AS geom
    FROM cells c CROSS JOIN bounds LEFT JOIN counts n ON n.root = c.id
    LEFT JOIN grids p ON p.id = c.parent_id)
SELECT ST_AsMVT(features.*, 'grids', :extent, 'geom') FROM features WHERE geom IS NOT NULL
""")


def check_tile(z, x, y):
    """Raise ``invalid_tile`` (422) unless ``z/x/y`` is a tile of the web-mercator pyramid."""
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise ValidationError(f"tile {z}/{x}/{y} does not exist (zoom 0–{MAX_ZOOM}, x and y "
                              f"0–2^zoom−1)", code="invalid_tile",
                              details={"z": z, "x": x, "y": y})


def tile_bounds(z, x, y):
    """The tile's ``(minx, miny, maxx, maxy)`` in EPSG:3857 metres (XYZ scheme, y down)."""
    size = 2 * _HALF / 2**z
    minx, maxy = -_HALF + x * size, _HALF - y * size
    return minx, maxy - size, minx + size, maxy


def tile_etag(tile):
    """The entity tag of a tile: a digest of its bytes (and :data:`TILE_FORMAT`).

    Not a version: the park's version and the newest hazard ids it was built
    from once move only with gridmap's own writes, while a tile also shows
    grids that QGIS or raw SQL edit without them (a stale 304).
    """
    return hashlib.sha256(f"{TILE_FORMAT}|".encode() + tile).hexdigest()[:32]


def grid_tile(session, park, z, x, y, *, level=1, today=None, max_grids=MAX_TILE_GRIDS):
    """Return the MVT bytes of tile ``z/x/y`` (EPSG:3857) of a park's grids at ``level``.

    One layer, :data:`LAYER`, with :data:`PROPERTIES`; an empty body when no
    grid reaches the tile.  Geometries are clipped to the tile plus a
    :data:`BUFFER` of 64 of its 4096 units and snapped to those units.

    Raises
    ------
    ValidationError
        ``invalid_tile`` when ``z`` is outside 0–22 or ``x``/``y`` outside the ``2**z`` range;
        ``tile_too_large`` when more than ``max_grids`` grids reach the tile (zoom in).
    """
    check_tile(z, x, y)
    today = today or local_today()
    if backend_name(session) == "postgresql":
        params = {"z": z, "x": x, "y": y, "park": park.id, "level": level, "extent": EXTENT,
                  "buffer": BUFFER, "today": today}
        _check_size(session.execute(_COUNT_SQL, {**params, "cap": max_grids + 1}).scalar(),
                    max_grids, z, x, y)
        return bytes(session.execute(_TILE_SQL, params).scalar() or b"")
    return _encode_tile(session, park, z, x, y, level, today, max_grids)


def _check_size(count, max_grids, z, x, y):
    """Refuse a tile holding more than ``max_grids`` grids (``tile_too_large``, 422)."""
    if count > max_grids:
        details = {"z": z, "x": x, "y": y, "max_grids": max_grids}
        raise ValidationError(f"tile {z}/{x}/{y} holds more than {max_grids} grids: ask for "
                              "tiles of a higher zoom", code="tile_too_large", details=details)


def _to_tile_units(bounds):
    """A function mapping lon/lat (degrees) to the tile's units (0–4096, y down)."""
    minx, miny, maxx, maxy = bounds
    scale = EXTENT / (maxx - minx)

    def project(coords):
        mx = np.radians(coords[:, 0]) * _R
        my = np.log(np.tan(np.pi / 4 + np.radians(coords[:, 1]) / 2)) * _R
        return np.column_stack(((mx - minx) * scale, (maxy - my) * scale))
    return project


def _lonlat(mx, my):
    """EPSG:3857 metres to lon/lat degrees."""
    return (math.degrees(mx / _R), math.degrees(2 * math.atan(math.exp(my / _R)) - math.pi / 2))


def _encode_tile(session, park, z, x, y, level, today, max_grids):
    """The SpatiaLite path: the tile built from the cached grid layer, in Python."""
    bounds = tile_bounds(z, x, y)
    pad = (bounds[2] - bounds[0]) * BUFFER / EXTENT
    west, south = _lonlat(bounds[0] - pad, max(bounds[1] - pad, -_HALF))
    east, north = _lonlat(bounds[2] + pad, min(bounds[3] + pad, _HALF))
    layer = cached_grid_layer(session, park, level)
    picked = np.sort(layer.tree.query(shapely.box(west, south, east, north),
                                      predicate="intersects"))
    _check_size(len(picked), max_grids, z, x, y)
    if len(picked) == 0:
        return b""
    # As ST_AsMVTGeom does, in its order: project, snap the vertices to whole units, clip
    # to the buffered tile, then snap again keeping the result valid (a part that collapses
    # is dropped).  Clipping before the first snap gives other slivers along the buffer.
    # (The first snap rounds the coordinates only: set_precision would tag the geometries
    # with the 1.0 grid, and GEOS then skips the second, validating snap as a no-op.)
    project = _to_tile_units(bounds)
    geoms = shapely.transform(layer.geoms[picked], lambda coords: np.rint(project(coords)))
    geoms = shapely.clip_by_rect(geoms, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    geoms = shapely.set_precision(geoms, 1.0)
    keep = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    picked, geoms = picked[keep], geoms[keep]
    if len(picked) == 0:
        return b""
    ids = [int(i) for i in layer.ids[picked]]
    open_, overdue = hazard_counts(session, park, today, grid_ids=ids)
    # Names read now, as PostGIS's tile does: the cached layer follows geometry edits of any
    # writer (the coverage stamp), but a name QGIS changed moves no stamp it holds.
    names = dict(session.execute(sa.select(Grid.id, Grid.name).where(Grid.id.in_(ids))).all())
    features = []
    for i, geom in zip(picked, geoms):
        gid = int(layer.ids[i])
        props = {"code": layer.codes[i], "name": names.get(gid), "level": level,
                 "parent_code": layer.parent_codes[i], "open_hazards": open_.get(gid, 0),
                 "overdue_hazards": overdue.get(gid, 0)}
        # MVT has no null: a missing parent is an absent property, as ST_AsMVT writes it
        features.append({"geometry": geom,
                         "properties": {k: v for k, v in props.items() if v is not None}})
    return mapbox_vector_tile.encode(
        [{"name": LAYER, "features": features}],
        default_options={"extents": EXTENT, "y_coord_down": True})
