"""Grids and sub-grids: import, look up and export."""

from datetime import date

import geopandas as gpd
import numpy as np
import sqlalchemy as sa

from geodata import attributes as attr
from geodata.crs import STORAGE_SRID, area_m2
from geodata.errors import ConflictError, FeatureError, NotFoundError
from geodata.geometry import validate_geometries
from geodata.models import GRID_KINDS, Grid
from geodata.models.base import to_element, to_shapes


def active_grids(session, park, level=None):
    """Return the park's active grids (``active_to`` unset) ordered by code."""
    query = sa.select(Grid).where(Grid.park_id == park.id, Grid.active_to.is_(None))
    if level is not None:
        query = query.where(Grid.level == level)
    return session.execute(query.order_by(Grid.code)).scalars().all()


def get_grid(session, park, code):
    """Return the park's grid with ``code`` (normalised) or raise :class:`NotFoundError`."""
    grid = session.execute(sa.select(Grid).where(
        Grid.park_id == park.id, Grid.code == attr.code(code))).scalar_one_or_none()
    if grid is None:
        raise NotFoundError(f"no grid {code!r} in park {park.code}",
                            details={"park": park.code, "grid": code})
    return grid


def import_grids(session, park, gdf, *, file=None, max_vertices=20_000):
    """Insert grids from a GeoDataFrame in EPSG:4326 into ``park``.

    Columns: ``code`` (required), ``name`` (default: the code),
    ``parent_code`` (a grid in the file or already stored), ``level``
    (default: parent's level + 1, else 1), ``kind`` (area/enterprise/workshop;
    default area, workshop below level 1), ``active_from``, ``active_to``.
    Areas are measured in the park's metric CRS (m²).

    Raises
    ------
    ConflictError
        ``duplicate_grid_code``: the code (after NFKC/trim/upper) is in the file
        twice or already stored, retired grids included: codes are never reused.
    FeatureError
        Missing or malformed fields, an unknown parent, a bad geometry.
    """
    geoms, warnings = validate_geometries(gdf.geometry.to_numpy(), "grids", file=file,
                                          max_vertices=max_vertices)
    stored = {g.code: g for g in session.execute(
        sa.select(Grid).where(Grid.park_id == park.id)).scalars()}
    rows = []
    seen = {}
    for i, row in attr.records(gdf):
        where = {"index": i, "file": file}
        code = attr.code(row.get("code"), field="code", **where)
        if code in seen or code in stored:
            other = f"feature {seen[code]}" if code in seen else "a stored grid"
            raise ConflictError(
                f"{file or 'input'}: feature {i}: grid code {code!r} is already used by {other} "
                f"in park {park.code} (codes are never reused)", code="duplicate_grid_code",
                details={"file": file, "feature": i, "field": "code", "grid": code})
        seen[code] = i
        rows.append((i, code, row))
    levels = {code: g.level for code, g in stored.items()}
    parents = {}
    # Parents may come later in the file than their children: resolve in passes.
    pending = list(rows)
    while pending:
        progressed = False
        for item in list(pending):
            i, code, row = item
            parent = attr.code(row.get("parent_code"), field="parent_code", index=i, file=file,
                               required=False)
            if parent is not None and parent not in levels:
                if parent not in seen:
                    raise FeatureError(f"parent grid {parent!r} is neither in the file nor "
                                       f"stored in park {park.code}", code="unknown_parent",
                                       index=i, field="parent_code", file=file)
                continue
            default_level = levels[parent] + 1 if parent else 1
            level = attr.integer(row.get("level"), field="level", index=i, file=file,
                                 minimum=1) or default_level
            if level != default_level:
                raise FeatureError(f"level {level} does not match its parent (expected "
                                   f"{default_level})", code="invalid_value", index=i,
                                   field="level", file=file)
            levels[code] = level
            parents[code] = parent
            pending.remove(item)
            progressed = True
        if not progressed:
            i = pending[0][0]
            raise FeatureError("parent_code forms a cycle", code="invalid_value", index=i,
                               field="parent_code", file=file)
    areas = area_m2(geoms, park.metric_epsg)
    new = {}
    for i, code, row in rows:
        where = {"index": i, "file": file}
        grid = Grid(
            park_id=park.id, code=code,
            name=attr.text(row.get("name"), field="name", required=False, **where) or code,
            level=levels[code],
            kind=attr.choice(row.get("kind"), GRID_KINDS, field="kind",
                             default="area" if levels[code] == 1 else "workshop", **where),
            geom=to_element(geoms[i]), area_m2=float(areas[i]),
            active_from=attr.day(row.get("active_from"), field="active_from", **where)
            or date.today(),
            active_to=attr.day(row.get("active_to"), field="active_to", **where))
        new[code] = grid
    session.add_all(new.values())
    session.flush()
    for code, grid in new.items():
        if parents[code]:
            parent = new.get(parents[code]) or stored[parents[code]]
            grid.parent_id = parent.id
    session.flush()
    return list(new.values()), warnings


def grid_geometries(grids):
    """Return the shapely geometries (EPSG:4326) of a list of grids, vectorised."""
    return to_shapes([g.geom for g in grids])


def grids_frame(session, park, include_retired=False):
    """Return a park's grids as a GeoDataFrame in EPSG:4326, with ``parent_code``."""
    query = sa.select(Grid).where(Grid.park_id == park.id)
    if not include_retired:
        query = query.where(Grid.active_to.is_(None))
    grids = session.execute(query.order_by(Grid.code)).scalars().all()
    by_id = {g.id: g.code for g in grids}
    missing = {g.parent_id for g in grids if g.parent_id and g.parent_id not in by_id}
    if missing:
        by_id.update(dict(session.execute(sa.select(Grid.id, Grid.code).where(
            Grid.id.in_(missing))).all()))
    return gpd.GeoDataFrame({
        "code": [g.code for g in grids], "name": [g.name for g in grids],
        "level": np.array([g.level for g in grids], dtype=np.int32),
        "parent_code": [by_id.get(g.parent_id) for g in grids],
        "kind": [g.kind for g in grids],
        "area_m2": [round(g.area_m2, 3) for g in grids],
        "active_from": [g.active_from.isoformat() for g in grids],
        "active_to": [g.active_to.isoformat() if g.active_to else None for g in grids],
    }, geometry=grid_geometries(grids), crs=STORAGE_SRID)
