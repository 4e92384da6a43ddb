"""Field work (走访/巡查/回头看): log visits, schedules, what is due, coverage, work lists.

Visits
    :func:`create_visit` stores one record made in the field.  Its grid and
    enterprise are resolved from the point like a hazard's
    (:func:`geodata.services.hazards.locate`), unless the enterprise is
    named by its credit code.  The phone's ``client_id`` (a UUID) makes the
    create idempotent: sending the same record again returns the stored one.
    History (:class:`~geodata.models.VisitEvent`) is append-only.

Schedules
    Cadres are linked to enterprises (联系企业, :func:`link`).  Rules
    (:func:`set_rule`) say how many records of a kind are expected per
    period, in Asia/Shanghai days and ISO weeks (:mod:`geodata.periods`):

    * ``visit`` (走访): without a rule, each linked cadre visits each of
      their enterprises once per ISO week (每周至少到所联系企业开展一次调研).
      A park rule (no enterprise) replaces that default; an enterprise rule
      replaces it for that enterprise.  Only the linked cadre's own visits
      count for their link; an enterprise rule on an enterprise nobody is
      linked to is met by anyone's visit.
    * ``patrol`` (巡查): no default.  An enterprise rule (e.g. 2 per day,
      每日2次巡查) is met by anyone's patrols at that enterprise; a park rule
      applies to every linked enterprise.
    * ``recheck`` (回头看): a closed hazard that was rectified against a
      deadline (整改, not fixed on the spot) is due for a re-check
      ``after_days`` (default :data:`DEFAULT_RECHECK_DAYS`) local days after
      the day it was closed, until a ``recheck`` visit naming the hazard is
      logged after the closing.  A park rule sets the delay; an enterprise
      rule sets it for that enterprise's hazards.

    Each entry is looked at in the current period and the one before:
    ``done`` when the current period has its count, ``overdue`` when the
    previous period passed without it (and the current one is not done
    yet), else ``open``.  An entry is *due* when it is ``overdue`` — its
    period passed without the visits; a link made during the previous
    period is not overdue for it.

Coverage
    :func:`coverage` is, for one ISO week, the records done over the
    records expected by the rules (each period counted up to its required
    number, so extra visits do not hide missed ones; days after today are
    not expected yet), for the park and per level-1 grid.
"""

import unicodedata
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import shapely
import sqlalchemy as sa

from geodata import domains, periods
from geodata.errors import ConflictError, NotFoundError, ValidationError
from geodata.models import (Enterprise, EnterpriseLink, Grid, Hazard, Park, Photo, User,
                            Visit, VisitEvent, VisitRule)
from geodata.models.base import to_element, to_shapes
from geodata.services.hazards import locate
from geodata.services.ledger import (MAX_PAGE, _check_grid_limit, closing_times, hazard_dicts,
                                     store_photo)
from geodata.services.parks import park_boundary
from geodata.services.users import allowed_grid_ids, get_user, grid_tree_ids
from geodata.storage import id_list
from geodata.workflow import is_overdue, require

#: The kinds and their Chinese names (accepted on input too).
KIND_NAMES = {"patrol": "巡查", "visit": "走访", "recheck": "回头看"}
_KINDS = {**{k: k for k in KIND_NAMES}, **{v: k for k, v in KIND_NAMES.items()}}
#: The weekly visit expected of a linked cadre when the park has no visit rule.
DEFAULT_VISIT_RULE = ("week", 1)
#: Days after closing when a hazard is due for a re-check (回头看) without a rule.
DEFAULT_RECHECK_DAYS = 30
#: GPS accuracy accepted, in metres (a phone without a fix reports kilometres).
ACCURACY_MAX_M = 10_000
#: How far ahead of the server's clock a device's time may be (a wrong phone clock).
FUTURE_SLACK = timedelta(days=1)


def _utc(moment):
    # SQLite returns naive datetimes; everything is stored in UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _text(value, field):
    return domains.text(value, field, kind="note") or ""


def _kind(value):
    kind = _KINDS.get(value) if isinstance(value, str) else None
    if kind is None:
        raise ValidationError(f"unknown kind {str(value)[:40]!r}; expected patrol (巡查), visit "
                              "(走访) or recheck (回头看)", code="unknown_kind",
                              details={"field": "kind", "allowed": list(KIND_NAMES)})
    return kind


def client_id(value):
    """Return ``value`` as a canonical lower-case UUID, or raise 422 ``invalid_client_id``."""
    try:
        if not isinstance(value, str) or len(value) > 45:
            raise ValueError
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError("client_id must be a UUID made by the device, e.g. "
                              "'0b7e6a52-7f2c-4d5e-9a41-1c2d3e4f5a6b'", code="invalid_client_id",
                              details={"field": "client_id"}) from None


def occurred_at(value, now=None):
    """Return the device's time as UTC: ISO 8601 with an offset, within the date range.

    Raises
    ------
    ValidationError
        ``invalid_date`` (not ISO 8601, no offset, outside the domain) or
        ``occurred_in_future`` (more than a day ahead of the server).
    """
    if not isinstance(value, str):
        raise ValidationError("occurred_at must be an ISO 8601 date-time with offset, e.g. "
                              "2026-11-29T09:30:00+08:00", code="invalid_date",
                              details={"field": "occurred_at"})
    try:
        naive = datetime.fromisoformat(value.strip()).tzinfo is None
    except ValueError:
        naive = False  # domains.moment names the problem
    if naive:
        raise ValidationError("occurred_at must name its UTC offset (e.g. +08:00): a phone's "
                              "local time is otherwise ambiguous", code="invalid_date",
                              details={"field": "occurred_at"})
    moment = domains.moment(value, "occurred_at")
    if moment > (now or datetime.now(timezone.utc)) + FUTURE_SLACK:
        raise ValidationError("occurred_at is more than a day in the future: check the device "
                              "clock", code="occurred_in_future",
                              details={"field": "occurred_at"})
    return moment


