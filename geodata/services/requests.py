"""The request ledger (诉求台账): take, move through the workflow, list, history, categories.

Built on the hazard ledger's foundations (:mod:`geodata.services.ledger`):
the same actors, roles and grid limits, version checks (409/412), domain
checks (:mod:`geodata.domains`) and write transactions.  Every write function
expects to run inside one write transaction (:func:`geodata.storage.begin_write`)
and locks the rows it depends on, so nothing is written unless every check
passed.  "Today" is the date in Asia/Shanghai (:func:`geodata.periods.local_today`).
"""

from datetime import datetime, timezone

import sqlalchemy as sa

from geodata import domains
from geodata.errors import ConflictError, FeatureError, ValidationError
from geodata.models import (Enterprise, Grid, Park, RequestCategory, RequestEvent, ServiceRequest,
                            Visit)
from geodata.periods import local_today
from geodata.request_workflow import DONE, REOPEN, allowed_targets, is_overdue, plan_transition
from geodata.request_workflow import satisfaction_level
from geodata.services.ledger import (MAX_PAGE, _check_grid_limit, _check_version, _choice,
                                     _lock_park, _text, entry_by_code, entry_by_id,
                                     grid_ids_query)
from geodata.services.numbering import insert_numbered, next_number
from geodata.services.visits import client_id as visit_client_id
from geodata.services.visits import get_enterprise
from geodata.storage import insert_child, insert_row
from geodata.vocabulary import (DEFAULT_REQUEST_CATEGORIES, REQUEST_SOURCES, REQUEST_STATE_NAMES,
                                REQUEST_STATUSES, SATISFACTION_NAMES, SOURCE_NAMES)
from geodata.workflow import require

PREFIX = "SQ"
#: Accepted spellings of states and sources (English keys or the Chinese names).
STATUS_KEYS = {**{s: s for s in REQUEST_STATUSES},
               **{v: k for k, v in REQUEST_STATE_NAMES.items()}}
SOURCE_KEYS = {**{s: s for s in REQUEST_SOURCES}, **{v: k for k, v in SOURCE_NAMES.items()}}


# --- categories -------------------------------------------------------------------------------

def categories(session, park=None):
    """The park's request categories: the defaults, then the park's own in the order added.

    Without ``park``: the defaults and every park's own (for filters across parks).
    """
    query = sa.select(RequestCategory.name).order_by(RequestCategory.id)
    if park is not None:
        query = query.where(RequestCategory.park_id == park.id)
    extra = [n for n in session.execute(query).scalars() if n not in DEFAULT_REQUEST_CATEGORIES]
    return list(DEFAULT_REQUEST_CATEGORIES) + list(dict.fromkeys(extra))


def add_category(session, park, name):
    """Add category ``name`` to ``park``'s list; return the cleaned name.

    Raises
    ------
    ValidationError
        422 for bad or missing text (field ``name``).
    ConflictError
        409 ``duplicate_category`` when the park has it already (defaults included).
    """
    name = _text(name, "name", required=True, kind="category")
    _lock_park(session, park)
    if name in categories(session, park):
        raise ConflictError(f"park {park.code} already has request category {name!r}",
                            code="duplicate_category", details={"field": "name"})
    session.add(RequestCategory(park_id=park.id, name=name))
    session.flush()
    return name


def _category(session, park, value):
    allowed = categories(session, park)
    if value not in allowed:
        raise ValidationError(f"unknown request category {str(value)[:60]!r}; park {park.code} "
                              f"has {', '.join(allowed)}", code="unknown_category",
                              details={"field": "category", "allowed": allowed})
    return value


# --- lookups ----------------------------------------------------------------------------------

def get_request(session, request_id, *, lock=False, actor=None):
    """Return the request with ``request_id``; ``lock`` takes a row lock (PostgreSQL).

    With ``actor``, a grid member may only read a request of their grids.

    Raises
    ------
    NotFoundError
        404 ``request_not_found``.
    PermissionDeniedError
        403 ``outside_your_grids``.
    """
    item = entry_by_id(session, ServiceRequest, request_id, lock=lock, what="request")
    if actor is not None:
        _check_grid_limit(actor, item.grid_id, "this request's grid")
    return item


