"""Sequences of mixed edits keep every invariant: a seeded random walk over the demo park.

Each walk applies :data:`STEPS` random edits to the demo park, on both
backends, some through the service functions and some through the JSON
edit API (a planner's token): a split by a random line or into parts, a
merge of two neighbours, a border moved between two neighbours (strips
from 2 cm to 25 m, half of them sent at 7 decimals), a disc around a vertex
shared by three or more grids or a strip along the park's boundary given to
one grid, slivers absorbed, a grid retired into a neighbour, sub-grids drawn
inside a parent (the QGIS layer apply), the last edit undone with a restore
of the park, one grid restored, a stale edit (old ``expected_version`` or
``If-Match``: 409/412) and an invalid proposal (422).  After every step:

* the stored grids pass the park's coverage check (level-1 grids tile the
  park, sub-grids tile their parent, nothing wider than the tolerance
  outside), every grid is a valid MultiPolygon without a part under
  :data:`geodata.arrangement.MIN_PART_M2`;
* every enterprise, open hazard, open request, staff member and grid member
  points at the active grid the spatial rule gives (:func:`stale_links`),
  and no site falls in no grid;
* a grid code always names the same grid; the park's version goes up with
  each edit and never otherwise; no grid's version goes down, and every grid
  whose shape or state changed has a higher one;
* the history holds one entry per successful edit, the newest being it;
* a restore of the last edit gives back the stored WKB of every grid of
  before, byte for byte; a grid's restore its recorded shape up to ground
  narrower than the tolerance;
* a refused step changed nothing (:func:`stored_snapshot`).

At the end, :func:`edits.grids_at` of every edit of the walk is what was
stored right after it.

A failure names the seed and the steps so far (rerun with
``GRIDMAP_WALK_SEED``; ``GRIDMAP_WALK_STEPS`` makes the walk longer).
"""

import json
import os

import geopandas as gpd
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from geodata import editing
from geodata.crs import to_metric, to_storage
from geodata.errors import GridmapError
from geodata.models import Grid
from geodata.services import edits
from geodata.services.coverage import check_park
from geodata.services.edits.common import _valid_metric
from geodata.services.parks import get_park, park_boundary
from geodata.services.users import create_token
from geodata.storage import session_scope
from tests.conftest import stored_snapshot
from tests.test_dependants import stale_links
from tests.test_edit_topology import _small_parts, CLIENT_DECIMALS, EPSG, PARK
from webmap import create_app

SEEDS = [int(os.environ.get("GRIDMAP_WALK_SEED", 20251130))]
STEPS = int(os.environ.get("GRIDMAP_WALK_STEPS", 36))
BASE = f"/api/parks/{PARK}/edits"
#: Refusals a random (but well-formed) edit may meet, per operation: a line that misses or
#: leaves a piece too thin, a sliver-free park, a retire whose ground borders no sibling.
_SPLIT = {"split_line_does_not_cross", "empty_result", "invalid_value"}
ALLOWED = {
    "op_split": _SPLIT,
    "op_merge": set(),
    "op_border": {"empty_result"},
    "op_vertex": {"empty_result"},
    "op_boundary": {"empty_result", "would_leave_gap"},
    "op_absorb": {"no_change"},
    "op_retire": {"would_leave_gap"},
    "op_subgrid": _SPLIT,
    "op_undo": {"empty_result"},
    "op_restore_grid": {"empty_result"},
}


