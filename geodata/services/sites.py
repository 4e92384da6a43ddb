"""Enterprise sites, hidden units included: import, grid assignment and export."""

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified

from geodata import attributes as attr
from geodata import domains
from geodata.creditcode import credit_code_problem
from geodata.crs import STORAGE_SRID
from geodata.errors import ConflictError, FeatureError
from geodata.geometry import validate_geometries
from geodata.models import Enterprise
from geodata.models.base import to_element, to_shapes
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import park_boundary
from geodata.spatial import assign_to_cells


def enterprises_of(session, park):
    """Return the park's enterprises ordered by id."""
    return session.execute(sa.select(Enterprise).where(Enterprise.park_id == park.id)
                           .order_by(Enterprise.id)).scalars().all()


def site_layer(session, park):
    """Return a park's enterprises as a GeoDataFrame (EPSG:4326), read in one query.

    Columns are the enterprise attributes plus ``id``, ``host_id`` and
    ``grid_id``; geometries are decoded in one vectorised call (no ORM objects).
    """
    columns = ["id", "name", "credit_code", "industry", "employees", "contact_name",
               "contact_phone", "registered", "host_id", "grid_id"]
    rows = session.execute(
        sa.select(*(getattr(Enterprise, c) for c in columns),
                  sa.func.ST_AsBinary(Enterprise.site))
        .where(Enterprise.park_id == park.id).order_by(Enterprise.id)).all()
    frame = pd.DataFrame([tuple(r[:-1]) for r in rows], columns=columns)
    for column in ("host_id", "grid_id", "employees"):
        frame[column] = frame[column].astype("Int64")
    return gpd.GeoDataFrame(frame, geometry=to_shapes([r[-1] for r in rows]), crs=STORAGE_SRID)


def site_geometries(enterprises):
    """Return the sites (Polygon or Point, EPSG:4326) of enterprises as a shapely array."""
    return to_shapes([e.site for e in enterprises])


def _check_credit_codes(codes, file):
    """Raise one error that lists every row whose credit code fails GB 32100."""
    bad = [(i, c, credit_code_problem(c)) for i, c in enumerate(codes)]
    bad = [(i, c, why) for i, c, why in bad if why]
    if bad:
        i, c, why = bad[0]
        rows = ", ".join(str(b[0]) for b in bad[:50])
        raise FeatureError(f"credit code {c!r} {why} (GB 32100-2015); failing features: {rows}",
                           code="invalid_credit_code", index=i, field="credit_code", file=file,
                           failing=[{"feature": b[0], "credit_code": b[1], "reason": b[2]}
                                    for b in bad[:200]])


