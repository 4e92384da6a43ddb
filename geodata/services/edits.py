"""Grid edits on the database: each one a single, versioned, coverage-checked transaction.

Every public function here follows one recipe (:func:`_run`):

1. lock the park: ``SELECT ... FOR UPDATE`` on its row in PostgreSQL; on
   SQLite the write transaction (``BEGIN IMMEDIATE``, see
   :func:`geodata.storage.session_scope` with ``write=True``) already holds
   the database's write lock;
2. check versions: ``if_match`` (the park's version, which every edit bumps:
   the ``ETag`` of its grid layer) → 412 ``precondition_failed``;
   ``expected_version`` (a grid's version, or ``{code: version}``) → 409
   ``stale_version`` for an int (a version in the request body), 412 for a
   string (an ``If-Match`` ETag of the grid, ``'"3"'`` or ``'W/"3"'``);
3. compute the new geometries with :mod:`geodata.editing` in the park's
   metric CRS, project them back to EPSG:4326 and snap them onto the stored
   vertices they came from (so shared edges stay identical);
4. run the coverage check on the park before and after; refuse with 422 when
   the edit leaves a *new* gap (``would_leave_gap``), overlap
   (``grid_overlap``), part outside the park or parent (``outside_park``) or
   invalid grid (``invalid_geometry``), with the area in m² and the
   geometry of each problem, unless ``allow_problems`` (then they are
   recorded in the edit);
5. write: changed grids in place (their ``version`` goes up), retired grids
   keep their row with ``active_to`` set, new grids get new codes continuing
   the park's sequence (:func:`geodata.gridcodes.grid_code`, reading order),
   lineage rows say which grids a new grid came from, one
   :class:`~geodata.models.GridEdit` with the before and after WKB of every
   touched grid; staff of a retired grid move to the grid that took most of
   its ground; enterprises are re-resolved (:func:`sites.reassign_grids`) and
   open hazards re-located (:func:`hazards.locate`).

Any error leaves the database unchanged: the caller's transaction rolls back.

Geometries passed in and returned are EPSG:4326 shapely objects; areas are m²
in the park's metric CRS; ``tolerance_m`` and ``snap_m`` are metres.

Public API (all take ``session, park`` first and ``actor``, ``reason``,
``if_match`` as keywords and return an :class:`EditOutcome`):
:func:`draw_grid`, :func:`reshape_grid`, :func:`split_grid`,
:func:`merge_grids`, :func:`retire_grid`, :func:`absorb_slivers`,
:func:`restore_grid`, :func:`restore_park`, :func:`apply_layer`; and the
read-only :func:`park_history`, :func:`grid_history`, :func:`grids_at`.
"""

import json
from dataclasses import dataclass, field
from datetime import date

import geopandas as gpd
import shapely
import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from geodata import attributes as attr
from geodata import domains
from geodata import editing
from geodata.coverage import check_coverage
from geodata.crs import STORAGE_SRID, area_m2, to_metric, to_storage
from geodata.errors import (ConflictError, NotFoundError, PreconditionFailedError,
                            ValidationError)
from geodata.gridcodes import grid_code, reading_order
from geodata.models import Grid, GridEdit, GridEditItem, GridLineage, GridStaff, Hazard, Park
from geodata.models.base import to_element, to_shapes
from geodata.services.parks import park_boundary
from geodata.storage import backend_name, begin_write