def get_request_by_code(session, code, park=None):
    """Return the request with ledger number ``code`` (``SQ2026-0012``), in ``park`` if given.

    Raises
    ------
    NotFoundError
        404 ``request_not_found``.
    ValidationError
        422 ``ambiguous_code`` when several parks use it and no park is given.
    """
    return entry_by_code(session, ServiceRequest, code.strip().upper(), park, what="request")


def _source(value):
    key = SOURCE_KEYS.get(value) if isinstance(value, str) else None
    if key is None:
        raise ValidationError(f"unknown source {str(value)[:40]!r}; expected one of "
                              f"{', '.join(REQUEST_SOURCES)} ({', '.join(SOURCE_NAMES.values())})",
                              code="unknown_source",
                              details={"field": "source", "allowed": list(REQUEST_SOURCES)})
    return key


# --- writes -----------------------------------------------------------------------------------

def _visit_of(session, park, client_id):
    """The visit of ``park`` with this ``client_id``; 422 ``unknown_visit`` otherwise."""
    try:
        cid = visit_client_id(client_id)
    except ValidationError:
        cid = None
    visit = session.execute(sa.select(Visit).where(
        Visit.client_id == cid, Visit.park_id == park.id)).scalar_one_or_none() if cid else None
    if visit is None:
        raise ValidationError(f"no visit {str(client_id)[:40]!r} in park {park.code}",
                              code="unknown_visit", details={"field": "visit"})
    return visit


def create_request(session, park, *, enterprise, category, description, source, actor,
                   received_date=None, today=None, visit=None):
    """Take an enterprise's request (受理) in ``park``; return it (status ``accepted``).

    Parameters
    ----------
    enterprise : str
        The enterprise's unified social credit code; the request's grid is
        the enterprise's grid.
    category : str
        One of :func:`categories` of the park.
    source : str
        ``visit``, ``phone``, ``walk_in``, ``platform`` (or 走访/电话/上门/平台).
    received_date : date or str, optional
        Default local today; never after it.
    visit : str, optional
        The ``client_id`` of the visit (走访) in this park the request was
        raised on.  The source is then ``visit``; the enterprise, when not
        given, is the visit's.

    Raises
    ------
    ValidationError
        422 naming the field: ``unknown_enterprise``, ``unknown_category``,
        ``unknown_source``, ``missing_field``, ``invalid_date``, ``unknown_visit``,
        bad text.
    PermissionDeniedError
        403 for a role that may not take requests, or outside a grid member's grids.
    ConflictError
        409 ``ledger_numbers_exhausted``.
    """
    require(actor.role, "create")
    today = today or local_today()
    # Shared: creates run side by side, while a grid edit (which moves enterprises and their
    # open requests) waits, and is waited for, so the enterprise's grid read below is current.
    _lock_park(session, park, shared=True)
    raised_on = None
    if visit is not None:
        raised_on = _visit_of(session, park, visit)
        source = "visit" if source is None else source
        if enterprise is None and raised_on.enterprise_id is not None:
            enterprise = session.get(Enterprise, raised_on.enterprise_id).credit_code
    firm = get_enterprise(session, park, enterprise)
    category = _category(session, park, category)
    description = _text(description, "description", required=True)
    source = _source(source)
    if raised_on is not None and source != "visit":
        raise ValidationError(f"a request raised on a visit has source 'visit', not {source!r}",
                              code="unknown_source", details={"field": "source"})
    received = domains.day(received_date, "received_date") or today
    if received > today:
        raise ValidationError(f"received_date {received.isoformat()} is in the future",
                              code="invalid_date", details={"field": "received_date"})
    _check_grid_limit(actor, firm.grid_id, "this enterprise's grid")
    item = ServiceRequest(park_id=park.id, enterprise_id=firm.id, grid_id=firm.grid_id,
                          visit_id=raised_on.id if raised_on is not None else None,
                          category=category, description=description, received_date=received,
                          source=source, status="accepted", resolution="")
    first = (RequestEvent.__table__, "request_id", {
        "at": datetime.now(timezone.utc), "actor": actor.name, "from_status": None,
        "to_status": "accepted", "action": "accept", "note": description, "satisfaction": None})
    # Numbered last: the counter's row lock is then held only for the inserts and the commit
    # (on PostgreSQL one statement takes the number and inserts both rows).
    if insert_numbered(session, item, park, PREFIX, received.year, child=first) is None:
        item.code = next_number(session, park, PREFIX, received.year)
        insert_row(session, item)
        insert_child(session, item.id, first)
    return item


