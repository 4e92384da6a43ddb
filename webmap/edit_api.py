"""The grid editing JSON API (issue 6): each route checks the role, parses, calls
:mod:`geodata.services.edits` in one write transaction and answers its outcome.

=======  ======================================  ==========================================
GET      /api/parks/<code>/edits                 the park's edit history (newest first;
                                                 ``limit``, ``offset``)
GET      /api/parks/<code>/edits/state           level-1 grids at full precision (code,
                                                 name, version, area), the coverage
                                                 status with problem geometries;
                                                 ``ETag`` = the park's version
                                                 and the answer's digest;
                                                 ``bbox`` bounds it (required above
                                                 ``GRIDMAP_API_PAGE_MAX`` grids)
POST     /api/parks/<code>/edits/draw            ``{geometry, name?, reason}``
POST     /api/parks/<code>/edits/reshape         ``{code, geometry, neighbours?,
                                                 expected_version?, reason}``
POST     /api/parks/<code>/edits/split           ``{code, line | parts, expected_version?,
                                                 reason}``
POST     /api/parks/<code>/edits/merge           ``{codes, expected_versions?, reason}``
POST     /api/parks/<code>/edits/retire          ``{code, to?, expected_version?, reason}``
=======  ======================================  ==========================================

Only ``planner`` and ``admin`` may edit (403 ``forbidden`` otherwise, 401
without credentials); reading the history and state needs any login.
``If-Match: "<park version>"`` (or the state's ETag) is honoured (412 ``precondition_failed``
when the park's grids changed meanwhile); a grid's ``expected_version``
that is stale is 409 ``stale_version``.  Every edit answers
:meth:`EditOutcome.to_dict` (added/reshaped/retired codes, the new
geometries, the coverage summary) with the new park version as ``ETag``.
A refused edit is 422 with ``details.problems`` (each with ``area_m2`` and
its GeoJSON geometry) and ``details.area_m2``.  Geometries are GeoJSON in
EPSG:4326, checked strictly by :func:`geodata.geometry.geometry_member`.
"""

import numpy as np
import shapely
import sqlalchemy as sa
from flask import Blueprint, jsonify

from geodata import domains
from geodata.coverage import check_coverage
from geodata.errors import ValidationError
from geodata.geometry import geometry_member
from geodata.services import edits
from geodata.models import Grid
from geodata.services.coverage import coverage_report
from geodata.services.grids import grid_layer
from geodata.services.mapdata import cached_grid_layer, count_active_grids
from geodata.services.parks import get_park, park_boundary
from geodata.workflow import PermissionDeniedError
from webmap import conditional
from webmap.auth import csrf, current_user
from webmap.api import page_args, page_max, paged, parse_bbox, single_arg
from webmap.db import get_session
from webmap.hazards_api import _body, _commit_or_rollback
from webmap.idempotency import idempotent

bp = Blueprint("edit_api", __name__, url_prefix="/api/parks/<code>/edits")
csrf.exempt(bp)  # JSON only (415 otherwise); see webmap.auth

#: Roles that may edit grids.
EDITORS = frozenset({"planner", "admin"})
POLYGONS = ("Polygon", "MultiPolygon")


def require_editor():
    """Return the user of this request if it may edit grids (401/403 otherwise)."""
    user = current_user()
    if user.role not in EDITORS:
        raise PermissionDeniedError(f"role {user.role!r} may not edit grids",
                                    details={"role": user.role, "action": "edit_grids"})
    return user


def _geometry(data, field, types):
    if field not in data:
        raise ValidationError(f"{field} is required", code="missing_field",
                              details={"field": field})
    return geometry_member(data[field], field, types)


def _text(data, field, kind="reason", max_length=None):
    return domains.text(data.get(field), field, kind=kind, max_length=max_length)


def _version(data, field="expected_version"):
    value = data.get(field)
    if value is None:
        return None
    return domains.integer(value, field, minimum=0, maximum=domains.INT32_MAX)