def accuracy(value):
    """Return the GPS accuracy in metres (None if not given), or 422 ``invalid_accuracy``."""
    if value is None:
        return None
    return domains.number(value, "accuracy_m", minimum=0, maximum=ACCURACY_MAX_M,
                          code="invalid_accuracy")


def get_enterprise(session, park, credit_code, field="enterprise"):
    """Return ``park``'s enterprise with unified social credit code ``credit_code``.

    The code is read as imports store it (NFKC, upper case), so a
    full-width ``９１４…`` finds ``914…``.

    Raises
    ------
    ValidationError
        422 ``missing_field``, ``text_too_long`` (a credit code has 18
        characters) or ``unknown_enterprise`` naming ``field``.
    """
    code = unicodedata.normalize("NFKC", domains.text(
        credit_code, field, kind="name", required=True, max_length=18)).upper()
    found = session.execute(sa.select(Enterprise).where(
        Enterprise.park_id == park.id, Enterprise.credit_code == code)).scalar_one_or_none()
    if found is None:
        raise ValidationError(f"park {park.code} has no enterprise with credit code "
                              f"{code[:40]!r}", code="unknown_enterprise", details={"field": field})
    return found


def _user_of(session, actor):
    user = session.execute(sa.select(User).where(User.username == actor.name)).scalar_one_or_none()
    if user is None:
        raise NotFoundError(f"no user {actor.name!r}", code="unknown_user")
    return user


def create_visit(session, park, *, actor, client_id_, kind, occurred_at_, point, accuracy_m=None,
                 enterprise=None, hazard_id=None, note="", findings="", now=None):
    """Log a visit in ``park`` at ``point`` (shapely Point, EPSG:4326); return ``(visit, new)``.

    ``new`` is False when a visit with ``client_id_`` exists already: the
    same user sending the same record again gets it back unchanged.

    Raises
    ------
    ValidationError
        422 for a bad client id, kind, time, accuracy, text, an unknown
        enterprise or hazard, ``outside_park``, ``hazard_required``.
    PermissionDeniedError
        403 for a role that may not log (viewer, planner) or
        ``outside_your_grids`` for a grid member whose grids do not hold the
        point, the re-checked hazard or the named enterprise (unless they are
        linked to it, 包联).
    ConflictError
        409 ``duplicate_client_id`` when the id belongs to another record.
    """
    require(actor.role, "create")
    cid = client_id(client_id_)
    kind = _kind(kind)
    when = occurred_at(occurred_at_, now)
    accuracy_m = accuracy(accuracy_m)
    note, findings = _text(note, "note"), _text(findings, "findings")
    # Checked before a replay is answered: a resent record must not smuggle in 10**400.
    if hazard_id is not None:
        hazard_id = domains.integer(hazard_id, "hazard_id", minimum=1, maximum=domains.ID_MAX)
    if enterprise is not None:
        enterprise = domains.text(enterprise, "enterprise", kind="name", required=True)
    existing = session.execute(sa.select(Visit).where(Visit.client_id == cid)).scalar_one_or_none()
    if existing is not None:
        # The same record is every field the phone sent: a resend with another point, park,
        # accuracy, enterprise or hazard is another record, not a retry to answer with the old.
        (stored,) = to_shapes([existing.location])
        same = (existing.actor == actor.name and existing.park_id == park.id
                and existing.kind == kind and _utc(existing.occurred_at) == when
                and existing.note == note and existing.findings == findings
                and existing.accuracy_m == accuracy_m and existing.hazard_id == hazard_id
                and shapely.equals_exact(stored, point, tolerance=1e-9)
                and (enterprise is None
                     or existing.enterprise_id == get_enterprise(session, park, enterprise).id))
        if not same:
            raise ConflictError(f"client_id {cid} belongs to another record",
                                code="duplicate_client_id", details={"field": "client_id"})
        return existing, False
    hazard = None
    if kind == "recheck":
        if hazard_id is None:
            raise ValidationError("a re-check (回头看) names the hazard it re-checks: hazard_id",
                                  code="hazard_required", details={"field": "hazard_id"})
        hazard = session.get(Hazard, hazard_id) if domains.is_id(hazard_id) else None
        if hazard is None or hazard.park_id != park.id:
            raise ValidationError(f"park {park.code} has no hazard {str(hazard_id)[:20]}",
                                  code="unknown_hazard", details={"field": "hazard_id"})
    elif hazard_id is not None:
        raise ValidationError("hazard_id belongs to re-checks (kind recheck) only",
                              code="invalid_value", details={"field": "hazard_id"})
    if not shapely.covered_by(point, park_boundary(park)):
        raise ValidationError(f"the point lies outside park {park.code}", code="outside_park",
                              details={"field": "location", "park": park.code})
    (grid_id,), (enterprise_id,) = locate(session, park, [point])
    _check_grid_limit(actor, grid_id, what="the visit's grid")
    user = _user_of(session, actor)
    # What the visit names must be the member's too: a re-check counts for its hazard
    # (rechecks_due), and a visit for its enterprise's schedule and file.
    if hazard is not None:
        _check_grid_limit(actor, hazard.grid_id, what="the re-checked hazard's grid")
    if enterprise is not None:
        firm = get_enterprise(session, park, enterprise)
        linked = session.execute(sa.select(EnterpriseLink.id).where(
            EnterpriseLink.user_id == user.id, EnterpriseLink.enterprise_id == firm.id)).first()
        if linked is None:
            _check_grid_limit(actor, firm.grid_id, what="this enterprise's grid")
        enterprise_id = firm.id
    visit = Visit(park_id=park.id, grid_id=grid_id, enterprise_id=enterprise_id,
                  hazard_id=hazard.id if hazard else None, user_id=user.id, actor=actor.name,
                  kind=kind, occurred_at=when, location=to_element(point), accuracy_m=accuracy_m,
                  note=note, findings=findings, client_id=cid)
    visit.events.append(VisitEvent(actor=actor.name, action="log", note=note))
    session.add(visit)
    session.flush()
    return visit, True