TOLERANCE_M = editing.TOLERANCE_M
SNAP_M = editing.SNAP_M
# Back-projected vertices within this many degrees (~0.1 mm) of a stored vertex
# are put exactly on it: a metric round trip moves them by ~1e-14 degrees.
_SNAP_BACK_DEG = 1e-9
_PRECISION_M = 1e-6
_PROBLEM_CODES = {"gap": "would_leave_gap", "overlap": "grid_overlap",
                  "outside": "outside_park", "invalid": "invalid_geometry"}


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
    :class:`~geodata.coverage.CoverageReport` after the edit.
    """

    added: list
    reshaped: list
    retired: list
    coverage: dict
    problems: list
    warnings: list
    unchanged: int
    report: object = None

    def to_dict(self):
        """JSON-ready dict (problem geometries as GeoJSON)."""
        return {"added": self.added, "reshaped": self.reshaped, "retired": self.retired,
                "unchanged": self.unchanged, "coverage": self.coverage,
                "problems": self.problems, "warnings": self.warnings}


# --------------------------------------------------------------------------
# state and plan
# --------------------------------------------------------------------------

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
        self.metric = dict(zip(self.by_code, to_metric(geoms, self.epsg))) if len(geoms) else {}
        self.park4326 = park_boundary(park)
        self.park_metric = to_metric(self.park4326, self.epsg)

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


# --------------------------------------------------------------------------
# locking, versions, coverage comparison
# --------------------------------------------------------------------------

def _lock(session, park, write=True):
    """Lock the park for this transaction and return it, freshly loaded."""
    if backend_name(session) == "sqlite" or not write:
        if write and not session.in_transaction():
            begin_write(session)
        query = sa.select(Park).where(Park.id == park.id)
    else:
        query = sa.select(Park).where(Park.id == park.id).with_for_update()
    locked = session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if locked is None:
        raise NotFoundError(f"no park {park.code!r}", details={"park": park.code})
    return locked


def _check_versions(state, if_match, expected, codes):
    park = state.park
    if if_match is not None and str(if_match).strip('"W/ ') != str(park.version):
        raise PreconditionFailedError(
            f"park {park.code}'s grids changed since version {if_match} (now "
            f"{park.version}); reload and edit again", code="precondition_failed",
            details={"park": park.code, "expected": if_match, "current": park.version})
    if expected is None:
        return
    if not isinstance(expected, dict):
        if len(codes) != 1:
            raise ValidationError("give expected versions as {code: version} for several grids",
                                  code="invalid_value")
        expected = {codes[0]: expected}
    for code, version in expected.items():
        key = state.grid(code)
        current = state.by_code[key].version
        if isinstance(version, str):
            # An ETag from an If-Match header on the grid: a mismatch is 412, not 409.
            tag = version.strip().removeprefix("W/").strip('"')
            if tag != str(current):
                raise PreconditionFailedError(
                    f"grid {key} is at version {current}, not {tag}; reload and edit again",
                    code="precondition_failed",
                    details={"grid": key, "expected": tag, "current": current})
            continue
        if int(version) != current:
            raise ConflictError(
                f"grid {key} is at version {current}, not {version}: someone edited it "
                "meanwhile; reload and edit again", code="stale_version",
                details={"grid": key, "expected": int(version), "current": current})


def _report(state, codes, parents, geoms):
    return check_coverage(geoms, codes, parents, park=state.park4326,
                          tolerance_m=state.tolerance_m, metric_epsg=state.epsg)


def _problem_geoms(report):
    yield "gap", [g["geometry"] for g in report.gaps], report.gaps
    yield "overlap", [o["geometry"] for o in report.overlaps], report.overlaps
    yield "outside", [o["geometry"] for o in report.outside_park], report.outside_park


def _new_problems(before, after, state):
    """Problems of ``after`` that ``before`` did not have (wider than the tolerance)."""
    found = []
    old = {kind: shapely.union_all(geoms) if geoms else None
           for kind, geoms, _ in _problem_geoms(before)}
    for kind, geoms, items in _problem_geoms(after):
        for item, geom in zip(items, geoms):
            fresh = geom if old[kind] is None else shapely.difference(geom, old[kind])
            fresh = editing.clean(fresh)
            if fresh.is_empty:
                continue
            metric = to_metric(fresh, state.epsg)
            wide = [p for p, m in zip(shapely.get_parts(fresh), shapely.get_parts(metric))
                    if not editing.is_narrow(m, state.tolerance_m)]
            if not wide:
                continue
            geom = shapely.union_all(wide)
            problem = {"problem": kind, "area_m2": round(float(area_m2(geom, state.epsg)), 3),
                       "geometry": shapely.geometry.mapping(geom)}
            if kind == "overlap":
                problem["codes"] = list(item["codes"])
            elif kind == "outside":
                problem["code"] = item["code"]
            else:
                problem["parent_code"] = item["parent_code"]
            found.append(problem)
    old_invalid = {i["code"] for i in before.invalid_grids}
    found += [{"problem": "invalid", "code": i["code"], "reason": i["reason"], "area_m2": None}
              for i in after.invalid_grids if i["code"] not in old_invalid]
    return found


def _refuse(problems):
    worst = max(problems, key=lambda p: p["area_m2"] or 0)
    total = sum(p["area_m2"] or 0 for p in problems if p["problem"] == worst["problem"])
    what = {"gap": "a new gap", "overlap": "a new overlap", "invalid": "an invalid grid",
            "outside": "ground outside the park or parent"}[worst["problem"]]
    where = worst.get("codes") or worst.get("code")
    where = f" ({', '.join(where) if isinstance(where, list) else where})" if where else ""
    raise ValidationError(
        f"the edit would leave {what} of {total:.2f} m²{where}; nothing was changed",
        code=_PROBLEM_CODES[worst["problem"]],
        details={"problems": problems, "area_m2": round(total, 3)})


def coverage_summary(report):
    """Counts and areas (m²) of a coverage report's problems, for edit answers."""
    return {"valid": bool(report.valid), "coverage_ratio": report.coverage_ratio,
            "gaps": len(report.gaps),
            "gap_area_m2": round(sum(g["area_m2"] for g in report.gaps), 3),
            "overlaps": len(report.overlaps),
            "overlap_area_m2": round(sum(o["area_m2"] for o in report.overlaps), 3),
            "outside": len(report.outside_park),
            "outside_area_m2": round(sum(o["area_m2"] for o in report.outside_park), 3)}


# --------------------------------------------------------------------------
# applying a plan
# --------------------------------------------------------------------------

def _back(state, geom_metric, near_codes):
    """Project a metric result to EPSG:4326 and snap it onto nearby stored vertices."""
    # A ring touching itself at a vertex is valid in metres but can cross itself once
    # projected; snap-rounding to 1 µm nodes it (the snap below restores stored vertices).
    geom_metric = shapely.set_precision(geom_metric, _PRECISION_M)
    geom = to_storage(geom_metric, state.epsg)
    refs = [shapely.boundary(state.geom[c]) for c in near_codes]
    refs.append(shapely.boundary(state.park4326))
    snapped = shapely.snap(geom, shapely.union_all(refs), _SNAP_BACK_DEG)
    geom = snapped if snapped.is_valid else geom
    if not geom.is_valid:
        geom = _repair_noise(geom, geom_metric, state.epsg)
    return _multi(geom)