def _codes(data, field, minimum, required):
    """The grid codes of the list ``field`` (normalised), None when absent and optional."""
    value = domains.items(data.get(field), field, minimum=minimum, maximum=100,
                          what="grid codes", required=required)
    if value is None:
        return None
    return [domains.code(c, field, pointer=f"/{field}/{i}") for i, c in enumerate(value)]


def _code(data, field="code", required=True):
    """The grid code ``field``, normalised (a 422 naming ``field``), or None when optional."""
    return domains.code(data.get(field), field, required=required)


def _edit(code, fields, call):
    """Check the role and body, run ``call(session, park, data, actor=, reason=, if_match=)``."""
    user = require_editor()
    data = _body(fields | {"reason"})
    reason = _text(data, "reason") or ""
    if_match = conditional.if_match()
    # Not a writer yet: the edit computes in this read transaction and takes the write
    # lock only for its write (geodata.services.edits.recipe._run).
    session = get_session()

    def work():
        park = get_park(session, code)
        return call(session, park, data, actor=user.username, reason=reason, if_match=if_match)

    outcome = _commit_or_rollback(session, work)
    return conditional.with_etag(jsonify(outcome.to_dict()), outcome.edit.park_version)


@bp.post("/draw")
@idempotent
def draw(code):
    """Draw a new level-1 grid over uncovered ground."""
    def call(session, park, data, **kw):
        return edits.draw_grid(session, park, _geometry(data, "geometry", POLYGONS),
                               name=_text(data, "name", kind="name", max_length=100), **kw)
    return _edit(code, {"geometry", "name"}, call)


@bp.post("/reshape")
@idempotent
def reshape(code):
    """Give a grid a new shape; its neighbours give or take the same ground."""
    def call(session, park, data, **kw):
        # An empty list is an answer (no neighbour gives or takes ground); absent is "any".
        return edits.reshape_grid(session, park, _code(data), _geometry(data, "geometry", POLYGONS),
                                  neighbours=_codes(data, "neighbours", 0, False),
                                  expected_version=_version(data), **kw)
    return _edit(code, {"code", "geometry", "neighbours", "expected_version"}, call)


@bp.post("/split")
@idempotent
def split(code):
    """Split a grid by a line or into N parts of about equal area."""
    def call(session, park, data, **kw):
        line = parts = None
        if "line" in data:
            line = _geometry(data, "line", ("LineString",))
        if "parts" in data:
            parts = domains.integer(data["parts"], "parts", minimum=2, maximum=50)
        return edits.split_grid(session, park, _code(data), line=line, parts=parts,
                                expected_version=_version(data), **kw)
    return _edit(code, {"code", "line", "parts", "expected_version"}, call)


@bp.post("/merge")
@idempotent
def merge(code):
    """Merge two or more adjacent grids into a new one."""
    def call(session, park, data, **kw):
        codes = _codes(data, "codes", 2, True)
        expected = domains.members(data.get("expected_versions"), "expected_versions")
        for key, version in (expected or {}).items():
            domains.integer(version, "expected_versions", minimum=0, maximum=domains.INT32_MAX,
                            pointer=f"/expected_versions/{key}")
        return edits.merge_grids(session, park, codes, expected_versions=expected, **kw)
    return _edit(code, {"codes", "expected_versions"}, call)


@bp.post("/retire")
@idempotent
def retire(code):
    """Retire a grid; its ground goes to ``to`` or the neighbours."""
    def call(session, park, data, **kw):
        to = _code(data, "to", required=False)
        return edits.retire_grid(session, park, _code(data), to=to,
                                 expected_version=_version(data), **kw)
    return _edit(code, {"code", "to", "expected_version"}, call)


@bp.get("")
def history(code):
    """The park's edits, newest first, one page (``limit``, ``offset``)."""
    limit, offset = page_args()
    current_user()
    session = get_session()
    park = get_park(session, code)
    return conditional.answer(paged(jsonify(
        {"park": park.code, "park_version": park.version,
         "edits": edits.park_history(session, park, limit, offset)}),
        edits.count_edits(session, park), limit, offset), park.version)