def get_visit(session, visit_id, actor=None):
    """Return the visit with ``visit_id``; 404 ``visit_not_found``.

    With ``actor``, a grid member outside the visit's grid gets 403
    ``outside_your_grids``.
    """
    visit = session.get(Visit, visit_id) if domains.is_id(visit_id) else None
    if visit is None:
        raise NotFoundError(f"no visit {str(visit_id)[:20]}", code="visit_not_found")
    if actor is not None:
        _check_grid_limit(actor, visit.grid_id, what="the visit's grid")
    return visit


def history(session, visit_id, actor=None):
    """Return a visit's events, oldest first (``actor`` as in :func:`get_visit`)."""
    get_visit(session, visit_id, actor)
    return session.execute(sa.select(VisitEvent).where(VisitEvent.visit_id == visit_id)
                           .order_by(VisitEvent.id)).scalars().all()


def save_visit_photo(session, visit_id, data, *, actor, directory, original_name="", tag=None):
    """Store a photo of a visit through the hazard photo pipeline; return the Photo row.

    ``tag`` as for hazard photos; a visit's photos are ``visit`` by default.

    Raises as :func:`geodata.services.ledger.store_photo`, plus 404
    ``visit_not_found`` and 403 outside a grid member's grids.
    """
    require(actor.role, "create")
    visit = get_visit(session, visit_id, actor)
    photo = store_photo(session, data, actor=actor, directory=directory,
                        original_name=original_name, tag=tag, visit_id=visit.id)
    session.add(VisitEvent(visit_id=visit.id, actor=actor.name, action="photo",
                           note=photo.original_name))
    session.flush()
    return photo


def _moment_filter(value, field):
    return domains.moment(value, field) if value is not None else None


def list_visits(session, *, park=None, grid=None, enterprise=None, kind=None, from_=None,
                to=None, limit=100, offset=0, grid_ids=None):
    """Return ``(visits, total)``, newest first.

    ``grid`` is a grid code (its sub-grids included), ``enterprise`` a credit
    code, ``from_``/``to`` ISO date-times (``to`` exclusive) on ``occurred_at``;
    ``grid_ids`` (a grid member's grids) keeps only visits in those grids.

    Raises
    ------
    ValidationError
        422 for an unknown kind, a bad date-time or page.
    """
    query = sa.select(Visit)
    if park is not None:
        query = query.where(Visit.park_id == park.id)
    if grid_ids is not None:
        query = query.where(Visit.grid_id.in_(grid_ids))
    if kind is not None:
        query = query.where(Visit.kind == _kind(kind))
    if grid is not None:
        code = domains.code(grid, "grid") if domains.is_code(grid) else ""
        ids = sa.select(Grid.id).where(sa.or_(
            Grid.code == code, Grid.code.startswith(code + "-", autoescape=True)))
        if park is not None:
            ids = ids.where(Grid.park_id == park.id)
        query = query.where(Visit.grid_id.in_(ids))
    if enterprise is not None:
        code = domains.text(enterprise, "enterprise", kind="name") or ""
        ids = sa.select(Enterprise.id).where(Enterprise.credit_code == code.upper())
        query = query.where(Visit.enterprise_id.in_(ids))
    start, end = _moment_filter(from_, "from"), _moment_filter(to, "to")
    if start is not None:
        query = query.where(Visit.occurred_at >= start)
    if end is not None:
        query = query.where(Visit.occurred_at < end)
    limit = domains.integer(limit, "limit", minimum=1, maximum=MAX_PAGE)
    offset = domains.integer(offset, "offset", minimum=0, maximum=domains.OFFSET_MAX)
    total = session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    rows = session.execute(query.order_by(Visit.occurred_at.desc(), Visit.id.desc())
                           .limit(limit).offset(offset)).scalars().all()
    return rows, total


def visits_for_enterprise(session, enterprise, limit=100):
    """Return the newest visits of an enterprise as dicts (for its history page)."""
    rows = session.execute(sa.select(Visit).where(Visit.enterprise_id == enterprise.id)
                           .order_by(Visit.occurred_at.desc(), Visit.id.desc())
                           .limit(limit)).scalars().all()
    return visit_dicts(session, rows)


def _by_id(session, model, ids):
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return {r.id: r for r in session.execute(sa.select(model).where(model.id.in_(ids))).scalars()}


def visit_dicts(session, visits):
    """Serialise visits for JSON/CSV: kind name, local day and week, lon/lat, grid, enterprise."""
    grids = _by_id(session, Grid, [v.grid_id for v in visits])
    ents = _by_id(session, Enterprise, [v.enterprise_id for v in visits])
    hazards = _by_id(session, Hazard, [v.hazard_id for v in visits])
    parks = _by_id(session, Park, [v.park_id for v in visits])
    photos = defaultdict(list)
    if visits:
        for pid, vid in session.execute(sa.select(Photo.id, Photo.visit_id).where(
                Photo.visit_id.in_([v.id for v in visits])).order_by(Photo.id)):
            photos[vid].append(pid)
    points = to_shapes([v.location for v in visits])
    out = []
    for v, p in zip(visits, points):
        grid, ent, hazard = grids.get(v.grid_id), ents.get(v.enterprise_id), hazards.get(
            v.hazard_id)
        when = _utc(v.occurred_at)
        out.append({
            "id": v.id, "client_id": v.client_id, "park": parks[v.park_id].code,
            "kind": v.kind, "kind_name": KIND_NAMES[v.kind],
            "occurred_at": when.isoformat(), "recorded_at": _utc(v.recorded_at).isoformat(),
            "local_date": periods.local_date(when).isoformat(),
            "week": periods.iso_week(periods.local_date(when)),
            "lon": round(float(shapely.get_x(p)), 7), "lat": round(float(shapely.get_y(p)), 7),
            "accuracy_m": v.accuracy_m, "actor": v.actor,
            "grid": {"code": grid.code, "name": grid.name} if grid else None,
            "enterprise": {"name": ent.name, "credit_code": ent.credit_code} if ent else None,
            "hazard": {"id": hazard.id, "code": hazard.code} if hazard else None,
            "note": v.note, "findings": v.findings, "photos": photos.get(v.id, []),
        })
    return out


