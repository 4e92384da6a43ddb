"""Strict geometry validation for everything that enters the database.

Two entry points share one set of rules:

* :func:`geometry_from_geojson` checks a raw GeoJSON geometry object
  *before* shapely sees it, because shapely silently closes unclosed rings
  and pads short ones (RFC 7946 says rings MUST be closed);
* :func:`validate_geometries` checks an array of shapely geometries (from
  any file reader) vectorised: type for the layer, emptiness, dimension,
  longitude/latitude range, vertex count and OGC validity.

Nothing is repaired silently: an invalid polygon is refused with GEOS's
reason and location (``Self-intersection[114.39 34.06]``).  Polygons are
promoted to MultiPolygons for MultiPolygon layers and 3D input is reduced
to 2D with a warning; both keep the shape's meaning.  Coordinates are
EPSG:4326 degrees here.
"""

import json
import math

import numpy as np
import shapely
from shapely.geometry import shape

from geodata.errors import BadRequestError, FeatureError

#: Geometry types each layer accepts; the first is what is stored.
LAYER_TYPES = {
    "parks": ("MultiPolygon", "Polygon"),
    "grids": ("MultiPolygon", "Polygon"),
    "enterprises": ("Polygon", "MultiPolygon", "Point"),
    "hazards": ("Point",),
}
GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                 "MultiPolygon", "GeometryCollection"}
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
          "MultiPolygon": 3}


def _reject_constant(name):
    raise FeatureError(f"{name} is not a valid coordinate (JSON has no NaN or Infinity)",
                       code="invalid_coordinate")


def parse_json(text, source=None):
    """Parse JSON text (str, or bytes in UTF-8/16/32) strictly.

    No ``NaN``/``Infinity``; truncation names the position; text that is not
    Unicode, or nested deeper than Python's parser can recurse (a body of
    100 000 ``[``), is refused as unparseable too.

    Raises
    ------
    BadRequestError
        ``invalid_json`` with line and column.
    FeatureError
        ``invalid_coordinate`` for NaN or Infinity.
    """
    where = f"{source}: " if source else ""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"{where}not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            code="invalid_json", details={"file": source, "line": exc.lineno,
                                          "column": exc.colno}) from None
    except UnicodeDecodeError:
        raise BadRequestError(f"{where}not valid JSON (not UTF-8, UTF-16 or UTF-32 text)",
                              code="invalid_json", details={"file": source}) from None
    except RecursionError:
        raise BadRequestError(f"{where}not valid JSON (nested too deeply)",
                              code="invalid_json", details={"file": source}) from None


def _check_positions(coords, depth, pointer, index, file, warnings):
    """Walk the coordinate nesting; return the number of positions."""
    if depth == 0:
        if not isinstance(coords, list) or not 2 <= len(coords) <= 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords):
            raise FeatureError(f"position at {pointer} must be a list of 2 or 3 numbers",
                               code="invalid_geojson", index=index, file=file, field="geometry",
                               pointer=pointer)
        if len(coords) > 2:
            warnings.add("dropped Z/M values: gridmap stores 2D geometries")
        try:
            finite = all(math.isfinite(v) for v in coords)
        except OverflowError:  # an integer beyond any float
            finite = False
        if not finite:
            raise FeatureError(f"non-finite coordinate at {pointer}", code="invalid_coordinate",
                               index=index, file=file, field="geometry", pointer=pointer)
        return 1
    if not isinstance(coords, list):
        raise FeatureError(f"coordinates at {pointer} must be an array", code="invalid_geojson",
                           index=index, file=file, field="geometry", pointer=pointer)
    return sum(_check_positions(c, depth - 1, f"{pointer}/{i}", index, file, warnings)
               for i, c in enumerate(coords))


