"""The hazard ledger JSON API: each route parses, calls :mod:`geodata.services.ledger`, serialises.

=======  =====================================  =========================================
POST     /api/parks/<code>/hazards              log a hazard at a point → 201 + ETag
GET      /api/hazards                           list (``park``, ``status``, ``level``,
                                                ``escalation``, ``category``, ``grid``,
                                                ``overdue``, ``limit``, ``offset``)
GET      /api/hazards/<id>                      one hazard, ``ETag: "<version>.<digest>"``
POST     /api/hazards/<id>/transitions          ``{to, note, deadline?, supervision?,
                                                version?}`` with ``If-Match`` (412) or
                                                body ``version`` (409)
POST     /api/hazards/<id>/escalations          ``{to, reason, version?}``, same rules
POST     /api/hazards/<id>/photos               multipart ``photo`` (JPEG/PNG) and ``tag``
                                                (before|after|visit, default before) → 201
GET      /api/hazards/<id>/photos               its photos with their URLs (see photos_api)
GET      /api/hazards/<id>/history              events and supervision records
GET      /api/parks/<code>/dashboard            the dashboard figures
=======  =====================================  =========================================

Every POST accepts ``Idempotency-Key`` (:mod:`webmap.idempotency`): a retry
is answered from the stored answer, never done twice.
Bodies must be ``application/json`` (415 otherwise); unparseable JSON is
400 ``invalid_json``; ``NaN``/``Infinity`` are 422 ``invalid_coordinate``;
unknown fields are 422 ``unknown_property``, unknown query parameters 422
``unknown_parameter`` (:func:`webmap.api.check_query`).
``GET /api/parks/<code>/hazards`` belongs to the map API (GeoJSON layer);
the ledger list is ``GET /api/hazards?park=<code>``.
"""

from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask_wtf.csrf import validate_csrf
from wtforms.validators import ValidationError as CSRFValidationError

from geodata import domains
from geodata.errors import BadRequestError, GridmapError, ValidationError
from geodata.geometry import geometry_member, parse_json
from geodata.photos import prepare
from geodata.services import ledger, photos, weekly
from geodata.services.parks import get_park
from webmap.api import check_members, page_args, paged, parse_bool, parse_int
from webmap.auth import csrf, current_actor
from webmap.conditional import answer as _tagged, expected_version as _expected_version
# edit_api imports these two under their old private names from here.
from webmap.db import commit_or_rollback as _commit_or_rollback, get_session
from webmap.db import write_session as _writer
from webmap.idempotency import idempotent
from webmap.photos_api import photo_json

bp = Blueprint("hazards_api", __name__, url_prefix="/api")
csrf.exempt(bp)  # JSON only (415 otherwise); see webmap.auth

CREATE_FIELDS = {"location", "lon", "lat", "category", "level", "description", "found_date",
                 "code"}
TRANSITION_FIELDS = {"to", "note", "deadline", "supervision", "version"}
ESCALATION_FIELDS = {"to", "reason", "version"}


class UnsupportedMediaTypeError(GridmapError):
    """A body that is not ``application/json`` (415)."""

    http_status = 415
    code = "unsupported_media_type"


def _body(allowed):
    """Parse the JSON object body: only the ``allowed`` fields, each of its documented shape.

    The shapes are the OpenAPI document's (:func:`webmap.api.check_members`).
    """
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError(
            f"send the body as application/json, not {request.mimetype or 'nothing'!r}")
    data = parse_json(request.get_data(cache=False))
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object", code="invalid_body")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(unknown)[:200]}",
                              code="unknown_property",
                              details={"field": unknown[0][:80], "allowed": sorted(allowed)})
    check_members(data)
    return data


def _one(session, hazard, status=200):
    return _answer(hazard, ledger.hazard_dicts(session, [hazard], role=g.user.role)[0], status)


def _written(session, work):
    """Run the write ``work()`` → hazard, commit, then serialise it.

    The answer is built after the commit: its names came with the write's
    own reads (a create's placement, a transition's locked row), so it needs
    no query, and a create's ledger-counter row lock is not held while it is
    built.  Under an ``Idempotency-Key`` the commit comes later, with the
    stored answer (:mod:`webmap.idempotency`).
    """
    hazard = _commit_or_rollback(session, work)
    return hazard, ledger.hazard_dicts(session, [hazard], role=g.user.role)[0]


def _answer(hazard, item, status=200):
    response = jsonify(item)
    response.status_code = status
    response = _tagged(response, hazard.version)
    if status == 201:
        response.headers["Location"] = url_for("hazards_api.get_hazard", hazard_id=hazard.id)
    return response


