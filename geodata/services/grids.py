"""Grids and sub-grids: import, look up and export."""


import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified

from geodata import attributes as attr
from geodata import domains
from geodata.crs import STORAGE_SRID, area_m2
from geodata.errors import ConflictError, FeatureError, NotFoundError, ValidationError
from geodata.geometry import validate_geometries
from geodata.models import GRID_KINDS, Grid
from geodata.models.base import to_element, to_shapes
from geodata.periods import local_today


def active_grids(session, park, level=None):
    """Return the park's active grids (``active_to`` unset) ordered by code."""
    query = sa.select(Grid).where(Grid.park_id == park.id, Grid.active_to.is_(None))
    if level is not None:
        query = query.where(Grid.level == level)
    return session.execute(query.order_by(Grid.code)).scalars().all()


def grid_layer(session, park, level=None, ids=None):
    """Return a park's active grids as a GeoDataFrame (EPSG:4326), read in one query.

    ``ids`` keeps only those grids (a page of them: at most a few thousand).

    Columns ``id, code, name, level, kind, parent_id, parent_code, area_m2``;
    sorted by code.  Geometries are decoded from WKB in one vectorised call,
    without ORM objects: this is the fast path for checks and spatial lookups
    over thousands of grids.
    """
    parent = sa.orm.aliased(Grid)
    query = (sa.select(Grid.id, Grid.code, Grid.name, Grid.level, Grid.kind, Grid.parent_id,
                       parent.code.label("parent_code"), Grid.area_m2,
                       sa.func.ST_AsBinary(Grid.geom).label("wkb"))
             .outerjoin(parent, Grid.parent_id == parent.id)
             .where(Grid.park_id == park.id, Grid.active_to.is_(None)))
    if level is not None:
        query = query.where(Grid.level == level)
    if ids is not None:
        query = query.where(Grid.id.in_(ids))
    rows = [tuple(r) for r in session.execute(query.order_by(Grid.code))]
    frame = pd.DataFrame(rows, columns=["id", "code", "name", "level", "kind", "parent_id",
                                        "parent_code", "area_m2", "wkb"])
    geometry = to_shapes(frame.pop("wkb").tolist())
    frame["parent_id"] = frame["parent_id"].astype("Int64")
    frame["parent_code"] = frame["parent_code"].astype(object).where(
        frame["parent_code"].notna(), None)
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=STORAGE_SRID)


def follow_grids(session, park):
    """Bring what hangs off ``park``'s grids and sites in line with them, after they changed.

    Every write that adds, reshapes or retires a grid or adds a site ends
    with this, in its transaction: enterprises get the level-1 grid holding
    most of their site (:func:`geodata.services.sites.reassign_grids`), open
    hazards the deepest grid and the site holding their point
    (:func:`geodata.services.ledger.relocate`), open requests their
    enterprise's grid (:func:`geodata.services.requests.follow_enterprises`,
    when an enterprise moved).
    Closed hazards and finished requests keep the grid they were handled in.
    Without it an enterprise imported before its grids stayed in no grid.
    """
    from geodata.services.ledger import relocate
    from geodata.services.requests import follow_enterprises
    from geodata.services.sites import reassign_grids

    session.flush()
    moved = reassign_grids(session, park)
    relocate(session, park)
    if moved:  # requests follow their enterprise: nothing to do when none moved
        follow_enterprises(session, park)
    session.flush()


def get_grid(session, park, code):
    """Return the park's grid with ``code`` (normalised) or raise :class:`NotFoundError`."""
    grid = session.execute(sa.select(Grid).where(
        Grid.park_id == park.id, Grid.code == attr.code(code))).scalar_one_or_none() if (
            domains.is_code(code)) else None
    if grid is None:
        raise NotFoundError(f"no grid {code!r} in park {park.code}",
                            details={"park": park.code, "grid": code})
    return grid


