"""Field work JSON API: each route parses, calls :mod:`geodata.services.visits`, serialises.

=======  =====================================  =========================================
POST     /api/parks/<code>/visits               log a patrol/visit/re-check → 201
                                                (the same ``client_id`` again → 200 with
                                                ``Idempotent-Replayed: true``)
GET      /api/visits                            list (``park``, ``grid``, ``enterprise``,
                                                ``kind``, ``from``, ``to``, ``limit``,
                                                ``offset``), newest first
GET      /api/visits/<id>                       one visit
GET      /api/visits/<id>/history               its events (append-only)
POST     /api/visits/<id>/photos                multipart ``photo`` and ``tag``
                                                (before|after|visit, default visit) → 201
GET      /api/me/worklist?park=CODE             the phone's work list and offline bundle
GET      /api/parks/<code>/visits/due           entries due, re-checks due, this week's
                                                coverage
GET      /api/parks/<code>/visits/layer         the desk map layer (GeoJSON; ``bbox``,
                                                ``limit``, ``offset``)
=======  =====================================  =========================================

Roles are the hazard ledger's: inspectors, supervisors and admins log;
every logged-in role reads.  A grid member (rows in ``user_grids``) logs,
sees and adds photos only in their grids (403 ``outside_your_grids``).
Both POSTs accept ``Idempotency-Key``.  Unknown body fields are 422
``unknown_property``, unknown query parameters 422 ``unknown_parameter``.
"""

from flask import Blueprint, current_app, g, jsonify, url_for

from geodata import domains, periods
from geodata.errors import ValidationError
from geodata.services import visits
from geodata.services.parks import get_park
from geodata.services.photos import visible_photos
from webmap.api import (page_args, page_links, page_max, paged, parse_bbox, parse_int,
                        single_arg)
from webmap.auth import csrf, current_actor
from webmap.db import commit_or_rollback, get_session, write_session
from webmap.hazards_api import _body, _point, photo_response, read_photo_upload
from webmap.idempotency import idempotent
from webmap.photos_api import photo_json

bp = Blueprint("visits_api", __name__, url_prefix="/api")
csrf.exempt(bp)  # JSON only (415 otherwise); photo uploads check the token themselves

CREATE_FIELDS = {"client_id", "kind", "occurred_at", "location", "lon", "lat", "accuracy_m",
                 "enterprise", "hazard_id", "note", "findings"}
LIST_PARAMS = {"park", "grid", "enterprise", "kind", "from", "to", "limit", "offset"}


def _args(names):
    """The query parameters ``names``, None when absent (unknown ones are refused first).

    :func:`webmap.api.check_query` has refused unknown and repeated parameters.
    """
    return {name: single_arg(name) for name in names}


def _one(session, visit, status=200):
    (item,) = visits.visit_dicts(session, [visit])
    response = jsonify(item)
    response.status_code = status
    response.headers["Location"] = url_for("visits_api.get_visit", visit_id=visit.id)
    if status == 200:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/parks/<code>/visits")
@idempotent
def create_visit(code):
    """Log a patrol, visit or re-check; grid and enterprise are resolved from the point."""
    session = get_session()
    actor = current_actor(session, "create")
    data = _body(CREATE_FIELDS)
    point = _point(data)
    session = write_session()

    def work():
        # Read locked shared, as hazard and request creates do: a grid edit (FOR UPDATE)
        # waits until the visit is placed and stored, so it never names a grid the edit
        # retired meanwhile (PostgreSQL; SQLite's one writer keeps edits out already).
        park = get_park(session, code, lock="share")
        return visits.create_visit(
            session, park, actor=actor, client_id_=data.get("client_id"), kind=data.get("kind"),
            occurred_at_=data.get("occurred_at"), point=point,
            accuracy_m=data.get("accuracy_m"), enterprise=data.get("enterprise"),
            hazard_id=data.get("hazard_id"), note=data.get("note", ""),
            findings=data.get("findings", ""))

    visit, new = commit_or_rollback(session, work)
    return _one(session, visit, 201 if new else 200)