def _point(data):
    if "location" in data and ("lon" in data or "lat" in data):
        # Which would win?  A client that sends both means one of them, and not the other.
        raise ValidationError("give location (GeoJSON Point) or lon and lat, not both",
                              code="invalid_value", details={"field": "location"})
    if "location" in data:  # null too: a missing geometry, as in every geometry member
        return geometry_member(data["location"], "location", ("Point",))
    if "lon" not in data or "lat" not in data:
        raise ValidationError("give location (GeoJSON Point) or lon and lat",
                              code="missing_field", details={"field": "location"})
    return ledger.parse_point(data["lon"], data["lat"])


@bp.post("/parks/<code>/hazards")
@idempotent
def create_hazard(code):
    """Log a hazard at a point; its grid and enterprise are resolved spatially."""
    session = get_session()
    actor = current_actor(session, "create")
    data = _body(CREATE_FIELDS)
    point = _point(data)

    def work():
        # The service places the point in this read transaction, then starts the write.  On
        # PostgreSQL the park is read locked shared, as the create needs it: no statement to
        # lock it or re-read its version later (grid edits wait; creates do not wait for
        # each other).
        park = get_park(session, code, lock="share")
        return ledger.create_hazard(
            session, park, point=point, category=data.get("category"), actor=actor,
            level=data.get("level", "general"), description=data.get("description", ""),
            found_date=data.get("found_date"), code=data.get("code"), park_locked=True)

    return _answer(*_written(session, work), 201)


def _list():
    session = get_session()
    actor = current_actor(session, "read")
    args = request.args
    park_code = args.get("park")
    park = get_park(session, park_code) if park_code else None
    overdue = parse_bool("overdue", args.get("overdue"))
    limit = parse_int("limit", args.get("limit"), 1, ledger.MAX_PAGE, default=100)
    offset = parse_int("offset", args.get("offset"), 0, domains.OFFSET_MAX, default=0)
    hazards, total = ledger.list_hazards(
        session, park=park, status=args.get("status"), level=args.get("level"),
        escalation=args.get("escalation"), category=args.get("category"),
        grid=args.get("grid"), overdue=overdue, limit=limit, offset=offset,
        grid_ids=actor.grid_ids)
    return jsonify({"total": total, "limit": limit, "offset": offset,
                    "hazards": ledger.hazard_dicts(session, hazards, role=g.user.role)})


@bp.get("/hazards")
def list_hazards():
    """List hazards with filters."""
    return _list()


@bp.get("/hazards/<int:hazard_id>")
def get_hazard(hazard_id):
    """One hazard with its next allowed transitions; ``ETag``: its version and body digest."""
    session = get_session()
    hazard = ledger.get_hazard(session, hazard_id, actor=current_actor(session, "read"))
    return _one(session, hazard)


def target_state(data):
    """The ``to`` of a transition body: a state name (checked by the workflow), else 422."""
    target = data.get("to")
    if not isinstance(target, str):
        raise ValidationError("'to' must name the target state", code="unknown_status",
                              details={"field": "to"})
    return target


@bp.post("/hazards/<int:hazard_id>/transitions")
@idempotent
def transition(hazard_id):
    """Move a hazard through the workflow (see :mod:`geodata.workflow`)."""
    session = get_session()
    actor = current_actor(session, "move")
    data = _body(TRANSITION_FIELDS)
    version, if_match = _expected_version(data)
    target = target_state(data)
    session = _writer()
    return _answer(*_written(session, lambda: ledger.transition(
        session, hazard_id, target, actor=actor, expected_version=version, if_match=if_match,
        note=data.get("note", ""), deadline=data.get("deadline"),
        supervision=data.get("supervision"))))


@bp.post("/hazards/<int:hazard_id>/escalations")
@idempotent
def escalate(hazard_id):
    """Raise a hazard's escalation level with a reason."""
    session = get_session()
    actor = current_actor(session, "escalate")
    data = _body(ESCALATION_FIELDS)
    version, if_match = _expected_version(data)
    session = _writer()
    return _answer(*_written(session, lambda: ledger.escalate(
        session, hazard_id, data.get("to"), actor=actor, reason=data.get("reason", ""),
        expected_version=version, if_match=if_match)))