def transition(session, request_id, target, *, actor, expected_version, if_match=False, note="",
               department=None, deadline=None, responsible=None, satisfaction=None, today=None):
    """Move a request to ``target`` (see :mod:`geodata.request_workflow`); return it.

    A follow-up answered 不满意 stores the follow-up and then reopens the
    request (two history events); it ends ``in_progress``.

    Raises
    ------
    ConflictError
        409 ``stale_version`` or ``illegal_transition``.
    PreconditionFailedError
        412 when ``If-Match`` is stale.
    PermissionDeniedError
        403 for a role or grid that may not take the step.
    ValidationError
        422 naming the field for missing or bad values.
    """
    today = today or local_today()
    # The grid limit first: a refusal tells a grid member nothing of the request's state.
    item = get_request(session, request_id, lock=True, actor=actor)
    _check_version(item, expected_version, if_match, "request")
    note = _text(note, "note")
    department = _text(department, "department", kind="name")
    responsible = _text(responsible, "responsible", kind="person")
    deadline = domains.day(deadline, "deadline")
    satisfaction = satisfaction_level(satisfaction)
    step, reopens = plan_transition(item.status, target, actor.role, note=note,
                                    department=department, deadline=deadline,
                                    responsible=responsible, satisfaction=satisfaction,
                                    today=today)
    events = [RequestEvent(actor=actor.name, from_status=item.status, to_status=step.target,
                           action=step.action, note=note, satisfaction=satisfaction)]
    if step.action == "assign":
        item.department, item.deadline, item.responsible = department, deadline, responsible
    if step.action == "resolve":
        item.resolution = note
        item.resolved_at = datetime.now(timezone.utc)
    if step.action == "follow_up":
        item.satisfaction = satisfaction
    item.status = step.target
    if reopens:
        events.append(RequestEvent(actor=actor.name, from_status=step.target,
                                   to_status=REOPEN.target, action=REOPEN.action, note=note))
        item.status = REOPEN.target
        item.resolved_at = None
        if deadline is not None:
            item.deadline = deadline
    # One version step per transition, a reopening follow-up included.
    item.events.extend(events)
    session.flush()
    return item


def follow_enterprises(session, park):
    """Give ``park``'s open requests their enterprise's current grid (after grid edits).

    An open request is handled in its enterprise's grid (事在格办), so when a
    grid edit moves the enterprise, the request moves with it (and its
    version steps).  Resolved and followed-up requests keep the grid they
    were handled in, as closed hazards do.  Returns the number moved.
    """
    rows = session.execute(
        sa.select(ServiceRequest, Enterprise.grid_id).join(
            Enterprise, Enterprise.id == ServiceRequest.enterprise_id)
        .where(ServiceRequest.park_id == park.id, ServiceRequest.status.not_in(DONE),
               ServiceRequest.grid_id.is_distinct_from(Enterprise.grid_id))
        .order_by(ServiceRequest.id)).all()
    for item, grid_id in rows:
        item.grid_id = grid_id
    return len(rows)


