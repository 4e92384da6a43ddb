"""The hazard ledger (隐患台账): log, move through the workflow, list, history, dashboard.

Every write function expects to run inside one write transaction (see
:func:`geodata.storage.begin_write`; on SQLite that is ``BEGIN IMMEDIATE``)
and locks the rows it depends on (``SELECT ... FOR UPDATE`` on PostgreSQL),
so two clients moving the same hazard from the same version are serialised:
the second one sees the new version and gets 409 ``stale_version`` (or 412
when it sent ``If-Match``).  Nothing is written before every check passed.
"""

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import shapely
import sqlalchemy as sa

from geodata import domains
from geodata.errors import FeatureError, NotFoundError, ValidationError
from geodata.models import (ESCALATION_LEVELS, HAZARD_LEVELS, HAZARD_STATUSES, Enterprise,
                            Grid, Hazard, HazardEvent, Park, Photo, Supervision)
from geodata.models.base import to_element, to_shapes
from geodata.periods import local_today
from geodata.services.coverage import rate_counts, rates_of
from geodata.services.hazards import LEVEL_NAMES, STATUS_NAMES, ledger_codes, locate
from geodata.services.numbering import insert_numbered
from geodata.services.parks import prepared_boundary
from geodata.storage import backend_name, insert_child, insert_row, start_write, update_row
from geodata.versions import check_version
from geodata.workflow import (STATE_NAMES, PermissionDeniedError, allowed_targets,
                              check_escalation, is_overdue, plan_transition, require)

#: Hazard categories (隐患类别) accepted by the API and CLI.
CATEGORIES = ("消防安全", "用电安全", "安全通道", "特种设备", "危化品", "有限空间", "粉尘防爆",
              "劳动防护", "其他")
MAX_PAGE = 1000
#: ``InstanceState.info`` key of a hazard read with its names: ((park, grid, firm ids), names).
_NAMES = "gridmap.names"


@dataclass
class Actor:
    """Who is acting: a user name, a role and, for grid members, the grids they serve.

    ``grid_ids`` None means no grid limit.
    """

    name: str
    role: str
    grid_ids: Optional[set] = None


def _text(value, field, *, required=False, kind="note"):
    """Clean text of ``kind`` (:data:`geodata.domains.TEXT_MAX`) or a 422 naming the field."""
    return domains.text(value, field, kind=kind, required=required) or ""


def parse_point(lon, lat):
    """Return a shapely Point from lon/lat degrees (EPSG:4326), or raise 422.

    Raises
    ------
    ValidationError
        ``invalid_coordinate`` (not a finite number) or ``coordinate_out_of_range``.
    """
    lon, lat = (domains.number(value, name, code="invalid_coordinate")
                for name, value in (("lon", lon), ("lat", lat)))
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValidationError(f"({lon}, {lat}) is not a lon/lat position (EPSG:4326); the "
                              "coordinates may be in lat/lon order",
                              code="coordinate_out_of_range", details={"field": "location"})
    return shapely.Point(lon, lat)


#: What :func:`hazard_dicts` shows of an entry's park, grid and enterprise.
_NAME_COLUMNS = (Park.code, Grid.code, Grid.name, Enterprise.name, Enterprise.credit_code)


def _with_names(query, model):
    """``query`` of ``model`` rows joined to the park, grid and enterprise that answers show."""
    return query.add_columns(*_NAME_COLUMNS).join(Park, Park.id == model.park_id).outerjoin(
        Grid, Grid.id == model.grid_id).outerjoin(Enterprise, Enterprise.id == model.enterprise_id)


def _keep_names(hazard, names):
    """Keep ``names`` (:data:`_NAME_COLUMNS`) on ``hazard`` for :func:`hazard_dicts`.

    They are used only while the hazard is still in the park, grid and
    enterprise they were read for (:func:`_loaded_names`).
    """
    sa.inspect(hazard).info[_NAMES] = (
        (hazard.park_id, hazard.grid_id, hazard.enterprise_id), tuple(names))


def get_hazard(session, hazard_id, *, lock=False, names=False, actor=None):
    """Return the hazard with ``hazard_id``; ``lock`` takes a row lock (PostgreSQL).

    ``names`` reads, in the same statement, what :func:`hazard_dicts` shows
    of its park, grid and enterprise (a transition answers with them).  With
    ``actor``, a grid member may only read a hazard of their grids
    (:func:`_check_grid_limit`).

    Raises
    ------
    NotFoundError
        404 ``hazard_not_found``.
    PermissionDeniedError
        403 ``outside_your_grids``.
    """
    hazard = entry_by_id(session, Hazard, hazard_id, lock=lock, what="hazard", names=names)
    if actor is not None:
        _check_grid_limit(actor, hazard.grid_id)
    return hazard


