"""One noded, fixed-precision arrangement of the grids an edit touches (EPSG:4326).

An edit computes each changed grid's new shape in the park's metric CRS
(:mod:`geodata.editing`).  Those shapes, projected back to EPSG:4326, agree
with each other and with the stored grids only up to floating-point noise:
overlaid one by one they leave 1e-6 m² parts, self-touching rings and
neighbours that share a border without sharing its vertices.  This module
turns them into grids that share vertices exactly:

1. the boundaries of every involved shape (the changed and retired grids as
   stored, the proposed shapes, the parent that must be tiled) are noded
   together by snap-rounding (GEOS OverlayNG, ``grid_size``) onto a grid of
   :data:`GRID_SIZE_DEG` degrees and polygonised into faces;
2. each face goes to the proposed shape covering most of it; a face that
   was ground before (or lies in the parent) but that no proposal covers is
   noise when narrower than ``tolerance_m`` and goes to the neighbour
   sharing its longest border, else it stays uncovered (a real gap, which
   the coverage check refuses);
3. a part of a result smaller than :data:`MIN_PART_M2` m² or narrower than
   ``tolerance_m`` (besides its largest part) goes to the neighbour sharing
   its longest border: no grid gains a sliver part;
4. each result is the coverage union of its faces, so two neighbours get
   identical vertices along their border, and every rounded vertex that is
   a stored vertex rounded gets its stored coordinates back, so edges shared
   with grids the edit does not touch stay bit-identical.

Why degrees, and why 1e-9: the arrangement is computed in the storage CRS on
the stored coordinates, so what is stored *is* the noded arrangement; noding
in metres and projecting back would move every new vertex by the
projection's rounding and undo the snap-rounding guarantee.  1e-9° is about
0.1 mm (0.11 mm of latitude, 0.09 mm of longitude at 34°N): a hundred times
finer than the coverage tolerance (1 cm), as fine as the 9 decimals of the
GeoJSON reports, and 1e5 times coarser than a double's resolution at these
magnitudes, which is what makes the overlay robust.

Every function is pure: no database.
"""

import numpy as np
import shapely
from shapely.geometry import MultiPolygon

from geodata.crs import to_metric

__all__ = ["GRID_SIZE_DEG", "MIN_PART_M2", "tile"]

GRID_SIZE_DEG = 1e-9
MIN_PART_M2 = 1.0
_QUAD_SEGS = 2


def _polygons(geometry):
    """Polygon parts of ``geometry`` (an overlay result may hold lines and points)."""
    if geometry is None or geometry.is_empty:
        return []
    return [p for p in shapely.get_parts(shapely.get_parts(geometry))
            if p.geom_type == "Polygon" and not p.is_empty]


def _rounded(geometry, grid_size):
    if not geometry.is_valid:
        # Only computed shapes get here (input is validated before any edit): a ring that
        # projection noise made touch or cross itself.  GEOS can fail to snap-round those.
        geometry = MultiPolygon(_polygons(shapely.make_valid(geometry, method="structure")))
    return shapely.set_precision(geometry, grid_size)


def _narrow(metric, width_m):
    """True where a metric polygon is narrower than ``width_m`` everywhere."""
    return shapely.is_empty(shapely.buffer(metric, -width_m / 2, quad_segs=_QUAD_SEGS))


class _Faces:
    """Faces of the noded linework of some EPSG:4326 shapes, and who owns each."""

    def __init__(self, shapes, grid_size):
        lines = [shapely.boundary(g) for g in shapes if g is not None and not g.is_empty]
        noded = shapely.union_all(lines, grid_size=grid_size)
        self.faces = np.asarray(list(shapely.get_parts(shapely.polygonize([noded]))),
                                dtype=object)
        self.owner = np.full(len(self.faces), None, dtype=object)
        self.area = shapely.area(self.faces)
        self.tree = shapely.STRtree(self.faces)
        self._shared = {}

    def cover(self, geometry):
        """Fraction of each face's area inside ``geometry``."""
        out = np.zeros(len(self.faces))
        if geometry is None or geometry.is_empty:
            return out
        idx = self.tree.query(geometry)
        if len(idx):
            inter = shapely.area(shapely.intersection(self.faces[idx], geometry))
            out[idx] = inter / np.where(self.area[idx] > 0, self.area[idx], 1.0)
        return out

    def shared(self, i):
        """``{face j: shared border length (degrees)}`` of face ``i``'s neighbours."""
        if i not in self._shared:
            near = [j for j in self.tree.query(self.faces[i]) if j != i]
            lengths = shapely.length(shapely.intersection(
                shapely.boundary(self.faces[i]), shapely.boundary(self.faces[near])))
            self._shared[i] = {j: float(n) for j, n in zip(near, lengths) if n > 0}
        return self._shared[i]

    def best_neighbour(self, faces, exclude=None):
        """Owner sharing the longest border with the group of ``faces`` (or None)."""
        group = set(faces)
        lengths = {}
        for i in group:
            for j, n in self.shared(i).items():
                owner = self.owner[j]
                if j not in group and owner is not None and owner != exclude:
                    lengths[owner] = lengths.get(owner, 0.0) + n
        return max(lengths, key=lengths.get) if lengths else None

    def union(self, key):
        """Coverage union of ``key``'s faces: a MultiPolygon keeping every node."""
        mine = self.faces[self.owner == key]
        if not len(mine):
            return MultiPolygon()
        return MultiPolygon(_polygons(shapely.coverage_union_all(mine)))