# --- links and rules --------------------------------------------------------------------


def link(session, park, username, credit_code):
    """Link a cadre to an enterprise of ``park`` (联系企业); return the link (existing or new).

    Raises
    ------
    NotFoundError
        404 ``unknown_user``.
    ValidationError
        422 ``unknown_enterprise``.
    """
    user = get_user(session, username)
    enterprise = get_enterprise(session, park, credit_code)
    found = session.execute(sa.select(EnterpriseLink).where(
        EnterpriseLink.user_id == user.id, EnterpriseLink.enterprise_id == enterprise.id)
    ).scalar_one_or_none()
    if found is None:
        found = EnterpriseLink(user_id=user.id, enterprise_id=enterprise.id)
        session.add(found)
        session.flush()
    return found


def unlink(session, park, username, credit_code):
    """Remove a cadre's link to an enterprise; 404 ``unknown_link`` when there is none."""
    user = get_user(session, username)
    enterprise = get_enterprise(session, park, credit_code)
    found = session.execute(sa.select(EnterpriseLink).where(
        EnterpriseLink.user_id == user.id, EnterpriseLink.enterprise_id == enterprise.id)
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"{username} is not linked to {credit_code}", code="unknown_link")
    session.delete(found)
    session.flush()


def links(session, park):
    """Return ``[(username, enterprise)]`` of the park's links, by user then credit code."""
    return session.execute(
        sa.select(User.username, Enterprise).join(EnterpriseLink, EnterpriseLink.user_id == User.id)
        .join(Enterprise, Enterprise.id == EnterpriseLink.enterprise_id)
        .where(Enterprise.park_id == park.id)
        .order_by(User.username, Enterprise.credit_code)).all()


def set_rule(session, park, kind, *, enterprise=None, period=None, times=None, after_days=None):
    """Set the park's (or one enterprise's) rule for ``kind``; return the rule.

    ``visit``/``patrol`` need ``period`` (day or week) and ``times`` (1..48);
    ``recheck`` needs ``after_days`` (0..3650) and nothing else.

    Raises
    ------
    ValidationError
        422 ``invalid_rule`` naming what is wrong, ``unknown_enterprise``.
    """
    kind = _kind(kind)
    if kind == "recheck":
        if period is not None or times is not None or after_days is None:
            raise ValidationError("a recheck rule takes --after-days only", code="invalid_rule",
                                  details={"field": "after_days"})
        domains.integer(after_days, "after_days", minimum=0, maximum=3650)
    else:
        if after_days is not None or period not in ("day", "week") or times is None:
            raise ValidationError(f"a {kind} rule takes --period day|week and --times",
                                  code="invalid_rule", details={"field": "period"})
        domains.integer(times, "times", minimum=1, maximum=48)
    ent = get_enterprise(session, park, enterprise) if enterprise is not None else None
    query = sa.select(VisitRule).where(VisitRule.park_id == park.id, VisitRule.kind == kind)
    query = query.where(VisitRule.enterprise_id == ent.id if ent else
                        VisitRule.enterprise_id.is_(None))
    rule = session.execute(query).scalar_one_or_none()
    if rule is None:
        rule = VisitRule(park_id=park.id, enterprise_id=ent.id if ent else None, kind=kind)
        session.add(rule)
    rule.period, rule.times, rule.after_days = period, times, after_days
    session.flush()
    return rule


def delete_rule(session, park, kind, *, enterprise=None):
    """Remove a rule (the default applies again); 404 ``unknown_rule`` when there is none."""
    kind = _kind(kind)
    ent = get_enterprise(session, park, enterprise) if enterprise is not None else None
    query = sa.select(VisitRule).where(VisitRule.park_id == park.id, VisitRule.kind == kind)
    query = query.where(VisitRule.enterprise_id == ent.id if ent else
                        VisitRule.enterprise_id.is_(None))
    rule = session.execute(query).scalar_one_or_none()
    if rule is None:
        raise NotFoundError(f"park {park.code} has no such {kind} rule", code="unknown_rule")
    session.delete(rule)
    session.flush()


def rules(session, park):
    """Return the park's rules with the enterprise's credit code (None for park rules)."""
    return session.execute(
        sa.select(VisitRule, Enterprise.credit_code)
        .outerjoin(Enterprise, Enterprise.id == VisitRule.enterprise_id)
        .where(VisitRule.park_id == park.id)
        .order_by(VisitRule.kind, Enterprise.credit_code)).all()


# --- schedules ----------------------------------------------------------------------------


@dataclass
class _Target:
    kind: str
    enterprise: Enterprise
    user: object  # (id, username) of the linked cadre, or None: anyone's records count
    period: str
    times: int
    since: datetime = None  # link made then: periods ending before are not owed


def _later(*moments):
    moments = [m for m in moments if m is not None]
    return max(moments) if moments else None