def _repair_noise(geom, geom_metric, epsg):
    """Repair a self-intersection that projection noise made in a computed (valid) result.

    Only our own overlay results get here, never user input: the repair is
    kept when it changes the area by less than 0.01 m², else the invalid
    shape goes on to the coverage check, which refuses it.
    """
    fixed = editing.clean(shapely.make_valid(geom, method="structure"))
    if abs(float(area_m2(fixed, epsg)) - geom_metric.area) < 0.01:
        return fixed
    return geom


def _multi(geom):
    geom = editing.clean(geom)
    return shapely.MultiPolygon(list(shapely.get_parts(geom)))


def _next_codes(state, plan):
    """Codes for the plan's new grids: the park's sequence continued, in reading order."""
    park_code = state.park.code
    taken = set(state.every)
    seqs = [int(c[len(park_code) + 1:]) for c in taken
            if c.startswith(park_code + "-") and c[len(park_code) + 1:].isdigit()]
    next_seq = max(seqs, default=0) + 1
    codes = {n.key: n.code for n in plan.new if n.code}
    taken_new = list(codes.values())
    if len(set(taken_new)) != len(taken_new):
        raise ConflictError("a new grid code is given twice", code="duplicate_grid_code")
    for code in taken_new:
        if code in taken:
            raise ConflictError(f"grid code {code} is already used in park {park_code} (codes "
                                "are never reused)", code="duplicate_grid_code",
                                details={"grid": code})
    taken = taken | set(taken_new)
    top = [n for n in plan.new if n.parent is None and not n.code]
    if top:
        rank = reading_order([n.geom for n in top])
        for n, r in zip(top, rank):
            codes[n.key] = _make_code(park_code, next_seq + int(r))
    by_parent = {}
    for n in plan.new:
        if n.parent is not None:
            by_parent.setdefault(n.parent, []).append(n)
    pending = list(by_parent)
    while pending:
        for parent in list(pending):
            parent_code = codes.get(parent, parent if parent in state.every else None)
            if parent_code is None:
                continue
            kids = [n for n in by_parent[parent] if not n.code]
            subs = [int(c[len(parent_code) + 1:]) for c in taken | set(codes.values())
                    if c.startswith(parent_code + "-") and c[len(parent_code) + 1:].isdigit()]
            first = max(subs, default=0) + 1
            for n, r in zip(kids, reading_order([n.geom for n in kids]) if kids else []):
                codes[n.key] = f"{parent_code}-{first + int(r):02d}"
            pending.remove(parent)
    for n in plan.new:
        if n.key not in codes:  # a parent outside this park's codes: cannot happen
            raise ValidationError("cannot number a new sub-grid", code="invalid_value")
        if codes[n.key] in taken and not n.code:
            raise ConflictError(f"grid code {codes[n.key]} is already used",
                                code="duplicate_grid_code", details={"grid": codes[n.key]})
    return codes


def _make_code(park_code, seq):
    try:
        return grid_code(park_code, seq)
    except ValueError:
        if seq > 999:
            raise ValidationError(f"park {park_code} has used all 999 grid numbers",
                                  code="grid_codes_exhausted") from None
        return f"{park_code}-{seq:03d}"