def entry_by_id(session, model, entry_id, *, lock=False, what, names=False):
    """The ledger entry (hazard, request) ``entry_id`` of ``model``; 404 ``<what>_not_found``.

    Re-read from the database (``populate_existing``); ``lock`` takes its row
    lock (PostgreSQL; only the entry's row, not the rows joined for
    ``names``, see :func:`get_hazard`).
    """
    if not domains.is_id(entry_id):
        raise NotFoundError(f"no {what} {entry_id!r}", code=f"{what}_not_found")
    row = session.execute(_entry_statement(model, lock, names), {"entry_id": entry_id}).first()
    if row is None:
        raise NotFoundError(f"no {what} {entry_id}", code=f"{what}_not_found")
    found = row[0]
    if names:
        _keep_names(found, row[1:])
    return found


@functools.cache
def _entry_statement(model, lock, names):
    # Built once per kind: every transition and escalation starts with it.  The names come
    # as plain columns: three joined entities cost more CPU to load than the entry itself.
    query = sa.select(model)
    if names:
        query = _with_names(query, model)
    query = query.where(model.id == sa.bindparam("entry_id", type_=sa.Integer)
                        ).execution_options(populate_existing=True)
    return query.with_for_update(of=model) if lock else query


def entry_by_code(session, model, code, park=None, *, what):
    """The ledger entry of ``model`` numbered ``code``, in ``park`` if given.

    404 ``<what>_not_found`` when none has it; 422 ``ambiguous_code`` when
    several parks use it and no park is given.
    """
    query = sa.select(model).where(model.code == code)
    if park is not None:
        query = query.where(model.park_id == park.id)
    found = session.execute(query.limit(2)).scalars().all()
    if not found:
        raise NotFoundError(f"no {what} with ledger number {code!r}", code=f"{what}_not_found")
    if len(found) > 1:
        raise ValidationError(f"ledger number {code!r} is used in several parks: give --park",
                              code="ambiguous_code")
    return found[0]


def get_hazard_by_code(session, code, park=None):
    """Return the hazard with ledger code ``code`` (``YH2026-0012``), in ``park`` if given.

    Raises
    ------
    NotFoundError
        404 ``hazard_not_found`` when no hazard has the code.
    ValidationError
        422 ``ambiguous_code`` when several parks use it and no park is given.
    """
    return entry_by_code(session, Hazard, code, park, what="hazard")


def _lock_park(session, park, *, shared=False):
    """Lock the park for this transaction and return its stored version.

    An edit of the park's grids re-locates its hazards and requests under
    the exclusive lock (``FOR UPDATE``); creates take the ``shared`` one
    (``FOR SHARE``), so they run side by side but never beside an edit, and
    their ledger numbers come from the counters
    (:mod:`geodata.services.numbering`).  PostgreSQL only: SQLite writers
    hold the database's write lock already.
    """
    return session.execute(_park_version_statement(backend_name(session), shared),
                           {"park_id": park.id}).scalar_one()


@functools.cache
def _park_version_statement(backend, shared):
    # Built once: every create and every grid edit runs it.  Of the table: no ORM steps.
    parks = Park.__table__
    query = sa.select(parks.c.version).where(
        parks.c.id == sa.bindparam("park_id", type_=sa.Integer))
    if backend == "postgresql":
        query = query.with_for_update(read=shared)
    return query


def _check_grid_limit(actor, grid_id, what="this hazard's grid"):
    # The one rule for grid members, reading and writing alike: shared with the request
    # and visit ledgers, photos and enterprise files (geodata.services.requests, .visits,
    # .photos, .enterprise_file).  Another park's grid is never one of theirs.
    if actor.grid_ids is not None and grid_id not in actor.grid_ids:
        raise PermissionDeniedError(f"{actor.name} does not serve {what}",
                                    code="outside_your_grids")