def _targets(session, park):
    """Every (kind, enterprise, cadre) the rules expect records for, and since when."""
    park_rules = {}
    ent_rules = {}
    for rule in session.execute(sa.select(VisitRule).where(VisitRule.park_id == park.id)
                                .where(VisitRule.kind != "recheck")).scalars():
        value = (rule.period, rule.times, _utc(rule.created_at))
        if rule.enterprise_id is None:
            park_rules[rule.kind] = value
        else:
            ent_rules[(rule.kind, rule.enterprise_id)] = value
    park_rules.setdefault("visit", (*DEFAULT_VISIT_RULE, None))
    linked = defaultdict(list)
    for uid, name, eid, since in session.execute(
            sa.select(User.id, User.username, EnterpriseLink.enterprise_id,
                      EnterpriseLink.created_at)
            .join(EnterpriseLink, EnterpriseLink.user_id == User.id)
            .join(Enterprise, Enterprise.id == EnterpriseLink.enterprise_id)
            .where(Enterprise.park_id == park.id, User.active.is_(True))
            .order_by(User.username)):
        linked[eid].append(((uid, name), _utc(since)))
    wanted = set(linked) | {eid for (_k, eid) in ent_rules}
    ents = {e.id: e for e in session.execute(sa.select(Enterprise).where(
        Enterprise.id.in_(wanted))).scalars()} if wanted else {}
    out = []
    for eid in sorted(ents, key=lambda i: ents[i].credit_code):
        ent = ents[eid]
        visit = ent_rules.get(("visit", eid)) or (park_rules["visit"] if eid in linked else None)
        if visit:
            period, times, ruled = visit
            for user, since in linked.get(eid) or [(None, None)]:
                out.append(_Target("visit", ent, user, period, times, _later(since, ruled)))
        patrol = ent_rules.get(("patrol", eid))
        first_link = min((s for _u, s in linked.get(eid, ())), default=None)
        if patrol is None and eid in linked and "patrol" in park_rules:
            patrol = park_rules["patrol"]
        else:
            first_link = None  # an enterprise's own rule does not wait for a link
        if patrol:
            period, times, ruled = patrol
            out.append(_Target("patrol", ent, None, period, times, _later(first_link, ruled)))
    return out


def _counts(session, park, start, end):
    """Count visits and patrols per (kind, enterprise, user, local period) in ``[start, end)``."""
    counts = Counter()
    for kind, eid, uid, when in session.execute(
            sa.select(Visit.kind, Visit.enterprise_id, Visit.user_id, Visit.occurred_at)
            .where(Visit.park_id == park.id, Visit.kind.in_(("visit", "patrol")),
                   Visit.enterprise_id.is_not(None),
                   Visit.occurred_at >= start, Visit.occurred_at < end)):
        for period in ("day", "week"):
            key = periods.period_of(_utc(when), period)
            counts[(kind, eid, uid, period, key)] += 1
            counts[(kind, eid, None, period, key)] += 1
    return counts


def _count(counts, target, key):
    uid = target.user[0] if target.user else None
    return counts.get((target.kind, target.enterprise.id, uid, target.period, key), 0)


def schedule(session, park, *, today=None):
    """Return every expected entry of the park with its state on ``today`` (local date).

    Each entry: ``kind``, ``enterprise`` (name, credit code, grid), ``user``
    (the linked cadre or None), ``period`` (day/week), ``times``,
    ``current`` and ``done`` (the period containing today and its count),
    ``previous`` and ``previous_done``, and ``status`` done/open/overdue
    (see the module docstring).
    """
    today = today or periods.local_today()
    targets = _targets(session, park)
    week = periods.iso_week(today)
    start = periods.week_bounds_utc(periods.previous_period(week, "week"))[0]
    end = periods.week_bounds_utc(week)[1]
    counts = _counts(session, park, start, end)
    grids = _by_id(session, Grid, [t.enterprise.grid_id for t in targets])
    out = []
    for t in targets:
        current = today.isoformat() if t.period == "day" else week
        previous = periods.previous_period(current, t.period)
        done, before = _count(counts, t, current), _count(counts, t, previous)
        owed = t.since is None or t.since < periods.period_bounds_utc(previous, t.period)[0]
        status = ("done" if done >= t.times else
                  "overdue" if owed and before < t.times else "open")
        grid = grids.get(t.enterprise.grid_id)
        out.append({
            "kind": t.kind, "kind_name": KIND_NAMES[t.kind],
            "enterprise": {"name": t.enterprise.name, "credit_code": t.enterprise.credit_code,
                           "grid": grid.code if grid else None},
            "user": t.user[1] if t.user else None,
            "period": t.period, "times": t.times,
            "current": current, "done": done, "previous": previous, "previous_done": before,
            "status": status,
        })
    return out


def due(session, park, *, today=None, user=None):
    """Return the entries that are due: their previous period passed without the visits.

    For a grid member ``user``: only entries given to them or of enterprises
    they serve (in their grids, or linked to them, 包联).
    """
    entries = [e for e in schedule(session, park, today=today) if e["status"] == "overdue"]
    grid_ids = allowed_grid_ids(session, user) if user is not None else None
    if grid_ids is None:
        return entries
    served = set(session.execute(sa.select(Enterprise.credit_code).where(
        Enterprise.park_id == park.id, sa.or_(
            Enterprise.grid_id.in_(sorted(grid_ids)),
            Enterprise.id.in_(sa.select(EnterpriseLink.enterprise_id).where(
                EnterpriseLink.user_id == user.id))))).scalars())
    return [e for e in entries
            if e["user"] == user.username or e["enterprise"]["credit_code"] in served]


def _recheck_days(session, park):
    days = {None: DEFAULT_RECHECK_DAYS}
    for rule in session.execute(sa.select(VisitRule).where(
            VisitRule.park_id == park.id, VisitRule.kind == "recheck")).scalars():
        days[rule.enterprise_id] = rule.after_days
    return days