def _run(session, park, operation, build, *, actor, reason, if_match=None, expected=None,
         expected_codes=(), allow_problems=False, tolerance_m=TOLERANCE_M, dry_run=False):
    """Lock, check versions, plan, check coverage, write: the recipe of every edit.

    With ``dry_run`` nothing is locked or written and a :class:`Preview` is returned.
    """
    if not actor or not str(actor).strip():
        raise ValidationError("an edit needs an actor (who makes it)", code="missing_field",
                              details={"field": "actor"})
    actor = domains.text(str(actor), "actor", kind="person")
    reason = domains.text(reason, "reason", kind="reason") or ""
    park = _lock(session, park, write=not dry_run)
    state = _State(session, park, tolerance_m)
    _check_versions(state, if_match, expected, [state.grid(c) for c in expected_codes])
    plan = _Plan(state)
    build(state, plan)
    if not (plan.updates or plan.exact or plan.retire or plan.new or plan.reactivate):
        raise ValidationError("the edit changes nothing", code="no_change")

    codes = _next_codes(state, plan)
    tree = shapely.STRtree([state.geom[c] for c in state.by_code]) if state.by_code else None
    all_codes = list(state.by_code)

    def near(geom_metric):
        if tree is None:
            return []
        env = shapely.envelope(to_storage(geom_metric, state.epsg))
        return [all_codes[i] for i in tree.query(env)]

    after = {}
    for code, geom in plan.updates.items():
        if code not in plan.retire:
            after[code] = _back(state, geom, near(geom))
    for code, geom in plan.exact.items():
        after[code] = _multi(geom)
    new_geoms = {n.key: _back(state, n.geom, near(n.geom)) for n in plan.new}
    parent_of = {}
    for n in plan.new:
        parent_of[codes[n.key]] = codes.get(n.parent, n.parent)

    # Coverage before and after.
    keep = [c for c in state.by_code if c not in plan.retire]
    before_report = _report(state, list(state.by_code), [state.parent[c] for c in state.by_code],
                            [state.geom[c] for c in state.by_code])
    re_codes = list(plan.reactivate)
    re_parents = [state.every[c].parent.code if state.every[c].parent_id else None
                  for c in re_codes]
    after_codes = keep + [codes[n.key] for n in plan.new] + re_codes
    after_parents = ([state.parent[c] for c in keep] + [parent_of[codes[n.key]]
                                                        for n in plan.new] + re_parents)
    after_geoms = ([after.get(c, state.geom[c]) for c in keep] + [new_geoms[n.key]
                                                                  for n in plan.new]
                   + [_multi(plan.reactivate[c]) for c in re_codes])
    after_report = _report(state, after_codes, after_parents, after_geoms)
    problems = _new_problems(before_report, after_report, state)
    if dry_run:
        added = [codes[n.key] for n in plan.new]
        return Preview(added=added, reshaped=sorted((set(after) - plan.retire) | set(re_codes)),
                       retired=sorted(plan.retire), coverage=coverage_summary(after_report),
                       problems=problems, warnings=list(plan.warnings),
                       unchanged=len(keep) - len(set(after) - plan.retire), report=after_report)
    if problems and not allow_problems:
        _refuse(problems)

    # Write.
    today = date.today()
    items = []  # (grid, before wkb, before active, before version)
    for code in sorted(set(after) | plan.retire):
        grid = state.by_code[code]
        items.append((grid, shapely.to_wkb(state.geom[code]), True, grid.version))
        if code in plan.retire:
            grid.active_to = today
        else:
            grid.geom = to_element(after[code])
            grid.area_m2 = float(area_m2(after[code], state.epsg))
    for code in re_codes:
        grid = state.every[code]
        items.append((grid, shapely.to_wkb(to_shapes([grid.geom])[0]), False, grid.version))
        geom = _multi(plan.reactivate[code])
        grid.geom, grid.area_m2, grid.active_to = to_element(geom), float(
            area_m2(geom, state.epsg)), None
    new_rows = {}
    for n in plan.new:  # parents come before their children in plan.new
        code = codes[n.key]
        parent = new_rows.get(n.parent) or state.every.get(n.parent)
        grid = Grid(park_id=park.id, code=code, name=n.name or code, level=n.level,
                    kind=n.kind, geom=to_element(new_geoms[n.key]),
                    area_m2=float(area_m2(new_geoms[n.key], state.epsg)), active_from=today,
                    parent_id=parent.id if parent is not None else None)
        if parent is not None and parent.id is None:
            grid.parent = parent
        session.add(grid)
        new_rows[n.key] = grid
        items.append((grid, None, False, None))
    flag_modified(park, "name")  # every edit bumps the park's version (the layer's ETag)
    try:
        session.flush()
    except StaleDataError:
        raise ConflictError("the grids changed while the edit ran; reload and edit again",
                            code="stale_version") from None
    edit = GridEdit(park_id=park.id, actor=str(actor).strip()[:100], operation=operation,
                    reason=reason or "", park_version=park.version,
                    problems=json.dumps(problems, ensure_ascii=False) if problems else "")
    session.add(edit)
    session.flush()
    for grid, before_wkb, before_active, before_version in items:
        session.add(GridEditItem(
            edit_id=edit.id, grid_id=grid.id, code=grid.code, before_wkb=before_wkb,
            after_wkb=shapely.to_wkb(to_shapes([grid.geom])[0]), before_active=before_active,
            after_active=grid.active_to is None, before_version=before_version,
            after_version=grid.version))
    for n in plan.new:
        for source in dict.fromkeys(n.sources):
            session.add(GridLineage(grid_id=new_rows[n.key].id, source_id=state.every[source].id,
                                    edit_id=edit.id, relation=n.relation))
    for code, source, relation in plan.links:
        session.add(GridLineage(grid_id=state.every[code].id, source_id=state.every[source].id,
                                edit_id=edit.id, relation=relation))
    warnings = list(plan.warnings)
    levels = ([state.by_code[c].level for c in keep] + [n.level for n in plan.new]
              + [state.every[c].level for c in re_codes])
    _move_staff(session, state, plan.retire, after_codes, after_geoms, levels, warnings)
    session.flush()
    from geodata.services.sites import reassign_grids

    reassign_grids(session, park)
    _relocate_hazards(session, park)
    session.flush()
    summary = coverage_summary(after_report)
    added = [codes[n.key] for n in plan.new]
    reshaped = sorted((set(after) - plan.retire) | set(re_codes))
    grids = {}
    for code in added + reshaped:
        grid = new_rows.get(next((n.key for n in plan.new if codes[n.key] == code), None)) \
            or state.every[code]
        grids[code] = {"version": grid.version, "area_m2": round(grid.area_m2, 3),
                       "geometry": shapely.geometry.mapping(to_shapes([grid.geom])[0])}
    return EditOutcome(edit=edit, added=added, reshaped=reshaped, retired=sorted(plan.retire),
                       coverage=summary, problems=problems if allow_problems else [],
                       warnings=warnings, grids=grids)


def _move_staff(session, state, retired, after_codes, after_geoms, levels, warnings):
    """Staff of retired grids move to the grid (same level) holding most of its old ground."""
    if not retired:
        return
    ids = [state.by_code[c].id for c in retired]
    staff = session.execute(sa.select(GridStaff).where(GridStaff.grid_id.in_(ids))).scalars().all()
    if not staff:
        return
    targets = {}
    for code in retired:
        best, best_area = None, 0.0
        for c, g, level in zip(after_codes, after_geoms, levels):
            if c in retired or level != state.by_code[code].level:
                continue
            shared = shapely.area(shapely.intersection(g, state.geom[code]))
            if shared > best_area:
                best, best_area = c, shared
        targets[state.by_code[code].id] = best
    moved = 0
    for person in staff:
        target = targets.get(person.grid_id)
        if target is None:
            continue
        row = state.by_code.get(target) or session.execute(sa.select(Grid).where(
            Grid.park_id == state.park.id, Grid.code == target)).scalar_one()
        person.grid_id = row.id
        moved += 1
    if moved:
        warnings.append(f"{moved} staff moved from retired grids; check their assignments")