def create_hazard(session, park, *, point, category, actor, level="general", description="",
                  found_date=None, code=None, park_locked=False):
    """Log a hazard at ``point`` (shapely Point, EPSG:4326) in ``park``; return it.

    The grid (deepest containing grid; on a shared boundary the lowest code
    wins) and the enterprise (hidden units first) are resolved by
    :func:`geodata.services.hazards.locate`.  The ledger number is the next
    ``YH<year>-<seq>`` unless ``code`` is given.  The first history event
    records who logged it.

    The point is placed in the caller's transaction; then
    :func:`geodata.storage.start_write` takes the write lock (on SQLite a
    transaction that has only read is ended first), so the lock covers only
    numbering and inserting.  On PostgreSQL the park's row is locked shared
    (creates run side by side, grid edits wait), and the number's counter
    row (:mod:`geodata.services.numbering`) is taken last, just before the
    inserts.  An edit that changed the park meanwhile is seen by its
    version, and the point is placed again under the lock.  ``park_locked``:
    the caller read ``park`` with ``get_park(lock="share")`` in this
    transaction, so on PostgreSQL it is locked and current already and its
    version is not read again (SQLite read it in a snapshot before the write
    lock, so there it always is).

    Raises
    ------
    ValidationError
        422 ``outside_park``, ``unknown_category``, ``unknown_level``, bad text.
    PermissionDeniedError
        403 for a role that may not log hazards, or outside a grid member's grids.
    ConflictError
        409 ``duplicate_hazard_code``.
    """
    require(actor.role, "create")
    if category not in CATEGORIES:
        raise ValidationError(f"unknown category {category!r}; expected one of "
                              f"{', '.join(CATEGORIES)}", code="unknown_category",
                              details={"field": "category", "allowed": CATEGORIES})
    if not isinstance(level, str) or LEVEL_NAMES.get(level) is None:
        raise ValidationError(f"unknown level {level!r}; expected one of "
                              f"{', '.join(HAZARD_LEVELS)}", code="unknown_level",
                              details={"field": "level", "allowed": HAZARD_LEVELS})
    description = _text(description, "description")
    found_date = domains.day(found_date, "found_date") or local_today()
    if found_date > local_today():
        raise ValidationError("found_date is in the future", code="invalid_date",
                              details={"field": "found_date"})

    def place(park):
        if not shapely.covers(prepared_boundary(park), point):
            raise ValidationError(f"the point lies outside park {park.code}",
                                  code="outside_park",
                                  details={"field": "location", "park": park.code})
        (grid,), (firm,) = locate(session, park, [point], names=True)
        return grid, firm

    # Placed before the write lock, which is then held only for numbering and inserting.
    read_version = park.version
    grid, firm = place(park)
    start_write(session)
    # A park read locked shared on PostgreSQL (park_locked) cannot have changed since.
    recheck = not (park_locked and backend_name(session) == "postgresql")
    if recheck and _lock_park(session, park, shared=True) != read_version:
        # An edit changed the park since it was read: place the point again, under the lock.
        park = session.execute(sa.select(Park).where(Park.id == park.id).execution_options(
            populate_existing=True)).scalar_one()
        grid, firm = place(park)
    grid_id, enterprise_id = grid and grid[0], firm and firm[0]
    _check_grid_limit(actor, grid_id)
    hazard = Hazard(park_id=park.id, grid_id=grid_id, enterprise_id=enterprise_id,
                    location=to_element(point), category=category, level=LEVEL_NAMES[level],
                    description=description, found_date=found_date, status="found",
                    escalation="grid")
    # Numbered last: the counter's row lock is then held only for the inserts and the commit.
    first = history_event(actor=actor.name, from_status=None, to_status="found", action="log",
                          note=description)
    if code is not None or insert_numbered(
            session, hazard, park, "YH", found_date.year, child=first) is None:
        try:
            (hazard.code,) = ledger_codes(session, park, [code], years=[found_date.year])
        except FeatureError as exc:
            raise ValidationError(exc.message, code=exc.code, details={"field": "code"}) from None
        insert_row(session, hazard)
        insert_child(session, hazard.id, first)
    # The answer's names were read with the placement: hazard_dicts needs no query for them.
    _keep_names(hazard, (park.code, grid and grid[1], grid and grid[2], firm and firm[1],
                         firm and firm[2]))
    return hazard