def rechecks_due(session, park, *, today=None, grid_ids=None):
    """Return closed hazards due for a re-check (回头看) on ``today``, longest waiting first.

    Only hazards that were rectified against a deadline count (one fixed
    on the spot, 立行立改, has nothing to relapse into a rectification).
    ``grid_ids`` (a set) keeps only hazards in those grids.
    """
    today = today or periods.local_today()
    days = _recheck_days(session, park)
    # An imported ledger may have no closed_at: its last closing event says when.
    closing = closing_times(park)
    rows = session.execute(sa.select(Hazard, closing.c.at).outerjoin(
        closing, closing.c.hazard_id == Hazard.id).where(
        Hazard.park_id == park.id, Hazard.status == "closed",
        Hazard.deadline.is_not(None))).all()
    closed_at = {h.id: _utc(h.closed_at or at) for h, at in rows if (h.closed_at or at)}
    hazards = [h for h, _at in rows if h.id in closed_at]
    if grid_ids is not None:
        hazards = [h for h in hazards if h.grid_id in grid_ids]
    checked = defaultdict(list)
    if hazards:
        for hid, when in session.execute(sa.select(Visit.hazard_id, Visit.occurred_at).where(
                Visit.kind == "recheck", Visit.hazard_id.in_([h.id for h in hazards]))):
            checked[hid].append(_utc(when))
    out = []
    for h in hazards:
        closed = closed_at[h.id]
        due_on = periods.local_date(closed) + timedelta(
            days=days.get(h.enterprise_id, days[None]))
        if due_on > today or any(w >= closed for w in checked[h.id]):
            continue
        out.append((due_on, h))
    out.sort(key=lambda pair: (pair[0], pair[1].code))
    items = hazard_dicts(session, [h for _d, h in out])
    for item, (due_on, _h) in zip(items, out):
        item["recheck_due_on"] = due_on.isoformat()
        item["days_waiting"] = (today - due_on).days
    return items


def coverage(session, park, *, week=None, today=None):
    """Return the visit-coverage rate of ISO ``week`` (default: this week) for the park and grids.

    ``{"week", "expected", "done", "rate", "by_grid": {code: {"expected",
    "done", "rate"}}}``; ``rate`` is None when nothing is expected.  Each
    period counts at most its required number; days after ``today`` are not
    expected yet.
    """
    today = today or periods.local_today()
    week = periods.parse_week(week) if week is not None else periods.iso_week(today)
    monday, sunday = periods.week_bounds(week)
    start, end = periods.week_bounds_utc(week)
    counts = _counts(session, park, start, end)
    targets = _targets(session, park)
    grids = _by_id(session, Grid, [t.enterprise.grid_id for t in targets])
    days = [monday + timedelta(days=i) for i in range(7)
            if monday + timedelta(days=i) <= min(sunday, today)]
    totals = {"expected": 0, "done": 0}
    by_grid = {}
    for t in targets:
        keys = [week] if t.period == "week" and monday <= today else (
            [d.isoformat() for d in days] if t.period == "day" else [])
        if t.since is not None:
            keys = [k for k in keys if periods.period_bounds_utc(k, t.period)[1] > t.since]
        expected = t.times * len(keys)
        done = sum(min(_count(counts, t, k), t.times) for k in keys)
        grid = grids.get(t.enterprise.grid_id)
        cell = by_grid.setdefault(grid.code if grid else None, {"expected": 0, "done": 0})
        for bucket in (totals, cell):
            bucket["expected"] += expected
            bucket["done"] += done
    for bucket in [totals, *by_grid.values()]:
        bucket["rate"] = round(bucket["done"] / bucket["expected"], 4) if bucket[
            "expected"] else None
    return {"park": park.code, "week": week, **totals,
            "by_grid": {k: by_grid[k] for k in sorted(by_grid, key=lambda c: (c is None, c))}}


def _patrolled_level1(session, park, today):
    """Ids of the level-1 grids with a patrol (巡查) on ``today`` (local), in them or below.

    Walks up from the few grids patrolled that day, not down from the park's
    every grid.
    """
    start, end = periods.local_day_bounds_utc(today)
    ids = set(session.execute(sa.select(Visit.grid_id).where(
        Visit.park_id == park.id, Visit.kind == "patrol", Visit.occurred_at >= start,
        Visit.occurred_at < end, Visit.grid_id.is_not(None))).scalars())
    top, depth = set(), 0
    while ids and depth < 32:
        rows = session.execute(sa.select(Grid.id, Grid.parent_id).where(
            Grid.id.in_(list(ids)))).all()
        top |= {gid for gid, parent in rows if parent is None}
        ids, depth = {parent for _, parent in rows if parent is not None}, depth + 1
    return top


def grids_without_patrol(session, park, *, today=None):
    """Return the active level-1 grids of ``park`` with no patrol (巡查) on ``today`` (local)."""
    patrolled = _patrolled_level1(session, park, today or periods.local_today())
    return session.execute(sa.select(Grid).where(
        Grid.park_id == park.id, Grid.active_to.is_(None), Grid.level == 1,
        Grid.id.not_in(list(patrolled))).order_by(Grid.code)).scalars().all()