@bp.post("/hazards/<int:hazard_id>/photos")
@idempotent
def upload_photo(hazard_id):
    """Store a JPEG/PNG photo (multipart ``photo``, optional ``tag``); returns it with its URLs.

    The id goes into ``supervision.photo_id``.  A browser session must send
    its CSRF token in ``X-CSRFToken`` (a multipart form could come from
    another site); API tokens need none.
    """
    actor, data, filename, tag = read_photo_upload(photos.DEFAULT_TAG)
    session = _writer()
    photo = _commit_or_rollback(session, lambda: ledger.save_photo(
        session, hazard_id, data, actor=actor,
        directory=current_app.config["GRIDMAP"].photo_dir, original_name=filename, tag=tag))
    return photo_response(photo)


PHOTO_FIELDS = ("photo", "tag")


def read_photo_upload(default_tag):
    """Return ``(actor, prepared photo, file name, tag)`` of a multipart photo upload.

    The one reader of hazard and visit photos: the fields are ``photo`` and
    ``tag`` (:func:`geodata.services.photos.photo_tag`, ``default_tag`` when
    absent), each once (:func:`webmap.api.check_query`); any other is 422
    ``unknown_property``, as in a JSON body, rather than dropped while the
    client believes it was kept.
    Checks the role (create) and, for a browser session, the CSRF token; the
    image is decoded and re-encoded (:func:`geodata.photos.prepare`) here,
    before any write transaction: it can take a second, and SQLite's single
    write lock would be held meanwhile.
    """
    session = get_session()
    actor = current_actor(session, "create")
    if g.auth == "session":
        try:
            validate_csrf(request.headers.get("X-CSRFToken", ""))
        except CSRFValidationError as exc:
            raise BadRequestError(str(exc), code="csrf_failed") from None
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaTypeError(f"send the photo as multipart/form-data, not "
                                        f"{request.mimetype or 'nothing'!r}")
    names = list(request.form.keys()) + list(request.files.keys())
    unknown = sorted(set(names) - set(PHOTO_FIELDS))
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(unknown)[:200]}",
                              code="unknown_property",
                              details={"field": unknown[0][:80], "allowed": list(PHOTO_FIELDS)})
    # A part of the other kind (the tag sent as a file, the photo as text) was read as absent:
    # the photo was stored with the default tag while the client believed it sent another.
    for name, wrong, kind in (("photo", request.form, "a file"), ("tag", request.files, "text")):
        if name in wrong:
            raise ValidationError(f"send the field {name!r} as {kind}", code="invalid_type",
                                  details={"field": name})
    upload = request.files.get("photo")
    if upload is None:
        raise ValidationError("send the photo as multipart field 'photo'", code="missing_field",
                              details={"field": "photo"})
    tag = photos.photo_tag(request.form["tag"]) if "tag" in request.form else default_tag
    # The name whole: the service refuses one too long (text_too_long, field filename) rather
    # than storing a cut one, which may end between a letter and its accent.
    return actor, prepare(upload.read()), upload.filename or "", tag


def photo_response(photo):
    """201 with the stored photo as :func:`webmap.photos_api.photo_json` describes it."""
    response = jsonify(photo_json(photo))
    response.status_code = 201
    response.headers["Location"] = url_for("photos_api.photo", photo_id=photo.id)
    return response


@bp.get("/hazards/<int:hazard_id>/photos")
def list_photos(hazard_id):
    """The hazard's photos, oldest first, for a user who may see them."""
    session = get_session()
    actor = current_actor(session, "read")
    return jsonify({"hazard": hazard_id, "photos": [
        photo_json(p) for p in photos.hazard_photos(session, hazard_id, actor)]})


@bp.get("/hazards/<int:hazard_id>/history")
def history(hazard_id):
    """The hazard's events (append-only) and supervision records, oldest first."""
    session = get_session()
    events = ledger.history(session, hazard_id, current_actor(session, "read"))
    records = ledger.supervisions(session, hazard_id)
    return jsonify({
        "hazard": hazard_id,
        "events": [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status,
                    "to": e.to_status, "action": e.action, "escalation": e.escalation,
                    "note": e.note} for e in events],
        "supervisions": [{"supervisor": r.supervisor, "checked_at": r.checked_at.isoformat(),
                          "outcome": r.outcome, "note": r.note, "photo_id": r.photo_id}
                         for r in records]})


@bp.get("/parks/<code>/dashboard")
def dashboard(code):
    """The park's dashboard figures as JSON (hazards, requests, visit coverage).

    ``by_grid`` is one page of the level-1 grids (``limit``, ``offset``;
    ``grids`` and ``X-Total-Count`` count them all).
    """
    limit, offset = page_args()
    session = get_session()
    current_actor(session, "read")
    park = get_park(session, code)
    figures = ledger.dashboard(session, park, grid_limit=limit, grid_offset=offset)
    return paged(jsonify({**figures, **weekly.service_figures(session, park)}),
                 figures["grids"], limit, offset)
