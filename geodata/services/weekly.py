"""The weekly routine (周汇报·周研判·周交办): one ISO week of a park, computed from the rows.

A week is ISO, Monday to Sunday, in Asia/Shanghai (:mod:`geodata.periods`).
Dates stored as dates (a hazard's ``found_date``) are local dates;
timestamps (history events) are UTC instants and belong to the local day
they fall on, so an event at Sunday 23:30 local (15:30 UTC) is in the week
and one at Monday 00:30 local (Sunday 16:30 UTC) is in the next.

"At the end of the week" means at the end of ``as_of``: the week's Sunday,
or today when the week is not over yet.  A hazard's state then is the
target of its last history event before that instant, so a report for a
past week gives the same figures whatever was done since.  Deadlines are
the current ones (the ledger keeps no history of deadlines).

The figures (docs/weekly.md names each and its formula):

* hazards found (``found_date`` in the week), closed (a ``closed`` event in
  the week), overdue and open at the end of the week;
* the three 100% rates of the articles, as the dashboard computes them
  (:func:`geodata.services.ledger.dashboard`), at the time of the report;
* a per-grid table over the active level-1 grids (sub-grids roll up);
* the 周研判 review list and the week's 周交办 assignments.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

import shapely
import sqlalchemy as sa

from geodata import domains
from geodata.errors import ConflictError, ValidationError
from geodata.models import Grid, Hazard, HazardEvent, User, WeeklyAssignment
from geodata.models.base import to_shapes
from geodata.periods import iso_week, local_day_bounds_utc, local_today, week_bounds
from geodata.services import ledger
from geodata.services.users import allowed_grid_ids, get_user
from geodata.vocabulary import STATE_NAMES
from geodata.workflow import PermissionDeniedError

#: Roles that may make 周交办 assignments (the park's leadership at the weekly meeting).
ASSIGNERS = frozenset({"supervisor", "admin"})

#: The three 100% rates (三个100%) by dashboard key, with their Chinese names.
RATES = (("enterprises_in_grid", "企业网格划分率"), ("grids_with_staff", "网格员信息公示率"),
         ("enterprises_complete", "基础信息建档率"))


@dataclass(frozen=True)
class Week:
    """One ISO week: its name, Monday and Sunday (local dates), UTC bounds and ``as_of``."""

    name: str
    monday: object
    sunday: object
    start: datetime
    end: datetime
    as_of: object
    as_of_end: datetime

    def holds(self, moment):
        """True when UTC instant ``moment`` (naive means UTC) falls in the week."""
        return self.start <= _utc(moment) < self.end


def make_week(week, today=None):
    """The :class:`Week` named ``week`` (``"2026-W48"``); raises 422 ``invalid_week``."""
    monday, sunday = week_bounds(week)
    today = today or local_today()
    as_of = min(sunday, today)
    return Week(name=iso_week(monday), monday=monday, sunday=sunday,
                start=local_day_bounds_utc(monday)[0], end=local_day_bounds_utc(sunday)[1],
                as_of=as_of, as_of_end=local_day_bounds_utc(as_of)[1])


def _utc(moment):
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _rate(part, whole):
    return round(part / whole, 4) if whole else None


def level1_grids(session, park):
    """Return ``(grids, top)``: the active level-1 grids by code, and grid id → level-1 grid."""
    grids = session.execute(sa.select(Grid).where(Grid.park_id == park.id)).scalars().all()
    by_id = {g.id: g for g in grids}
    top = {}
    for g in grids:
        t = g
        while t.parent_id is not None and t.parent_id in by_id:
            t = by_id[t.parent_id]
        top[g.id] = t
    level1 = sorted((g for g in grids if g.level == 1 and g.active_to is None),
                    key=lambda g: g.code)
    return level1, top


def hazard_week(session, park, week):
    """Return one dict per hazard of ``park`` with its week facts.

    Keys: ``id``, ``code``, ``grid_id``, ``found`` (found in the week),
    ``closed`` (closed in the week), ``open`` (open at the end of the
    week), ``overdue`` (open and past its deadline then), ``escalated``
    (open and escalated beyond the grid), ``deadline``, ``escalation``,
    ``status`` (at the end of the week), ``point`` (shapely, EPSG:4326).
    """
    hazards = session.execute(sa.select(Hazard).where(Hazard.park_id == park.id)
                              .order_by(Hazard.code)).scalars().all()
    events = session.execute(
        sa.select(HazardEvent.hazard_id, HazardEvent.at, HazardEvent.to_status)
        .join(Hazard, Hazard.id == HazardEvent.hazard_id).where(Hazard.park_id == park.id)
        .order_by(HazardEvent.id)).all()
    last, closed_in_week = {}, set()
    for hazard_id, at, to_status in events:
        at = _utc(at)
        if at < week.as_of_end:
            last[hazard_id] = to_status
        if to_status == "closed" and week.holds(at):
            closed_in_week.add(hazard_id)
    points = to_shapes([h.location for h in hazards])
    out = []
    for h, point in zip(hazards, points):
        exists = h.found_date <= week.as_of
        status = last.get(h.id, "found") if exists else None
        is_open = exists and status != "closed"
        out.append({
            "id": h.id, "code": h.code, "grid_id": h.grid_id, "status": status,
            "found": week.monday <= h.found_date <= week.sunday,
            "closed": h.id in closed_in_week, "open": is_open,
            "overdue": is_open and h.deadline is not None and h.deadline < week.as_of,
            "escalated": is_open and h.escalation != "grid", "escalation": h.escalation,
            "deadline": h.deadline, "description": h.description, "point": point,
        })
    return out


def weekly_report(session, park, week, today=None):
    """Return the week's report of ``park`` as a dict (see the module docstring).

    Parameters
    ----------
    week : str
        ISO week ``"2026-W48"`` (Asia/Shanghai).
    today : date, optional
        The local date to compute "now" with (default :func:`local_today`).

    Raises
    ------
    ValidationError
        422 ``invalid_week``.
    """
    week = make_week(week, today)
    level1, top = level1_grids(session, park)
    hazards = hazard_week(session, park, week)
    rows = {g.code: {"code": g.code, "name": g.name, "hazards_found": 0, "hazards_closed": 0,
                     "hazards_open": 0, "hazards_overdue": 0} for g in level1}
    for h in hazards:
        g = top.get(h["grid_id"])
        row = rows.get(g.code) if g is not None else None
        if row is None:
            continue
        row["hazards_found"] += h["found"]
        row["hazards_closed"] += h["closed"]
        row["hazards_open"] += h["open"]
        row["hazards_overdue"] += h["overdue"]
    dashboard = ledger.dashboard(session, park, today=week.as_of)
    assignments = assignment_dicts(session, list_assignments(session, park, week.name),
                                   today=today or local_today())
    return {
        "park": {"code": park.code, "name": park.name},
        "week": week.name, "monday": week.monday.isoformat(), "sunday": week.sunday.isoformat(),
        "as_of": week.as_of.isoformat(),
        "hazards": {"found": sum(h["found"] for h in hazards),
                    "closed": sum(h["closed"] for h in hazards),
                    "open": sum(h["open"] for h in hazards),
                    "overdue": sum(h["overdue"] for h in hazards)},
        "rates": {key: {"name": name, "value": dashboard[key]} for key, name in RATES},
        "grids": list(rows.values()),
        "review": review_list(hazards, top),
        "assignments": assignments,
        "open_items": [{"kind": "hazard", "ref": h["code"],
                        "lon": round(shapely.get_x(h["point"]), 7),
                        "lat": round(shapely.get_y(h["point"]), 7),
                        "overdue": h["overdue"]} for h in hazards if h["open"]],
    }


def review_list(hazards, top):
    """The 周研判 list: overdue or escalated hazards at the end of the week."""
    items = []
    for h in hazards:
        reasons = [r for r, flag in (("逾期 overdue", h["overdue"]),
                                     (f"上报 escalated to {h['escalation']}", h["escalated"]))
                   if flag]
        if reasons:
            g = top.get(h["grid_id"])
            items.append({"kind": "hazard", "ref": h["code"], "grid": g.code if g else "",
                          "reason": "; ".join(reasons), "text": h["description"],
                          "deadline": h["deadline"].isoformat() if h["deadline"] else ""})
    return items


def assign(session, park, week, *, actor, owner, deadline, hazard=None, note="", today=None):
    """Make a 周交办 assignment: give ``hazard`` to user ``owner`` with a ``deadline``.

    The assignment becomes a hazard task: it is linked to the hazard and
    done when the hazard is closed through the ledger's workflow (see
    :func:`assignment_dicts`).  Runs inside the caller's write transaction.

    Parameters
    ----------
    week : str
        The ISO week of the meeting that made the assignment.
    actor : geodata.services.ledger.Actor
        Who assigns (a supervisor or admin).
    owner : str
        User name of the person responsible; a grid member must serve the
        hazard's grid.
    deadline : date or str
        ``YYYY-MM-DD``; not before the week's Monday.
    hazard : Hazard
        The hazard of ``park`` to task; it must be open.

    Raises
    ------
    PermissionDeniedError
        403 for a role that may not assign.
    NotFoundError
        404 ``unknown_user``.
    ValidationError
        422 ``invalid_week``, ``invalid_date``, ``owner_inactive``,
        ``owner_outside_grid``, ``wrong_park``, bad text.
    ConflictError
        409 ``hazard_closed`` or ``duplicate_assignment`` (the hazard is
        already assigned in that week).
    """
    if actor.role not in ASSIGNERS:
        raise PermissionDeniedError(f"role {actor.role!r} may not make weekly assignments",
                                    details={"role": actor.role, "action": "assign"})
    week = make_week(week, today)
    deadline = domains.day(deadline, "deadline", required=True)
    if deadline < week.monday:
        raise ValidationError(f"the deadline {deadline} is before week {week.name} began",
                              code="invalid_date", details={"field": "deadline"})
    note = domains.text(note, "note", kind="note") or ""
    user = get_user(session, owner)
    if not user.active:
        raise ValidationError(f"user {owner!r} is disabled", code="owner_inactive",
                              details={"field": "owner"})
    if hazard is None or hazard.park_id != park.id:
        raise ValidationError(f"name a hazard of park {park.code}", code="wrong_park",
                              details={"field": "hazard"})
    grid_ids = allowed_grid_ids(session, user)
    if grid_ids is not None and hazard.grid_id not in grid_ids:
        raise ValidationError(f"{owner} does not serve the grid of hazard {hazard.code}",
                              code="owner_outside_grid", details={"field": "owner"})
    if hazard.status == "closed":
        raise ConflictError(f"hazard {hazard.code} is closed", code="hazard_closed")
    taken = session.execute(sa.select(WeeklyAssignment.id).where(
        WeeklyAssignment.hazard_id == hazard.id, WeeklyAssignment.week == week.name)).first()
    if taken is not None:
        raise ConflictError(f"hazard {hazard.code} is already assigned in {week.name} "
                            f"(assignment {taken[0]})", code="duplicate_assignment")
    item = WeeklyAssignment(park_id=park.id, week=week.name, hazard_id=hazard.id,
                            owner_id=user.id, deadline=deadline, note=note,
                            created_by=actor.name)
    session.add(item)
    session.flush()
    return item


def list_assignments(session, park, week=None):
    """Return the park's assignments (of ``week`` if given), oldest first."""
    query = sa.select(WeeklyAssignment).where(WeeklyAssignment.park_id == park.id)
    if week is not None:
        query = query.where(WeeklyAssignment.week == make_week(week).name)
    return session.execute(query.order_by(WeeklyAssignment.id)).scalars().all()


def assignment_dicts(session, items, today=None):
    """Serialise assignments with their derived progress.

    ``state`` is the linked hazard's state name; ``done`` is True once it is
    closed; ``overdue`` is True when it is not done and the deadline has
    passed (local ``today``).
    """
    today = today or local_today()
    owners = {u.id: u.username for u in session.execute(sa.select(User).where(
        User.id.in_({a.owner_id for a in items}))).scalars()} if items else {}
    out = []
    for a in items:
        done = a.hazard.status == "closed"
        out.append({"id": a.id, "week": a.week, "kind": "hazard", "ref": a.hazard.code,
                    "owner": owners.get(a.owner_id), "deadline": a.deadline.isoformat(),
                    "state": STATE_NAMES[a.hazard.status], "done": done,
                    "overdue": not done and a.deadline < today,
                    "note": a.note, "created_by": a.created_by})
    return out
