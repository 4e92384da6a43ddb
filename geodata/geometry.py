"""Strict geometry validation for everything that enters the database.

Three entry points share one set of rules:

* :func:`geometry_from_geojson` checks a raw GeoJSON geometry object
  *before* shapely sees it, because shapely silently closes unclosed rings
  and pads short ones (RFC 7946 says rings MUST be closed);
* :func:`check_geometries` checks an array of shapely geometries from any
  file reader, vectorised, for what GEOS itself needs before any predicate:
  no empty geometry, part or ring, no ring under 4 points, no NaN, no
  GeometryCollection, at most ``max_vertices`` (GEOS crashes on some of these
  and calls a polygon with an EMPTY hole valid);
* :func:`validate_geometries` runs the same checks, then the layer's:
  type, dimension, longitude/latitude range and OGC validity.

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


#: JSON integers longer than this are refused while parsing: no field holds one (ids and
#: counts are at most 64 bits, coordinates are floats), and converting a long digit string
#: to an int takes time quadratic in its length.
MAX_JSON_DIGITS = 1000


class _Refused:
    """A JSON value parsing refuses, kept in its place until its pointer is known."""

    def __init__(self, code, reason, key=None):
        self.code, self.reason, self.key = code, reason, key


class _DuplicateKeys(dict):
    """A JSON object with a repeated member name (the parsed dict keeps the last value)."""


def _pointer_of(doc, target):
    """The JSON pointer parts of ``target`` (found by identity) in ``doc``; None if absent."""
    stack = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if value is target:
            return path
        if isinstance(value, dict):
            stack.extend((v, path + [str(k)]) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, path + [str(i)]) for i, v in reversed(list(enumerate(value))))
    return None


def parse_json(text, source=None):
    """Parse JSON text (str, or bytes in UTF-8/16/32) strictly.

    No ``NaN``/``Infinity``, no member name twice in one object (parsers
    disagree on which value wins, so a proxy and gridmap could read two
    different requests) and no integer of more than :data:`MAX_JSON_DIGITS`
    digits; truncation names the position; text that is not Unicode, or
    nested deeper than Python's parser can recurse (a body of 100 000 ``[``),
    is refused as unparseable too.  A refused value is named by its JSON
    pointer (``details.pointer``) and its top-level member (``details.field``).

    Raises
    ------
    BadRequestError
        ``invalid_json`` with line and column.
    FeatureError
        ``invalid_coordinate`` for NaN or Infinity, ``duplicate_key``,
        ``invalid_value`` for an integer too long.
    """
    where = f"{source}: " if source else ""
    refused = []

    def refuse(code, reason, marker=None):
        refused.append(marker or _Refused(code, reason))
        return refused[-1]

    def constant(name):
        return refuse("invalid_coordinate",
                      f"{name} is not a valid coordinate (JSON has no NaN or Infinity)")

    def integer(token):
        if len(token.lstrip("-")) > MAX_JSON_DIGITS:
            return refuse("invalid_value", f"an integer of {len(token.lstrip('-'))} digits; "
                          "no field holds more than 64 bits")
        return int(token)

    def members(pairs):
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        marker = _DuplicateKeys(value)
        marker.code, marker.reason, marker.key = (
            "duplicate_key", f"member {key[:80]!r} appears more than once in one object", key)
        return refuse(None, None, marker)

    try:
        doc = json.loads(text, parse_constant=constant, parse_int=integer,
                         object_pairs_hook=members)
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
    if refused:
        first = refused[0]
        path = (_pointer_of(doc, first) or []) + ([first.key] if first.key is not None else [])
        pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
        raise FeatureError(first.reason, code=first.code, file=source,
                           field=path[0] if path else None, pointer=pointer)
    return doc


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
        if not rings:
            where = pointer + (f"/{p}" if gtype == "MultiPolygon" else "")
            raise FeatureError(f"polygon {where} has no rings (an empty part)",
                               code="empty_geometry", index=index, file=file, field="geometry",
                               pointer=where)
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


def refuse_other_crs(obj, *, index=None, file=None, field="geometry"):
    """Refuse a legacy ``crs`` member of ``obj`` that names anything but lon/lat (CRS84).

    GeoJSON outside a file with its own ``crs`` is RFC 7946 longitude/latitude;
    a member naming another CRS was ignored, and its coordinates read as degrees.

    Raises
    ------
    FeatureError
        422 ``unsupported_crs``; ``unknown_crs`` (ValidationError) for a
        malformed member or a name pyproj does not know.
    """
    if not isinstance(obj, dict) or "crs" not in obj:
        return
    from geodata.crs import STORAGE_CRS, declared_crs

    if not declared_crs(obj["crs"], file).equals(STORAGE_CRS):
        raise FeatureError(f"declares the CRS {obj['crs']!r:.80}; GeoJSON here is longitude/"
                           "latitude (RFC 7946, EPSG:4326): send it in that CRS (files may "
                           "declare another one once, at their top)", code="unsupported_crs",
                           index=index, file=file, field=field)


def geometry_from_geojson(obj, *, index=None, file=None, max_vertices=20_000, warnings=None,
                          crs_checked=False):
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
    crs_checked : bool
        The caller has checked a ``crs`` member (a file's reader, against the
        file's CRS); otherwise one that is not CRS84 is refused
        (:func:`refuse_other_crs`).

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
    if not crs_checked:
        refuse_other_crs(obj, index=index, file=file)
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


class _Problems:
    """Collects ``(feature, code, reason)`` and raises the first as a FeatureError."""

    def __init__(self, file):
        self.file = file
        self.items = []

    def add(self, features, code, reason_of):
        """Record ``code`` for features (a boolean mask or indices); ``reason_of(i)`` says why."""
        features = np.asarray(features)
        if features.dtype == bool:
            features = np.flatnonzero(features)
        for i in features[:20]:
            self.items.append((int(i), code, reason_of(int(i))))

    def raise_any(self):
        """Raise the lowest feature's problem, listing up to 20 in ``details['problems']``."""
        if self.items:
            self.items.sort()
            index, code, reason = self.items[0]
            raise FeatureError(reason, code=code, index=index, file=self.file, field="geometry",
                               problems=[{"feature": i, "code": c, "reason": r}
                                         for i, c, r in self.items[:20]])