@bp.get("/visits")
def list_visits():
    """Visits with filters, newest first (a grid member sees their grids only)."""
    args = _args(LIST_PARAMS)
    session = get_session()
    actor = current_actor(session, "read")
    park = get_park(session, args["park"]) if args["park"] else None
    limit = parse_int("limit", args["limit"], 1, visits.MAX_PAGE, default=100)
    offset = parse_int("offset", args["offset"], 0, domains.OFFSET_MAX, default=0)
    rows, total = visits.list_visits(
        session, park=park, grid=args["grid"], enterprise=args["enterprise"], kind=args["kind"],
        from_=args["from"], to=args["to"], limit=limit, offset=offset, grid_ids=actor.grid_ids)
    return jsonify({"total": total, "limit": limit, "offset": offset,
                    "visits": visits.visit_dicts(session, rows)})


@bp.get("/visits/<int:visit_id>")
def get_visit(visit_id):
    """One visit."""
    session = get_session()
    visit = visits.get_visit(session, visit_id, current_actor(session, "read"))
    (item,) = visits.visit_dicts(session, [visit])
    return jsonify(item)


@bp.get("/visits/<int:visit_id>/history")
def history(visit_id):
    """The visit's events, oldest first."""
    session = get_session()
    events = visits.history(session, visit_id, current_actor(session, "read"))
    return jsonify({"visit": visit_id, "events": [
        {"at": periods.local_now(e.at).isoformat(), "actor": e.actor,
         "action": e.action, "note": e.note} for e in events]})


@bp.post("/visits/<int:visit_id>/photos")
@idempotent
def upload_photo(visit_id):
    """Store a JPEG/PNG photo of a visit (multipart ``photo``, ``tag`` default ``visit``)."""
    actor, data, filename, tag = read_photo_upload("visit")
    session = write_session()
    photo = commit_or_rollback(session, lambda: visits.save_visit_photo(
        session, visit_id, data, actor=actor,
        directory=current_app.config["GRIDMAP"].photo_dir, original_name=filename, tag=tag))
    return photo_response(photo)


@bp.get("/me/worklist")
def worklist():
    """The logged-in user's work list for one park (the phone's offline bundle)."""
    args = _args(("park",))
    session = get_session()
    actor = current_actor(session, "read")
    code = args["park"]
    if not code:
        raise ValidationError("give the park: /api/me/worklist?park=CODE", code="missing_field",
                              details={"parameter": "park"})
    work = visits.worklist(session, get_park(session, code), g.user, grid_limit=page_max())
    # The phone shows each open hazard's photos, the ones this user may see.
    shown = visible_photos(session, [h["id"] for h in work["hazards"]], actor)
    for hazard in work["hazards"]:
        hazard["photos"] = [photo_json(p) for p in shown.get(hazard["id"], [])]
    return jsonify(work)


@bp.get("/parks/<code>/visits/due")
def due(code):
    """What is due in a park: visits and patrols, re-checks, and this week's coverage."""
    args = _args(("week",))
    session = get_session()
    actor = current_actor(session, "read")
    park = get_park(session, code)
    return jsonify({"today": periods.local_today().isoformat(),
                    "visits_due": visits.due(session, park, user=g.user),
                    "rechecks_due": visits.rechecks_due(session, park, grid_ids=actor.grid_ids),
                    "coverage": visits.coverage(session, park, week=args["week"])})


@bp.get("/parks/<code>/visits/layer")
def layer(code):
    """Enterprises overdue for a visit and grids without a patrol today (GeoJSON).

    ``bbox`` keeps what the map shows; ``limit``/``offset`` page the rest.
    """
    bbox = parse_bbox(single_arg("bbox"))
    limit, offset = page_args()
    session = get_session()
    current_actor(session, "read")
    layer = visits.field_layer(session, get_park(session, code), user=g.user, bbox=bbox,
                               limit=limit, offset=offset)
    layer["links"] = page_links(layer["numberMatched"], limit, offset)
    response = paged(jsonify(layer), layer["numberMatched"], limit, offset)
    response.mimetype = "application/geo+json"
    return response