def history_event(*, actor, from_status, to_status, action, note, escalation=None):
    """One event of a hazard's history (``hazard_events``), as the ``child`` row of a write.

    The writes insert it with the hazard's own statement, not through the
    session: they never load a hazard's history (``hazard.events`` would
    read it all first), and the unit of work for a second object cost more
    CPU than the insert itself (:func:`~geodata.storage.insert_row`,
    :func:`~geodata.storage.update_row`).
    """
    return (HazardEvent.__table__, "hazard_id", {
        "at": datetime.now(timezone.utc), "actor": actor, "from_status": from_status,
        "to_status": to_status, "action": action, "note": note, "escalation": escalation})


def _check_version(hazard, expected, if_match, what="hazard"):
    # Shared with the request ledger: ``hazard`` is any row with ``code`` and ``version``.
    check_version(f"{what} {hazard.code}", hazard.version, expected, if_match)


def transition(session, hazard_id, target, *, actor, expected_version, if_match=False, note="",
               deadline=None, supervision=None, today=None):
    """Move a hazard to ``target`` (see :mod:`geodata.workflow`); return the hazard.

    Parameters
    ----------
    expected_version : int
        The version the client read; a different stored version is refused.
    if_match : bool
        True when the version came from an ``If-Match`` header (412, not 409).
    supervision : dict, optional
        ``{"note", "checked_at" (ISO datetime, default now), "photo_id"}``;
        required to close.  The record's supervisor is always the acting
        user; a ``"supervisor"`` naming anyone else is refused.

    Raises
    ------
    ConflictError
        409 ``stale_version`` or ``illegal_transition``.
    PreconditionFailedError
        412 when ``If-Match`` is stale.
    PermissionDeniedError
        403 for a role or grid that may not take the step.
    ValidationError
        422 for a missing deadline, note or supervision record, or bad text;
        422 ``after_photo_required`` to close a major hazard without a photo
        tagged ``after`` in a park that requires one (``parks.require_after_photo``).
    """
    # The grid limit first: a refusal tells a grid member nothing of the hazard's state.
    hazard = get_hazard(session, hazard_id, lock=True, names=True, actor=actor)
    _check_version(hazard, expected_version, if_match)
    note = _text(note, "note")
    deadline = domains.day(deadline, "deadline")
    supervision = domains.members(supervision, "supervision")
    step = plan_transition(hazard.status, target, actor.role, note=note, deadline=deadline,
                           supervision=supervision, today=today)
    if step.action == "close":
        _check_after_photo(session, hazard)
    record = None
    if step.supervision:
        record = _supervision(session, hazard, supervision or {"note": note}, actor,
                              step.supervision)
    source = hazard.status
    changes = {"status": step.target,
               "closed_at": datetime.now(timezone.utc) if step.target == "closed" else None}
    if step.needs_deadline:
        changes["deadline"] = deadline
    update_row(session, hazard, changes, child=history_event(
        actor=actor.name, from_status=source, to_status=step.target, action=step.action,
        note=note or (record.note if record is not None else "")))
    return hazard


def _check_after_photo(session, hazard):
    """Refuse to close a major hazard without an after-photo when its park requires one."""
    if hazard.level != "major":
        return
    park = session.get(Park, hazard.park_id)
    if not park.require_after_photo:
        return
    found = session.execute(sa.select(Photo.id).where(
        Photo.hazard_id == hazard.id, Photo.tag == "after").limit(1)).first()
    if found is None:
        raise ValidationError(
            f"park {park.code} requires a photo tagged 'after' (整改后) before a major (重大) "
            "hazard is closed: upload one with tag=after, then close",
            code="after_photo_required",
            details={"rule": "parks.require_after_photo", "park": park.code, "level": "major",
                     "field": "tag"})