def _check_parts(gtype, coords, pointer, index, file):
    """Refuse empty parts, which shapely cannot build (or builds as hidden EMPTYs).

    A MultiPolygon's polygon needs a ring, a line (or a MultiLineString's
    part) at least 2 positions.
    """
    where = {"index": index, "file": file, "field": "geometry"}
    if gtype == "MultiPolygon":
        for p, rings in enumerate(coords):
            if not rings:
                raise FeatureError(f"polygon {pointer}/{p} has no rings (an empty part)",
                                   code="empty_geometry", pointer=f"{pointer}/{p}", **where)
    lines = ([(pointer, coords)] if gtype == "LineString" else
             [(f"{pointer}/{i}", c) for i, c in enumerate(coords)]
             if gtype == "MultiLineString" else [])
    for at, line in lines:
        if len(line) < 2:
            raise FeatureError(f"line {at} has {len(line)} position(s); a line needs at least 2",
                               code="invalid_geometry", pointer=at, **where)


def _flat(coords, depth):
    """The coordinates with every position cut to its first two numbers (2D)."""
    if depth == 0:
        return [float(coords[0]), float(coords[1])]
    return [_flat(c, depth - 1) for c in coords]


def _check_rings(gtype, coords, pointer, index, file):
    polygons = [coords] if gtype == "Polygon" else coords if gtype == "MultiPolygon" else []
    for p, rings in enumerate(polygons):
        for r, ring in enumerate(rings):
            where = pointer + (f"/{p}" if gtype == "MultiPolygon" else "") + f"/{r}"
            if len(ring) < 4:
                raise FeatureError(
                    f"ring {where} has {len(ring)} positions; a ring needs at least 4 "
                    "(Too few points in geometry component)", code="invalid_geometry",
                    index=index, file=file, field="geometry", pointer=where)
            if ring[0][:2] != ring[-1][:2]:
                raise FeatureError(f"ring {where} is not closed (first and last positions "
                                   "differ, RFC 7946 §3.1.6)", code="invalid_geometry",
                                   index=index, file=file, field="geometry", pointer=where)


def geometry_from_geojson(obj, *, index=None, file=None, max_vertices=20_000, warnings=None):
    """Check a raw GeoJSON geometry object and return a 2D shapely geometry.

    Parameters
    ----------
    obj : dict
        The ``geometry`` member, longitude/latitude (CRS84) unless the
        caller transforms afterwards.
    index, file : optional
        Where the feature came from, for error messages.
    max_vertices : int
        Cap counted *before* shapely builds anything (a 1 M-vertex ring costs
        ~1.7 s to construct).
    warnings : set, optional
        Receives non-fatal notes (Z dropped).

    Raises
    ------
    FeatureError
        ``invalid_geojson``, ``unsupported_geometry_type``, ``empty_geometry``,
        ``invalid_geometry``, ``invalid_coordinate`` or ``too_many_vertices``.
    """
    warnings = set() if warnings is None else warnings
    where = {"index": index, "file": file, "field": "geometry"}
    if obj is None:
        raise FeatureError("geometry is missing (null)", code="empty_geometry", **where)
    if not isinstance(obj, dict) or "type" not in obj:
        raise FeatureError("geometry must be an object with a 'type'", code="invalid_geojson",
                           **where)
    gtype = obj["type"]
    if not isinstance(gtype, str) or gtype not in GEOJSON_TYPES:
        raise FeatureError(f"unknown geometry type {gtype!r:.60}", code="invalid_geojson",
                           **where)
    if gtype == "GeometryCollection":
        raise FeatureError("GeometryCollection is not supported; send one (Multi)Polygon or "
                           "Point per feature", code="unsupported_geometry_type", **where)
    coords = obj.get("coordinates")
    if coords is None or coords == []:
        raise FeatureError("geometry has no coordinates", code="empty_geometry", **where)
    count = _check_positions(coords, _DEPTH[gtype], "/coordinates", index, file, warnings)
    if count > max_vertices:
        raise FeatureError(f"{count} vertices exceed the cap of {max_vertices}",
                           code="too_many_vertices", **where)
    _check_parts(gtype, coords, "/coordinates", index, file)
    _check_rings(gtype, coords, "/coordinates", index, file)
    # Positions of mixed or 4D dimension would make shapely fail: build from 2D ones.
    return shape({"type": gtype, "coordinates": _flat(coords, _DEPTH[gtype])})