class Walk:
    """One random walk: the database, the API client, the generator and what it did so far."""

    def __init__(self, engine, db_url, seed):
        self.engine, self.seed = engine, seed
        self.rng = np.random.default_rng(seed)
        with session_scope(engine, write=True) as session:
            self.token, _ = create_token(session, "planner", "walk")
        self.app = create_app({"DATABASE_URL": db_url, "TESTING": True})
        self.log = []
        self.stored = self.read()
        self.edits = self.count_edits()
        self.undo = []  # [(edit id, grids before it)] of successful edits
        self.states = {0: self.stored}  # {edit id: grids right after it}
        with session_scope(engine) as session:
            self.no_grid = self.sites_in_no_grid(session)
        self.boundary = to_metric(park_boundary_of(engine), EPSG)

    def where(self):
        return f"seed {self.seed}, steps so far: " + "; ".join(self.log[-12:])

    # ---------------------------------------------------------------- reading
    def read(self):
        """``{"park": version, "grids": {code: (id, version, active, parent, wkb)}}``."""
        with session_scope(self.engine) as session:
            park = get_park(session, PARK)
            parent = sa.orm.aliased(Grid)
            rows = session.execute(
                sa.select(Grid.code, Grid.id, Grid.version, Grid.active_to.is_(None),
                          parent.code, sa.func.ST_AsBinary(Grid.geom))
                .outerjoin(parent, Grid.parent_id == parent.id)
                .where(Grid.park_id == park.id)).all()
            return {"park": park.version,
                    "grids": {r[0]: (r[1], r[2], bool(r[3]), r[4], bytes(r[5])) for r in rows}}

    def count_edits(self):
        with session_scope(self.engine) as session:
            return edits.count_edits(session, get_park(session, PARK))

    def sites_in_no_grid(self, session):
        _, report = check_park(session, get_park(session, PARK))
        return sorted(e["credit_code"] for e in report.enterprises["no_grid"])

    def active(self):
        """``{code: (metric geometry, parent code, version)}`` of the active grids."""
        grids = {c: g for c, g in self.stored["grids"].items() if g[2]}
        codes = sorted(grids)
        # Repaired where projecting makes a ring cross itself, as the services do.
        metric = _valid_metric(shapely.from_wkb([grids[c][4] for c in codes]), EPSG)
        return {c: (m, grids[c][3], grids[c][1]) for c, m in zip(codes, metric)}

    def neighbours(self, active, min_border_m=1.0):
        """Sorted ``[(a, b)]`` of active grids with one parent sharing a border."""
        codes = sorted(active)
        tree = shapely.STRtree([active[c][0] for c in codes])
        pairs = []
        for i, j in zip(*tree.query([active[c][0] for c in codes], predicate="intersects")):
            a, b = codes[i], codes[j]
            if a < b and active[a][1] == active[b][1] and shapely.length(
                    shapely.intersection(active[a][0], active[b][0])) > min_border_m:
                pairs.append((a, b))
        return sorted(pairs)

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    # ---------------------------------------------------------------- running
    def service(self, call):
        """Run ``call(session, park)`` in one transaction; the outcome or the refusal."""
        try:
            with session_scope(self.engine, write=bool(self.rng.integers(2))) as session:
                outcome = call(session, get_park(session, PARK))
                return ("ok", outcome.edit.id, outcome.edit.operation)
        except GridmapError as err:
            return ("refused", err.http_status, err.code, err.message[:300])

    def api(self, path, body, headers=None):
        """POST an edit as the planner; the outcome or the refusal."""
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        response = self.app.test_client().post(BASE + path, data=json.dumps(body),
                                               content_type="application/json",
                                               headers=headers)
        assert response.status_code < 500, (self.where(), path, response.json)
        if response.status_code == 200:
            assert response.headers["ETag"] == f'"{response.json["park_version"]}"'
            return ("ok", response.json["edit"], response.json["operation"])
        error = response.json["error"]
        assert set(error) == {"code", "message", "details"}, error
        return ("refused", response.status_code, error["code"], error["message"][:300])

    def step(self, name, result, allowed=(), refusal=None):
        """Check every invariant after a step that did ``result``.

        ``allowed`` are the refusal codes a random edit may meet; ``refusal``
        ``(statuses, codes)`` says the step must be refused so.
        """
        self.log.append(f"{len(self.log)}: {name} -> {result}")
        what = self.where()
        before = self.stored
        after = self.read()
        if result[0] == "ok":
            assert refusal is None, (what, "a refusal was expected")
            self.edits += 1
            assert after["park"] > before["park"], what
            self.undo.append((result[1], before))
            self.states[result[1]] = after
        else:
            status, code = result[1], result[2]
            if refusal is not None:
                assert status in refusal[0] and code in refusal[1], what
            else:
                assert code in allowed, what
            assert after == before, what
            assert stored_snapshot(self.engine) == self.snapshot, what
        self.stored = after
        self.check(before, after, result, what)
        self.snapshot = stored_snapshot(self.engine)

    def replay(self):
        """The history's state after every edit of the walk is what was stored then."""
        with session_scope(self.engine) as session:
            park = get_park(session, PARK)
            for edit_id, stored in sorted(self.states.items()):
                then = edits.grids_at(session, park, edit_id)
                want = {c: g for c, g in stored["grids"].items() if g[2]}
                assert sorted(then["code"]) == sorted(want), (self.where(), edit_id)
                for code, parent, geom in zip(then["code"], then["parent_code"],
                                              then.geometry):
                    parent = parent if isinstance(parent, str) else None  # NaN from pandas
                    assert parent == want[code][3], (self.where(), edit_id, code, parent)
                    assert shapely.to_wkb(geom) == want[code][4] or shapely.equals_exact(
                        geom, shapely.from_wkb(want[code][4]), 0), (self.where(), edit_id, code)

    def check(self, before, after, result, what):
        grids = after["grids"]
        for code, (gid, version, active, _, wkb) in before["grids"].items():
            # A code always names the same grid; versions never go down, and go up with a change.
            assert grids[code][0] == gid, (what, code)
            assert grids[code][1] >= version, (what, code)
            if (grids[code][2], grids[code][4]) != (active, wkb):
                assert grids[code][1] > version, (what, code, "changed without a new version")
        assert len({g[0] for g in grids.values()}) == len(grids), what
        active = self.active()
        for code, (_, parent, _) in active.items():
            stored = shapely.from_wkb(grids[code][4])
            assert stored.geom_type == "MultiPolygon" and stored.is_valid, (what, code)
            assert parent is None or parent in active, (what, code, "parent not active")
        # Parts as stored (a ring that pinches to within 1e-9° is one part there, however it
        # projects), as tests/test_edit_topology.py counts them.
        small = _small_parts({c: shapely.from_wkb(grids[c][4]) for c in active})
        assert small == [], (what, small)
        with session_scope(self.engine) as session:
            park = get_park(session, PARK)
            _, report = check_park(session, park)
            assert report.valid, (what, report.summary_line())
            no_grid = sorted(e["credit_code"] for e in report.enterprises["no_grid"])
            assert no_grid == self.no_grid, what
            history = edits.park_history(session, park, limit=1)
            assert edits.count_edits(session, park) == self.edits, what
            if result[0] == "ok":
                assert history[0]["id"] == result[1], what
                assert history[0]["park_version"] == after["park"], what
        assert stale_links(self.engine) == [], what


