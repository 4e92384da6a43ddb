"""Coordinate reference systems: storage CRS and the metric CRS chosen per park.

Geometries are stored in EPSG:4326 (longitude, latitude; degrees).  All metric
work (areas in m², tolerances in metres) happens in the CGCS2000 3-degree
Gauss-Krüger zone whose central meridian is nearest to the park's centroid
(EPSG:4534 for 75°E to EPSG:4554 for 135°E), the projection Chinese surveying
and natural-resources data use.  Outside China's longitudes the UTM zone of the
centroid (WGS 84, EPSG:326xx/327xx) is used instead.
"""

from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geodata.errors import ValidationError

STORAGE_SRID = 4326
STORAGE_CRS = CRS.from_epsg(STORAGE_SRID)

_GK_FIRST_EPSG = 4534  # CGCS2000 / 3-degree Gauss-Kruger CM 75E
_GK_FIRST_CM = 75
_GK_LAST_CM = 135


def metric_epsg(lon, lat):
    """Return the EPSG code of the metric CRS for a place.

    Parameters
    ----------
    lon, lat : float
        Longitude and latitude in degrees (EPSG:4326).

    Returns
    -------
    int
        A CGCS2000 3-degree Gauss-Krüger EPSG code (metres, easting without
        zone prefix) when ``lon`` lies within China's zones, else a UTM code.
    """
    central_meridian = 3 * round(lon / 3)
    if _GK_FIRST_CM <= central_meridian <= _GK_LAST_CM:
        return _GK_FIRST_EPSG + (central_meridian - _GK_FIRST_CM) // 3
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def metric_epsg_for(geometry):
    """Return the metric EPSG code for a geometry in EPSG:4326 (its centroid decides)."""
    centroid = shapely.centroid(geometry)
    return metric_epsg(centroid.x, centroid.y)


@lru_cache(maxsize=64)
def transformer(src_epsg, dst_epsg):
    """Return a cached, always-x/y-ordered pyproj transformer between two EPSG codes."""
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


def project(geometries, src_epsg, dst_epsg):
    """Transform shapely geometries (scalar or array) from ``src_epsg`` to ``dst_epsg``.

    Vectorised over all coordinates at once with ``shapely.transform``.
    """
    if src_epsg == dst_epsg:
        return geometries
    tr = transformer(src_epsg, dst_epsg)
    return shapely.transform(
        geometries, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )


def to_metric(geometries, epsg):
    """Project EPSG:4326 geometries into the metric CRS ``epsg`` (metres)."""
    return project(geometries, STORAGE_SRID, epsg)


def to_storage(geometries, epsg):
    """Project geometries in metric CRS ``epsg`` back to EPSG:4326 (degrees)."""
    return project(geometries, epsg, STORAGE_SRID)


def area_m2(geometries, epsg):
    """Area in m² of EPSG:4326 geometries (scalar or array), measured in metric CRS ``epsg``."""
    return shapely.area(to_metric(geometries, epsg))


def parse_crs(value, source=None):
    """Return a pyproj CRS for user input such as ``EPSG:3857``, ``4490`` or WKT."""
    try:
        return CRS.from_user_input(int(value) if str(value).isdigit() else value)
    except CRSError:
        where = f"{source}: " if source else ""
        raise ValidationError(f"{where}unknown CRS {value!r}", code="unknown_crs",
                              details={"file": source, "crs": str(value)}) from None


def declared_crs(member, path=None):
    """The CRS a GeoJSON legacy ``crs`` member names; EPSG:4326 without one.

    RFC 7946 dropped the member, yet GDAL, QGIS and geopandas still write
    ``urn:ogc:def:crs:OGC:1.3:CRS84`` for lon/lat files.  The URN is parsed
    as written: pyproj knows the OGC and EPSG URNs, and rewriting them
    (``OGC:1.3:CRS84``) made CRS84 itself an unknown CRS.

    Raises
    ------
    ValidationError
        ``unknown_crs``: a member without a CRS name, or a name pyproj does not know.
    """
    if not member:
        return CRS.from_epsg(STORAGE_SRID)
    name = member.get("properties") if isinstance(member, dict) else None
    name = name.get("name") if isinstance(name, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{path + ': ' if path else ''}the legacy 'crs' member must be "
                              '{"type": "name", "properties": {"name": "<CRS>"}}',
                              code="unknown_crs", details={"file": path})
    declared = parse_crs(name.strip(), path)
    if declared.equals(CRS.from_user_input("OGC:CRS84")):
        declared = CRS.from_epsg(STORAGE_SRID)
    return declared
