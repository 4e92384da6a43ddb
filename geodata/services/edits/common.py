"""What every edit shares.

The outcome and preview types, the park's state after the lock, the plan an
operation builds, and the checks of drawn input.
"""

from dataclasses import dataclass, field

import numpy as np
import shapely
import sqlalchemy as sa

from geodata import attributes as attr
from geodata import editing
from geodata.crs import to_metric
from geodata.errors import NotFoundError, ValidationError
from geodata.models import Grid, GridEdit
from geodata.models.base import to_shapes
from geodata.services.parks import park_boundary

TOLERANCE_M = editing.TOLERANCE_M
SNAP_M = editing.SNAP_M


@dataclass
class EditOutcome:
    """What an edit did.

    Attributes
    ----------
    edit : GridEdit
        The stored edit (``id``, ``park_version`` for the next ``If-Match``).
    added, reshaped, retired : list of str
        Grid codes.
    coverage : dict
        ``valid``, ``coverage_ratio`` and the counts and areas (m²) of gaps,
        overlaps and outside parts after the edit.
    problems : list of dict
        New problems accepted with ``allow_problems`` (else empty).
    warnings : list of str
    grids : dict of str to dict
        ``version``, ``area_m2`` and ``geometry`` (GeoJSON, EPSG:4326) of
        every grid the edit added or reshaped.
    """

    edit: GridEdit
    added: list
    reshaped: list
    retired: list
    coverage: dict
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    grids: dict = field(default_factory=dict)

    def to_dict(self):
        """Return a JSON-ready dict (what an API would answer)."""
        return {"edit": self.edit.id, "operation": self.edit.operation,
                "park_version": self.edit.park_version, "added": self.added,
                "reshaped": self.reshaped, "retired": self.retired, "coverage": self.coverage,
                "problems": self.problems, "warnings": self.warnings, "grids": self.grids}

    def summary(self):
        """One line for the CLI."""
        parts = [f"edit {self.edit.id} ({self.edit.operation})"]
        for label, codes in (("added", self.added), ("reshaped", self.reshaped),
                             ("retired", self.retired)):
            if codes:
                parts.append(f"{label} {', '.join(codes)}")
        state = "coverage valid" if self.coverage["valid"] else "coverage has problems"
        return "; ".join(parts) + f"; {state}"


@dataclass
class Preview:
    """What an edit would do (``--diff``), computed without writing anything.

    ``problems`` are the new coverage problems it would bring (the edit
    would be refused unless they are allowed); ``report`` is the full
    :class:`~geodata.coverage.CoverageReport` after the edit; ``grids`` maps
    each added or reshaped code to its shape after the edit (a shapely
    MultiPolygon, EPSG:4326), exactly as it would be stored.
    """

    added: list
    reshaped: list
    retired: list
    coverage: dict
    problems: list
    warnings: list
    unchanged: int
    report: object = None
    grids: dict = field(default_factory=dict)

    def to_dict(self):
        """JSON-ready dict (problem geometries as GeoJSON)."""
        return {"added": self.added, "reshaped": self.reshaped, "retired": self.retired,
                "unchanged": self.unchanged, "coverage": self.coverage,
                "problems": self.problems, "warnings": self.warnings}


class _State:
    """The park's active grids after the lock, in EPSG:4326 and in the metric CRS."""

    def __init__(self, session, park, tolerance_m):
        self.session, self.park, self.epsg = session, park, park.metric_epsg
        self.tolerance_m = tolerance_m
        every = session.execute(
            sa.select(Grid).where(Grid.park_id == park.id).order_by(Grid.code)
            .execution_options(populate_existing=True)).scalars().all()
        self.every = {g.code: g for g in every}
        self.grids = [g for g in every if g.active_to is None]
        self.by_code = {g.code: g for g in self.grids}
        code_of = {g.id: g.code for g in every}
        self.parent = {g.code: code_of.get(g.parent_id) for g in self.grids}
        self.children = {}
        for code, parent in self.parent.items():
            if parent is not None:
                self.children.setdefault(parent, []).append(code)
        geoms = to_shapes([g.geom for g in self.grids])
        self.geom = dict(zip(self.by_code, geoms))
        self.metric = dict(zip(self.by_code, _valid_metric(geoms, self.epsg)))
        self.park4326 = park_boundary(park)
        self.park_metric = _valid_metric([self.park4326], self.epsg)[0]

    def grid(self, code):
        """The active grid ``code`` (normalised), or 404."""
        key = attr.code(code)
        if key not in self.by_code:
            raise NotFoundError(f"no active grid {code!r} in park {self.park.code}",
                                details={"park": self.park.code, "grid": code})
        return key

    def siblings(self, code):
        """Metric geometries of the active grids with the same parent as ``code``."""
        parent = self.parent[code]
        return {c: self.metric[c] for c in self.by_code if self.parent[c] == parent}

    def descendants(self, code):
        """Codes of every active grid below ``code``."""
        out = []
        for child in self.children.get(code, []):
            out += [child, *self.descendants(child)]
        return out


def _valid_metric(geoms, epsg):
    """Stored (valid) EPSG:4326 shapes in the metric CRS, valid there too.

    A ring that touches itself or its hole at a vertex is valid in degrees but
    can cross itself by ~1e-10 m once projected; repairing that for the metric
    work changes nothing measurable and the stored shape is never touched.
    """
    if not len(geoms):
        return []
    metric = to_metric(np.asarray(geoms, dtype=object), epsg)
    bad = ~shapely.is_valid(metric)
    metric[bad] = [editing.clean(shapely.make_valid(g, method="structure")) for g in metric[bad]]
    return list(metric)


