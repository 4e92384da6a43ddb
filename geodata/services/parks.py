"""Parks: create, look up, import and export."""

import functools
import threading

import shapely
import sqlalchemy as sa

from geodata import attributes as attr
from geodata import domains
from geodata.crs import STORAGE_SRID, area_m2, metric_epsg_for
from geodata.errors import ConflictError, FeatureError, NotFoundError
from geodata.geometry import validate_geometries
from geodata.models import Park
from geodata.models.base import to_element, to_shapes


def get_park(session, code, *, lock=False):
    """Return the park with ``code`` (normalised), or raise :class:`NotFoundError`.

    A code outside the park-code domain cannot be stored, so it is a 404 too.
    ``lock`` takes the park's row lock for the transaction (``FOR UPDATE`` on
    PostgreSQL; SQLite writers already hold the database's write lock), so
    writers into one park queue instead of both passing their checks;
    ``lock="share"`` takes it shared (``FOR SHARE``: ledger creates run side by
    side, grid edits wait).
    """
    park = None
    if domains.is_code(code, kind="park"):
        park = session.execute(_park_statement(lock), {
            "code": attr.code(code, kind="park")}).scalar_one_or_none()
    if park is None:
        raise NotFoundError(f"no park with code {code!r}", details={"park": code})
    return park


@functools.cache
def _park_statement(lock):
    # Built once: every API request into a park starts with it.
    query = sa.select(Park).where(Park.code == sa.bindparam("code", type_=sa.String))
    if lock:
        query = query.with_for_update(read=lock == "share").execution_options(
            populate_existing=True)
    return query


def set_park_settings(session, code, *, require_after_photo=None):
    """Change a park's settings; an argument left None keeps its value.  Return the park.

    ``require_after_photo``: closing a major (重大) hazard needs a photo
    tagged ``after`` (整改后) (:func:`geodata.services.ledger.transition`).

    Raises
    ------
    NotFoundError
        For an unknown park code.
    """
    park = get_park(session, code, lock=True)
    if require_after_photo is not None:
        park.require_after_photo = bool(require_after_photo)
    session.flush()
    return park


def list_parks(session):
    """Return all parks ordered by code."""
    return session.execute(sa.select(Park).order_by(Park.code)).scalars().all()


def park_boundary(park):
    """Return a park's boundary as a shapely MultiPolygon (EPSG:4326)."""
    return to_shapes([park.boundary])[0]


#: Prepared park boundaries by their stored WKB: a hazard's inside-the-park test neither parses
#: nor prepares a 20,000-vertex boundary again on every request.  Keyed by the bytes, so an
#: edited boundary can never be answered from the cache.
_PREPARED = {}
_PREPARED_SIZE = 32
_prepared_lock = threading.Lock()


def prepared_boundary(park):
    """Return the park's boundary (EPSG:4326) as a prepared shapely geometry, cached.

    Use it as the first argument of a predicate (``shapely.covers(boundary,
    point)``): shapely uses the preparation of the first argument only.
    """
    key = getattr(park.boundary, "data", park.boundary)  # WKB bytes or hex text
    key = bytes(key) if isinstance(key, memoryview) else key
    with _prepared_lock:
        hit = _PREPARED.get(key)
    if hit is not None:
        return hit
    geom = to_shapes([key])[0]
    shapely.prepare(geom)
    # GEOS builds a prepared polygon's point index lazily, on the first test: build it
    # here, once, so threads sharing the cached geometry only ever read it.
    shapely.covers(geom, shapely.point_on_surface(geom))
    with _prepared_lock:
        if len(_PREPARED) >= _PREPARED_SIZE:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = geom
    return geom


def import_parks(session, gdf, *, file=None, max_vertices=20_000, checked=False):
    """Insert parks from a GeoDataFrame in EPSG:4326 (columns code, name, division_code).

    Each boundary's metric CRS is chosen from its centroid
    (:func:`geodata.crs.metric_epsg_for`) and its area stored in m².
    ``checked``: the geometries already passed :func:`validate_geometries`
    for parks (an import validates before its write transaction).

    Raises
    ------
    FeatureError
        A missing field, a division code that is not 6 digits, a bad geometry.
    ConflictError
        ``duplicate_park_code`` within the file or against the database.
    """
    geoms, warnings = (gdf.geometry.to_numpy(), []) if checked else validate_geometries(
        gdf.geometry.to_numpy(), "parks", file=file, max_vertices=max_vertices)
    existing = set(session.execute(sa.select(Park.code)).scalars())
    seen = {}
    parks = []
    for i, row in attr.records(gdf):
        code = attr.code(row.get("code"), index=i, field="code", file=file, kind="park")
        if code in seen or code in existing:
            where = f"feature {seen[code]}" if code in seen else "the database"
            raise ConflictError(f"{file or 'input'}: feature {i}: park code {code!r} already "
                                f"used by {where}", code="duplicate_park_code",
                                details={"file": file, "feature": i, "field": "code"})
        seen[code] = i
        division = attr.text(row.get("division_code"), index=i, field="division_code",
                             file=file)
        if not (len(division) == 6 and division.isascii() and division.isdigit()):
            raise FeatureError(f"must be a 6-digit administrative division code, got "
                               f"{division!r}", index=i, field="division_code", file=file,
                               code="invalid_value")
        epsg = metric_epsg_for(geoms[i])
        parks.append(Park(code=code, name=attr.text(row.get("name"), index=i, field="name",
                                                    file=file),
                          division_code=division, boundary=to_element(geoms[i]),
                          metric_epsg=epsg, area_m2=float(area_m2(geoms[i], epsg))))
    session.add_all(parks)
    session.flush()
    return parks, warnings


def parks_frame(session, code=None):
    """Return parks (one, or all) as a GeoDataFrame in EPSG:4326 for export."""
    import geopandas as gpd

    parks = [get_park(session, code)] if code else list_parks(session)
    return gpd.GeoDataFrame(
        {"code": [p.code for p in parks], "name": [p.name for p in parks],
         "division_code": [p.division_code for p in parks],
         "metric_epsg": [p.metric_epsg for p in parks],
         "area_m2": [round(p.area_m2, 3) for p in parks]},
        geometry=to_shapes([p.boundary for p in parks]), crs=STORAGE_SRID)
