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

# A hazard counts for its own (deepest) grid and every ancestor, as in the summaries.
_TILE_SQL = sa.text("""
WITH RECURSIVE up(descendant, ancestor) AS (
    SELECT id, id FROM grids WHERE park_id = :park
    UNION ALL
    SELECT up.descendant, g.parent_id FROM up JOIN grids g ON g.id = up.ancestor
    WHERE g.parent_id IS NOT NULL),
bounds AS (SELECT ST_TileEnvelope(:z, :x, :y) AS merc),
open_counts AS (
    SELECT up.ancestor AS grid_id, count(*) AS open_hazards,
           count(*) FILTER (WHERE h.deadline < :today) AS overdue_hazards
    FROM hazards h JOIN up ON up.descendant = h.grid_id
    WHERE h.park_id = :park AND h.status <> 'closed' GROUP BY up.ancestor),
cells AS (
    SELECT g.code, g.name, g.level,
           coalesce(c.open_hazards, 0) AS open_hazards,
           coalesce(c.overdue_hazards, 0) AS overdue_hazards,
           ST_AsMVTGeom(ST_Transform(g.geom, 3857), bounds.merc, :extent, :buffer, true) AS geom
    FROM grids g CROSS JOIN bounds
    LEFT JOIN open_counts c ON c.grid_id = g.id
    WHERE g.park_id = :park AND g.level = :level AND g.active_to IS NULL
      AND g.geom && ST_Transform(bounds.merc, 4326))
SELECT ST_AsMVT(cells.*, 'grids', :extent, 'geom') FROM cells WHERE geom IS NOT NULL
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
