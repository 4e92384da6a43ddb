"""Pure geometry of grid edits: draw, reshape, split, merge, absorb slivers, retire.

Every function works on shapely geometries in the park's **metric CRS**
(metres, see :mod:`geodata.crs`), knows nothing about databases, and returns
new geometries without touching its inputs.  The service layer
(:mod:`geodata.services.edits`) projects stored grids into that CRS, calls
these functions, projects the results back to EPSG:4326 and re-runs the
coverage check before anything is written.

Cells are passed as ``dict`` of grid code to Polygon/MultiPolygon.  Results
keep every vertex of the input that is still on the result's boundary
(intersections and differences never move vertices), so edges shared with
neighbours that an edit does not touch stay identical.

Tolerances
----------
``tolerance_m`` (default 0.01 m, the coverage check's) is the width below
which a piece is numeric noise.  ``snap_m`` (default 0.5 m) is how far a
drawn vertex may be from a neighbour's edge or vertex and still be moved onto
it, so a hand-drawn edge along a neighbour does not leave a sliver.

Errors
------
:class:`geodata.errors.ValidationError` with codes ``empty_result``
(nothing left after clipping), ``split_line_does_not_cross``,
``not_adjacent``, ``would_leave_gap`` and ``unknown_grid``.
"""

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon, box
from shapely.ops import split as _split

from geodata.errors import ValidationError

__all__ = ["absorb_slivers", "best_receiver", "children_for", "clean", "draw", "is_narrow",
           "merge", "reshape", "retire", "shared_border", "split_by_line", "split_equal_area"]

TOLERANCE_M = 0.01
SNAP_M = 0.5
_QUAD_SEGS = 2  # erosion only decides "is anything left"


def clean(geometry):
    """Return the polygonal part of ``geometry`` as a MultiPolygon (possibly empty).

    Overlay results can carry lines and points where shapes touch; a grid is
    only its area.
    """
    if geometry is None or geometry.is_empty:
        return MultiPolygon()
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    polys = []
    for p in parts:
        polys.extend(shapely.get_parts(p) if p.geom_type == "MultiPolygon" else [p])
    polys = [p for p in polys if not p.is_empty and p.area > 0]
    return MultiPolygon(polys)


def is_narrow(geometry, width_m):
    """True when ``geometry`` is empty or narrower than ``width_m`` everywhere."""
    if geometry is None or geometry.is_empty or geometry.area == 0:
        return True
    return shapely.buffer(geometry, -width_m / 2, quad_segs=_QUAD_SEGS).is_empty


def _parts(geometry):
    return list(shapely.get_parts(clean(geometry)))


def _wide(geometry, width_m):
    """The parts of ``geometry`` wider than ``width_m`` (a MultiPolygon)."""
    return MultiPolygon([p for p in _parts(geometry) if not is_narrow(p, width_m)])


def _union(geoms):
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    return shapely.union_all(geoms) if geoms else MultiPolygon()


def shared_border(a, b, tolerance_m=TOLERANCE_M):
    """Length in metres of the border ``a`` and ``b`` share (within ``tolerance_m``)."""
    if a.is_empty or b.is_empty:
        return 0.0
    if not shapely.intersects(shapely.buffer(a, tolerance_m, quad_segs=_QUAD_SEGS), b):
        return 0.0
    near = shapely.buffer(shapely.boundary(b), tolerance_m, quad_segs=_QUAD_SEGS)
    return float(shapely.length(shapely.intersection(shapely.boundary(a), near)))


def best_receiver(piece, cells, candidates, tolerance_m):
    """Key of the candidate in ``cells`` sharing the longest border with ``piece`` (or None).

    Lengths are measured in metres (metric CRS) within ``tolerance_m``.
    """
    best, best_len = None, 0.0
    x0, y0, x1, y1 = piece.bounds
    for code in candidates:
        bx0, by0, bx1, by1 = cells[code].bounds
        if bx0 > x1 + tolerance_m or bx1 < x0 - tolerance_m or by0 > y1 + tolerance_m \
                or by1 < y0 - tolerance_m:
            continue
        length = shared_border(piece, cells[code], tolerance_m)
        if length > best_len + 1e-9:
            best, best_len = code, length
    return best