def park_boundary_of(engine):
    with session_scope(engine) as session:
        return park_boundary(get_park(session, PARK))


# -------------------------------------------------------------------- operations

def _line_through(rng, geom, angle=None):
    """A line (metric) through a random point of ``geom`` at a random angle."""
    anchor = np.asarray(geom.representative_point().coords[0]) + rng.normal(0, 5, 2)
    angle = rng.uniform(0, np.pi) if angle is None else angle
    x0, y0, x1, y1 = geom.bounds
    reach = 2 * max(x1 - x0, y1 - y0) + 10
    d = reach * np.array([np.cos(angle), np.sin(angle)])
    return shapely.LineString([anchor - d, anchor + d])


def _storage(metric_geom, rounded):
    """A proposal as a client sends it: its polygons in EPSG:4326, maybe at 7 decimals."""
    if metric_geom.geom_type == "GeometryCollection":  # a cut can leave lines and points too
        metric_geom = shapely.union_all([p for p in shapely.get_parts(metric_geom)
                                         if p.geom_type == "Polygon"])
    geom = to_storage(metric_geom, EPSG)
    if rounded:
        client = shapely.transform(geom, lambda xy: np.round(xy, CLIENT_DECIMALS))
        # Rounding can make a ring touch itself: a client would not send that.
        geom = client if client.is_valid else geom
    return geom


def _checked(proposal):
    """What a proposal must meet: a 422 with the reason when it is invalid as sent."""
    return {} if proposal.is_valid else {"refusal": ({422}, {"invalid_geometry"})}