def _supervision(session, hazard, data, actor, outcome):
    unknown = set(data) - {"note", "checked_at", "supervisor", "photo_id"}
    if unknown:
        raise ValidationError(f"unknown supervision fields: {', '.join(sorted(unknown))}",
                              code="unknown_property", details={"field": "supervision"})
    note = _text(data.get("note"), "supervision.note", required=outcome == "passed")
    # Who supervised is who is logged in, never a typed name: the record is evidence.  The
    # name is still person text first, so a value outside the domain is refused as such.
    if _text(data.get("supervisor"), "supervision.supervisor", kind="person") not in (
            "", actor.name):
        raise ValidationError(f"the supervisor is the user taking this step ({actor.name}); "
                              "leave supervision.supervisor out", code="supervisor_not_actor",
                              details={"field": "supervision.supervisor"})
    checked_at = data.get("checked_at")
    if checked_at is None:
        checked_at = datetime.now(timezone.utc)
    else:
        checked_at = domains.moment(checked_at, "supervision.checked_at")
        if checked_at > datetime.now(timezone.utc):
            raise ValidationError("supervision.checked_at is in the future",
                                  code="invalid_date",
                                  details={"field": "supervision.checked_at"})
    photo_id = data.get("photo_id")
    if photo_id is not None:
        domains.integer(photo_id, "supervision.photo_id")
        photo = session.get(Photo, photo_id) if domains.is_id(photo_id) else None
        if photo is None or photo.hazard_id != hazard.id:
            raise ValidationError(f"no photo {photo_id!r} of this hazard", code="unknown_photo",
                                  details={"field": "supervision.photo_id"})
    record = Supervision(hazard_id=hazard.id, supervisor=actor.name, checked_at=checked_at,
                         outcome=outcome, note=note, photo_id=photo_id)
    session.add(record)
    return record


def escalate(session, hazard_id, target, *, actor, reason, expected_version, if_match=False):
    """Raise a hazard's escalation level (grid → park → county → city → province).

    The step is appended to the history with the reason; the state is kept.
    Raises as :func:`transition` does, plus 409 ``illegal_escalation`` for a
    level that is not higher.
    """
    require(actor.role, "escalate")
    hazard = get_hazard(session, hazard_id, lock=True, names=True, actor=actor)
    _check_version(hazard, expected_version, if_match)
    reason = _text(reason, "reason")
    check_escalation(hazard.escalation, target, reason)
    step = f"{hazard.escalation}>{target}"
    update_row(session, hazard, {"escalation": target}, child=history_event(
        actor=actor.name, from_status=hazard.status, to_status=hazard.status,
        action="escalate", escalation=step, note=reason))
    return hazard


def save_photo(session, hazard_id, data, *, actor, directory, original_name="", tag=None):
    """Store a JPEG or PNG photo of a hazard under ``directory``; return the Photo row.

    ``data`` is the uploaded bytes or their :class:`~geodata.photos.Prepared`
    form (see :func:`geodata.services.photos.new_photo`).

    Role and grid limit are checked first; then
    :func:`geodata.services.photos.new_photo` checks the tag (default
    ``before``), the name and the image, and stores the re-encoded photo
    without metadata plus a thumbnail, moved into place only when the caller
    commits, so a refused upload or a rollback leaves no file and no row.

    Raises
    ------
    PermissionDeniedError
        403 for a role that may not log hazards, or outside a grid member's grids.
    ValidationError
        422 ``unknown_tag``; 415 ``unsupported_photo`` for anything but JPEG
        or PNG, 422 ``invalid_photo`` for a damaged one.
    """
    require(actor.role, "create")
    hazard = get_hazard(session, hazard_id, actor=actor)
    return store_photo(session, data, actor=actor, directory=directory,
                       original_name=original_name, tag=tag, hazard_id=hazard.id)


def store_photo(session, data, *, actor, directory, original_name="", tag=None, hazard_id=None,
                visit_id=None):
    """Store a photo of a hazard or a visit (exactly one id) through the one photo pipeline.

    The caller checks who may add it; :func:`geodata.services.photos.new_photo`
    does the rest and raises as it says.  A visit's photos are tagged
    ``visit`` unless a tag is given.
    """
    from geodata.services.photos import new_photo

    if tag is None and visit_id is not None:
        tag = "visit"
    return new_photo(session, data, tag=tag, uploaded_by=actor.name, directory=directory,
                     original_name=original_name, hazard_id=hazard_id, visit_id=visit_id)


def history(session, hazard_id, actor=None):
    """Return a hazard's events, oldest first (for ``actor``: see :func:`get_hazard`)."""
    get_hazard(session, hazard_id, actor=actor)
    return session.execute(sa.select(HazardEvent).where(HazardEvent.hazard_id == hazard_id)
                           .order_by(HazardEvent.id)).scalars().all()


def supervisions(session, hazard_id):
    """Return a hazard's supervision records, oldest first."""
    return session.execute(sa.select(Supervision).where(Supervision.hazard_id == hazard_id)
                           .order_by(Supervision.id)).scalars().all()


def _choice(value, names, field, code):
    if value is None:
        return None
    got = names.get(value)
    if got is None:
        raise ValidationError(f"unknown {field} {value!r}", code=code,
                              details={"field": field, "allowed": sorted(set(names.values()))})
    return got