def _fill_narrow_holes(geometry, width_m):
    """Fill holes of ``geometry`` narrower than ``width_m`` (noise left by a union)."""
    polys = []
    for p in _parts(geometry):
        holes = [h for h in p.interiors if not is_narrow(Polygon(h), width_m)]
        polys.append(Polygon(p.exterior, holes))
    return MultiPolygon(polys)


def _snap(geometry, cells, park, snap_m):
    """Snap ``geometry``'s vertices to the cells' and the park's edges within ``snap_m``."""
    refs = [shapely.boundary(g) for g in cells if not g.is_empty]
    if park is not None:
        refs.append(shapely.boundary(park))
    if not refs or snap_m <= 0:
        return geometry
    snapped = shapely.snap(geometry, shapely.union_all(refs), snap_m)
    # Snapping can fold a ring on itself; the unsnapped shape is then the safer answer.
    return snapped if snapped.is_valid else geometry


def _snap_taking_nothing_more(geometry, old, cells, park, snap_m, tolerance_m):
    """:func:`_snap` a reshaped cell, unless snapping takes ground the shape did not.

    A vertex snapped to a neighbour's vertex up to ``snap_m`` away swings the
    edges that meet there: along a long edge that is a wedge of a grid the
    planner never touched (48 m² for a 0.23 m snap along 420 m), an overlap
    the edit would be refused for, or ground silently taken.  Snapping is
    meant to close the gaps the new shape leaves against edges it reaches,
    so the unsnapped shape is kept when the snapped one takes ground wider
    than ``tolerance_m`` from a cell the drawing did not reach into.
    """
    snapped = _snap(geometry, cells.values(), park, snap_m)
    if snapped is geometry:
        return geometry
    grown = clean(shapely.difference(snapped, _union([geometry, old])))
    if is_narrow(grown, tolerance_m):
        return snapped
    for g in cells.values():
        if not is_narrow(clean(shapely.intersection(grown, g)), tolerance_m) and is_narrow(
                clean(shapely.intersection(geometry, g)), tolerance_m):
            return geometry
    return snapped


def draw(drawn, park, cells, *, tolerance_m=TOLERANCE_M, snap_m=SNAP_M):
    """Turn what a planner drew into a grid that fills uncovered ground only.

    The drawing is snapped to neighbouring edges within ``snap_m``, clipped
    to the park and to the ground no cell covers, and grown over any sliver
    of uncovered ground narrower than ``snap_m`` it leaves against its
    neighbours, so no sliver is born; parts narrower than ``tolerance_m`` are
    dropped.

    Parameters
    ----------
    drawn : Polygon or MultiPolygon, metric CRS
    park : Polygon or MultiPolygon, metric CRS
    cells : sequence of Polygon or MultiPolygon, metric CRS
        The park's active level-1 grids.

    Returns
    -------
    MultiPolygon
        The new grid, metric CRS.

    Raises
    ------
    ValidationError
        ``empty_result`` when nothing uncovered is left inside the drawing.
    """
    cells = [g for g in cells if g is not None and not g.is_empty]
    free = clean(shapely.difference(park, _union(cells)))
    snapped = _snap(drawn, cells, park, snap_m)
    result = _wide(shapely.intersection(snapped, free), tolerance_m)
    if result.is_empty:
        raise ValidationError("the drawn grid covers no uncovered ground of the park",
                              code="empty_result",
                              details={"drawn_area_m2": round(float(drawn.area), 3)})
    rest = clean(shapely.difference(free, result))
    slivers = [p for p in _parts(rest) if is_narrow(p, snap_m)
               and shared_border(p, result, tolerance_m) > 0]
    if slivers:
        result = clean(_union([result, *slivers]))
    return _fill_narrow_holes(result, snap_m)