def import_enterprises(session, park, gdf, *, file=None, max_vertices=20_000, checked=False):
    """Insert enterprises from a GeoDataFrame in EPSG:4326 into ``park``.

    Columns: ``name``, ``credit_code`` (18 characters, GB 32100 check
    character), ``industry``, ``employees``, ``contact_name``,
    ``contact_phone``, ``registered`` (default true), ``host_credit_code``
    (the enterprise whose premises hold this unit).  The site is a Polygon,
    MultiPolygon or a gate Point.  Each site is assigned the level-1 grid
    holding most of it.

    ``checked``: the geometries already passed :func:`validate_geometries` for
    this layer (:func:`geodata.services.transfer.import_file` validates them
    before its write transaction).

    Raises
    ------
    FeatureError
        ``invalid_credit_code`` listing every failing row, ``unknown_host``,
        ``outside_park``, or a bad field or geometry.
    ConflictError
        ``duplicate_credit_code`` in the file or against stored enterprises.
    """
    geoms, warnings = (gdf.geometry.to_numpy(), []) if checked else validate_geometries(
        gdf.geometry.to_numpy(), "enterprises", file=file, max_vertices=max_vertices)
    outside = np.flatnonzero(~shapely.intersects(geoms, park_boundary(park)))
    if len(outside):
        raise FeatureError(f"site lies outside park {park.code}", code="outside_park",
                           index=int(outside[0]), field="geometry", file=file)
    codes = [attr.code(v, index=i, field="credit_code", file=file, kind="credit")
             for i, v in enumerate(gdf.get("credit_code", [None] * len(gdf)))]
    _check_credit_codes(codes, file)
    stored = dict(session.execute(sa.select(Enterprise.credit_code, Enterprise.id).where(
        Enterprise.park_id == park.id)).all())
    seen = {}
    for i, c in enumerate(codes):
        if c in seen or c in stored:
            other = f"feature {seen[c]}" if c in seen else "a stored enterprise"
            raise ConflictError(f"{file or 'input'}: feature {i}: credit code {c} is already "
                                f"used by {other}", code="duplicate_credit_code",
                                details={"file": file, "feature": i, "field": "credit_code"})
        seen[c] = i
    grids = active_grids(session, park, level=1)
    assigned = assign_to_cells(geoms, grid_geometries(grids))
    new = []
    hosts = []
    for i, row in attr.records(gdf):
        where = {"index": i, "file": file}
        host = attr.code(row.get("host_credit_code"), field="host_credit_code",
                         required=False, kind="credit", **where)
        if host is not None and host not in seen and host not in stored:
            raise FeatureError(f"host enterprise {host} is neither in the file nor stored",
                               code="unknown_host", field="host_credit_code", **where)
        if host == codes[i]:
            raise FeatureError("an enterprise cannot be its own host", code="invalid_value",
                               field="host_credit_code", **where)
        hosts.append(host)
        new.append(Enterprise(
            park_id=park.id, name=attr.text(row.get("name"), field="name", **where),
            credit_code=codes[i],
            industry=attr.text(row.get("industry"), field="industry", required=False,
                               kind="category", **where),
            employees=attr.integer(row.get("employees"), field="employees", minimum=0,
                                   maximum=domains.EMPLOYEES_MAX, **where),
            contact_name=attr.text(row.get("contact_name"), field="contact_name",
                                   required=False, kind="person", **where),
            contact_phone=attr.text(row.get("contact_phone"), field="contact_phone",
                                    required=False, kind="phone", **where),
            registered=attr.boolean(row.get("registered"), field="registered", **where),
            grid_id=grids[assigned[i]].id if assigned[i] >= 0 else None,
            site=to_element(geoms[i])))
    session.add_all(new)
    session.flush()
    ids = {e.credit_code: e.id for e in new} | stored
    for enterprise, host in zip(new, hosts):
        if host:
            enterprise.host_id = ids[host]
    # New sites change where a point belongs, as new grids do: the park's version steps, so
    # a hazard placed before this import committed is placed again (ledger.create_hazard).
    flag_modified(park, "name")
    session.flush()
    from geodata.services.ledger import relocate

    relocate(session, park)  # open hazards on the new sites now belong to them
    return new, warnings


def reassign_grids(session, park):
    """Re-resolve every enterprise's level-1 grid (after grid boundaries change).

    Returns how many enterprises changed grid.
    """
    enterprises = enterprises_of(session, park)
    grids = active_grids(session, park, level=1)
    assigned = assign_to_cells(site_geometries(enterprises), grid_geometries(grids))
    moved = 0
    for enterprise, k in zip(enterprises, assigned):
        grid_id = grids[k].id if k >= 0 else None
        if enterprise.grid_id != grid_id:
            enterprise.grid_id = grid_id
            moved += 1
    session.flush()
    return moved


def enterprises_frame(session, park):
    """Return a park's enterprises as a GeoDataFrame (EPSG:4326) with grid and host codes."""
    enterprises = enterprises_of(session, park)
    codes = {e.id: e.credit_code for e in enterprises}
    grid_codes = {g.id: g.code for g in active_grids(session, park)}
    return gpd.GeoDataFrame({
        "name": [e.name for e in enterprises],
        "credit_code": [e.credit_code for e in enterprises],
        "industry": [e.industry for e in enterprises],
        "employees": [e.employees for e in enterprises],
        "contact_name": [e.contact_name for e in enterprises],
        "contact_phone": [e.contact_phone for e in enterprises],
        "registered": [e.registered for e in enterprises],
        "host_credit_code": [codes.get(e.host_id) for e in enterprises],
        "grid_code": [grid_codes.get(e.grid_id) for e in enterprises],
    }, geometry=site_geometries(enterprises), crs=STORAGE_SRID)