def validate_geometries(geoms, layer, *, file=None, max_vertices=20_000, check_range=True):
    """Validate shapely geometries for ``layer``; return (geometries, warnings).

    Vectorised over the whole array; the first offending feature is raised
    with its index, and up to 20 others are listed in ``details['problems']``.

    Parameters
    ----------
    geoms : array-like of shapely geometries in EPSG:4326
    layer : {"parks", "grids", "enterprises", "hazards"}

    Returns
    -------
    numpy.ndarray
        2D geometries, Polygons promoted to MultiPolygons for MultiPolygon
        layers, exterior rings counter-clockwise (RFC 7946).
    list of str
        Warnings (e.g. Z dropped).
    """
    geoms = np.asarray(geoms, dtype=object)
    warnings = []
    allowed = LAYER_TYPES[layer]
    problems = []

    def fail(mask, code, reason_of):
        for i in np.flatnonzero(mask)[:20]:
            problems.append((int(i), code, reason_of(int(i))))

    missing = shapely.is_missing(geoms)
    fail(missing, "empty_geometry", lambda i: "geometry is missing")
    present = ~missing
    empty = np.zeros(len(geoms), bool)
    empty[present] = shapely.is_empty(geoms[present])
    fail(empty, "empty_geometry", lambda i: "geometry is empty")
    ok = present & ~empty
    type_names = np.array([None] * len(geoms), dtype=object)
    type_names[ok] = [g.geom_type for g in geoms[ok]]
    wrong = ok & ~np.isin(type_names, allowed)
    collection = wrong & (type_names == "GeometryCollection")
    fail(collection, "unsupported_geometry_type",
         lambda i: "GeometryCollection is not supported; use one geometry per feature")
    fail(wrong & ~collection, "wrong_geometry_type", lambda i: (
        f"{type_names[i]} is not accepted for {layer}; expected {' or '.join(allowed)}"))
    ok &= ~wrong
    if shapely.has_z(geoms[ok]).any():
        warnings.append("dropped Z values: gridmap stores 2D geometries")
        geoms = geoms.copy()
        geoms[ok] = shapely.force_2d(geoms[ok])
    counts = np.zeros(len(geoms), int)
    counts[ok] = shapely.get_num_coordinates(geoms[ok])
    fail(counts > max_vertices, "too_many_vertices",
         lambda i: f"{counts[i]} vertices exceed the cap of {max_vertices}")
    ok &= counts <= max_vertices
    if check_range and ok.any():
        bounds = np.full((len(geoms), 4), np.nan)
        bounds[ok] = shapely.bounds(geoms[ok])
        bad_range = ok & ((bounds[:, 0] < -180) | (bounds[:, 2] > 180)
                          | (bounds[:, 1] < -90) | (bounds[:, 3] > 90))
        fail(bad_range, "coordinate_out_of_range", lambda i: (
            f"coordinates outside longitude/latitude range (bounds {bounds[i].round(6).tolist()})"
            "; are they projected metres, or lat/lon swapped? Declare the CRS or use --crs"))
        ok &= ~bad_range
    invalid = np.zeros(len(geoms), bool)
    invalid[ok] = ~shapely.is_valid(geoms[ok])
    fail(invalid, "invalid_geometry",
         lambda i: f"invalid geometry: {shapely.is_valid_reason(geoms[i])}")
    if problems:
        problems.sort()
        index, code, reason = problems[0]
        raise FeatureError(reason, code=code, index=index, file=file, field="geometry",
                           problems=[{"feature": i, "code": c, "reason": r}
                                     for i, c, r in problems[:20]])
    if allowed[0] == "MultiPolygon":
        polys = shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON
        geoms = geoms.copy()
        geoms[polys] = [shapely.MultiPolygon([g]) for g in geoms[polys]]
    areal = np.isin(shapely.get_type_id(geoms),
                    [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON])
    if areal.any():
        geoms = geoms.copy()
        geoms[areal] = shapely.orient_polygons(geoms[areal])
    return geoms, warnings