@dataclass
class _New:
    key: str
    geom: object  # metric CRS
    parent: object  # a stored code, another _New's key, or None
    level: int
    kind: str
    sources: list
    relation: str
    name: str = None
    code: str = None  # a code chosen by the planner (layer import); else numbered


class _Plan:
    """Geometry changes of one edit, built by an operation and applied by :func:`_run`."""

    def __init__(self, state):
        self.state = state
        self.updates = {}  # code -> metric geometry
        self.exact = {}  # code -> EPSG:4326 geometry (restores: no projection)
        self.retire = set()
        self.reactivate = {}  # code -> EPSG:4326 geometry
        self.new = []
        self.links = []  # (existing code, source code, relation): lineage of kept grids
        self.warnings = []
        self.keep = set()  # codes the edit must not retire (the grid a reshape reshapes)

    def add(self, geom, parent, level, kind, sources, relation, name=None, code=None):
        key = f"new{len(self.new) + 1}"
        self.new.append(_New(key, editing.clean(geom), parent, level, kind, list(sources),
                             relation, name, code))
        return key

    def retire_tree(self, code):
        self.retire.add(code)
        self.retire.update(self.state.descendants(code))

    def update(self, code, geom):
        """Change ``code`` in place; refit its sub-grids; retire it when nothing is left."""
        geom = editing.clean(geom)
        if editing.is_narrow(geom, self.state.tolerance_m):
            self.retire_tree(code)
            return
        self.updates[code] = geom
        self._refit(code, geom)

    def _refit(self, code, geom):
        kids = {c: self.state.metric[c] for c in self.state.children.get(code, [])}
        if not kids:
            return
        kept = set()
        level = self.state.by_code[code].level + 1
        for piece, sources in editing.children_for(geom, kids,
                                                   tolerance_m=self.state.tolerance_m):
            if sources:
                kept.add(sources[0])
                if not _same(piece, kids[sources[0]]):
                    self.update(sources[0], piece)
            else:
                self.add(piece, code, level, "workshop", [code], "refit")
        for c in kids:
            if c not in kept:
                self.retire_tree(c)

    def replace(self, old_codes, pieces, relation, *, kind=None, new_for_wide=False):
        """Retire ``old_codes`` and create one grid per piece; sub-grids are redistributed."""
        first = self.state.by_code[old_codes[0]]
        parent = self.state.parent[old_codes[0]]
        kinds = {self.state.by_code[c].kind for c in old_codes}
        kind = kind or (kinds.pop() if len(kinds) == 1 else "area")
        kids = {}
        childless = []
        for c in old_codes:
            mine = self.state.children.get(c, [])
            kids.update({k: self.state.metric[k] for k in mine})
            if not mine:
                childless.append(c)
            self.retire_tree(c)
        keys = []
        for piece in pieces:
            piece_sources = [c for c in old_codes
                             if shapely.area(shapely.intersection(self.state.metric[c], piece))
                             > self.state.tolerance_m ** 2]
            key = self.add(piece, parent, first.level, kind, piece_sources or old_codes,
                           relation)
            keys.append(key)
            if not kids:
                continue
            for sub, sources in editing.children_for(piece, kids, new_for_wide=new_for_wide,
                                                     tolerance_m=self.state.tolerance_m):
                self.add(sub, key, first.level + 1, "workshop", sources or childless,
                         "reparent" if sources else relation)
        return keys


def _same(a, b):
    return a.equals(b) if a.geom_type == b.geom_type else shapely.equals(a, b)


def _metric(state, geom):
    """``geom`` (EPSG:4326) in the park's metric CRS, valid there too (:func:`_valid_metric`).

    A drawn or recorded shape valid in degrees can cross itself by a hair once
    projected (a vertex 1 mm from an edge 200 m long); GEOS then fails on it
    (``TopologyException``: a 500 instead of an answer).
    """
    return _valid_metric([geom], state.epsg)[0]


def _polygon_input(geometry, field):
    """A drawn (Multi)Polygon, EPSG:4326, checked before anything is computed or locked.

    Raises
    ------
    ValidationError
        422: ``empty_geometry``, ``wrong_geometry_type``,
        ``unsupported_geometry_type``, ``coordinate_out_of_range`` or
        ``invalid_geometry`` with :func:`shapely.is_valid_reason` (a bow-tie,
        a hole outside its shell, a MultiPolygon with duplicate parts).  Never
        repaired: a repair can change what the planner meant.
    """
    from geodata.errors import FeatureError
    from geodata.geometry import validate_geometries

    try:
        geoms, _ = validate_geometries([geometry], "grids")
    except FeatureError as exc:
        raise ValidationError(f"{field}: {exc.reason}", code=exc.code,
                              details={"field": field, "reason": exc.reason}) from None
    return geoms[0]


def _line_input(line, field):
    """A split line, EPSG:4326: a non-empty, valid LineString (422 otherwise)."""
    if line is None or not hasattr(line, "geom_type") or line.is_empty:
        raise ValidationError(f"{field} is empty", code="empty_geometry",
                              details={"field": field})
    if line.geom_type != "LineString":
        raise ValidationError(f"{field} must be a LineString, not {line.geom_type}",
                              code="wrong_geometry_type", details={"field": field})
    if not line.is_valid:
        reason = shapely.is_valid_reason(line)
        raise ValidationError(f"{field}: invalid geometry: {reason}", code="invalid_geometry",
                              details={"field": field, "reason": reason})
    return line