def _relocate_hazards(session, park):
    """Re-locate open hazards (closed ones keep the grid they were handled in)."""
    from geodata.services.hazards import locate

    hazards = session.execute(sa.select(Hazard).where(
        Hazard.park_id == park.id, Hazard.status != "closed").order_by(Hazard.id)).scalars().all()
    if not hazards:
        return
    grid_ids, _ = locate(session, park, to_shapes([h.location for h in hazards]))
    for hazard, grid_id in zip(hazards, grid_ids):
        if hazard.grid_id != grid_id:
            hazard.grid_id = grid_id


# --------------------------------------------------------------------------
# operations
# --------------------------------------------------------------------------

def _metric(state, geom):
    return to_metric(geom, state.epsg)


def draw_grid(session, park, geometry, *, actor, reason="", name=None, kind="area",
              if_match=None, snap_m=SNAP_M, tolerance_m=TOLERANCE_M):
    """Add a level-1 grid over uncovered ground of the park.

    What was drawn (EPSG:4326) is snapped to neighbouring edges within
    ``snap_m`` metres, clipped to the park and to the uncovered ground
    (:func:`geodata.editing.draw`).

    Raises
    ------
    ValidationError
        ``empty_result`` when the drawing covers no uncovered ground.
    """
    def build(state, plan):
        level1 = [state.metric[c] for c in state.by_code if state.parent[c] is None]
        geom = editing.draw(_metric(state, geometry), state.park_metric, level1,
                            tolerance_m=tolerance_m, snap_m=snap_m)
        plan.add(geom, None, 1, kind, [], "draw", name=name)

    return _run(session, park, "draw", build, actor=actor, reason=reason, if_match=if_match,
                tolerance_m=tolerance_m)


def reshape_grid(session, park, code, geometry, *, actor, reason="", neighbours=None,
                 expected_version=None, if_match=None, snap_m=SNAP_M,
                 tolerance_m=TOLERANCE_M, operation="reshape"):
    """Give grid ``code`` a new shape; the neighbours give or take the same ground.

    ``neighbours`` limits which grids may give or take ground (default: all
    touching ones; ``()`` makes it a plain vertex edit that must not touch
    any neighbour).  Sub-grids of every changed grid are refitted.

    Raises
    ------
    ValidationError
        ``grid_overlap``, ``would_leave_gap``, ``outside_park`` with the area.
    """
    def build(state, plan):
        key = state.grid(code)
        nbrs = None if neighbours is None else [state.grid(c) for c in neighbours]
        park_metric = state.park_metric if state.parent[key] is None else \
            state.metric[state.parent[key]]
        changed = editing.reshape(state.siblings(key), key, _metric(state, geometry), nbrs,
                                  park=park_metric, tolerance_m=tolerance_m, snap_m=snap_m)
        for c, geom in changed.items():
            plan.update(c, geom)

    return _run(session, park, operation, build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m)


def split_grid(session, park, code, *, line=None, parts=None, actor, reason="",
               expected_version=None, if_match=None, tolerance_m=TOLERANCE_M):
    """Split grid ``code`` by a line (EPSG:4326) or into ``parts`` strips of equal area.

    The grid is retired; each piece becomes a new grid (new code, lineage
    ``split``).  Sub-grids follow: each keeps its part inside each piece
    under that piece (new codes, lineage ``reparent``).
    """
    if (line is None) == (parts is None):
        raise ValidationError("give either a split line or a number of parts",
                              code="invalid_value")

    def build(state, plan):
        key = state.grid(code)
        geom = state.metric[key]
        if line is not None:
            pieces = editing.split_by_line(geom, _metric(state, line), tolerance_m=tolerance_m)
        else:
            pieces = editing.split_equal_area(geom, parts, tolerance_m=tolerance_m)
        plan.replace([key], pieces, "split")

    return _run(session, park, "split", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m)


def merge_grids(session, park, codes, *, actor, reason="", expected_versions=None,
                if_match=None, tolerance_m=TOLERANCE_M):
    """Merge two or more adjacent grids with the same parent into one new grid.

    The merged grids are retired; their sub-grids move under the new grid
    (a merged grid without sub-grids becomes one), their staff follow.

    Raises
    ------
    ValidationError
        ``not_adjacent``, or ``different_parents``.
    """
    if expected_versions is not None and not isinstance(expected_versions, dict):
        expected_versions = dict(zip(codes, expected_versions))

    def build(state, plan):
        keys = list(dict.fromkeys(state.grid(c) for c in codes))
        if len(keys) < 2:
            raise ValidationError("merge needs at least two grids", code="invalid_value")
        if len({state.parent[k] for k in keys}) != 1:
            raise ValidationError("grids with different parents cannot be merged",
                                  code="different_parents", details={"grids": keys})
        merged = editing.merge([state.metric[k] for k in keys], tolerance_m=tolerance_m)
        plan.replace(keys, [merged], "merge", new_for_wide=True)

    return _run(session, park, "merge", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_versions, tolerance_m=tolerance_m)