def reshape(cells, code, new_geometry, neighbours=None, *, park=None,
            tolerance_m=TOLERANCE_M, snap_m=SNAP_M):
    """Move the boundary of cell ``code``; its neighbours give or take the same ground.

    Ground the new shape gains is taken from the neighbours it overlaps;
    ground it loses goes, part by part, to the neighbour sharing the longest
    border with that part.  Only ``neighbours`` (default: every cell touching
    the old or new shape) give or take: gaining ground from any other cell
    leaves an overlap, and losing ground no neighbour borders leaves a gap,
    which the coverage check then refuses.

    Parameters
    ----------
    cells : dict of str to Polygon or MultiPolygon, metric CRS
    code : str
    new_geometry : Polygon or MultiPolygon, metric CRS
    neighbours : sequence of str, optional
    park : Polygon or MultiPolygon, optional
        Snap target besides the cells (vertices near the park edge land on it).

    Returns
    -------
    dict of str to MultiPolygon
        New geometries of the cells that change (``code`` included); a
        neighbour that loses all its ground maps to an empty MultiPolygon.
    """
    if code not in cells:
        raise ValidationError(f"no active grid {code}", code="unknown_grid",
                              details={"grid": code})
    old = cells[code]
    others = {c: g for c, g in cells.items() if c != code}
    new = clean(_snap_taking_nothing_more(new_geometry, old, others, park, snap_m,
                                          tolerance_m))
    if new.is_empty:
        raise ValidationError(f"the new shape of {code} is empty", code="empty_result",
                              details={"grid": code})
    if neighbours is None:
        near = shapely.buffer(_union([old, new]), tolerance_m, quad_segs=_QUAD_SEGS)
        neighbours = [c for c, g in others.items() if shapely.intersects(g, near)]
    neighbours = [c for c in neighbours if c in others]
    gained = clean(shapely.difference(new, old))
    lost = clean(shapely.difference(old, new))
    changed = {code: new}
    for c in neighbours:
        if shapely.area(shapely.intersection(others[c], gained)) > 0:
            changed[c] = clean(shapely.difference(others[c], gained))
    work = {**others, **changed}
    takers = {}
    for piece in _parts(lost):
        receiver = best_receiver(piece, work, neighbours, tolerance_m)
        if receiver is not None:
            takers.setdefault(receiver, []).append(piece)
    for c, pieces in takers.items():
        changed[c] = _fill_narrow_holes(clean(_union([work[c], *pieces])), tolerance_m)
    return changed


def split_by_line(geometry, line, *, tolerance_m=TOLERANCE_M, snap_m=SNAP_M):
    """Split a cell by a drawn line.

    The line's ends are extended by ``snap_m`` so a line drawn to the edge
    (not past it) still cuts.  Pieces narrower than ``tolerance_m`` join the
    neighbouring piece with the longest shared border.

    Returns
    -------
    list of MultiPolygon
        Two or more pieces, metric CRS, largest first.

    Raises
    ------
    ValidationError
        ``split_line_does_not_cross`` when the line does not cut the cell in two.
    """
    coords = np.asarray(line.coords, dtype=float)
    if len(coords) >= 2 and snap_m > 0:
        for end, nxt in ((0, 1), (-1, -2)):
            d = coords[end] - coords[nxt]
            n = np.hypot(*d)
            if n > 0:
                coords[end] = coords[end] + d / n * snap_m
    pieces = []
    for part in _parts(geometry):
        pieces.extend(_parts(_split(part, LineString(coords))))
    return _finish_pieces(pieces, geometry, tolerance_m, "the line does not cut the grid in two",
                          "split_line_does_not_cross")


def _finish_pieces(pieces, geometry, tolerance_m, message, error_code):
    keep = [p for p in pieces if not is_narrow(p, tolerance_m)]
    narrow = [p for p in pieces if is_narrow(p, tolerance_m)]
    if len(keep) < 2:
        raise ValidationError(message, code=error_code,
                              details={"area_m2": round(float(geometry.area), 3)})
    work = {i: MultiPolygon([p]) for i, p in enumerate(keep)}
    for p in narrow:
        k = best_receiver(p, work, list(work), tolerance_m)
        if k is not None:
            work[k] = clean(_union([work[k], p]))
    return sorted(work.values(), key=lambda g: -g.area)