def grid_ids_query(grid, park=None):
    """SQL selecting the ids of grid code ``grid`` and its sub-grids (in ``park`` if given).

    A code outside the grid-code domain names no stored grid: nothing matches.
    """
    code = domains.code(grid, "grid") if domains.is_code(grid) else ""
    ids = sa.select(Grid.id).where(sa.or_(
        Grid.code == code, Grid.code.startswith(code + "-", autoescape=True)))
    if park is not None:
        ids = ids.where(Grid.park_id == park.id)
    return ids


def list_hazards(session, *, park=None, status=None, level=None, escalation=None, grid=None,
                 category=None, overdue=None, code=None, limit=100, offset=0, today=None,
                 grid_ids=None):
    """Return ``(hazards, total)`` matching the filters, by ledger number.

    Filters are allow-listed values bound as parameters; ``grid`` is a grid
    code and matches the grid and its sub-grids; ``code`` is one ledger
    number (``YH2026-0012``, normalised as stored codes are).  ``grid_ids`` (a
    grid member's, ``Actor.grid_ids``) keeps only hazards in those grids.

    Raises
    ------
    ValidationError
        422 for an unknown status, level, escalation or category, a bad page or
        a ``code`` that is no ledger number.
    """
    today = today or local_today()
    query = sa.select(Hazard)
    if park is not None:
        query = query.where(Hazard.park_id == park.id)
    status = _choice(status, STATUS_NAMES, "status", "unknown_status")
    if status:
        query = query.where(Hazard.status == status)
    level = _choice(level, LEVEL_NAMES, "level", "unknown_level")
    if level:
        query = query.where(Hazard.level == level)
    escalation = _choice(escalation, {v: v for v in ESCALATION_LEVELS}, "escalation",
                         "unknown_escalation")
    if escalation:
        query = query.where(Hazard.escalation == escalation)
    category = _choice(category, {v: v for v in CATEGORIES}, "category", "unknown_category")
    if category:
        query = query.where(Hazard.category == category)
    if grid is not None:
        query = query.where(Hazard.grid_id.in_(grid_ids_query(grid, park)))
    if code is not None:
        query = query.where(Hazard.code == domains.ledger_code(code, "code"))
    if grid_ids is not None:
        query = query.where(Hazard.grid_id.in_(sorted(grid_ids)))
    if overdue is not None:
        late = sa.and_(Hazard.status != "closed", Hazard.deadline.is_not(None),
                       Hazard.deadline < today)
        query = query.where(late if overdue else sa.not_(late))
    limit = domains.integer(limit, "limit", minimum=1, maximum=MAX_PAGE)
    offset = domains.integer(offset, "offset", minimum=0, maximum=domains.OFFSET_MAX)
    total = session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    rows = session.execute(query.order_by(Hazard.park_id, Hazard.code).limit(limit)
                           .offset(offset)).scalars().all()
    return rows, total


def hazard_dicts(session, hazards, *, role=None, today=None):
    """Serialise hazards for JSON/CSV: names, grid, enterprise, lon/lat, overdue, next steps."""
    today = today or local_today()
    names = _loaded_names(hazards)
    if names is None:
        # Only the names shown, in one query, instead of loading grid, enterprise and park rows.
        names = {row[0]: row[1:] for row in session.execute(
            _with_names(sa.select(Hazard.id), Hazard).where(
                Hazard.id.in_([h.id for h in hazards])))}
    points = to_shapes([h.location for h in hazards])
    out = []
    for h, p in zip(hazards, points):
        park_code, grid_code, grid_name, ent_name, credit_code = names[h.id]
        item = {
            "id": h.id, "code": h.code, "park": park_code,
            "lon": round(shapely.get_x(p), 7), "lat": round(shapely.get_y(p), 7),
            "category": h.category, "level": h.level, "description": h.description,
            "found_date": h.found_date.isoformat(),
            "deadline": h.deadline.isoformat() if h.deadline else None,
            "status": h.status, "status_name": STATE_NAMES[h.status],
            "overdue": is_overdue(h.status, h.deadline, today),
            "escalation": h.escalation,
            "closed_at": h.closed_at.isoformat() if h.closed_at else None,
            "grid": {"code": grid_code, "name": grid_name} if h.grid_id else None,
            "enterprise": ({"name": ent_name, "credit_code": credit_code} if h.enterprise_id
                           else None),
            "version": h.version,
        }
        if role is not None:
            item["allowed_transitions"] = allowed_targets(h.status, role)
        out.append(item)
    return out