def retire_grid(session, park, code, *, to=None, actor, reason="", expected_version=None,
                if_match=None, tolerance_m=TOLERANCE_M):
    """Retire grid ``code``: its ground goes to ``to`` or the neighbours with the longest border.

    The row stays (``active_to`` set) so the code is never reused; its
    sub-grids are retired too and the receivers' sub-grids take the ground.
    """
    def build(state, plan):
        key = state.grid(code)
        target = state.grid(to) if to is not None else None
        changed = editing.retire(state.siblings(key), key, target, tolerance_m=tolerance_m)
        plan.retire_tree(key)
        for c, geom in changed.items():
            plan.update(c, geom)

    return _run(session, park, "retire", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m)


def absorb_slivers(session, park, *, actor, reason="", max_width_m=1.0, max_area_m2=0.0,
                   if_match=None, tolerance_m=TOLERANCE_M):
    """Give sliver grids, sliver parts and sliver gaps to the neighbour with the longest border.

    Works on level-1 grids.  Slivers are narrower than ``max_width_m`` metres
    everywhere or smaller than ``max_area_m2`` m² (:func:`editing.absorb_slivers`).
    """
    def build(state, plan):
        level1 = {c: state.metric[c] for c in state.by_code if state.parent[c] is None}
        changed, retired, filled = editing.absorb_slivers(
            level1, park=state.park_metric, max_width_m=max_width_m, max_area_m2=max_area_m2,
            tolerance_m=tolerance_m)
        for c in retired:
            plan.retire_tree(c)
        for c, geom in changed.items():
            plan.update(c, geom)
        if filled:
            plan.warnings.append(f"filled {filled:.2f} m² of sliver gaps")

    return _run(session, park, "absorb_slivers", build, actor=actor, reason=reason,
                if_match=if_match, tolerance_m=tolerance_m)


# --------------------------------------------------------------------------
# history and restore
# --------------------------------------------------------------------------

def park_history(session, park):
    """The park's edits, newest first: ``id, at, actor, operation, reason, park_version, grids``."""
    edits = session.execute(sa.select(GridEdit).where(GridEdit.park_id == park.id)
                            .order_by(GridEdit.id.desc())).scalars().all()
    return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "operation": e.operation,
             "reason": e.reason, "park_version": e.park_version,
             "grids": [i.code for i in e.items],
             "problems": json.loads(e.problems) if e.problems else []} for e in edits]


def grid_history(session, park, code):
    """Every recorded version of grid ``code``, oldest first.

    Returns
    -------
    list of dict
        ``edit, at, actor, operation, reason, version, active, area_m2`` and
        ``geometry`` (shapely, EPSG:4326) after each edit that touched it.
    """
    rows = session.execute(
        sa.select(GridEditItem, GridEdit).join(GridEdit, GridEditItem.edit_id == GridEdit.id)
        .where(GridEdit.park_id == park.id, GridEditItem.code == attr.code(code))
        .order_by(GridEdit.id)).all()
    if not rows:
        grid = session.execute(sa.select(Grid).where(
            Grid.park_id == park.id, Grid.code == attr.code(code))).scalar_one_or_none()
        if grid is None:
            raise NotFoundError(f"no grid {code!r} in park {park.code}",
                                details={"park": park.code, "grid": code})
    out = []
    for item, edit in rows:
        if item.before_wkb is not None and not out:
            geom = shapely.from_wkb(item.before_wkb)
            out.append({"edit": None, "at": None, "actor": None, "operation": "initial",
                        "reason": "", "version": item.before_version,
                        "active": item.before_active, "geometry": geom,
                        "area_m2": float(area_m2(geom, park.metric_epsg))})
        geom = shapely.from_wkb(item.after_wkb)
        out.append({"edit": edit.id, "at": edit.at.isoformat(), "actor": edit.actor,
                    "operation": edit.operation, "reason": edit.reason,
                    "version": item.after_version, "active": item.after_active,
                    "geometry": geom, "area_m2": float(area_m2(geom, park.metric_epsg))})
    return out


def _state_at(session, park, edit_id):
    """``{code: (active, geometry EPSG:4326, parent code)}`` right after edit ``edit_id``.

    ``edit_id=0`` means before the first edit.  The current state is rolled
    back through the recorded before-states of every later edit.
    """
    grids = session.execute(sa.select(Grid).where(Grid.park_id == park.id)).scalars().all()
    code_of = {g.id: g.code for g in grids}
    state = {g.code: (g.active_to is None, to_shapes([g.geom])[0], code_of.get(g.parent_id))
             for g in grids}
    later = session.execute(
        sa.select(GridEditItem).join(GridEdit, GridEditItem.edit_id == GridEdit.id)
        .where(GridEdit.park_id == park.id, GridEdit.id > edit_id)
        .order_by(GridEditItem.edit_id.desc(), GridEditItem.id.desc())).scalars().all()
    for item in later:
        _, geom, parent = state[item.code]
        if item.before_wkb is None:
            state[item.code] = (False, geom, parent)
        else:
            state[item.code] = (item.before_active, shapely.from_wkb(item.before_wkb), parent)
    return state


def grids_at(session, park, edit_id):
    """The park's active grids right after edit ``edit_id`` (0: before any edit).

    Returns
    -------
    geopandas.GeoDataFrame
        ``code, parent_code, area_m2`` and the geometry, EPSG:4326.
    """
    _known_edit(session, park, edit_id)
    state = _state_at(session, park, edit_id)
    rows = sorted((c, p, g) for c, (active, g, p) in state.items() if active)
    return gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "parent_code": [r[1] for r in rows],
         "area_m2": [round(float(area_m2(r[2], park.metric_epsg)), 3) for r in rows]},
        geometry=[r[2] for r in rows], crs=STORAGE_SRID)