def _ordinal(owner):
    """Position of each element among its owner's elements (``owner`` sorted, as shapely gives)."""
    return np.arange(len(owner)) - np.searchsorted(owner, owner)


def _first_bad(owner, bad, *keys):
    """``{feature: keys of its first bad element}`` for elements owned by features."""
    features, first = np.unique(owner[bad], return_index=True)
    return {f: tuple(int(k[bad][j]) for k in keys) for f, j in zip(features.tolist(), first)}


def _structure(geoms, problems, max_vertices):
    """Check what GEOS needs before any predicate; return the mask of sound features.

    Refuses missing and empty geometries, GeometryCollections, more than
    ``max_vertices`` vertices, empty parts, empty rings, rings of fewer than
    4 points and non-finite coordinates.  Only structural calls are used
    (``is_empty``, ``get_parts``, ``get_rings``, ``get_num_coordinates``,
    ``get_coordinates``): GEOS 3.14 calls a polygon with an EMPTY interior
    ring valid, yet ``equals`` and ``covered_by`` on it crash the process.
    Unclosed rings never get here: GEOS refuses to build them, and the file
    readers report that per feature.
    """
    n = len(geoms)
    missing = shapely.is_missing(geoms)
    problems.add(missing, "empty_geometry", lambda i: "geometry is missing")
    empty = np.zeros(n, bool)
    empty[~missing] = shapely.is_empty(geoms[~missing])
    problems.add(empty, "empty_geometry", lambda i: "geometry is empty")
    ok = ~missing & ~empty
    type_ids = np.full(n, -1)
    type_ids[ok] = shapely.get_type_id(geoms[ok])
    collection = type_ids == shapely.GeometryType.GEOMETRYCOLLECTION
    problems.add(collection, "unsupported_geometry_type",
                 lambda i: "GeometryCollection is not supported; use one geometry per feature")
    ok &= ~collection
    counts = np.zeros(n, int)
    counts[ok] = shapely.get_num_coordinates(geoms[ok])
    problems.add(counts > max_vertices, "too_many_vertices",
                 lambda i: f"{counts[i]} vertices exceed the cap of {max_vertices}")
    ok &= counts <= max_vertices
    multi = np.isin(type_ids, [shapely.GeometryType.MULTIPOINT,
                               shapely.GeometryType.MULTILINESTRING,
                               shapely.GeometryType.MULTIPOLYGON])

    idx = np.flatnonzero(ok)
    parts, owner = shapely.get_parts(geoms[idx], return_index=True)
    part_no, owner = _ordinal(owner), idx[owner]
    empty_part = shapely.is_empty(parts)
    bad = _first_bad(owner, empty_part, part_no)
    problems.add(list(bad), "empty_geometry", lambda i: f"part {bad[i][0]} is empty")

    polygons = np.flatnonzero(~empty_part & (shapely.get_type_id(parts)
                                             == shapely.GeometryType.POLYGON))
    rings, ring_of = shapely.get_rings(parts[polygons], return_index=True)
    ring_no, ring_of = _ordinal(ring_of), polygons[ring_of]
    sizes = shapely.get_num_coordinates(rings)

    def ring(found, i):
        part, number, size = found[i]
        name = "exterior ring" if number == 0 else f"interior ring {number}"
        return (f"part {part}, " if multi[i] else "") + name, size

    empty_ring = _first_bad(owner[ring_of], sizes == 0, part_no[ring_of], ring_no, sizes)
    problems.add(list(empty_ring), "empty_geometry",
                 lambda i: f"{ring(empty_ring, i)[0]} is empty")
    short = _first_bad(owner[ring_of], (sizes > 0) & (sizes < 4), part_no[ring_of], ring_no,
                       sizes)
    problems.add(list(short), "invalid_geometry", lambda i: "{} has {} points; a ring needs at "
                 "least 4 (Too few points in geometry component)".format(*ring(short, i)))

    coords, vertex_of = shapely.get_coordinates(geoms[idx], return_index=True)
    nonfinite = np.unique(idx[vertex_of[~np.isfinite(coords).all(axis=1)]])
    problems.add(nonfinite, "invalid_coordinate",
                 lambda i: "non-finite coordinate (NaN or infinity)")
    ok[owner[empty_part]] = False
    ok[owner[ring_of[sizes < 4]]] = False
    ok[nonfinite] = False
    return ok