def _loaded_names(hazards):
    """The names :func:`hazard_dicts` shows, if every hazard was read with them, else None.

    ``get_hazard(names=True)`` reads them, and :func:`create_hazard` keeps
    those it placed the hazard with; they count while the hazard is still in
    that park, grid and enterprise.  For any other hazard the caller queries
    them.
    """
    names = {}
    for h in hazards:
        known = sa.inspect(h).info.get(_NAMES)
        if known is None or known[0] != (h.park_id, h.grid_id, h.enterprise_id):
            return None
        names[h.id] = known[1]
    return names


def relocation(session, park):
    """Where the park's open hazards belong now (after grid or site edits); only reads.

    Closed hazards keep the grid and enterprise they were handled in: the
    ledger's record of who closed what must not move.

    Returns
    -------
    list of dict
        One per open hazard whose resolved grid or enterprise differs from the
        stored one: ``id``, ``grid_id``, ``enterprise_id`` (new) and ``was``
        (the stored ``[grid_id, enterprise_id]`` the move was computed from).
    """
    rows = session.execute(
        sa.select(Hazard.id, Hazard.grid_id, Hazard.enterprise_id,
                  sa.func.ST_AsBinary(Hazard.location))
        .where(Hazard.park_id == park.id, Hazard.status != "closed").order_by(Hazard.id)).all()
    if not rows:
        return []
    grid_ids, ent_ids = locate(session, park, to_shapes([r[3] for r in rows]))
    return [{"id": r[0], "grid_id": g, "enterprise_id": e, "was": [r[1], r[2]]}
            for r, g, e in zip(rows, grid_ids, ent_ids) if (r[1], r[2]) != (g, e)]


def apply_relocation(session, moves):
    """Write the moves of :func:`relocation`; return ``(moved, skipped)``.

    A hazard whose grid or enterprise changed since the moves were computed
    (another writer got there first) is skipped, not overwritten.
    """
    if not moves:
        return 0, 0
    by_id = {m["id"]: m for m in moves}
    hazards = session.execute(sa.select(Hazard).where(Hazard.id.in_(by_id))).scalars().all()
    moved = 0
    for hazard in hazards:
        move = by_id[hazard.id]
        if [hazard.grid_id, hazard.enterprise_id] == move["was"]:
            hazard.grid_id, hazard.enterprise_id = move["grid_id"], move["enterprise_id"]
            moved += 1
    session.flush()
    return moved, len(moves) - moved


def relocate(session, park):
    """Re-resolve the grid and enterprise of the park's open hazards; return how many moved."""
    return apply_relocation(session, relocation(session, park))[0]


def _rate(part, whole):
    return round(part / whole, 4) if whole else None


def closing_times(park):
    """A subquery ``(hazard_id, at)``: when each of the park's hazards was last closed.

    From the history, so an imported ledger without ``closed_at`` has it too;
    only the park's own events are grouped, not every park's.
    """
    return (sa.select(HazardEvent.hazard_id, sa.func.max(HazardEvent.at).label("at"))
            .join(Hazard, Hazard.id == HazardEvent.hazard_id)
            .where(Hazard.park_id == park.id, HazardEvent.to_status == "closed")
            .group_by(HazardEvent.hazard_id).subquery())


def _ancestry(session, grid_ids):
    """``{grid id: (code, name, level, active, parent id)}`` for the grids and all above them.

    Walked up from the few grids hazards lie in, not read for every grid of the park.
    """
    found, ids, depth = {}, set(grid_ids) - {None}, 0
    while ids and depth < 32:
        rows = session.execute(sa.select(Grid.id, Grid.code, Grid.name, Grid.level,
                                         Grid.active_to.is_(None), Grid.parent_id).where(
            Grid.id.in_(list(ids)))).all()
        found.update((r[0], tuple(r[1:])) for r in rows)
        ids, depth = {r[5] for r in rows if r[5] is not None} - set(found), depth + 1
    return found


