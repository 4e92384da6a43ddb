"""Hierarchical grid codes and the reading order that numbers grids.

A grid code follows the pattern of the national unit-grid codes: the park code,
then the level-1 grid's sequence number, then (for a sub-grid) the sequence
number within its parent, e.g. ``"FGKFQ-001"`` and ``"FGKFQ-001-01"``.
Sequence numbers follow the reading order of a map: rows from north to south,
west to east within a row.  The same rule numbers grids when planners split or
propose grids, so codes stay predictable.
"""

import re

import numpy as np
import shapely

from geodata.crs import STORAGE_SRID, metric_epsg_for, to_metric

_PARK_CODE = re.compile(r"^[A-Z0-9]{2,16}$")
_MAX_SUB = 99


def grid_code(park_code, seq, sub=None, *, width=3):
    """Return the code of a level-1 grid or of one of its sub-grids.

    Parameters
    ----------
    park_code : str
        Upper-case letters and digits, 2 to 16 characters (e.g. ``"FGKFQ"``).
    seq : int
        1-based sequence number of the level-1 grid within the park (1..999).
    sub : int, optional
        1-based sequence number of the sub-grid within its parent (1..99).
    width : int, optional
        Digits of the level-1 sequence number (default 3, so 1..999).  Parks
        with more level-1 grids (generated province-scale data) pass a wider
        one, so codes still sort in sequence order.

    Returns
    -------
    str
        ``"FGKFQ-001"`` or, with ``sub``, ``"FGKFQ-001-01"``.

    Raises
    ------
    ValueError
        If the park code is malformed or a sequence number is out of range.
    """
    if not isinstance(park_code, str) or not _PARK_CODE.match(park_code):
        raise ValueError(f"park code must be 2-16 upper-case letters/digits, got {park_code!r}")
    top = 10**width - 1
    if not _is_int(seq) or not 1 <= seq <= top:
        raise ValueError(f"grid sequence must be an integer in 1..{top}, got {seq!r}")
    code = f"{park_code}-{int(seq):0{width}d}"
    if sub is None:
        return code
    if not _is_int(sub) or not 1 <= sub <= _MAX_SUB:
        raise ValueError(f"sub-grid sequence must be an integer in 1..{_MAX_SUB}, got {sub!r}")
    return f"{code}-{int(sub):02d}"


def _is_int(value):
    # bool is an int subclass, but True as a sequence number is a bug upstream
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def reading_order(geometries, row_height_m=None, *, epsg=None):
    """Rank geometries in map reading order: rows north to south, west to east in a row.

    Rows are formed greedily from the northernmost remaining centroid: every
    centroid less than ``row_height_m`` south of a row's first centroid joins
    that row.  Ties are broken by the input position, so the result is
    deterministic.

    Parameters
    ----------
    geometries : array_like of shapely.Geometry
        Non-empty geometries.  Coordinates are metres in a projected CRS unless
        ``epsg`` says otherwise.
    row_height_m : float, optional
        Height of a row band in metres.  Defaults to the square root of the
        median geometry area (the side of a typical grid), or to 1 m for
        geometries without area.
    epsg : int, optional
        CRS of the coordinates.  ``4326`` (storage CRS, degrees) makes the
        centroids be projected first into the park's metric CRS chosen by
        :func:`geodata.crs.metric_epsg_for`; any other value or ``None`` means
        the coordinates are already metres.

    Returns
    -------
    numpy.ndarray of int
        ``rank[i]`` is the 0-based position of geometry ``i`` in reading order,
        so its sequence number is ``rank[i] + 1``.  ``numpy.argsort(rank)``
        lists the geometries in reading order.

    Raises
    ------
    ValueError
        If a geometry is missing or empty, or ``row_height_m`` is not positive.
    """
    geoms = np.asarray(geometries, dtype=object).ravel()
    if geoms.size == 0:
        return np.zeros(0, dtype=np.intp)
    if shapely.is_missing(geoms).any() or shapely.is_empty(geoms).any():
        raise ValueError("reading_order needs non-empty geometries")
    if epsg == STORAGE_SRID:
        geoms = to_metric(geoms, metric_epsg_for(shapely.union_all(shapely.envelope(geoms))))
    if row_height_m is None:
        median_area = float(np.median(shapely.area(geoms)))
        row_height_m = np.sqrt(median_area) if median_area > 0 else 1.0
    if not row_height_m > 0:
        raise ValueError(f"row_height_m must be positive, got {row_height_m!r}")

    centroids = shapely.get_coordinates(shapely.centroid(geoms))
    x, y = centroids[:, 0], centroids[:, 1]
    # stable sort: equal northings keep input order, so numbering is deterministic
    north_first = np.argsort(-y, kind="stable")
    row = np.empty(geoms.size, dtype=np.intp)
    row_id, row_top = -1, np.inf
    for i in north_first:
        if row_top - y[i] >= row_height_m or row_id < 0:
            row_id, row_top = row_id + 1, y[i]
        row[i] = row_id
    order = np.lexsort((np.arange(geoms.size), x, row))
    rank = np.empty(geoms.size, dtype=np.intp)
    rank[order] = np.arange(geoms.size)
    return rank