def check_geometries(geoms, *, file=None, max_vertices=20_000):
    """Refuse geometries that no layer accepts, before any GEOS predicate sees them.

    The layer-independent part of :func:`validate_geometries`, run by every
    file reader (:func:`geodata.formats.read_layer`) on what it read.

    Raises
    ------
    FeatureError
        ``empty_geometry``, ``unsupported_geometry_type``, ``invalid_geometry``,
        ``invalid_coordinate`` or ``too_many_vertices``, naming the feature.
    """
    problems = _Problems(file)
    _structure(np.asarray(geoms, dtype=object), problems, max_vertices)
    problems.raise_any()


def validate_geometries(geoms, layer, *, file=None, max_vertices=20_000, check_range=True,
                        types=None):
    """Validate shapely geometries for ``layer``; return (geometries, warnings).

    Vectorised over the whole array; the first offending feature is raised
    with its index, and up to 20 others are listed in ``details['problems']``.

    Parameters
    ----------
    geoms : array-like of shapely geometries in EPSG:4326
    layer : {"parks", "grids", "enterprises", "hazards"} or str
        The layer, or (with ``types``) the name used in messages.
    types : tuple of str, optional
        The accepted types, the first stored, instead of the layer's.

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
    allowed = types or LAYER_TYPES[layer]
    problems = _Problems(file)
    ok = _structure(geoms, problems, max_vertices)
    type_names = np.array([None] * len(geoms), dtype=object)
    type_names[ok] = [g.geom_type for g in geoms[ok]]
    wrong = ok & ~np.isin(type_names, allowed)
    problems.add(wrong, "wrong_geometry_type", lambda i: (
        f"{type_names[i]} is not accepted for {layer}; expected {' or '.join(allowed)}"))
    ok &= ~wrong
    has_z, has_m = shapely.has_z(geoms[ok]), shapely.has_m(geoms[ok])
    if has_z.any():
        warnings.append("dropped Z values: gridmap stores 2D geometries")
    if has_m.any():  # WKT "POLYGON M" from a CAD export; PostGIS refuses M in a 2D column
        warnings.append("dropped M (measure) values: gridmap stores 2D geometries")
    if has_z.any() or has_m.any():
        geoms = geoms.copy()
        geoms[ok] = shapely.force_2d(geoms[ok])
    if check_range and ok.any():
        bounds = np.full((len(geoms), 4), np.nan)
        bounds[ok] = shapely.bounds(geoms[ok])
        bad_range = ok & ((bounds[:, 0] < -180) | (bounds[:, 2] > 180)
                          | (bounds[:, 1] < -90) | (bounds[:, 3] > 90))
        problems.add(bad_range, "coordinate_out_of_range", lambda i: (
            f"coordinates outside longitude/latitude range (bounds {rounded(bounds[i], 6)})"
            "; are they projected metres, or lat/lon swapped? Declare the CRS or use --crs"))
        ok &= ~bad_range
    invalid = np.zeros(len(geoms), bool)
    invalid[ok] = ~shapely.is_valid(geoms[ok])
    problems.add(invalid, "invalid_geometry",
                 lambda i: f"invalid geometry: {shapely.is_valid_reason(geoms[i])}")
    problems.raise_any()
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


def rounded(values, digits):
    """``values`` as a list of floats rounded to ``digits`` for a message.

    Python's ``round`` leaves a float too large to scale as it is, where
    NumPy's overflows (a warning, so a 500 under ``-W error``) on a
    coordinate such as 1.7e305.
    """
    return [round(float(v), digits) for v in values]


def geometry_member(value, field, types):
    """The GeoJSON geometry sent as member ``field`` of a JSON body, checked as a file's is.

    One definition for every JSON surface (hazard and visit ``location``, the
    edit API's ``geometry`` and ``line``): :func:`geometry_from_geojson`, then
    :func:`validate_geometries` (type, range, OGC validity).  A body has no
    channel for warnings, so Z/M is refused (``unsupported_dimension``, as
    the OpenAPI document says) where files drop it with a warning.

    Parameters
    ----------
    value : object
        The member's parsed JSON value.
    field : str
        The member's name, given as ``details.field`` and ``details.pointer``.
    types : tuple of str
        The accepted geometry types.

    Raises
    ------
    FeatureError
        422 with the codes of :func:`geometry_from_geojson` and
        :func:`validate_geometries`, or ``unsupported_dimension``.
    """
    warnings = set()
    try:
        geom = geometry_from_geojson(value, warnings=warnings)
        if warnings:
            raise FeatureError("positions have 3 or 4 numbers; send [lon, lat] (gridmap stores "
                               "2D geometries)", code="unsupported_dimension")
        geoms, _ = validate_geometries([geom], field, types=types)
    except FeatureError as exc:
        extra = {k: v for k, v in exc.details.items()
                 if k not in ("file", "feature", "field", "reason", "pointer", "problems")}
        pointer = f"/{field}" + (exc.details.get("pointer") or "")
        raise FeatureError(exc.reason, code=exc.code, field=field, pointer=pointer,
                           **extra) from None
    return geoms[0]
