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
from pyproj.aoi import AreaOfInterest
from pyproj.exceptions import CRSError
from pyproj.transformer import TransformerGroup

from geodata.errors import FeatureError, ValidationError
from geodata.geometry import rounded

STORAGE_SRID = 4326
STORAGE_CRS = CRS.from_epsg(STORAGE_SRID)

_GK_FIRST_EPSG = 4534  # CGCS2000 / 3-degree Gauss-Kruger CM 75E
_GK_FIRST_ZONE_EPSG = 4513  # CGCS2000 / 3-degree Gauss-Kruger zone 25 (easting with prefix)
#: The largest error (metres) a datum transformation into EPSG:4326 may have to be used.
MAX_DATUM_ERROR_M = 1.0
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


def _is_cgcs2000(geodetic):
    return geodetic.datum is not None and geodetic.datum.name.replace("_", " ") in (
        "China 2000", "D China 2000", "China Geodetic Coordinate System 2000")


def _zone_prefix_problem(source, xs):
    """Why the eastings ``xs`` do not fit a Gauss-Krüger/UTM ``source``, or None.

    Chinese 3-degree zones come in two flavours: ``CM 114E`` (false easting
    500 km) and ``zone 38`` (false easting 38 500 km, the zone number
    prefixed to the easting).  Data in one declared as the other lands
    thousands of kilometres off, or nowhere.
    """
    operation = source.coordinate_operation if source.is_projected else None
    if operation is None or "Transverse Mercator" not in operation.method_name or not len(xs):
        return None
    false_easting = next((p.value for p in operation.params if p.name == "False easting"), None)
    if false_easting is None:
        return None
    low, high = float(np.min(xs)), float(np.max(xs))
    if false_easting % 1e6 != 500_000:  # not a zone system: a local false easting
        return None
    if false_easting == 500_000 and low >= 1e6:
        zone = int(low // 1e6)
        hint = (f" (CGCS2000: EPSG:{_GK_FIRST_ZONE_EPSG + zone - 25})"
                if _is_cgcs2000(source.geodetic_crs) and 25 <= zone <= 45 else "")
        return (f"eastings such as {low:.0f} carry a zone prefix ({zone}) but {source.name} has "
                f"none: declare the 'zone {zone}' CRS{hint}")
    if false_easting >= 1e6 and high < 1e6:
        zone = int(false_easting // 1e6)
        hint = (f" (CGCS2000: EPSG:{_GK_FIRST_EPSG + zone - _GK_FIRST_CM // 3})"
                if _is_cgcs2000(source.geodetic_crs) and 25 <= zone <= 45 else "")
        return (f"eastings such as {high:.0f} have no zone prefix but {source.name} expects "
                f"one ({zone}): declare the 'CM {3 * zone}E' CRS{hint}")
    return None


def _xy(tr, geoms):
    return shapely.transform(
        geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def to_storage_crs(geoms, source, *, file=None):
    """Transform geometries from a file's CRS ``source`` into EPSG:4326; return (geoms, warnings).

    CGCS2000 (EPSG:4490 and its projections) is taken as WGS 84: the two
    agree to a few centimetres and PROJ has no published shift between them,
    so only the projection is undone.  Any other datum is moved with the
    best transformation PROJ has for the data's area, and only if that one
    is known to :data:`MAX_DATUM_ERROR_M` or better; PROJ's fallback for
    Xi'an 1980 and, in most of China, Beijing 1954 is a "ballpark" step that
    ignores the datum shift (tens to hundreds of metres), so those are
    refused rather than moved silently.

    Raises
    ------
    ValidationError
        ``no_datum_transformation``: no transformation accurate enough.
    FeatureError
        ``coordinate_out_of_range``: eastings with or without a zone prefix
        that the declared Gauss-Krüger CRS does not expect, or coordinates
        the CRS cannot transform (named with the first such feature).
    """
    geoms = np.asarray(geoms, dtype=object)
    if source.to_epsg() == STORAGE_SRID or not len(geoms):
        return geoms, []
    where = f"{file}: " if file else ""
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    problem = _zone_prefix_problem(source, coords[:, 0])
    if problem:
        raise FeatureError(problem, code="coordinate_out_of_range", file=file, index=0,
                           field="geometry", crs=source.name)
    geodetic = source.geodetic_crs
    to_geodetic = Transformer.from_crs(source, geodetic, always_xy=True)
    warnings = []
    if _is_cgcs2000(geodetic):
        tr = to_geodetic
    else:
        lon, lat = to_geodetic.transform(coords[:, 0], coords[:, 1])
        finite = np.isfinite(lon) & np.isfinite(lat)
        area = (AreaOfInterest(float(lon[finite].min()), float(lat[finite].min()),
                               float(lon[finite].max()), float(lat[finite].max()))
                if finite.any() else None)
        group = TransformerGroup(source, STORAGE_CRS, always_xy=True, area_of_interest=area)
        tr = group.transformers[0] if group.transformers else None
        if (tr is None or "ballpark" in tr.description.lower()
                or not 0 <= tr.accuracy <= MAX_DATUM_ERROR_M):
            known = "" if tr is None or tr.accuracy < 0 else f" (best: {tr.accuracy:g} m)"
            raise ValidationError(
                f"{where}PROJ knows no transformation from {geodetic.name} to WGS 84 accurate "
                f"to {MAX_DATUM_ERROR_M:g} m for this area{known}; moving the coordinates "
                "anyway would shift them by tens of metres or more. Convert the file to "
                "CGCS2000 (EPSG:4490, or its Gauss-Kruger zones) with your survey's "
                "parameters in QGIS/ArcGIS first", code="no_datum_transformation",
                details={"file": file, "crs": source.name, "datum": geodetic.name})
        if tr.accuracy > 0:
            warnings.append(f"moved from {geodetic.name} to WGS 84 with "
                            f"'{tr.name}' (accuracy {tr.accuracy:g} m)")
    out = _xy(tr, geoms)
    moved = shapely.get_coordinates(out)
    bad = ~np.isfinite(moved).all(axis=1)
    if bad.any():
        raise FeatureError(f"coordinates such as {rounded(coords[bad][0], 3)} cannot be "
                           f"transformed from {source.name}: they lie outside its area",
                           code="coordinate_out_of_range", file=file,
                           index=int(owner[np.flatnonzero(bad)[0]]), field="geometry",
                           crs=source.name)
    return out, warnings