def _known_edit(session, park, edit_id):
    if edit_id == 0:
        return
    found = session.execute(sa.select(GridEdit.id).where(
        GridEdit.park_id == park.id, GridEdit.id == edit_id)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no edit {edit_id} in park {park.code}",
                            details={"park": park.code, "edit": edit_id})


def restore_park(session, park, edit_id, *, actor, reason="", if_match=None,
                 allow_problems=False, tolerance_m=TOLERANCE_M):
    """Bring the park's grids back to how they were right after edit ``edit_id``, as a new edit.

    Grids made since are retired; grids retired since are reactivated with
    their code (the same grid returning, not a code reused); changed ones
    get their old geometry back exactly.
    """
    def build(state, plan):
        _known_edit(session, park, edit_id)
        target = _state_at(session, state.park, edit_id)
        for code, (active, geom, _) in target.items():
            current = state.by_code.get(code)
            if active and current is None:
                plan.reactivate[code] = geom
            elif not active and current is not None:
                plan.retire.add(code)
            elif active and not shapely.equals_exact(geom, state.geom[code], 0):
                plan.exact[code] = geom

    return _run(session, park, "restore", build, actor=actor, reason=reason or
                f"restore the grids as after edit {edit_id}", if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m)


def restore_grid(session, park, code, edit_id, *, actor, reason="", expected_version=None,
                 if_match=None, tolerance_m=TOLERANCE_M):
    """Give grid ``code`` back the shape it had right after edit ``edit_id``, as a reshape.

    The neighbours give or take the ground (:func:`reshape_grid`).
    """
    _known_edit(session, park, edit_id)
    state = _state_at(session, park, edit_id)
    key = attr.code(code)
    if key not in state or not state[key][0]:
        raise NotFoundError(f"grid {code} was not active after edit {edit_id}",
                            details={"grid": code, "edit": edit_id})
    return reshape_grid(session, park, key, state[key][1], actor=actor,
                        reason=reason or f"restore {key} as after edit {edit_id}",
                        expected_version=expected_version, if_match=if_match,
                        tolerance_m=tolerance_m, snap_m=0.0, operation="restore")


def lineage(session, park, code):
    """The grids ``code`` came from, transitively: ``[{code, source, relation, edit}]``."""
    codes = dict(session.execute(sa.select(Grid.id, Grid.code).where(
        Grid.park_id == park.id)).all())
    ids = {v: k for k, v in codes.items()}
    key = attr.code(code)
    if key not in ids:
        raise NotFoundError(f"no grid {code!r} in park {park.code}",
                            details={"park": park.code, "grid": code})
    out, todo, seen = [], [ids[key]], set()
    while todo:
        gid = todo.pop()
        if gid in seen:
            continue
        seen.add(gid)
        for row in session.execute(sa.select(GridLineage).where(
                GridLineage.grid_id == gid).order_by(GridLineage.id)).scalars():
            out.append({"code": codes[row.grid_id], "source": codes[row.source_id],
                        "relation": row.relation, "edit": row.edit_id})
            todo.append(row.source_id)
    return out


# --------------------------------------------------------------------------
# whole layers: a QGIS round trip, an adopted proposal
# --------------------------------------------------------------------------

def _layer_rows(gdf, file):
    """``[(index, code or None, parent code or None, name, kind, geometry)]`` of a grid layer."""
    from geodata.geometry import validate_geometries

    geoms, _ = validate_geometries(gdf.geometry.to_numpy(), "grids", file=file)
    rows = []
    for i, row in attr.records(gdf):
        where = {"index": i, "file": file}
        code = attr.code(row.get("code"), field="code", required=False, **where)
        parent = attr.code(row.get("parent_code"), field="parent_code", required=False, **where)
        name = attr.text(row.get("name"), field="name", required=False, **where)
        kind = attr.text(row.get("kind"), field="kind", required=False, **where)
        rows.append((i, code, parent, name, kind, geoms[i]))
    return rows


def _differs(a, b, epsg, tolerance_m):
    """True when two EPSG:4326 shapes differ by more than noise."""
    if shapely.equals_exact(a, b, 0) or a.equals(b):
        return False
    diff = editing.clean(shapely.symmetric_difference(a, b))
    return not editing.is_narrow(to_metric(diff, epsg), tolerance_m)