def import_grids(session, park, gdf, *, file=None, max_vertices=20_000, checked=False):
    """Insert grids from a GeoDataFrame in EPSG:4326 into ``park``.

    Columns: ``code`` (required), ``name`` (default: the code),
    ``parent_code`` (a grid in the file or already stored), ``level``
    (default: parent's level + 1, else 1), ``kind`` (area/enterprise/workshop;
    default area, workshop below level 1), ``active_from``, ``active_to``.
    Areas are measured in the park's metric CRS (m²).

    ``checked``: the geometries already passed :func:`validate_geometries` for
    this layer (:func:`geodata.services.transfer.import_file` validates them
    before its write transaction).

    Raises
    ------
    ConflictError
        ``duplicate_grid_code``: the code (after NFKC/trim/upper) is in the file
        twice or already stored, retired grids included: codes are never reused.
    FeatureError
        Missing or malformed fields, an unknown parent, ``retired_parent`` (a
        grid in force under a retired one), ``active_to`` before
        ``active_from``, a bad geometry.
    """
    geoms, warnings = (gdf.geometry.to_numpy(), []) if checked else validate_geometries(
        gdf.geometry.to_numpy(), "grids", file=file, max_vertices=max_vertices)
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
        active_from = attr.day(row.get("active_from"), **where, field="active_from")
        active_to = attr.day(row.get("active_to"), **where, field="active_to")
        if active_to is not None and active_from is not None and active_to < active_from:
            raise FeatureError(f"active_to {active_to} is before active_from {active_from}",
                               code="invalid_value", index=i, field="active_to", file=file)
        rows.append((i, code, row, active_from, active_to))
    # A parent is a grid in force: a retired one (stored or given with active_to) has no
    # ground left, and a sub-grid under it would sit in no grid (check: "unknown parent").
    retired = {code for code, g in stored.items() if g.active_to is not None} | {
        code for _, code, _, _, active_to in rows if active_to is not None}
    levels = {code: g.level for code, g in stored.items()}
    parents = {}
    # Parents may come later in the file than their children: resolve in passes.
    pending = list(rows)
    while pending:
        progressed = False
        for item in list(pending):
            i, code, row, _, active_to = item
            parent = attr.code(row.get("parent_code"), field="parent_code", index=i, file=file,
                               required=False)
            if parent in retired and active_to is None:
                raise FeatureError(f"parent grid {parent!r} is retired: a grid in force needs a "
                                   "parent in force", code="retired_parent", index=i,
                                   field="parent_code", file=file)
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
    # Grids given as retired (active_to) are history: they tile nothing now.
    warnings += _coverage_problems(park, stored, [(code, parents[code], geoms[i])
                                                  for i, code, _, _, active_to in rows
                                                  if active_to is None], file)
    areas = area_m2(geoms, park.metric_epsg)
    new = {}
    for i, code, row, active_from, active_to in rows:
        where = {"index": i, "file": file}
        grid = Grid(
            park_id=park.id, code=code,
            name=attr.text(row.get("name"), field="name", required=False, **where) or code,
            level=levels[code],
            kind=attr.choice(row.get("kind"), GRID_KINDS, field="kind",
                             default="area" if levels[code] == 1 else "workshop", **where),
            geom=to_element(geoms[i]), area_m2=float(areas[i]),
            active_from=active_from or local_today(), active_to=active_to)
        new[code] = grid
    session.add_all(new.values())
    flag_modified(park, "name")  # new grids bump the park's version (the tiles' ETag)
    session.flush()
    for code, grid in new.items():
        if parents[code]:
            parent = new.get(parents[code]) or stored[parents[code]]
            grid.parent_id = parent.id
    follow_grids(session, park)
    return list(new.values()), warnings


def _coverage_problems(park, stored, incoming, file):
    """Refuse overlaps and parts outside the park or parent; return gap warnings.

    Runs the coverage check on the park's active grids plus the incoming ones.
    Gaps are allowed (a park may be gridded in several imports) and come back
    as a warning; ``gridmap check`` reports them in full.

    Raises
    ------
    ValidationError
        ``grid_overlap`` or ``outside_parent`` with the codes and areas in m².
    """
    from geodata.coverage import check_coverage
    from geodata.services.parks import park_boundary

    active = [g for g in stored.values() if g.active_to is None]
    by_id = {g.id: g.code for g in stored.values()}
    codes = [g.code for g in active] + [c for c, _, _ in incoming]
    parents = [by_id.get(g.parent_id) for g in active] + [p for _, p, _ in incoming]
    geoms = list(grid_geometries(active)) + [g for _, _, g in incoming]
    report = check_coverage(geoms, codes, parents, park=park_boundary(park),
                            metric_epsg=park.metric_epsg)
    if report.overlaps:
        worst = max(report.overlaps, key=lambda o: o["area_m2"])
        raise ValidationError(
            f"{file or 'input'}: grids {worst['codes'][0]} and {worst['codes'][1]} overlap by "
            f"{worst['area_m2']:.2f} m² ({len(report.overlaps)} overlapping pairs)",
            code="grid_overlap", details={"file": file, "overlaps": [
                {"codes": o["codes"], "area_m2": o["area_m2"]} for o in report.overlaps[:50]]})
    if report.outside_park:
        worst = max(report.outside_park, key=lambda o: o["area_m2"])
        raise ValidationError(
            f"{file or 'input'}: grid {worst['code']} has {worst['area_m2']:.2f} m² outside "
            f"its {'parent' if parents[codes.index(worst['code'])] else 'park'}",
            code="outside_parent", details={"file": file, "outside": [
                {"code": o["code"], "area_m2": o["area_m2"]} for o in report.outside_park[:50]]})
    if report.gaps:
        total = sum(g["area_m2"] for g in report.gaps)
        return [f"the grids leave {len(report.gaps)} gaps ({total:.2f} m²) uncovered; "
                f"run `gridmap check --park {park.code}` for details"]
    return []


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