def op_split(walk):
    active = walk.active()
    code = walk.pick(sorted(active))
    geom, _, version = active[code]
    via_api = bool(walk.rng.integers(2))
    if walk.rng.random() < 0.25:
        parts = int(walk.rng.integers(2, 5))
        if via_api:
            return f"API split {code} in {parts}", walk.api("/split", {
                "code": code, "parts": parts, "expected_version": version})
        return f"split {code} in {parts}", walk.service(lambda s, p: edits.split_grid(
            s, p, code, parts=parts, actor="walk", expected_version=version))
    line = _storage(_line_through(walk.rng, geom), via_api)
    if via_api:
        return f"API split {code} by {line.wkt[:60]}", walk.api("/split", {
            "code": code, "line": shapely.geometry.mapping(line), "expected_version": version})
    return f"split {code} by {line.wkt[:60]}", walk.service(lambda s, p: edits.split_grid(
        s, p, code, line=line, actor="walk", expected_version=version))


def op_merge(walk):
    active = walk.active()
    pairs = walk.neighbours(active)
    a, b = walk.pick(pairs)
    versions = {a: active[a][2], b: active[b][2]}
    if walk.rng.integers(2):
        return f"API merge {a} {b}", walk.api("/merge", {"codes": [a, b],
                                                         "expected_versions": versions})
    return f"merge {a} {b}", walk.service(lambda s, p: edits.merge_grids(
        s, p, [a, b], actor="walk", expected_versions=versions))


def op_border(walk):
    active = walk.active()
    a, b = walk.pick(walk.neighbours(active))
    if walk.rng.integers(2):
        a, b = b, a
    width = float(walk.pick([0.02, 0.05, 0.5, 3.0, 10.0, 25.0]))
    border = shapely.intersection(active[a][0], active[b][0])
    strip = shapely.intersection(active[b][0], shapely.buffer(border, width))
    rounded = bool(walk.rng.integers(2))
    proposal = _storage(shapely.union(active[a][0], strip), rounded)
    what = f"{a} takes {width} m from {b}"
    if walk.rng.integers(2):
        return "API " + what, walk.api("/reshape", {
            "code": a, "geometry": shapely.geometry.mapping(proposal), "neighbours": [b],
            "expected_version": active[a][2]}), _checked(proposal)
    return what, walk.service(lambda s, p: edits.reshape_grid(
        s, p, a, proposal, neighbours=[b], actor="walk", expected_version=active[a][2])), \
        _checked(proposal)


def _junctions(active):
    """``[(vertex, codes)]`` of level-1 vertices shared by three or more level-1 grids."""
    seen = {}
    for code, (geom, parent, _) in active.items():
        if parent is None:
            for xy in {tuple(np.round(c, 3)) for c in shapely.get_coordinates(geom)}:
                seen.setdefault(xy, set()).add(code)
    return sorted((xy, sorted(c)) for xy, c in seen.items() if len(c) >= 3)


def op_vertex(walk):
    """A disc around a vertex shared by three or more grids goes to one of them."""
    active = walk.active()
    junctions = _junctions(active)
    if not junctions:
        return op_border(walk)
    xy, codes = walk.pick(junctions)
    code = walk.pick(codes)
    radius = float(walk.pick([0.05, 0.3, 2.0, 8.0]))
    disc = shapely.intersection(shapely.Point(xy).buffer(radius), walk.boundary)
    proposal = _storage(shapely.union(active[code][0], disc), bool(walk.rng.integers(2)))
    what = f"{code} takes a {radius} m disc at the junction of {'/'.join(codes)}"
    if walk.rng.integers(2):
        return "API " + what, walk.api("/reshape", {
            "code": code, "geometry": shapely.geometry.mapping(proposal)}), _checked(proposal)
    return what, walk.service(lambda s, p: edits.reshape_grid(s, p, code, proposal,
                                                              actor="walk")), _checked(proposal)


