"""The weekly routine (周汇报·周研判·周交办): one ISO week of a park, computed from the rows.

A week is ISO, Monday to Sunday, in Asia/Shanghai (:mod:`geodata.periods`);
the assessment (:mod:`geodata.services.assessment`) uses the same
:class:`Period` for any run of local days.  Dates stored as dates (a
hazard's ``found_date``, a request's ``received_date``) are local dates;
timestamps (history events, visits) are UTC instants and belong to the local
day they fall on, so an event at Sunday 23:30 local (15:30 UTC) is in the
week and one at Monday 00:30 local (Sunday 16:30 UTC) is in the next.

"At the end of the period" means at the end of ``as_of``: the last day, or
today when the period is not over yet.  A hazard's or request's state then
is the target of its last history event before that instant, so a report
for a past week gives the same figures whatever was done since.  Deadlines
are the current ones (neither ledger keeps a history of deadlines).

The figures (docs/weekly.md names each and its formula):

* hazards found (``found_date`` in the week), closed (a ``closed`` event in
  the week), open and overdue at the end of the week;
* requests received (``received_date`` in the week), resolved (a 办结
  event in the week), open and overdue at the end of the week, and the
  satisfaction rate of the week's follow-ups (回访): (满意 + 基本满意) / 回访;
* visits done against due: :func:`geodata.services.visits.coverage` of the
  week (h/visits' rules), and the visit records of the week per grid;
* the three 100% rates of the articles, as ``gridmap check`` and the
  dashboard give them (:func:`geodata.services.coverage.park_rates`), at the
  time of the report;
* a per-grid table over the active level-1 grids (sub-grids roll up);
* the 周研判 review list and the week's 周交办 assignments.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import islice

import shapely
import sqlalchemy as sa

from geodata import domains
from geodata.errors import ConflictError, ValidationError
from geodata.models import (Enterprise, Grid, Hazard, HazardEvent, RequestEvent,
                            ServiceRequest, User, Visit, WeeklyAssignment)
from geodata.models.base import to_shapes
from geodata.periods import iso_week, local_day_bounds_utc, local_today, week_bounds
from geodata.request_workflow import DONE
from geodata.services import visits
from geodata.services.coverage import park_rates
from geodata.services.users import allowed_grid_ids, get_user
from geodata.storage import code_point_order, in_batches
from geodata.vocabulary import REQUEST_STATE_NAMES, STATE_NAMES
from geodata.workflow import PermissionDeniedError

#: Roles that may make 周交办 assignments (the park's leadership at the weekly meeting).
ASSIGNERS = frozenset({"supervisor", "admin"})
#: The three 100% rates (三个100%) by dashboard key, with their Chinese names.
#: The report's three rates: its key, the key of :func:`coverage.park_rates`, the name.
RATES = (("enterprises_in_grid", "enterprises_in_grid", "企业网格划分率"),
         ("grids_with_staff", "grids_staffed", "网格员信息公示率"),
         ("enterprises_complete", "records_complete", "基础信息建档率"))
#: Follow-up answers that count as satisfied in the satisfaction rate.
SATISFIED = ("satisfied", "basically_satisfied")


@dataclass(frozen=True)
class Period:
    """A run of local days ``first``..``last``, its UTC bounds and ``as_of`` (see module)."""

    name: str
    first: date
    last: date
    start: datetime
    end: datetime
    as_of: date
    as_of_end: datetime

    def holds(self, moment):
        """True when UTC instant ``moment`` (naive means UTC) falls in the period."""
        return self.start <= _utc(moment) < self.end

    def has_day(self, day):
        """True when local date ``day`` is in the period."""
        return self.first <= day <= self.last


def make_period(first, last, today=None, name=None):
    """The :class:`Period` of local days ``first``..``last`` (dates, ``first <= last``)."""
    today = today or local_today()
    as_of = max(first, min(last, today))
    return Period(name=name or f"{first.isoformat()}..{last.isoformat()}", first=first,
                  last=last, start=local_day_bounds_utc(first)[0],
                  end=local_day_bounds_utc(last)[1], as_of=as_of,
                  as_of_end=local_day_bounds_utc(as_of)[1])


def make_week(week, today=None):
    """The :class:`Period` of ISO week ``week`` (``"2026-W48"``); 422 ``invalid_week``."""
    monday, sunday = week_bounds(week)
    return make_period(monday, sunday, today, name=iso_week(monday))


def _utc(moment):
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def rate(part, whole):
    """``part / whole`` rounded to 4 places, or None when ``whole`` is 0."""
    return round(part / whole, 4) if whole else None


#: Level-1 grids read per query when a page walks them in code order.
WALK_BATCH = 500


def top_grids(session, park, ids):
    """``{grid id: its level-1 grid}`` for the grids ``ids`` of ``park`` (sub-grids roll up).

    Walks up from the grids named (those of the hazards, requests and
    visits at hand), not down from the park's every grid: a city's park
    holds 10^5 grids.  The level-1 grids are rows of their id, code, name,
    level, parent and retirement, not ORM objects with their geometry.
    """
    seen, todo = {}, set(ids) - {None}
    while todo:
        for batch in in_batches(todo):
            for g in session.execute(sa.select(
                    Grid.id, Grid.code, Grid.name, Grid.level, Grid.parent_id, Grid.active_to)
                    .where(Grid.park_id == park.id, Grid.id.in_(batch))):
                seen[g.id] = g
        todo = {g.parent_id for g in seen.values() if g.parent_id is not None} - set(seen)
    top = {}
    for gid in set(ids) & set(seen):
        t = seen[gid]
        while t.parent_id is not None and t.parent_id in seen:
            t = seen[t.parent_id]
        top[gid] = t
    return top


def _level1(park, codes):
    """The query of the active level-1 grids (code, name) of ``park``, of ``codes`` if given."""
    query = sa.select(Grid.code, Grid.name).where(
        Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None))
    return query if codes is None else query.where(Grid.code.in_(sorted(codes)))


def _level1_in_order(session, query, skip=frozenset()):
    """Yield the grids of ``query`` in code point order, leaving out the codes ``skip``.

    Reads :data:`WALK_BATCH` grids a query (keyset paging on the code), so a
    page that needs its first few grids reads only those.
    """
    order = code_point_order(session.get_bind(), Grid.code)
    last = None
    while True:
        batch = session.execute((query if last is None else query.where(order > last))
                                .order_by(order).limit(WALK_BATCH)).all()
        yield from (g for g in batch if g.code not in skip)
        if len(batch) < WALK_BATCH:
            return
        last = batch[-1].code


def _states_at(events, period):
    """From ``(item_id, at, to_status)`` rows: the last state before the end, ids per target."""
    last, within = {}, {}
    for item_id, at, to_status in events:
        at = _utc(at)
        if at < period.as_of_end:
            last[item_id] = to_status
        if period.holds(at):
            within.setdefault(to_status, set()).add(item_id)
    return last, within


def hazard_facts(session, park, period):
    """Return one dict per hazard of ``park`` with its facts in ``period``.

    Keys: ``id``, ``code``, ``grid_id``, ``found`` (found in the period),
    ``closed`` (closed in the period), ``open`` (open at the end),
    ``overdue`` (open and past its deadline then), ``escalated`` (open and
    escalated beyond the grid), ``status`` (at the end), ``deadline``,
    ``escalation``, ``description``, ``point`` (shapely, EPSG:4326).
    """
    hazards = session.execute(sa.select(Hazard).where(Hazard.park_id == park.id)
                              .order_by(Hazard.code)).scalars().all()
    last, within = _states_at(session.execute(
        sa.select(HazardEvent.hazard_id, HazardEvent.at, HazardEvent.to_status)
        .join(Hazard, Hazard.id == HazardEvent.hazard_id).where(Hazard.park_id == park.id)
        .order_by(HazardEvent.id)), period)
    closed = within.get("closed", set())
    out = []
    for h, point in zip(hazards, to_shapes([h.location for h in hazards])):
        exists = h.found_date <= period.as_of
        status = last.get(h.id, "found") if exists else None
        is_open = exists and status != "closed"
        out.append({
            "id": h.id, "code": h.code, "grid_id": h.grid_id, "status": status,
            "found": period.has_day(h.found_date), "closed": h.id in closed, "open": is_open,
            "overdue": is_open and h.deadline is not None and h.deadline < period.as_of,
            "escalated": is_open and h.escalation != "grid", "escalation": h.escalation,
            "deadline": h.deadline, "description": h.description, "point": point,
        })
    return out


def request_facts(session, park, period):
    """Return one dict per request of ``park`` with its facts in ``period``.

    Keys: ``id``, ``code``, ``grid_id``, ``responsible``, ``received``
    (received in the period), ``resolved`` (a 办结 event in the period),
    ``open`` and ``overdue`` at the end, ``done`` (办结 or 回访 at the end),
    ``status``, ``deadline``, ``description``, ``follow_ups`` (the
    satisfaction answers of the period's 回访, in order), ``point`` (a point
    of the enterprise's site, EPSG:4326).
    """
    items = session.execute(sa.select(ServiceRequest).where(ServiceRequest.park_id == park.id)
                            .order_by(ServiceRequest.code)).scalars().all()
    events = session.execute(
        sa.select(RequestEvent.request_id, RequestEvent.at, RequestEvent.to_status,
                  RequestEvent.action, RequestEvent.satisfaction)
        .join(ServiceRequest, ServiceRequest.id == RequestEvent.request_id)
        .where(ServiceRequest.park_id == park.id).order_by(RequestEvent.id)).all()
    last, within = _states_at([(r, at, to) for r, at, to, _a, _s in events], period)
    answers = {}
    for request_id, at, _to, action, satisfaction in events:
        if action == "follow_up" and satisfaction and period.holds(at):
            answers.setdefault(request_id, []).append(satisfaction)
    sites = dict(session.execute(sa.select(Enterprise.id, Enterprise.site).where(
        Enterprise.id.in_({r.enterprise_id for r in items}))).all()) if items else {}
    ids = list(sites)
    points = dict(zip(ids, shapely.point_on_surface(to_shapes([sites[i] for i in ids]))))
    resolved = within.get("resolved", set())
    out = []
    for r in items:
        exists = r.received_date <= period.as_of
        status = last.get(r.id, "accepted") if exists else None
        is_open = exists and status not in DONE
        out.append({
            "id": r.id, "code": r.code, "grid_id": r.grid_id, "responsible": r.responsible,
            "received": period.has_day(r.received_date), "resolved": r.id in resolved,
            "open": is_open, "done": exists and status in DONE, "status": status,
            "overdue": is_open and r.deadline is not None and r.deadline < period.as_of,
            "deadline": r.deadline, "description": r.description,
            "follow_ups": answers.get(r.id, []), "point": points[r.enterprise_id],
        })
    return out


def satisfaction(facts):
    """``(satisfied, answers)`` over the follow-ups in request ``facts`` (满意 + 基本满意)."""
    answers = [a for f in facts for a in f["follow_ups"]]
    return sum(a in SATISFIED for a in answers), len(answers)


def visits_by_grid(session, park, period):
    """Visit records (any kind) in ``period`` per grid id (as visited, before the roll-up)."""
    counts = Counter()
    for grid_id, when in session.execute(sa.select(Visit.grid_id, Visit.occurred_at).where(
            Visit.park_id == park.id, Visit.occurred_at >= period.start,
            Visit.occurred_at < period.end)):
        if grid_id is not None and period.holds(when):
            counts[grid_id] += 1
    return counts


def weekly_report(session, park, week, today=None, grid_ids=None, rows=None):
    """Return the week's report of ``park`` as a dict (see the module docstring).

    The figures are sums over the park's hazards, requests, visits and
    visit targets; the per-grid table and the review list are over its
    active level-1 grids.  With ``rows`` the report is a page (the web page,
    the printed HTML and PDF): ``grids`` holds the first ``rows`` grids
    that :func:`geodata.weekly_export.printed` shows, ``review`` the first ``rows``
    items, and ``grids_total`` and ``review_total`` count them all (a SQL
    count), so no work is done per grid of a park of 10^5 grids.  Without
    it (the XLSX) both hold every row; the figures are the same either way.

    Parameters
    ----------
    week : str
        ISO week ``"2026-W48"`` (Asia/Shanghai).
    today : date, optional
        The local date to compute "now" with (default :func:`local_today`).
    grid_ids : set, optional
        A grid member's grids (``Actor.grid_ids``): the grid rows, the
        hazards, requests and tasks listed, and the totals are theirs only;
        the park's rates stay park-wide figures.
    rows : int, optional
        Cut the per-grid table and the review list to this many rows.

    Raises
    ------
    ValidationError
        422 ``invalid_week``.
    """
    today = today or local_today()
    week = make_week(week, today)
    hazards = hazard_facts(session, park, week)
    requests = request_facts(session, park, week)
    coverage = visits.coverage(session, park, week=week.name, today=today)
    visited = visits_by_grid(session, park, week)
    tasks = list_assignments(session, park, week.name)
    top = top_grids(session, park, {f["grid_id"] for f in hazards + requests}
                    | set(visited) | set(grid_ids or ()))
    records = Counter()
    for grid_id, n in visited.items():
        if grid_id in top:
            records[top[grid_id].code] += n
    mine = None
    if grid_ids is not None:
        hazards = [f for f in hazards if f["grid_id"] in grid_ids]
        requests = [f for f in requests if f["grid_id"] in grid_ids]
        mine = {top[i].code for i in grid_ids if i in top}
        records = Counter({code: n for code, n in records.items() if code in mine})
        coverage = {**coverage, **_coverage_of(coverage["by_grid"], mine)}
        tasks = [a for a in tasks if (a.hazard or a.request).grid_id in grid_ids]
    counts = {}
    for prefix, facts, keys in (("hazards", hazards, ("found", "closed", "open", "overdue")),
                                ("requests", requests,
                                 ("received", "resolved", "open", "overdue"))):
        for f in facts:
            g = top.get(f["grid_id"])
            if g is not None:
                row = counts.setdefault(g.code, Counter())
                for key in keys:
                    row[f"{prefix}_{key}"] += f[key]

    def grid_row(g):
        cell = coverage["by_grid"].get(g.code, {})
        return {"code": g.code, "name": g.name, **dict.fromkeys(GRID_KEYS, 0),
                **counts.get(g.code, {}), "visits": records.get(g.code, 0),
                "visits_done": cell.get("done", 0), "visits_due": cell.get("expected", 0)}

    level1 = _level1(park, mine)
    review = review_list(hazards, requests, top)
    if rows is None:
        grids = sorted(map(grid_row, session.execute(level1)), key=lambda g: g["code"])
        review += [_quiet_grid(g) for g in grids if not g["visits"]]
        grids_total, review_total = len(grids), len(review)
    else:
        shown = {g.code: g for g in top.values() if g.level == 1 and g.active_to is None
                 and (mine is None or g.code in mine)}
        grids, grids_total = _grid_page(session, level1, shown, counts, grid_row, rows)
        quiet = _level1_in_order(session, level1, skip={c for c in records if records[c]})
        review_total = len(review) + grids_total - sum(bool(records[c]) for c in shown)
        review += [_quiet_grid(g) for g in islice(quiet, max(0, rows - len(review)))]
        review = review[:rows]
    happy, answers = satisfaction(requests)
    rates = park_rates(session, park)
    assignments = assignment_dicts(session, tasks, today=today)
    return {
        "park": {"code": park.code, "name": park.name},
        "week": week.name, "monday": week.first.isoformat(), "sunday": week.last.isoformat(),
        "as_of": week.as_of.isoformat(),
        "hazards": {key: sum(h[key] for h in hazards)
                    for key in ("found", "closed", "open", "overdue")},
        "requests": {**{key: sum(r[key] for r in requests)
                        for key in ("received", "resolved", "open", "overdue")},
                     "follow_ups": answers, "satisfied": happy,
                     "satisfaction_rate": rate(happy, answers)},
        "visits": {"records": sum(records.values()), "done": coverage["done"],
                   "due": coverage["expected"], "rate": coverage["rate"]},
        "rates": {key: {"name": name, "value": rates[source]} for key, source, name in RATES},
        "grids": grids, "grids_total": grids_total,
        "review": review, "review_total": review_total,
        "assignments": assignments,
        "open_items": [{"kind": kind, "ref": f["code"],
                        "lon": round(shapely.get_x(f["point"]), 7),
                        "lat": round(shapely.get_y(f["point"]), 7), "overdue": f["overdue"]}
                       for kind, facts in (("hazard", hazards), ("request", requests))
                       for f in facts if f["open"]],
    }


def _grid_page(session, level1, shown, counts, grid_row, rows):
    """The first ``rows`` grid rows of a printed report and the number of grids, read bounded.

    When the park has more grids than ``rows``, the busiest come first: only
    the grids with hazards or requests (``shown`` maps their codes to their
    grids) can be busy; the others follow in code order, read a batch at a
    time.  ``level1`` is the query of the grids in the report.
    """
    total = session.execute(sa.select(sa.func.count()).select_from(level1.subquery())).scalar()
    if total <= rows:
        return sorted(map(grid_row, session.execute(level1)), key=lambda g: g["code"]), total
    busy = sorted((grid_row(g) for code, g in shown.items()
                   if any(counts.get(code, {}).get(k) for k in BUSY_KEYS)), key=busiest)
    grids = busy[:rows]
    rest = _level1_in_order(session, level1, skip={g["code"] for g in busy})
    return grids + [grid_row(g) for g in islice(rest, rows - len(grids))], total


def _coverage_of(by_grid, codes):
    """``{by_grid, expected, done, rate}`` of visit coverage over the grids ``codes``."""
    cells = {code: cell for code, cell in by_grid.items() if code in codes}
    expected = sum(c.get("expected", 0) for c in cells.values())
    done = sum(c.get("done", 0) for c in cells.values())
    return {"by_grid": cells, "expected": expected, "done": done, "rate": rate(done, expected)}


#: Per-grid counters of the weekly report, in column order after code and name.
GRID_KEYS = ("hazards_found", "hazards_closed", "hazards_open", "hazards_overdue",
             "requests_received", "requests_resolved", "requests_open", "requests_overdue",
             "visits", "visits_done", "visits_due")
#: The counters that order a cut per-grid table (:func:`busiest`), most urgent first.
BUSY_KEYS = ("hazards_overdue", "requests_overdue", "hazards_open", "requests_open",
             "hazards_found", "requests_received")


def busiest(row):
    """Sort key of a per-grid row: most overdue, then open, then new items first, then code."""
    return (*(-row[key] for key in BUSY_KEYS), row["code"])


def service_figures(session, park, today=None):
    """The dashboard's request and visit figures, now (local ``today``).

    * ``requests``: all requests of the park; ``requests_resolved``: 办结 or
      回访 now; ``request_resolution_rate`` = resolved / requests (问题解决率);
    * ``requests_overdue``: open requests past their deadline;
    * ``follow_ups`` and ``satisfaction_rate``: every 回访 answer so far,
      (满意 + 基本满意) / 回访 (企业满意度);
    * ``visit_coverage``: :func:`geodata.services.visits.coverage` of this
      ISO week (``{"week", "expected", "done", "rate", "by_grid"}``).
    """
    today = today or local_today()
    period = make_period(domains.DATE_MIN, today, today, name="all")
    requests = request_facts(session, park, period)
    happy, answers = satisfaction(requests)
    done = sum(r["done"] for r in requests)
    coverage = visits.coverage(session, park, today=today)
    return {
        "requests": len(requests), "requests_resolved": done,
        "request_resolution_rate": rate(done, len(requests)),
        "requests_overdue": sum(r["overdue"] for r in requests),
        "follow_ups": answers, "satisfaction_rate": rate(happy, answers),
        # Enterprises in no grid count under "" (JSON keys are strings, sorted).
        "visit_coverage": {**{k: coverage[k] for k in ("week", "expected", "done", "rate")},
                           "by_grid": {code or "": cell
                                       for code, cell in coverage["by_grid"].items()}},
    }


def review_list(hazards, requests, top):
    """The 周研判 list's items of hazards and requests (:func:`_quiet_grid` adds the grids).

    Hazards overdue or escalated, and requests overdue or answered 不满意 at
    a follow-up in the week; the list ends with the level-1 grids that have
    no visit record in it.
    """
    items = []

    def grid_of(f):
        g = top.get(f["grid_id"])
        return g.code if g is not None else ""

    for h in hazards:
        reasons = [r for r, flag in (("逾期 overdue", h["overdue"]),
                                     (f"上报 escalated to {h['escalation']}", h["escalated"]))
                   if flag]
        if reasons:
            items.append({"kind": "hazard", "ref": h["code"], "grid": grid_of(h),
                          "reason": "; ".join(reasons), "text": h["description"],
                          "deadline": h["deadline"].isoformat() if h["deadline"] else ""})
    for r in requests:
        reasons = [r_ for r_, flag in (("逾期 overdue", r["overdue"]),
                                       ("不满意 unsatisfied", "unsatisfied" in r["follow_ups"]))
                   if flag]
        if reasons:
            items.append({"kind": "request", "ref": r["code"], "grid": grid_of(r),
                          "reason": "; ".join(reasons), "text": r["description"],
                          "deadline": r["deadline"].isoformat() if r["deadline"] else ""})
    return items


def _quiet_grid(grid):
    """The review item of a level-1 grid (a row or a dict with code and name) with no visit."""
    code, name = (grid["code"], grid["name"]) if isinstance(grid, dict) else grid
    return {"kind": "grid", "ref": code, "grid": code, "reason": "本周无走访 no visit this week",
            "text": name, "deadline": ""}


def assign(session, park, week, *, actor, owner, deadline, hazard=None, request=None, note="",
           today=None):
    """Make a 周交办 assignment: give ``hazard`` or ``request`` to user ``owner`` by ``deadline``.

    The assignment becomes a hazard task or a request task: it is linked to
    the item and done when the item is closed (hazard) or 办结/回访
    (request) through its own ledger's workflow (see
    :func:`assignment_dicts`).  A request may be created for the purpose
    first (``gridmap weekly assign --enterprise ...``).  Runs inside the
    caller's write transaction.

    Parameters
    ----------
    week : str
        The ISO week of the meeting that made the assignment.
    actor : geodata.services.ledger.Actor
        Who assigns (a supervisor or admin).
    owner : str
        User name of the person responsible; a grid member must serve the
        item's grid.
    deadline : date or str
        ``YYYY-MM-DD``; not before the week's Monday.
    hazard, request : Hazard or ServiceRequest
        Exactly one: the open item of ``park`` to task.

    Raises
    ------
    PermissionDeniedError
        403 for a role that may not assign.
    NotFoundError
        404 ``unknown_user``.
    ValidationError
        422 ``invalid_week``, ``invalid_date``, ``owner_inactive``,
        ``owner_outside_grid``, ``wrong_park``, ``missing_field``, bad text.
    ConflictError
        409 ``already_done`` (closed hazard, resolved request) or
        ``duplicate_assignment`` (the item is already assigned that week).
    """
    if actor.role not in ASSIGNERS:
        raise PermissionDeniedError(f"role {actor.role!r} may not make weekly assignments",
                                    details={"role": actor.role, "action": "assign"})
    week = make_week(week, today)
    deadline = domains.day(deadline, "deadline", required=True)
    if deadline < week.first:
        raise ValidationError(f"the deadline {deadline} is before week {week.name} began",
                              code="invalid_date", details={"field": "deadline"})
    note = domains.text(note, "note", kind="note") or ""
    if (hazard is None) == (request is None):
        raise ValidationError("name one hazard or one request to assign",
                              code="missing_field", details={"field": "hazard"})
    item = hazard if hazard is not None else request
    if item.park_id != park.id:
        raise ValidationError(f"{item.code} is not in park {park.code}", code="wrong_park",
                              details={"field": "hazard" if hazard is not None else "request"})
    user = get_user(session, owner)
    if not user.active:
        raise ValidationError(f"user {owner!r} is disabled", code="owner_inactive",
                              details={"field": "owner"})
    grid_ids = allowed_grid_ids(session, user)
    if grid_ids is not None and item.grid_id not in grid_ids:
        raise ValidationError(f"{owner} does not serve the grid of {item.code}",
                              code="owner_outside_grid", details={"field": "owner"})
    if (item.status == "closed") if hazard is not None else item.status in DONE:
        raise ConflictError(f"{item.code} is already done ({item.status})", code="already_done")
    column = WeeklyAssignment.hazard_id if hazard is not None else WeeklyAssignment.request_id
    taken = session.execute(sa.select(WeeklyAssignment.id).where(
        column == item.id, WeeklyAssignment.week == week.name)).first()
    if taken is not None:
        raise ConflictError(f"{item.code} is already assigned in {week.name} "
                            f"(assignment {taken[0]})", code="duplicate_assignment")
    row = WeeklyAssignment(park_id=park.id, week=week.name,
                           hazard_id=hazard.id if hazard is not None else None,
                           request_id=request.id if request is not None else None,
                           owner_id=user.id, deadline=deadline, note=note,
                           created_by=actor.name)
    session.add(row)
    session.flush()
    return row


def list_assignments(session, park, week=None):
    """Return the park's assignments (of ``week`` if given), oldest first."""
    query = sa.select(WeeklyAssignment).where(WeeklyAssignment.park_id == park.id)
    if week is not None:
        query = query.where(WeeklyAssignment.week == make_week(week).name)
    return session.execute(query.order_by(WeeklyAssignment.id)).scalars().all()


def assignment_dicts(session, items, today=None):
    """Serialise assignments with their derived progress.

    ``state`` is the linked item's state name; ``done`` is True once the
    hazard is closed or the request 办结 or 回访; ``overdue`` is True when
    it is not done and the deadline has passed (local ``today``).
    """
    today = today or local_today()
    owners = {u.id: u.username for u in session.execute(sa.select(User).where(
        User.id.in_({a.owner_id for a in items}))).scalars()} if items else {}
    out = []
    for a in items:
        if a.hazard is not None:
            kind, ref, done = "hazard", a.hazard.code, a.hazard.status == "closed"
            state = STATE_NAMES[a.hazard.status]
        else:
            kind, ref, done = "request", a.request.code, a.request.status in DONE
            state = REQUEST_STATE_NAMES[a.request.status]
        out.append({"id": a.id, "week": a.week, "kind": kind, "ref": ref,
                    "owner": owners.get(a.owner_id), "deadline": a.deadline.isoformat(),
                    "state": state, "done": done,
                    "overdue": not done and a.deadline < today,
                    "note": a.note, "created_by": a.created_by})
    return out
