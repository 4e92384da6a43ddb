"""Declarative base and the geometry column helper shared by all models."""

from geoalchemy2 import Geometry
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, mapped_column

from geodata.crs import STORAGE_SRID

# Stable constraint names so Alembic migrations match on both backends.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every gridmap table."""

    metadata = MetaData(naming_convention=NAMING)


def geometry_column(geometry_type):
    """Return a NOT NULL, spatially indexed EPSG:4326 geometry column.

    NOT NULL matters: SpatiaLite silently stores NULL for a wrong-typed value.
    """
    return mapped_column(
        Geometry(geometry_type, srid=STORAGE_SRID, spatial_index=True), nullable=False)


def to_shapes(values):
    """Turn geometry column values (WKB elements or bytes) into a shapely array, vectorised."""
    import numpy as np
    import shapely

    if len(values) == 0:
        return np.array([], dtype=object)
    try:
        # Plain bytes (what the DBAPI cursors give): no per-value Python work,
        # which cost three times the decoding at 10^5 grids.
        return shapely.from_wkb(np.array(values, dtype=object))
    except TypeError:
        raw = [getattr(v, "data", v) for v in values]
        raw = [bytes(v) if isinstance(v, memoryview) else v for v in raw]
        return shapely.from_wkb(np.array(raw, dtype=object))


def to_element(geometry):
    """Turn a shapely geometry into a value for an EPSG:4326 geometry column."""
    from geoalchemy2.shape import from_shape

    return from_shape(geometry, srid=STORAGE_SRID)