def op_boundary(walk):
    """A level-1 grid on the park's boundary moves its outer edge: in by a strip, out past it."""
    active = walk.active()
    edge = walk.boundary.boundary
    on_edge = sorted(c for c, (g, parent, _) in active.items()
                     if parent is None and shapely.length(shapely.intersection(
                         g.boundary, edge.buffer(0.01))) > 5)
    code = walk.pick(on_edge)
    geom = active[code][0]
    width = float(walk.pick([0.3, 2.0, 6.0]))
    if walk.rng.integers(2):
        # Past the boundary: a reshape is not clipped to the park, it is refused.
        proposal = _storage(shapely.union(geom, shapely.buffer(geom, width)), True)
        return f"{code} moves {width} m out past the park boundary", walk.service(
            lambda s, p: edits.reshape_grid(s, p, code, proposal, actor="walk")), {
                "refusal": ({422}, {"outside_park"})}
    # In from the boundary: the strip along it goes to a neighbour bordering it, or the
    # reshape is refused for the gap it would leave.
    proposal = shapely.difference(geom, shapely.buffer(edge, width))
    if proposal.is_empty:
        return op_border(walk)
    proposal = _storage(proposal, bool(walk.rng.integers(2)))
    return f"{code} moves {width} m in from the park boundary", walk.service(
        lambda s, p: edits.reshape_grid(s, p, code, proposal, actor="walk")), _checked(proposal)


def op_absorb(walk):
    active = walk.active()
    smallest = min(g.area for g, parent, _ in active.values() if parent is None)
    width = float(walk.pick([0.5, 2.0, 5.0]))
    area = float(walk.pick([0.0, smallest * 1.01]))
    return f"absorb slivers under {width} m / {area:.0f} m²", walk.service(
        lambda s, p: edits.absorb_slivers(s, p, actor="walk", max_width_m=width,
                                          max_area_m2=area))


def op_retire(walk):
    active = walk.active()
    a, b = walk.pick(walk.neighbours(active))
    if walk.rng.integers(2):
        a, b = b, a
    to = b if walk.rng.integers(2) else None
    version = active[a][2]
    if walk.rng.integers(2):
        body = {"code": a, "expected_version": version} | ({"to": to} if to else {})
        return f"API retire {a} to {to}", walk.api("/retire", body)
    return f"retire {a} to {to}", walk.service(lambda s, p: edits.retire_grid(
        s, p, a, to=to, actor="walk", expected_version=version))


def _layer(walk):
    """The active grids as the layer ``gridmap export grids`` writes (EPSG:4326)."""
    grids = {c: g for c, g in walk.stored["grids"].items() if g[2]}
    codes = sorted(grids)
    return ([{"code": c, "parent_code": grids[c][3]} for c in codes],
            list(shapely.from_wkb([grids[c][4] for c in codes])))


def op_subgrid(walk):
    """Sub-grids drawn inside a parent: a grid without sub-grids gets two, or a sub-grid
    gives part of its ground to a new sibling (the layer apply, as QGIS would)."""
    active = walk.active()
    code = walk.pick(sorted(active))
    geom, parent, _ = active[code]
    kids = [c for c, (_, p, _) in active.items() if p == code]
    if kids:
        return op_split(walk)
    half = shapely.intersection(geom, shapely.buffer(_line_through(walk.rng, geom), 1e5,
                                                     single_sided=True))
    rest = shapely.difference(geom, half)
    if half.area < 100 or rest.area < 100:
        return op_split(walk)
    props, geoms = _layer(walk)
    rounded = bool(walk.rng.integers(2))
    if parent is None:
        # Two new sub-grids tile a level-1 grid that had none.
        new = [({"code": None, "parent_code": code}, g) for g in (half, rest)]
    else:
        # The sub-grid keeps one side; a new sibling is drawn on the other.
        i = next(k for k, p in enumerate(props) if p["code"] == code)
        geoms[i] = _storage(rest, rounded)
        new = [({"code": None, "parent_code": parent}, half)]
    props += [p for p, _ in new]
    geoms += [_storage(g, rounded) for _, g in new]
    if not all(shapely.is_valid(geoms)):
        # Projected back, a cut can cross itself at 1e-10°: QGIS would not save it.
        return op_split(walk)
    frame = gpd.GeoDataFrame(props, geometry=geoms, crs=4326)
    return f"sub-grids drawn in {parent or code}", walk.service(
        lambda s, p: edits.apply_layer(s, p, frame, actor="walk"))