def split_equal_area(geometry, n, *, angle_deg=None, tolerance_m=TOLERANCE_M):
    """Split a cell into ``n`` strips of equal area (within 0.01 %).

    Cuts are parallel lines across the cell's long axis (the long side of its
    minimum rotated rectangle) unless ``angle_deg`` (the direction of the
    axis along which strips follow each other, degrees counter-clockwise from
    east) is given.  The cell's own vertices are kept; only the cut lines
    add vertices.

    Returns
    -------
    list of MultiPolygon
        ``n`` pieces in order along the axis, metric CRS.
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValidationError(f"need at least 2 parts, got {n!r}", code="invalid_value",
                              details={"parts": n})
    geometry = clean(geometry)
    if angle_deg is None:
        rect = np.asarray(shapely.minimum_rotated_rectangle(geometry).exterior.coords)
        edges = np.diff(rect[:3], axis=0)
        longest = edges[np.argmax(np.hypot(edges[:, 0], edges[:, 1]))]
        angle_deg = float(np.degrees(np.arctan2(longest[1], longest[0])))
    centre = geometry.centroid
    local = affinity.rotate(geometry, -angle_deg, origin=centre)
    minx, miny, maxx, maxy = local.bounds
    pad = max(maxx - minx, maxy - miny)

    def strip(x0, x1):
        # Strips are built in the rotated frame and rotated back, so the cell itself
        # is never transformed and keeps its exact vertices.
        return affinity.rotate(box(x0, miny - pad, x1, maxy + pad), angle_deg, origin=centre)

    total = geometry.area
    cuts = [minx - pad]
    for k in range(1, n):
        lo, hi = cuts[-1], maxx
        target = total * k / n
        for _ in range(60):
            mid = (lo + hi) / 2
            if shapely.area(shapely.intersection(geometry, strip(minx - pad, mid))) < target:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-6:
                break
        cuts.append((lo + hi) / 2)
    cuts.append(maxx + pad)
    pieces = [clean(shapely.intersection(geometry, strip(a, b))) for a, b in zip(cuts, cuts[1:])]
    if any(p.is_empty for p in pieces):
        raise ValidationError(f"the grid cannot be cut into {n} strips", code="invalid_value",
                              details={"parts": n})
    return pieces


def merge(geometries, *, tolerance_m=TOLERANCE_M):
    """Merge adjacent cells into one.

    Raises
    ------
    ValidationError
        ``not_adjacent`` when the cells do not form one connected group
        (each must share a border longer than ``tolerance_m`` with another).
    """
    geoms = [clean(g) for g in geometries]
    if len(geoms) < 2:
        raise ValidationError("merge needs at least two grids", code="invalid_value")
    linked = {0}
    frontier = [0]
    while frontier:
        i = frontier.pop()
        for j in range(len(geoms)):
            # A corner touch measures about 2 x tolerance_m; a border is longer.
            if j not in linked and shared_border(geoms[i], geoms[j], tolerance_m) > 4 * tolerance_m:
                linked.add(j)
                frontier.append(j)
    if len(linked) < len(geoms):
        raise ValidationError("the grids to merge are not adjacent", code="not_adjacent",
                              details={"unlinked": sorted(set(range(len(geoms))) - linked)})
    return _fill_narrow_holes(clean(_union(geoms)), tolerance_m)


def retire(cells, code, to=None, *, tolerance_m=TOLERANCE_M):
    """Give a retiring cell's ground to its neighbours.

    Each part of the cell goes to ``to`` when given, else to the neighbour
    sharing the longest border with that part.

    Returns
    -------
    dict of str to MultiPolygon
        New geometries of the receiving cells.

    Raises
    ------
    ValidationError
        ``would_leave_gap`` when a part borders no other cell (or not ``to``).
    """
    if code not in cells:
        raise ValidationError(f"no active grid {code}", code="unknown_grid",
                              details={"grid": code})
    others = {c: g for c, g in cells.items() if c != code}
    candidates = [to] if to is not None else list(others)
    if to is not None and to not in others:
        raise ValidationError(f"no active grid {to}", code="unknown_grid", details={"grid": to})
    changed = {}
    for piece in _parts(cells[code]):
        receiver = best_receiver(piece, {**others, **changed}, candidates, tolerance_m)
        if receiver is None:
            raise ValidationError(
                f"retiring {code} would leave a gap of {piece.area:.2f} m²: that part borders "
                "no grid that could take it", code="would_leave_gap",
                details={"grid": code, "area_m2": round(piece.area, 3),
                         "problems": [{"problem": "gap", "area_m2": round(piece.area, 3)}]})
        changed[receiver] = clean(_union([changed.get(receiver, others[receiver]), piece]))
    return {c: _fill_narrow_holes(g, tolerance_m) for c, g in changed.items()}


def absorb_slivers(cells, *, park=None, max_width_m=1.0, max_area_m2=0.0,
                   tolerance_m=TOLERANCE_M):
    """Give slivers to the neighbour with the longest shared border.

    A sliver is a cell, a detached part of a cell, or (with ``park``) a piece
    of uncovered ground that is narrower than ``max_width_m`` everywhere or
    smaller than ``max_area_m2``.  Sliver cells are retired.

    Returns
    -------
    (dict of str to MultiPolygon, list of str, float)
        New geometries of the cells that change, the codes of sliver cells
        (retired, their ground given away) and the area (m²) of uncovered
        slivers filled.
    """
    def sliver(g):
        return is_narrow(g, max_width_m) or g.area < max_area_m2

    work = dict(cells)
    retired = [c for c, g in sorted(work.items(), key=lambda cg: cg[1].area) if sliver(g)]
    changed = {}
    for c in retired:
        piece = work.pop(c)
        receiver = best_receiver(piece, work, [k for k in work if k not in retired],
                                 tolerance_m)
        if receiver is not None:
            work[receiver] = changed[receiver] = clean(_union([work[receiver], piece]))
    for c, g in list(work.items()):
        parts = _parts(g)
        if len(parts) < 2:
            continue
        main = max(parts, key=lambda p: p.area)
        for piece in parts:
            if piece is main or not sliver(piece):
                continue
            receiver = best_receiver(piece, work, [k for k in work if k != c], tolerance_m)
            if receiver is not None:
                work[c] = changed[c] = clean(shapely.difference(work[c], piece))
                work[receiver] = changed[receiver] = clean(_union([work[receiver], piece]))
    filled = 0.0
    if park is not None:
        free = clean(shapely.difference(park, _union(work.values())))
        for piece in _parts(free):
            if is_narrow(piece, tolerance_m) or not sliver(piece):
                continue
            receiver = best_receiver(piece, work, list(work), tolerance_m)
            if receiver is not None:
                work[receiver] = changed[receiver] = clean(_union([work[receiver], piece]))
                filled += piece.area
    changed = {c: _fill_narrow_holes(g, tolerance_m) for c, g in changed.items()}
    return changed, retired, filled


def children_for(parent, old_children, *, tolerance_m=TOLERANCE_M, new_for_wide=False):
    """Sub-grids for a (new or reshaped) parent from the sub-grids that were there.

    Each old child keeps its part inside ``parent`` when that part is wider
    than ``tolerance_m``; ground of the parent no child covers goes to the
    child with the longest shared border (or, with ``new_for_wide``, becomes
    a new child when wider than ``tolerance_m``).  The result tiles
    ``parent`` exactly.

    Parameters
    ----------
    parent : Polygon or MultiPolygon, metric CRS
    old_children : dict of str to Polygon or MultiPolygon, metric CRS

    Returns
    -------
    list of (MultiPolygon, list of str)
        Each child's geometry and the old children it came from (empty for
        new ground).  Empty when ``old_children`` is empty.
    """
    if not old_children:
        return []
    kept = {}
    for c, g in old_children.items():
        piece = _wide(shapely.intersection(g, parent), tolerance_m)
        if not piece.is_empty:
            kept[c] = piece
    result = {c: (g, [c]) for c, g in kept.items()}
    leftover = clean(shapely.difference(parent, _union(kept.values())))
    fresh = 0
    for piece in _parts(leftover):
        geoms = {c: g for c, (g, _) in result.items()}
        if new_for_wide and not is_narrow(piece, max(tolerance_m, 1.0)):
            fresh += 1
            result[f"+{fresh}"] = (MultiPolygon([piece]), [])
            continue
        receiver = best_receiver(piece, geoms, list(geoms), tolerance_m)
        if receiver is None:
            if not geoms or not is_narrow(piece, tolerance_m):
                fresh += 1
                result[f"+{fresh}"] = (MultiPolygon([piece]), [])
            continue
        g, src = result[receiver]
        result[receiver] = (clean(_union([g, piece])), src)
    return [(_fill_narrow_holes(g, tolerance_m), src) for g, src in result.values()]