def history(session, request_id, actor=None):
    """Return a request's events, oldest first (for ``actor``: see :func:`get_request`)."""
    get_request(session, request_id, actor=actor)
    return session.execute(sa.select(RequestEvent).where(RequestEvent.request_id == request_id)
                           .order_by(RequestEvent.id)).scalars().all()


# --- reads ------------------------------------------------------------------------------------

def overdue_clause(today):
    """SQL for "not resolved and past its deadline" on local ``today``."""
    return sa.and_(ServiceRequest.status.not_in(DONE), ServiceRequest.deadline.is_not(None),
                   ServiceRequest.deadline < today)


def list_requests(session, *, park=None, status=None, category=None, grid=None, enterprise=None,
                  source=None, overdue=None, limit=100, offset=0, today=None, grid_ids=None):
    """Return ``(requests, total)`` matching the filters, by park and ledger number.

    Filters are allow-listed values bound as parameters; ``grid`` is a grid
    code (its sub-grids included) and ``enterprise`` a credit code: values
    outside their domains match nothing.  ``grid_ids`` (a grid member's)
    keeps only requests in those grids.

    Raises
    ------
    ValidationError
        422 for an unknown status, category or source, or a bad page.
    """
    today = today or local_today()
    query = sa.select(ServiceRequest)
    if park is not None:
        query = query.where(ServiceRequest.park_id == park.id)
    status = _choice(status, STATUS_KEYS, "status", "unknown_status")
    if status:
        query = query.where(ServiceRequest.status == status)
    if category is not None:
        allowed = categories(session, park)
        category = _choice(category, {c: c for c in allowed}, "category", "unknown_category")
        query = query.where(ServiceRequest.category == category)
    if source is not None:
        query = query.where(ServiceRequest.source == _source(source))
    if grid is not None:
        query = query.where(ServiceRequest.grid_id.in_(grid_ids_query(grid, park)))
    if grid_ids is not None:
        query = query.where(ServiceRequest.grid_id.in_(sorted(grid_ids)))
    if enterprise is not None:
        code = enterprise.strip().upper() if isinstance(enterprise, str) else ""
        query = query.where(ServiceRequest.enterprise_id.in_(
            sa.select(Enterprise.id).where(Enterprise.credit_code == code[:18])))
    if overdue is not None:
        late = overdue_clause(today)
        query = query.where(late if overdue else sa.not_(late))
    limit = domains.integer(limit, "limit", minimum=1, maximum=MAX_PAGE)
    offset = domains.integer(offset, "offset", minimum=0, maximum=domains.OFFSET_MAX)
    total = session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    rows = session.execute(query.order_by(ServiceRequest.park_id, ServiceRequest.received_date,
                                          ServiceRequest.code).limit(limit)
                           .offset(offset)).scalars().all()
    return rows, total


def request_dicts(session, items, *, role=None, today=None):
    """Serialise requests for JSON, pages and exports, with ``overdue`` and next steps."""
    today = today or local_today()

    def by_id(model, ids):
        ids = {i for i in ids if i is not None}
        return {r.id: r for r in session.execute(
            sa.select(model).where(model.id.in_(ids))).scalars()} if ids else {}

    grids = by_id(Grid, (r.grid_id for r in items))
    firms = by_id(Enterprise, (r.enterprise_id for r in items))
    parks = by_id(Park, (r.park_id for r in items))
    visits = by_id(Visit, (r.visit_id for r in items))
    out = []
    for r in items:
        grid, firm = grids.get(r.grid_id), firms[r.enterprise_id]
        item = {
            "id": r.id, "code": r.code, "park": parks[r.park_id].code,
            "enterprise": {"name": firm.name, "credit_code": firm.credit_code},
            "grid": {"code": grid.code, "name": grid.name} if grid else None,
            "category": r.category, "description": r.description,
            "received_date": r.received_date.isoformat(),
            "source": r.source, "source_name": SOURCE_NAMES[r.source],
            "visit": visits[r.visit_id].client_id if r.visit_id is not None else None,
            "department": r.department, "responsible": r.responsible,
            "deadline": r.deadline.isoformat() if r.deadline else None,
            "status": r.status, "status_name": REQUEST_STATE_NAMES[r.status],
            "overdue": is_overdue(r.status, r.deadline, today),
            "resolution": r.resolution,
            "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
            "satisfaction": r.satisfaction,
            "satisfaction_name": SATISFACTION_NAMES.get(r.satisfaction),
            "version": r.version,
        }
        if role is not None:
            item["allowed_transitions"] = allowed_targets(r.status, role)
        out.append(item)
    return out