def apply_layer(session, park, gdf, *, actor, reason="", file=None, allow_problems=False,
                if_match=None, dry_run=False, tolerance_m=TOLERANCE_M):
    """Make the park's grids those of an edited layer (the QGIS round trip), as one edit.

    The layer is what ``gridmap export grids`` wrote (EPSG:4326; columns
    ``code``, ``parent_code``, ``name``, ``kind``), edited by a planner:

    * a feature whose code is stored and whose shape changed → **reshaped**
      (its sub-grids are refitted when the layer leaves them as they were);
    * several features with one code (QGIS's split tool copies attributes)
      → that grid is **split**: retired, each feature a new grid with a new
      code, its sub-grids redistributed;
    * a feature with a blank code → **added** with the next code; a new code
      not used before is kept as given;
    * a stored active code missing from the layer → **retired** (its lineage
      points to the grids that now hold its ground);
    * a retired code in the layer → 409 ``duplicate_grid_code`` (never reused).

    With ``dry_run`` nothing is written and a :class:`Preview` (the ``--diff``)
    is returned; otherwise an :class:`EditOutcome`.  New gaps, overlaps or
    parts outside are refused unless ``allow_problems`` (then recorded).
    """
    rows = _layer_rows(gdf, file)

    def build(state, plan):
        by_code = {}
        for row in rows:
            if row[1] is not None:
                by_code.setdefault(row[1], []).append(row)
        for code in by_code:
            if code in state.every and code not in state.by_code:
                raise ConflictError(
                    f"{file or 'layer'}: grid code {code} belongs to a retired grid and is "
                    "never reused; leave the code blank for a new grid",
                    code="duplicate_grid_code", details={"file": file, "grid": code})
        split = {c for c, rs in by_code.items() if len(rs) > 1 and c in state.by_code}
        missing = [c for c in state.by_code if c not in by_code]
        unchanged_kids = set()
        reshaped = {}
        for code, rs in by_code.items():
            if code in state.by_code and code not in split:
                geom = rs[0][5]
                if _differs(geom, state.geom[code], state.epsg, tolerance_m):
                    reshaped[code] = geom
                elif state.parent[code] is not None:
                    unchanged_kids.add(code)
        for code in missing:
            if code not in plan.retire:
                plan.retire_tree(code)
        for code in sorted(split):
            pieces = [_metric(state, r[5]) for r in by_code[code]]
            plan.replace([code], pieces, "split")
        for code, geom in reshaped.items():
            if code in plan.retire:
                continue
            plan.exact[code] = geom
            kids = state.children.get(code, [])
            if kids and all(k in unchanged_kids or k not in by_code for k in kids):
                # The planner moved the parent only: its sub-grids follow.
                metric = _metric(state, geom)
                before = set(plan.updates)
                plan._refit(code, metric)
                plan.updates.pop(code, None)
                for k in set(plan.updates) - before:
                    unchanged_kids.discard(k)
        keys = {}
        new_rows = [r for r in rows if r[1] is None or (r[1] not in state.every)]
        level_of = {}
        pending = list(new_rows)
        while pending:
            progressed = False
            for r in list(pending):
                i, code, parent = r[0], r[1], r[2]
                if parent is not None and parent in split:
                    raise ValidationError(
                        f"{file or 'layer'}: feature {i}: parent {parent} is split in the same "
                        "layer; give it its new parent after the split", code="invalid_value",
                        details={"file": file, "feature": i})
                if parent is None:
                    level = 1
                elif parent in state.by_code and parent not in plan.retire:
                    level = state.by_code[parent].level + 1
                elif parent in level_of:
                    level = level_of[parent] + 1
                elif any(x[1] == parent for x in pending):
                    continue
                else:
                    raise ValidationError(
                        f"{file or 'layer'}: feature {i}: parent grid {parent} is neither "
                        "active nor new in the layer", code="unknown_parent",
                        details={"file": file, "feature": i, "parent_code": parent})
                geom = _metric(state, r[5])
                sources = [c for c in state.by_code if state.parent[c] == (
                    parent if level > 1 else None) and shapely.area(shapely.intersection(
                        state.metric[c], geom)) > tolerance_m ** 2]
                key = plan.add(geom, keys.get(parent, parent), level,
                               r[4] or ("area" if level == 1 else "workshop"), sources,
                               "import", name=r[3], code=code)
                if code is not None:
                    keys[code] = key
                    level_of[code] = level
                pending.remove(r)
                progressed = True
            if not progressed:
                raise ValidationError(f"{file or 'layer'}: parent codes form a cycle",
                                      code="invalid_value", details={"file": file})
        # Grids retired because the layer dropped them: who holds their ground now.
        for code in missing:
            if code in plan.retire and state.parent[code] is None:
                for other, geom in reshaped.items():
                    if other not in plan.retire and shapely.area(shapely.intersection(
                            geom, state.geom[code])) > 0:
                        plan.links.append((other, code, "absorb"))

    return _run(session, park, "import", build, actor=actor, reason=reason or
                f"import {file}" if file else reason, if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m, dry_run=dry_run)


def adopt_proposal(session, park, gdf, *, actor, reason="", if_match=None,
                   allow_problems=False, dry_run=False, tolerance_m=TOLERANCE_M):
    """Replace the park's grids with a proposal (:func:`geodata.proposals.propose_grids`).

    Every active grid is retired; each proposed grid gets a new code
    continuing the park's sequence (draft codes are only placeholders);
    lineage links each new level-1 grid to the old ones it overlaps.
    """
    frame = gdf.to_crs(STORAGE_SRID) if gdf.crs is not None else gdf

    def build(state, plan):
        top = [c for c in state.by_code if state.parent[c] is None]
        tree = shapely.STRtree([state.metric[c] for c in top]) if top else None
        for c in top:
            plan.retire_tree(c)
        keys = {}
        for level in sorted(set(int(v) for v in frame["level"])):
            rows = frame[frame["level"] == level]
            for _, row in rows.iterrows():
                geom = _metric(state, row.geometry)
                sources = []
                if level == 1 and tree is not None:
                    for j in tree.query(geom, predicate="intersects"):
                        if shapely.area(shapely.intersection(state.metric[top[j]],
                                                             geom)) > 1.0:
                            sources.append(top[j])
                parent = None if level == 1 else keys[row["parent_code"]]
                keys[row["code"]] = plan.add(geom, parent, level, row["kind"], sources,
                                             "adopt")

    return _run(session, park, "adopt_proposal", build, actor=actor,
                reason=reason or "adopt a proposed grid", if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m, dry_run=dry_run)