def tile(proposals, ground, *, epsg, tolerance_m, others=(), keep=(), clip=False,
         grid_size=GRID_SIZE_DEG, min_part_m2=MIN_PART_M2):
    """Snap-round proposed grid shapes into one arrangement that shares vertices exactly.

    Parameters
    ----------
    proposals : dict of key to Polygon or MultiPolygon, EPSG:4326
        Proposed new shapes, in priority order (a face two proposals cover
        equally goes to the first).
    ground : sequence of Polygon or MultiPolygon, EPSG:4326
        Ground the results must cover between them: the stored shapes of the
        grids the edit changes or retires, and the parent they tile.
    epsg : int
        Metric CRS where widths and areas are measured.
    tolerance_m : float
        Metres: uncovered ground narrower than this is noise and is given to
        a neighbour; so are result parts narrower than this.
    others : sequence of Polygon or MultiPolygon, EPSG:4326
        Grids of the same parent the edit leaves as they are: ground they hold
        is not uncovered.
    keep : sequence of Polygon or MultiPolygon, EPSG:4326
        Shapes whose vertices are kept bit-identical where the result has them
        (every stored shape in ``ground`` and ``others`` is kept anyway).
    clip : bool
        Results lie inside ``ground`` (sub-grids inside their parent); else
        they may stick out, and the coverage check says where.
    grid_size : float
        Degrees; the precision grid of the arrangement (see the module notes).
    min_part_m2 : float
        A result part smaller than this (besides the largest) is given away.

    Returns
    -------
    dict of key to MultiPolygon, EPSG:4326
        One entry per proposal (possibly empty).
    """
    keys = list(proposals)
    stored = _stored_vertices([*ground, *others, *keep], grid_size)
    # Snap-rounded inputs are valid (set_precision's default) and on the arrangement's
    # grid, even where projecting a metric result back made a ring touch itself.
    proposals = {k: _rounded(g, grid_size) for k, g in proposals.items()}
    ground = [_rounded(g, grid_size) for g in ground if g is not None and not g.is_empty]
    others = [_rounded(g, grid_size) for g in others if g is not None and not g.is_empty]
    arr = _Faces([*proposals.values(), *ground, *others], grid_size)
    if not len(arr.faces):
        return {k: MultiPolygon() for k in keys}
    was_ground = arr.cover(shapely.union_all(ground)) if ground else np.zeros(len(arr.faces))
    best = np.zeros(len(arr.faces))
    if clip:
        best[was_ground <= 0.5] = 2.0  # no proposal can take a face outside
    for key in keys:
        share = arr.cover(proposals[key])
        take = share > np.maximum(best, 0.5 - 1e-9)
        arr.owner[take] = key
        best = np.maximum(best, share)
    taken = arr.cover(shapely.union_all(others)) if others else np.zeros(len(arr.faces))
    metric = to_metric(arr.faces, epsg)
    narrow = _narrow(metric, tolerance_m)
    # Uncovered noise: ground no proposal and no kept grid holds, narrower than the tolerance.
    loose = [i for i in np.flatnonzero((arr.owner == None) & (was_ground > 0.5)  # noqa: E711
                                       & (taken <= 0.5)) if narrow[i]]
    while loose:
        placed = False
        for i in list(loose):
            receiver = arr.best_neighbour([i])
            if receiver is not None:
                arr.owner[i] = receiver
                loose.remove(i)
                placed = True
        if not placed:
            break
    _give_away_slivers(arr, keys, metric, tolerance_m, min_part_m2)
    rounded = {k: arr.union(k) for k in keys}
    exact = {k: _restore_vertices(g, stored) for k, g in rounded.items()}
    # The stored coordinates are off the grid by up to half a cell; in the rare case that
    # puts a ring across another, the rounded (valid) arrangement is kept for every result
    # so that neighbours still share their vertices.
    if all(g.is_valid for g in exact.values()):
        return exact
    return rounded


def _give_away_slivers(arr, keys, metric, tolerance_m, min_part_m2):
    """Give each result part smaller than ``min_part_m2`` (besides its largest) to a neighbour."""
    area_m2 = shapely.area(metric)
    for key in keys:
        mine = np.flatnonzero(arr.owner == key)
        if len(mine) < 2:
            continue
        union = arr.union(key)
        parts = list(shapely.get_parts(union))
        if len(parts) < 2:
            continue
        points = shapely.point_on_surface(arr.faces[mine])
        groups = [[int(i) for i, pt in zip(mine, points) if part.covers(pt)] for part in parts]
        sizes = [float(area_m2[g].sum()) for g in groups]
        largest = int(np.argmax(sizes))
        for n, group in enumerate(groups):
            if n == largest or not group:
                continue
            part_metric = shapely.union_all(metric[group])
            if sizes[n] >= min_part_m2 and not _narrow(part_metric, tolerance_m):
                continue
            receiver = arr.best_neighbour(group, exclude=key)
            if receiver is not None:
                arr.owner[group] = receiver


def _stored_vertices(shapes, grid_size):
    """``{rounded (x, y): stored (x, y)}`` of every vertex of ``shapes``."""
    if not shapes:
        return {}
    coords = shapely.get_coordinates(np.asarray(shapes, dtype=object))
    # set_precision rounds exactly as the snap-rounding noder does (one PrecisionModel).
    rounded = shapely.get_coordinates(shapely.set_precision(
        shapely.points(coords), grid_size, mode="pointwise"))
    return {tuple(r): tuple(c) for r, c in zip(rounded.tolist(), coords.tolist())}


def _restore_vertices(geometry, stored):
    """``geometry`` with every rounded stored vertex put back on its stored coordinates."""
    if geometry.is_empty or not stored:
        return geometry

    def back(xy):
        return np.array([stored.get(p, p) for p in map(tuple, xy.tolist())], dtype=float)

    return shapely.transform(geometry, back)