def op_undo(walk):
    """Restore the park as after the edit before the last one: the exact stored grids."""
    if not walk.undo:
        return op_border(walk)
    last, before = walk.undo[-1]
    with session_scope(walk.engine) as session:
        ids = [e["id"] for e in edits.park_history(session, get_park(session, PARK))]
    target = ids[ids.index(last) + 1] if ids.index(last) + 1 < len(ids) else 0
    result = walk.service(lambda s, p: edits.restore_park(s, p, target, actor="walk"))
    if result[0] == "ok":
        now = walk.read()["grids"]
        was = {c: g[4] for c, g in before["grids"].items() if g[2]}
        assert {c: g[4] for c, g in now.items() if g[2]} == was, (
            walk.where(), "a restore did not bring back the stored grids")
    return f"undo edit {last} (restore as after {target})", result


def op_restore_grid(walk):
    """One grid back to its shape before the last edit that changed it (within the tolerance)."""
    last = [(edit_id, code, before["grids"][code]) for edit_id, before in walk.undo
            for code, now in walk.stored["grids"].items()
            if now[2] and code in before["grids"] and before["grids"][code][2]
            and before["grids"][code][4] != now[4]
            and before["grids"][code][3] == now[3]]
    if not last:
        return op_border(walk)
    edit_id, code, was = last[-1]
    ids = sorted(walk.states)
    target = ids[ids.index(edit_id) - 1]
    result = walk.service(lambda s, p: edits.restore_grid(s, p, code, target, actor="walk"))
    parent, then = was[3], walk.states[target]["grids"]
    siblings = [{c for c, g in grids.items() if g[2] and g[3] == parent}
                for grids in (then, walk.stored["grids"])]
    if siblings[0] != siblings[1] or (parent is not None and then[parent][4] != walk.stored[
            "grids"][parent][4]):
        # Its parent or siblings changed since: the old shape may no longer fit, and a
        # retired sibling does not come back to take ground (a park restore does that).
        return f"restore {code} as after edit {target} (its parent or siblings changed)", \
            result, {"allowed": {"would_leave_gap", "outside_park", "grid_overlap"}}
    if result[0] == "ok":
        now, was = shapely.from_wkb(walk.read()["grids"][code][4]), shapely.from_wkb(was[4])
        # A reshape: the recorded shape up to ground narrower than the tolerance, not bit for
        # bit (the neighbours' borders as they are now are noded into it, a spike narrower
        # than the tolerance is noise and goes to a neighbour; a park restore is exact).
        off = editing.clean(to_metric(shapely.symmetric_difference(now, was), EPSG))
        assert editing.is_narrow(off, edits.TOLERANCE_M), (
            walk.where(), f"restore of {code} as after {target} did not give its shape back",
            off.area, off.wkt[:300])
    return f"restore {code} as after edit {target}", result


OPERATIONS = [op_split, op_merge, op_border, op_vertex, op_boundary, op_absorb, op_retire,
              op_subgrid, op_undo, op_restore_grid]


def op_stale(walk):
    """An edit computed on an old version: 409 for a body version, 412 for an ETag."""
    active = walk.active()
    a, b = walk.pick(walk.neighbours(active))
    version = active[a][2]
    old_park = f'"{walk.stored["park"] - 1}"'
    line = shapely.geometry.mapping(_storage(_line_through(walk.rng, active[a][0]), True))
    variants = [
        ("API split, stale grid version", (409, "stale_version"), lambda: walk.api(
            "/split", {"code": a, "line": line, "expected_version": version - 1})),
        ("API retire, stale grid version", (409, "stale_version"), lambda: walk.api(
            "/retire", {"code": a, "to": b, "expected_version": version + 1})),
        ("API merge, stale If-Match", (412, "precondition_failed"), lambda: walk.api(
            "/merge", {"codes": [a, b]}, headers={"If-Match": old_park})),
        ("API reshape, stale If-Match", (412, "precondition_failed"), lambda: walk.api(
            "/reshape", {"code": a, "geometry": shapely.geometry.mapping(shapely.from_wkb(
                walk.stored["grids"][a][4]))}, headers={"If-Match": old_park})),
        ("merge, stale grid ETag", (412, "precondition_failed"), lambda: walk.service(
            lambda s, p: edits.merge_grids(s, p, [a, b], actor="walk",
                                           expected_versions={b: f'"{active[b][2] - 1}"'}))),
        ("absorb, stale If-Match", (412, "precondition_failed"), lambda: walk.service(
            lambda s, p: edits.absorb_slivers(s, p, actor="walk", max_area_m2=1e9,
                                              if_match=old_park))),
    ]
    what, (status, code), call = walk.pick(variants)
    return f"{what} ({a}, {b})", call(), {"refusal": ({status}, {code})}


