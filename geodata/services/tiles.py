"""Mapbox vector tiles of a park's grid layer, rendered by PostGIS (``ST_AsMVT``).

For parks too large for the bbox GeoJSON layer, PostGIS cuts, clips and
encodes each web-mercator tile itself; each feature carries the grid code,
name, level and open/overdue hazard counts.  SpatiaLite has no MVT encoder,
so on the embedded backend the bbox GeoJSON layer
(``/api/parks/<code>/grids?bbox=…&zoom=…``) is the fallback.
"""

from datetime import date

import sqlalchemy as sa

from geodata.errors import GridmapError, ValidationError
from geodata.storage import backend_name

#: Tile extent and buffer in tile units (the MVT defaults).
EXTENT, BUFFER = 4096, 64

# Only the grids in the tile are touched: the GiST index finds them, a recursive
# walk down parent_id finds their sub-grids, and a hazard counts for its own
# (deepest) grid and every ancestor, as in the JSON summaries.
_TILE_SQL = sa.text("""
WITH RECURSIVE bounds AS (SELECT ST_TileEnvelope(:z, :x, :y) AS merc),
cells AS (
    SELECT g.id, g.code, g.name, g.level, g.geom FROM grids g CROSS JOIN bounds
    WHERE g.park_id = :park AND g.level = :level AND g.active_to IS NULL
      AND g.geom && ST_Transform(bounds.merc, 4326)),
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
    SELECT c.code, c.name, c.level,
           coalesce(n.open_hazards, 0) AS open_hazards,
           coalesce(n.overdue_hazards, 0) AS overdue_hazards,
           ST_AsMVTGeom(ST_Transform(c.geom, 3857), bounds.merc, :extent, :buffer, true) AS geom
    FROM cells c CROSS JOIN bounds LEFT JOIN counts n ON n.root = c.id)
SELECT ST_AsMVT(features.*, 'grids', :extent, 'geom') FROM features WHERE geom IS NOT NULL
""")


def grid_tile(session, park, z, x, y, *, level=1, today=None):
    """Return the MVT bytes of tile ``z/x/y`` (web mercator, EPSG:3857) of a park's grids.

    Raises
    ------
    ValidationError
        ``invalid_tile`` when ``x``/``y`` are outside the ``2**z`` range.
    GridmapError
        ``vector_tiles_unsupported`` (501) on SpatiaLite.
    """
    if not (0 <= z <= 22 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise ValidationError(f"tile {z}/{x}/{y} does not exist", code="invalid_tile",
                              details={"z": z, "x": x, "y": y})
    if backend_name(session) != "postgresql":
        raise GridmapError(
            "vector tiles need PostGIS; on SpatiaLite use "
            f"/api/parks/{park.code}/grids?bbox=…&zoom=…", code="vector_tiles_unsupported",
            http_status=501)
    tile = session.execute(_TILE_SQL, {
        "z": z, "x": x, "y": y, "park": park.id, "level": level, "extent": EXTENT,
        "buffer": BUFFER, "today": today or date.today()}).scalar()
    return bytes(tile or b"")