def _problem_features(report):
    features = []
    for kind, items in (("gap", report.gaps), ("overlap", report.overlaps),
                        ("outside", report.outside_park)):
        for item in items:
            features.append({"type": "Feature", "geometry": shapely.geometry.mapping(
                item["geometry"]), "properties": {"problem": kind,
                                                  "area_m2": round(item["area_m2"], 3)}})
    return features


def coverage_state(session, park, bbox=None, limit=None):
    """Level-1 grids at full precision and the park's coverage status (for the editor).

    With ``bbox`` (degrees; what a big park's editor shows) only the level-1
    grids intersecting it are sent, at most ``limit`` of them, and coverage
    is checked inside the bbox: the grids and the park clipped to it
    (``coverage.scope`` is ``"bbox"``, ``"park"`` otherwise).  When more
    grids than ``limit`` intersect it, none is checked (``coverage.scope``
    ``"too_many_grids"``: zoom in).
    """
    if bbox is None:
        # The park-wide check, once per state of the park's grids and boundary.
        _, report = coverage_report(session, park, edits.TOLERANCE_M)
        level1 = grid_layer(session, park, level=1)
        scope = "park"
    else:
        # The cached map layer's R-tree picks the grids in view: no 10^5-row read.
        cached = cached_grid_layer(session, park, 1)
        picked = np.sort(cached.tree.query(shapely.box(*bbox), predicate="intersects"))
        ids = [int(i) for i in cached.ids[picked[:limit]]]
        level1 = grid_layer(session, park, level=1, ids=ids)
        report, scope = None, "too_many_grids"
        if len(picked) <= limit:
            box = shapely.box(*bbox)
            report = check_coverage(shapely.intersection(level1.geometry.to_numpy(), box),
                                    level1["code"].tolist(),
                                    park=shapely.intersection(park_boundary(park), box),
                                    tolerance_m=edits.TOLERANCE_M, metric_epsg=park.metric_epsg)
            scope = "bbox"
    versions = dict(session.execute(sa.select(Grid.code, Grid.version).where(
        Grid.id.in_([int(i) for i in level1["id"]]))).all())
    features = [{"type": "Feature", "id": row.code, "geometry": shapely.geometry.mapping(
        row.geometry), "properties": {"code": row.code, "name": row.name,
                                      "version": versions.get(row.code),
                                      "area_m2": round(float(row.area_m2), 1)}}
                for row in level1.itertuples()]
    summary = ({"valid": None} if report is None else edits.coverage_summary(report)) | {
        "scope": scope}
    matched = len(features) if bbox is None else len(picked)
    return {"park": park.code, "park_version": park.version,
            "boundary": shapely.geometry.mapping(park_boundary(park)),
            "grids": {"type": "FeatureCollection", "features": features,
                      "numberMatched": matched, "numberReturned": len(features)},
            "coverage": summary,
            "problems": {"type": "FeatureCollection", "features": [] if report is None
                         else _problem_features(report)}}


@bp.get("/state")
def state(code):
    """What the editing page draws: the grids, their versions and the coverage status.

    ``bbox`` (the big park's editor sends its view) bounds the grids sent;
    without it a park of more than ``GRIDMAP_API_PAGE_MAX`` level-1 grids is
    refused (422 ``bbox_required``) instead of sent whole.
    """
    bbox = parse_bbox(single_arg("bbox"))
    current_user()
    session = get_session()
    park = get_park(session, code)
    if bbox is None and count_active_grids(session, park) > page_max():
        raise ValidationError(f"park {park.code} has more than {page_max()} grids: send the "
                              f"view's bbox (minx,miny,maxx,maxy)", code="bbox_required",
                              details={"parameter": "bbox", "maximum": page_max()})
    response = jsonify(coverage_state(session, park, bbox=bbox, limit=page_max()))
    response.headers["Cache-Control"] = "no-store"
    return conditional.answer(response, park.version)