def op_invalid(walk):
    """A well-formed request whose proposal is invalid: 422, nothing changes."""
    active = walk.active()
    a, b = walk.pick(walk.neighbours(active))
    x0, y0, x1, y1 = active[a][0].bounds
    bowtie = shapely.geometry.mapping(_storage(
        shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]), False))
    far = _storage(shapely.LineString([(x1 + 5000, y0), (x1 + 5000, y1)]), True)
    level1 = sorted(c for c, (_, p, _) in active.items() if p is None)
    apart = next(((c, d) for c in level1 for d in level1 if c < d
                  and shapely.distance(active[c][0], active[d][0]) > 100), None)
    other_parent = next((c for c in sorted(active) if active[c][1] != active[a][1]), None)
    edge = walk.boundary.boundary.interpolate(walk.rng.uniform(0, walk.boundary.boundary.length))
    outside = _storage(shapely.difference(edge.buffer(30), walk.boundary), True)
    grown = _storage(shapely.union(active[a][0], shapely.intersection(
        active[b][0], shapely.buffer(shapely.intersection(active[a][0], active[b][0]), 5))),
        False)
    variants = [
        ("API reshape to a bow-tie", "invalid_geometry", lambda: walk.api(
            "/reshape", {"code": a, "geometry": bowtie})),
        ("API split by a line that misses", "split_line_does_not_cross", lambda: walk.api(
            "/split", {"code": a, "line": shapely.geometry.mapping(far)})),
        ("API reshape into a neighbour without letting it give", "grid_overlap",
         lambda: walk.api("/reshape", {"code": a, "geometry": shapely.geometry.mapping(grown),
                                       "neighbours": []})),
        ("API draw outside the park", "empty_result", lambda: walk.api(
            "/draw", {"geometry": shapely.geometry.mapping(outside)})),
        ("API reshape with a neighbour of another parent", "invalid_neighbour",
         lambda: walk.api("/reshape", {"code": a, "geometry": shapely.geometry.mapping(grown),
                                       "neighbours": [other_parent or a]})),
    ]
    if apart:
        variants.append(("merge of grids apart", "not_adjacent", lambda: walk.service(
            lambda s, p: edits.merge_grids(s, p, list(apart), actor="walk"))))
    what, code, call = walk.pick(variants)
    if "reshape" in what and code != "invalid_geometry" and not grown.is_valid:
        code = "invalid_geometry"  # as sent, before anything else is looked at
    return f"{what} ({a}, {b})", call(), {"refusal": ({422}, {code})}


OPERATIONS += [op_stale, op_invalid]


@pytest.fixture
def db_url(demo_db_url):
    """Every walk starts from the demo park of 2025-11-30 (a copy, see conftest)."""
    return demo_db_url


@pytest.mark.parametrize("seed", SEEDS)
def test_random_edit_sequences_keep_every_invariant(engine, db_url, seed):
    walk = Walk(engine, db_url, seed)
    walk.snapshot = stored_snapshot(engine)
    counts = {}
    try:
        for _ in range(STEPS):
            op = walk.pick(OPERATIONS)
            name, result, *expect = op(walk)
            counts[result[0]] = counts.get(result[0], 0) + 1
            expect = expect[0] if expect else {}
            walk.step(name, result, expect.get("allowed", ALLOWED.get(op.__name__, ())),
                      expect.get("refusal"))
    finally:
        walk.app.extensions["gridmap.engine"].dispose()
    walk.replay()
    print(f"seed {seed}: {counts}; " + "; ".join(walk.log))
    # The walk did edit: most steps succeed, and some were refused.
    assert counts.get("ok", 0) >= STEPS // 3 and counts.get("refused", 0) >= 3, walk.log