def worklist(session, park, user, *, today=None, grid_limit=None):
    """Return a user's work list and offline bundle for ``park`` (我的网格).

    A grid member (rows in ``user_grids``) gets their grids and sub-grids,
    the enterprises in them and the ones linked to them, the open hazards
    and the re-checks due in those grids, and the visits due: their own
    links plus patrols of enterprises in their grids.  A user without grid
    rows has no limit and gets the whole park: every active level-1 grid,
    enterprise, open hazard and re-check due, their own links and every
    patrol.  Open hazards come overdue first, then by deadline (none last),
    then by ledger number, each with its ``version``.  ``grid_limit`` caps
    the grids sent (in code order; ``grids.numberMatched`` counts them all):
    a whole park of 10^5 grids is no offline bundle.  When it cuts an
    unlimited user's grids, the enterprises, hazards, patrols and re-checks
    are those of the grids sent (and their sub-grids), as a grid member's
    are, plus their own links: not the park's every enterprise and hazard.
    """
    today = today or periods.local_today()
    grid_ids = allowed_grid_ids(session, user)
    limited = grid_ids is not None
    active = [Grid.park_id == park.id, Grid.active_to.is_(None),
              Grid.level == 1 if grid_ids is None else Grid.id.in_(list(grid_ids))]
    matched = session.execute(sa.select(sa.func.count()).where(*active)).scalar()
    mine = session.execute(sa.select(Grid).where(*active).order_by(Grid.code)
                           .limit(grid_limit)).scalars().all()
    shapes = to_shapes([g.geom for g in mine])
    grid_features = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(s),
         "properties": {"code": g.code, "name": g.name, "level": g.level}}
        for g, s in zip(mine, shapes)], "numberMatched": int(matched),
        "numberReturned": len(mine)}
    if grid_ids is None and len(mine) < matched:
        grid_ids = grid_tree_ids(session, [g.id for g in mine])
    linked = {eid for (eid,) in session.execute(sa.select(EnterpriseLink.enterprise_id).where(
        EnterpriseLink.user_id == user.id))}
    ents = sa.select(Enterprise).where(Enterprise.park_id == park.id)
    if grid_ids is not None:
        ents = ents.where(sa.or_(Enterprise.grid_id.in_(id_list(grid_ids)),
                                 Enterprise.id.in_(id_list(linked))))
    ents = session.execute(ents.order_by(Enterprise.credit_code)).scalars().all()
    sites = to_shapes([e.site for e in ents])
    held = list({e.grid_id for e in ents} - {None})
    codes = dict(session.execute(sa.select(Grid.id, Grid.code).where(
        Grid.id.in_(held), Grid.active_to.is_(None))).all()) if held else {}
    enterprises = []
    for e, site in zip(ents, sites):
        spot = shapely.point_on_surface(site)
        enterprises.append({"name": e.name, "credit_code": e.credit_code,
                            "grid": codes.get(e.grid_id), "linked": e.id in linked,
                            "lon": round(float(shapely.get_x(spot)), 7),
                            "lat": round(float(shapely.get_y(spot)), 7)})
    query = sa.select(Hazard).where(Hazard.park_id == park.id, Hazard.status != "closed")
    if grid_ids is not None:
        query = query.where(Hazard.grid_id.in_(id_list(grid_ids)))
    open_ = session.execute(query).scalars().all()
    open_.sort(key=lambda h: (not is_overdue(h.status, h.deadline, today),
                              h.deadline is None, h.deadline or today, h.code))
    visible = {e.credit_code for e in ents}
    visits_due = [e for e in schedule(session, park, today=today) if e["status"] != "done" and (
        e["user"] == user.username or (e["user"] is None and (
            grid_ids is None or e["enterprise"]["credit_code"] in visible)))]
    visits_due.sort(key=lambda e: (e["status"] != "overdue", e["enterprise"]["credit_code"]))
    return {
        "park": {"code": park.code, "name": park.name},
        "user": {"username": user.username, "role": user.role, "limited": limited},
        "today": today.isoformat(), "week": periods.iso_week(today),
        "grids": grid_features,
        "enterprises": enterprises,
        "hazards": hazard_dicts(session, open_, role=user.role, today=today),
        "visits_due": visits_due,
        "rechecks_due": rechecks_due(session, park, today=today, grid_ids=grid_ids),
    }


def field_layer(session, park, *, today=None, user=None, bbox=None, limit=None, offset=0):
    """Return the desk's field-work map layer as a GeoJSON FeatureCollection (EPSG:4326).

    Features with ``layer`` ``overdue_enterprise`` (the site of each
    enterprise with a due entry, and which entries; for a grid member
    ``user``, those :func:`due` shows them) and ``no_patrol_today``
    (each active level-1 grid without a patrol on ``today``, local).
    ``bbox`` (minx, miny, maxx, maxy in degrees) keeps the features that
    intersect it; ``limit``/``offset`` take one page of them, enterprises
    first, then grids in code order; ``numberMatched`` counts them all.
    """
    from geodata.services.mapdata import cached_grid_layer

    today = today or periods.local_today()
    overdue = defaultdict(list)
    for entry in due(session, park, today=today, user=user):
        overdue[entry["enterprise"]["credit_code"]].append(
            {k: entry[k] for k in ("kind", "kind_name", "user", "period", "times", "previous",
                                   "previous_done")})
    ents = session.execute(sa.select(Enterprise).where(
        Enterprise.park_id == park.id, Enterprise.credit_code.in_(list(overdue)))
        .order_by(Enterprise.credit_code)).scalars().all() if overdue else []
    sites = to_shapes([e.site for e in ents])
    # The grids come from the cached layer the map and the tiles read (one R-tree query
    # for a bbox), not as 10^5 ORM rows per request.
    layer = cached_grid_layer(session, park, 1)
    picked = (np.arange(len(layer.codes)) if bbox is None else
              np.sort(layer.tree.query(shapely.box(*bbox), predicate="intersects")))
    patrolled = _patrolled_level1(session, park, today)
    picked = [i for i in picked if int(layer.ids[i]) not in patrolled]
    if bbox is not None:
        keep = shapely.intersects(sites, shapely.box(*bbox))
        ents, sites = [e for e, k in zip(ents, keep) if k], sites[keep]
    matched = len(ents) + len(picked)
    stop = matched if limit is None else offset + limit
    features = [{"type": "Feature", "geometry": shapely.geometry.mapping(shape),
                 "properties": {"layer": "overdue_enterprise", "name": e.name,
                                "credit_code": e.credit_code, "due": overdue[e.credit_code]}}
                for e, shape in list(zip(ents, sites))[offset:stop]]
    grid_page = picked[max(offset - len(ents), 0):max(stop - len(ents), 0)]
    features += [{"type": "Feature", "geometry": shapely.geometry.mapping(layer.geoms[i]),
                  "properties": {"layer": "no_patrol_today", "code": layer.codes[i],
                                 "name": layer.names[i]}}
                 for i in grid_page]
    return {"type": "FeatureCollection", "today": today.isoformat(), "features": features,
            "numberMatched": matched, "numberReturned": len(features)}


