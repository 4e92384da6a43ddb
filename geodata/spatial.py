"""Vectorised spatial assignment: which cell holds which site or point.

All inputs are shapely arrays in EPSG:4326.  Areas compared here are only
ranked against each other, so degrees² are fine; nothing is reported in
them.
"""

import numpy as np
import shapely


def assign_to_cells(geoms, cells, order=None):
    """Return, for each geometry, the index of the cell holding most of it (-1 for none).

    Polygons go to the cell with the largest shared area.  A point lying on
    a shared boundary touches several cells; it goes to the first of them in
    ``order`` (default: cell index), so the rule is deterministic and
    documented: callers pass the cells sorted by code, meaning the lowest
    grid code wins.

    Parameters
    ----------
    geoms, cells : array-like of shapely geometries (EPSG:4326)
    order : array-like of int, optional
        Rank of each cell for breaking ties; lower wins.
    """
    geoms = np.asarray(geoms, dtype=object)
    cells = np.asarray(cells, dtype=object)
    result = np.full(len(geoms), -1, dtype=np.int64)
    if len(geoms) == 0 or len(cells) == 0:
        return result
    rank = np.arange(len(cells)) if order is None else np.asarray(order)
    gi, ci = shapely.STRtree(cells).query(geoms, predicate="intersects")
    if len(gi) == 0:
        return result
    areal = shapely.get_dimensions(geoms[gi]) == 2
    share = np.zeros(len(gi))
    share[areal] = shapely.area(shapely.intersection(geoms[gi][areal], cells[ci][areal]))
    # Sort by geometry, then largest share, then lowest rank; keep the first per geometry.
    keys = np.lexsort((rank[ci], -share, gi))
    gi, ci = gi[keys], ci[keys]
    first = np.r_[True, gi[1:] != gi[:-1]]
    result[gi[first]] = ci[first]
    return result
