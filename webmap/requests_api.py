"""The request ledger JSON API: parse, call :mod:`geodata.services.requests`, serialise.

=======  =====================================  =========================================
POST     /api/parks/<code>/requests             take a request (受理) → 201 + ETag
GET      /api/requests                          list (``park``, ``status``, ``category``,
                                                ``grid``, ``enterprise``, ``overdue``,
                                                ``source``, ``limit``, ``offset``)
GET      /api/requests/<id>                     one request, ``ETag: "<version>.<digest>"``
POST     /api/requests/<id>/transitions         ``{to, note?, department?, deadline?,
                                                responsible?, satisfaction?, version?}``
                                                with ``If-Match`` (412) or body
                                                ``version`` (409)
GET      /api/requests/<id>/history             its events, oldest first
=======  =====================================  =========================================

The conventions are the hazard ledger's (:mod:`webmap.hazards_api`, whose
body and version readers these routes share): ``application/json`` bodies
only (415), unknown fields 422 ``unknown_property`` (parameters
``unknown_parameter``, :func:`webmap.api.check_query`), a write
with neither ``If-Match`` nor ``version`` 428.  "Today" (for overdue and
deadlines) is the date in Asia/Shanghai.  Both writes accept
``Idempotency-Key`` (:mod:`webmap.idempotency`).  A create may name the visit
it was raised on (``visit``: the visit's ``client_id``); its source is then
``visit`` and its enterprise, when not given, the visit's.
"""

from flask import Blueprint, current_app, g, jsonify, url_for

from geodata import domains
from geodata.periods import local_today
from geodata.services import requests as service
from geodata.services.parks import get_park
from webmap.api import parse_bool, parse_int, single_arg
from webmap.auth import csrf, current_actor
from webmap.db import commit_or_rollback, get_session, write_session
from webmap.conditional import answer, expected_version
from webmap.hazards_api import _body, target_state
from webmap.idempotency import idempotent

bp = Blueprint("requests_api", __name__, url_prefix="/api")
csrf.exempt(bp)  # JSON only (415 otherwise); see webmap.auth

CREATE_FIELDS = {"enterprise", "category", "description", "received_date", "source", "visit"}
TRANSITION_FIELDS = {"to", "note", "department", "deadline", "responsible", "satisfaction",
                     "version"}
LIST_PARAMS = ("park", "status", "category", "grid", "enterprise", "overdue", "source", "limit",
               "offset")


def today():
    """Local today in Asia/Shanghai (``app.config["TODAY"]`` in tests)."""
    return current_app.config.get("TODAY") or local_today()


def _one(session, item, status=200):
    (data,) = service.request_dicts(session, [item], role=g.user.role, today=today())
    response = jsonify(data)
    response.status_code = status
    response = answer(response, item.version)
    if status == 201:
        response.headers["Location"] = url_for("requests_api.get_request", request_id=item.id)
    return response


@bp.post("/parks/<code>/requests")
@idempotent
def create_request(code):
    """Take an enterprise's request (受理); its grid is the enterprise's."""
    session = get_session()
    actor = current_actor(session, "create")
    data = _body(CREATE_FIELDS)
    session = write_session()

    def work():
        # Read locked shared, as create_request needs it: no statement to lock it again.
        park = get_park(session, code, lock="share")
        return service.create_request(
            session, park, enterprise=data.get("enterprise"), category=data.get("category"),
            description=data.get("description"), source=data.get("source"), actor=actor,
            received_date=data.get("received_date"), today=today(), visit=data.get("visit"))

    item = commit_or_rollback(session, work)
    return _one(session, item, 201)


@bp.get("/requests")
def list_requests():
    """List requests with filters, by park and date received."""
    args = {name: single_arg(name) for name in LIST_PARAMS}
    session = get_session()
    actor = current_actor(session, "read")
    park = get_park(session, args["park"]) if args["park"] else None
    limit = parse_int("limit", args["limit"], 1, service.MAX_PAGE, default=100)
    offset = parse_int("offset", args["offset"], 0, domains.OFFSET_MAX, default=0)
    items, total = service.list_requests(
        session, park=park, status=args["status"], category=args["category"],
        grid=args["grid"], enterprise=args["enterprise"], source=args["source"],
        overdue=parse_bool("overdue", args["overdue"]), limit=limit, offset=offset,
        today=today(), grid_ids=actor.grid_ids)
    return jsonify({"total": total, "limit": limit, "offset": offset,
                    "requests": service.request_dicts(session, items, role=g.user.role,
                                                      today=today())})


@bp.get("/requests/<int:request_id>")
def get_request(request_id):
    """One request with its next allowed transitions; ``ETag``: its version and body digest."""
    session = get_session()
    item = service.get_request(session, request_id, actor=current_actor(session, "read"))
    return _one(session, item)


@bp.post("/requests/<int:request_id>/transitions")
@idempotent
def transition(request_id):
    """Move a request through 受理 → 交办 → 办理 → 办结 → 回访 (see geodata.request_workflow)."""
    session = get_session()
    actor = current_actor(session, "move")
    data = _body(TRANSITION_FIELDS)
    version, if_match = expected_version(data)
    target = target_state(data)
    session = write_session()
    item = commit_or_rollback(session, lambda: service.transition(
        session, request_id, target, actor=actor, expected_version=version, if_match=if_match,
        note=data.get("note", ""), department=data.get("department"),
        deadline=data.get("deadline"), responsible=data.get("responsible"),
        satisfaction=data.get("satisfaction"), today=today()))
    return _one(session, item)


@bp.get("/requests/<int:request_id>/history")
def history(request_id):
    """The request's events (append-only), oldest first."""
    session = get_session()
    events = service.history(session, request_id, current_actor(session, "read"))
    return jsonify({"request": request_id, "events": service.event_dicts(events)})