def load_demo_field_work(session, park, *, today, seed, now=None):
    """Give ``park`` cadre links, patrol rules and a past month of field work; return counts.

    Deterministic for a ``seed``.  The demo accounts ``inspector`` (5
    enterprises) and ``supervisor`` (4) are linked cadres (每名干部包联2—5家企业)
    who visit weekly but miss some weeks (one link each missed last week and this one, so
    something is due); three dyeing works (印染, chemicals and boilers) with the most
    employees are patrolled twice a day (每日2次巡查), missing a few rounds;
    half of the hazards closed over 30 days ago were re-checked (回头看).
    Nothing is dated after ``now`` (default: the clock).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    now = now or datetime.now(timezone.utc)
    users = {u.username: u for u in session.execute(sa.select(User).where(
        User.username.in_(("inspector", "supervisor")))).scalars()}
    ents = session.execute(sa.select(Enterprise).where(
        Enterprise.park_id == park.id, Enterprise.host_id.is_(None),
        Enterprise.grid_id.is_not(None)).order_by(Enterprise.credit_code)).scalars().all()
    picked = [ents[i] for i in rng.choice(len(ents), size=9, replace=False)]
    since = datetime.combine(today - timedelta(days=60), datetime.min.time(), timezone.utc)
    cadres = [("inspector", picked[:5]), ("supervisor", picked[5:])]
    for name, mine in cadres:
        for ent in mine:
            session.add(EnterpriseLink(user_id=users[name].id, enterprise_id=ent.id,
                                       created_at=since))
    patrolled = sorted(ents, key=lambda e: (e.industry != "纺织印染", -(e.employees or 0),
                                            e.credit_code))[:3]
    for ent in patrolled:
        session.add(VisitRule(park_id=park.id, enterprise_id=ent.id, kind="patrol",
                              period="day", times=2, created_at=since))
    spots = dict(zip([e.id for e in ents], shapely.point_on_surface(
        to_shapes([e.site for e in ents]))))
    planned = []  # (kind, user, enterprise, local datetime, hazard id, note)
    this_week = periods.iso_week(today)
    weeks = [periods.iso_week(today - timedelta(days=7 * k)) for k in range(4, -1, -1)]
    for name, mine in cadres:
        for i, ent in enumerate(mine):
            for week in weeks:
                # Each cadre's first link missed last week and this one: it is due.
                missed = rng.random() < 0.15 or (
                    i < 1 and week in (this_week, periods.previous_period(this_week, "week")))
                if missed:
                    continue
                monday = periods.week_bounds(week)[0]
                day = monday + timedelta(days=int(rng.integers(0, 5)))
                planned.append(("visit", name, ent, day, int(rng.integers(9 * 60, 17 * 60)),
                                None, "走访：了解生产经营和安全生产情况"))
    for ent in patrolled:
        for back in range(28, -1, -1):
            day = today - timedelta(days=back)
            for minute in (8 * 60 + 30, 16 * 60 + 30):
                if rng.random() < 0.08:
                    continue
                planned.append(("patrol", "inspector", ent, day,
                                minute + int(rng.integers(-20, 20)), None, "巡查：消防通道、动火作业"))
    for item in rechecks_due(session, park, today=today):
        if rng.random() < 0.5:
            hazard = session.get(Hazard, item["id"])
            day = date.fromisoformat(item["recheck_due_on"]) + timedelta(
                days=int(rng.integers(0, 5)))
            ent = session.get(Enterprise, hazard.enterprise_id) if hazard.enterprise_id else None
            planned.append(("recheck", "supervisor", ent, min(day, today),
                            int(rng.integers(9 * 60, 17 * 60)), hazard, "回头看：整改未反弹"))
    count = Counter()
    for kind, name, ent, day, minute, hazard, note in planned:
        local = datetime.combine(day, datetime.min.time(), periods.ZONE) + timedelta(
            minutes=minute)
        when = local.astimezone(timezone.utc)
        if when > now:
            continue
        point = spots[ent.id] if ent is not None and ent.id in spots else to_shapes(
            [hazard.location])[0]
        visit = Visit(park_id=park.id, grid_id=ent.grid_id if ent is not None else hazard.grid_id,
                      enterprise_id=ent.id if ent is not None else None,
                      hazard_id=hazard.id if hazard is not None else None,
                      user_id=users[name].id, actor=name, kind=kind, occurred_at=when,
                      recorded_at=when + timedelta(minutes=int(rng.integers(1, 90))),
                      location=to_element(point), accuracy_m=float(rng.integers(3, 30)),
                      note=note, findings="",
                      client_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)))
        visit.events.append(VisitEvent(actor=name, action="log", note=note,
                                       at=visit.recorded_at))
        session.add(visit)
        count[kind] += 1
    session.flush()
    return {"links": len(picked), "patrol_rules": len(patrolled),
            **{f"{k}s": v for k, v in sorted(count.items())}}