def dashboard(session, park, today=None, grid_limit=None, grid_offset=0):
    """Return the park dashboard figures as a dict.

    * ``by_status``, ``by_level``, ``by_escalation``: hazard counts.
    * ``by_grid``: counts per level-1 grid (sub-grid hazards roll up to
      their level-1 grid), with open and overdue counts; ``no_grid`` counts
      hazards in no grid; ``by_cell`` counts per hazard's own (deepest) grid.
      With ``grid_limit``, ``by_grid`` holds one page of the active level-1
      grids in code order (``grid_offset`` on; ``grids`` counts them all).
    * ``by_month``: hazards found per ``YYYY-MM`` and closed per month.
    * ``closure_rate``: closed / all hazards; ``overdue``: open hazards past
      their deadline (derived on ``today``).
    * The three rates the articles want at 100%, the figures of
      :func:`geodata.services.coverage.park_rates` (``gridmap check``):

      - ``enterprises_in_grid``: enterprises assigned to a grid / all
        enterprises (企业入格).
      - ``grids_with_staff``: active level-1 grids that have a grid chief
        (网格长) and whose staff contacts are all published on the board
        (公示) / active level-1 grids.
      - ``enterprises_complete``: enterprises with **complete basic
        records** / all enterprises, where complete means name, a valid
        unified social credit code (GB 32100), industry, employee count,
        contact name and contact phone are all filled in.

    Grid figures are counted in SQL (grids and staff are never loaded one
    row each: a park may hold 10^5 grids).
    """
    today = today or local_today()
    # The closing time comes from the history, so imported ledgers count too.
    closed = closing_times(park)
    rows = session.execute(
        sa.select(Hazard.status, Hazard.level, Hazard.escalation, Hazard.grid_id,
                  Hazard.found_date, Hazard.deadline, closed.c.at)
        .outerjoin(closed, closed.c.hazard_id == Hazard.id)
        .where(Hazard.park_id == park.id)).all()
    grids = _ancestry(session, {r[3] for r in rows})

    def top(gid):
        while gid in grids and grids[gid][4] is not None:
            gid = grids[gid][4]
        return gid if gid in grids else None

    level1 = sa.and_(Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None))
    page = sa.select(Grid.code, Grid.name).where(level1).order_by(Grid.code)
    if grid_limit is not None:
        page = page.limit(grid_limit).offset(grid_offset)
    by_grid = {code: {"name": name, "total": 0, "open": 0, "overdue": 0}
               for code, name in session.execute(page).all()}
    found_months, closed_months, by_cell = Counter(), Counter(), Counter()
    overdue = no_grid = 0
    for status, _level, _esc, grid_id, found, deadline, closed_at in rows:
        late = is_overdue(status, deadline, today)
        overdue += late
        found_months[found.strftime("%Y-%m")] += 1
        if closed_at is not None and status == "closed":
            closed_months[closed_at.strftime("%Y-%m")] += 1
        if grid_id in grids:
            by_cell[grids[grid_id][0]] += 1
        root = top(grid_id)
        if root is None:
            no_grid += 1
            continue
        code, name, _, active, _ = grids[root]
        if grid_limit is not None and code not in by_grid:
            continue  # on another page (or a retired grid: only the unpaged list shows it)
        cell = by_grid.setdefault(code, {"name": name, "total": 0, "open": 0, "overdue": 0})
        cell["total"] += 1
        cell["open"] += status != "closed"
        cell["overdue"] += late
    count = Counter(r[0] for r in rows)
    # The three 100% rates as `gridmap check` and the weekly report give them.
    counts = rate_counts(session, park)
    rates = rates_of(counts)
    months = sorted(set(found_months) | set(closed_months))
    return {
        "park": {"code": park.code, "name": park.name},
        "today": today.isoformat(),
        "total": len(rows),
        "by_status": {s: count.get(s, 0) for s in HAZARD_STATUSES},
        "by_level": {v: sum(1 for r in rows if r[1] == v) for v in HAZARD_LEVELS},
        "by_escalation": {v: sum(1 for r in rows if r[2] == v) for v in ESCALATION_LEVELS},
        "by_grid": by_grid,
        "by_cell": dict(sorted(by_cell.items())),
        "no_grid": no_grid,
        "by_month": [{"month": m, "found": found_months.get(m, 0),
                      "closed": closed_months.get(m, 0)} for m in months],
        "closure_rate": _rate(count.get("closed", 0), len(rows)),
        "overdue": overdue,
        "enterprises": counts["enterprises"],
        "enterprises_in_grid": rates["enterprises_in_grid"],
        "grids": counts["grids"],
        "grids_with_staff": rates["grids_staffed"],
        "enterprises_complete": rates["records_complete"],
    }