# --------------------------------------------------------------------------
# regressions the walk found
# --------------------------------------------------------------------------

@pytest.mark.parametrize("neighbours", [["B"], None])
@pytest.mark.parametrize("width", [0.3, 0.45])
def test_a_snapped_vertex_takes_no_wedge_from_a_grid_never_reached(neighbours, width):
    # A border move of A into B, 0.3-0.45 m along their border.  C's corner Q lies 0.3 m
    # past A's corner, within the 0.5 m snap: snapping A's 420 m edge to Q used to swing
    # it into C, a 63 m² wedge (refused as an overlap with C when only B may give, taken
    # from C silently when every neighbour may), and A's move into B was lost.
    a = shapely.box(0, 0, 10, 420)
    c = shapely.Polygon([(10, 0), (20, 0), (20, 420), (10.3, 420), (10, 420)])
    b = shapely.Polygon([(0, 420), (10, 420), (10.3, 420), (20, 420), (20, 440), (0, 440)])
    out = editing.reshape({"A": a, "B": b, "C": c}, "A", shapely.box(0, 0, 10, 420 + width),
                          neighbours, park=shapely.box(0, 0, 20, 440))
    assert "C" not in out
    assert shapely.intersection(out["A"], c).area == 0
    assert out["A"].area == pytest.approx(a.area + 10 * width)
    assert out["B"].area == pytest.approx(b.area - 10 * width)


#: A grid the walk recorded (edit 15 of seed 5): valid in degrees, but its vertex T lies a
#: hair from the opposite edge, so projected to EPSG:4547 the ring crosses itself there.
PINCHED = shapely.MultiPolygon([shapely.Polygon([
    (114.37285544162526, 34.063608602500324), (114.37036684262625, 34.06059572656695),
    (114.367783955176, 34.06145633367753), (114.367593391, 34.062368585),
    (114.371957407, 34.062521408), (114.37285544162526, 34.063608602500324)])])
#: The same grid after slivers were absorbed: T gone.
UNPINCHED = shapely.MultiPolygon([shapely.Polygon([
    (114.371957407, 34.062521408), (114.37036684262625, 34.06059572656695),
    (114.367783955176, 34.06145633367753), (114.367593391, 34.062368585),
    (114.371957407, 34.062521408)])])


def test_a_shape_valid_in_degrees_that_crosses_itself_projected_is_no_500(db_url, engine,
                                                                          runner, tmp_path):
    # restore_grid gave a grid this recorded shape back: reshape projected it unrepaired and
    # GEOS raised a TopologyException (a 500 through any route).  Drawn shapes go the same way.
    assert PINCHED.is_valid and not to_metric(PINCHED, EPSG).is_valid
    park = shapely.box(114.366, 34.059, 114.375, 34.065)
    frames = (("parks", {"code": ["P"], "name": ["测试园区"], "division_code": ["411621"]}),
              ("grids", {"code": ["P-001"], "name": ["北"]}))
    for name, frame in frames:
        path = tmp_path / f"{name}.gpkg"
        gpd.GeoDataFrame(frame, geometry=[park if name == "parks" else UNPINCHED],
                         crs=4326).to_file(path)
        args = ("--park", "P") if name == "grids" else ()
        result = runner("import", name, path, *args)
        assert result.exit_code == 0, result.output + result.stderr
    with session_scope(engine, write=True) as session:
        out = edits.reshape_grid(session, get_park(session, "P"), "P-001", PINCHED,
                                 actor="t", snap_m=0.0)
        assert out.reshaped == ["P-001"] and out.coverage["overlaps"] == 0
    with session_scope(engine) as session:
        history = edits.grid_history(session, get_park(session, "P"), "P-001")
        assert [h["operation"] for h in history] == ["initial", "reshape"]
        assert history[-1]["geometry"].is_valid
    with pytest.raises(GridmapError) as err:  # no uncovered ground under it: a 422
        with session_scope(engine, write=True) as session:
            edits.draw_grid(session, get_park(session, "P"), PINCHED, actor="t")
    assert err.value.http_status == 422