def event_dicts(events):
    """Serialise history events (oldest first) for JSON and the CLI."""
    return [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status, "to": e.to_status,
             "action": e.action, "note": e.note, "satisfaction": e.satisfaction}
            for e in events]


# --- loading a ledger with its history (the demo) ---------------------------------------------

def import_requests(session, park, rows, *, file="demo"):
    """Insert requests with their history (dicts as :mod:`geodata.demo_requests` makes them).

    Each row: ``credit_code, category, description, received_date, source,
    department, deadline, responsible, status, resolution, satisfaction,
    history`` (dicts ``at, actor, from_status, to_status, action, note,
    satisfaction``).  Values are checked against their domains as the API
    checks them; ledger numbers are generated in the order given.  Returns
    the number of requests.

    Raises
    ------
    FeatureError
        422 naming the row (``feature``) and the field.
    """
    firms = {e.credit_code: e for e in session.execute(
        sa.select(Enterprise).where(Enterprise.park_id == park.id)).scalars()}
    allowed = categories(session, park)
    # Exclusive, as a file import holds its park: rows take their years' counters in row
    # order, not sorted, so two loads into one park must not interleave.
    _lock_park(session, park)
    for i, row in enumerate(rows):
        where = {"index": i, "file": file}

        def check(ok, field, reason):
            if not ok:
                raise FeatureError(reason, code="invalid_value", field=field, **where)

        firm = firms.get(row["credit_code"])
        check(firm is not None, "credit_code", "no such enterprise in the park")
        check(row["category"] in allowed, "category", "unknown request category")
        check(row["source"] in REQUEST_SOURCES, "source", "unknown source")
        check(row["status"] in REQUEST_STATUSES, "status", "unknown status")
        check(row.get("satisfaction") in (None, *SATISFACTION_NAMES), "satisfaction",
              "unknown satisfaction")
        received = domains.day(row["received_date"], "received_date", required=True, **where)
        item = ServiceRequest(
            park_id=park.id, enterprise_id=firm.id, grid_id=firm.grid_id,
            code=next_number(session, park, PREFIX, received.year), category=row["category"],
            description=domains.text(row["description"], "description", kind="note",
                                     required=True, **where),
            received_date=received, source=row["source"],
            department=domains.text(row.get("department"), "department", **where),
            deadline=domains.day(row.get("deadline"), "deadline", **where),
            responsible=domains.text(row.get("responsible"), "responsible", kind="person",
                                     **where),
            status=row["status"],
            resolution=domains.text(row.get("resolution"), "resolution", kind="note",
                                    **where) or "",
            satisfaction=row.get("satisfaction"))
        for event in row["history"]:
            check(event["to_status"] in REQUEST_STATUSES, "history", "unknown status")
            at = domains.moment(event["at"], "history.at", **where)
            if event["action"] == "resolve":
                item.resolved_at = at
            elif event["action"] == "reopen":
                item.resolved_at = None
            item.events.append(RequestEvent(
                at=at, actor=domains.text(event["actor"], "history.actor", kind="person",
                                          required=True, **where),
                from_status=event["from_status"], to_status=event["to_status"],
                action=event["action"],
                note=domains.text(event.get("note"), "history.note", kind="note", **where) or "",
                satisfaction=event.get("satisfaction")))
        session.add(item)
    session.flush()
    return len(rows)
