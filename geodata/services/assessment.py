"""Staff assessment (考核): per-person figures over a run of local days and a weighted score.

The articles assess grid members on enterprise satisfaction and the problem
resolution rate (企业满意度、问题解决率).  For each person (a user, or a grid
staff member without an account, matched by name: see :func:`assessment`) and the
local days ``first``..``last`` (Asia/Shanghai; "the end" is the end of the
last day, or of today while the period runs):

``visits_done`` / ``visits_due``
    The person's visits against their visit schedule (h/visits' rules: one
    走访 per linked enterprise per ISO week unless a rule says otherwise),
    over every day or ISO week that overlaps the period and has begun;
    each period counts at most its required number.
``hazards_found``
    Hazards the person logged (the first history event is theirs) with a
    ``found_date`` in the period.
``closure_rate``
    Of the person's hazards found in the period, the share closed at the
    end.  The person's hazards are those in their grids (``user_grids``
    and sub-grids); for a user without grids, the hazards they logged.
``hazards_overdue`` / ``requests_overdue``
    The person's hazards, and the requests they are responsible for, open
    and past their deadline at the end.
``resolution_rate``
    Of the requests the person is responsible for (``responsible`` is their
    user name or display name) received in the period, the share 办结 or
    回访 at the end (问题解决率).
``satisfaction_rate``
    Of the follow-ups (回访) in the period of those requests, the share
    answered 满意 or 基本满意 (企业满意度).

The score (0..100), with the park's weights ``w`` (:data:`DEFAULT_WEIGHTS`
unless set with :func:`set_weights`)::

    score = 100 * sum(w[m] * rate[m]) / sum(w[m])  over the rates m that exist
            - w["overdue"] * (hazards_overdue + requests_overdue),  at least 0

where the rates are ``visits`` = min(1, visits_done / visits_due),
``closure``, ``resolution`` and ``satisfaction``; a rate without a
denominator (nothing due, nothing found ...) is left out of both sums.  A
person with no rate at all has no score (None).
"""

from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa

from geodata import domains, periods
from geodata.errors import FeatureError, ValidationError
from geodata.models import (ASSESSMENT_METRICS, AssessmentWeight, Enterprise, EnterpriseLink,
                            Grid, GridStaff, Hazard, HazardEvent, User)
from geodata.services import visits
from geodata.services.users import allowed_grid_ids
from geodata.services.weekly import SATISFIED, hazard_facts, make_period, rate, request_facts

#: Weights used for a metric the park has not set: rates in points, ``overdue`` in points
#: taken off per overdue item.
DEFAULT_WEIGHTS = {"visits": 30.0, "closure": 20.0, "resolution": 25.0, "satisfaction": 25.0,
                   "overdue": 2.0}
#: The longest period one assessment covers (a little over a year).
MAX_DAYS = 400


def weights(session, park):
    """Return the park's weights ``{metric: weight}`` (defaults where none is set)."""
    out = dict(DEFAULT_WEIGHTS)
    for metric, weight in session.execute(sa.select(
            AssessmentWeight.metric, AssessmentWeight.weight).where(
            AssessmentWeight.park_id == park.id)):
        out[metric] = weight
    return out


def set_weights(session, park, values):
    """Set some of the park's weights from ``{metric: number}``; return all weights.

    Runs inside the caller's write transaction.

    Raises
    ------
    ValidationError
        422 ``unknown_metric`` or ``invalid_value`` (not a number in 0..100).
    """
    clean = {}
    for metric, value in values.items():
        if metric not in ASSESSMENT_METRICS:
            raise ValidationError(f"unknown assessment metric {metric!r}; expected one of "
                                  f"{', '.join(ASSESSMENT_METRICS)}", code="unknown_metric",
                                  details={"field": "metric", "allowed": ASSESSMENT_METRICS})
        # Text is read as a plain number only (float() also takes " 10", "1_0" and "１０"),
        # and domains.number stores -0 as 0, which both backends read back alike.
        number = domains.plain_number(value, float) if isinstance(value, str) else value
        try:
            clean[metric] = domains.number(number, metric, minimum=0, maximum=100)
        except FeatureError:
            raise ValidationError(f"the weight of {metric} must be a number from 0 to 100, got "
                                  f"{str(value)[:40]!r}", code="invalid_value",
                                  details={"field": metric}) from None
    stored = {w.metric: w for w in session.execute(sa.select(AssessmentWeight).where(
        AssessmentWeight.park_id == park.id)).scalars()}
    for metric, number in clean.items():
        if metric in stored:
            stored[metric].weight = number
        else:
            session.add(AssessmentWeight(park_id=park.id, metric=metric, weight=number))
    session.flush()
    return weights(session, park)


def parse_period(first, last, today=None):
    """The :class:`~geodata.services.weekly.Period` of ``first``..``last`` (dates or strings).

    Raises
    ------
    ValidationError
        422 ``invalid_date`` for a malformed date, ``invalid_period`` when
        ``first`` is after ``last`` or the period is longer than
        :data:`MAX_DAYS`.
    """
    first = domains.day(first, "from", required=True)
    last = domains.day(last, "to", required=True)
    if first > last:
        raise ValidationError(f"from ({first}) is after to ({last})", code="invalid_period",
                              details={"field": "from"})
    if (last - first).days >= MAX_DAYS:
        raise ValidationError(f"the period is longer than {MAX_DAYS} days",
                              code="invalid_period", details={"field": "to"})
    return make_period(first, last, today)


def _visit_schedule(session, park, period, today):
    """``{user id: [done, due]}`` of the visit schedule over the period (see module)."""
    targets = [t for t in visits._targets(session, park) if t.user is not None]
    keys = {"day": [], "week": []}
    day = period.first
    while day <= min(period.last, today):
        keys["day"].append(day.isoformat())
        week = periods.iso_week(day)
        if week not in keys["week"]:
            keys["week"].append(week)
        day += timedelta(days=1)
    first_week = keys["week"][0] if keys["week"] else periods.iso_week(period.first)
    start = periods.week_bounds_utc(first_week)[0]
    end = periods.week_bounds_utc(periods.iso_week(period.last))[1]
    counts = visits._counts(session, park, start, end)
    out = defaultdict(lambda: [0, 0])
    for t in targets:
        owed = [k for k in keys[t.period]
                if t.since is None or periods.period_bounds_utc(k, t.period)[1] > t.since]
        out[t.user[0]][0] += sum(min(visits._count(counts, t, k), t.times) for k in owed)
        out[t.user[0]][1] += t.times * len(owed)
    return out


def _people(session, park):
    """Who is assessed: ``(kind, user or None, display name, names, grid ids or None)``.

    Active users (``grid ids`` None: no grid limit), then the park's grid
    staff (网格员) who are not users, each with the grids they serve and
    their sub-grids.  A staff member whose name is a user's user name or
    display name is that user.
    """
    users = session.execute(sa.select(User).where(User.active.is_(True))
                            .order_by(User.username)).scalars().all()
    out, taken = [], set()
    for user in users:
        names = {user.username, user.display_name} - {""}
        taken |= names
        out.append(("user", user, user.display_name or user.username, names,
                    allowed_grid_ids(session, user)))
    grids = session.execute(sa.select(Grid.id, Grid.parent_id).where(
        Grid.park_id == park.id)).all()
    children = defaultdict(list)
    for gid, parent in grids:
        children[parent].append(gid)
    served = defaultdict(set)
    for name, gid in session.execute(sa.select(GridStaff.name, GridStaff.grid_id).join(
            Grid, Grid.id == GridStaff.grid_id).where(Grid.park_id == park.id)):
        todo = [gid]
        while todo:
            g = todo.pop()
            served[name].add(g)
            todo.extend(children[g])
    for name in sorted(set(served) - taken):
        out.append(("staff", None, name, {name}, served[name]))
    return out


def assessment(session, park, first, last, today=None):
    """Return the assessment of ``park`` over local days ``first``..``last``.

    ``{"park", "from", "to", "as_of", "weights", "staff": [per person]}``;
    each person's dict holds ``kind`` (``user`` or ``staff``: a grid staff
    member who has no account, matched by name), ``user`` (the user name,
    "" for staff), ``name``, the figures of the module docstring, their
    rates and ``score``.  Users come first by user name, then staff by name;
    a person is listed when they serve grids or enterprises of the park or
    have a figure.  Visits are logged by users, so staff without an account
    have none due.

    Raises
    ------
    ValidationError
        As :func:`parse_period`.
    """
    today = today or periods.local_today()
    period = parse_period(first, last, today)
    w = weights(session, park)
    hazards = hazard_facts(session, park, period)
    requests = request_facts(session, park, period)
    loggers = dict(session.execute(
        sa.select(HazardEvent.hazard_id, HazardEvent.actor)
        .join(Hazard, Hazard.id == HazardEvent.hazard_id)
        .where(Hazard.park_id == park.id, HazardEvent.from_status.is_(None))).all())
    schedule = _visit_schedule(session, park, period, today)
    linked = set(session.execute(sa.select(EnterpriseLink.user_id).join(
        Enterprise, Enterprise.id == EnterpriseLink.enterprise_id).where(
        Enterprise.park_id == park.id)).scalars())
    park_grids = set(session.execute(sa.select(Grid.id).where(
        Grid.park_id == park.id)).scalars())
    staff = []
    for kind, user, name, names, grids in _people(session, park):
        # The ledgers record a user by user name and a staff member by name.
        logged = [h for h in hazards
                  if loggers.get(h["id"]) == (user.username if user else name)]
        mine = logged if grids is None else [h for h in hazards if h["grid_id"] in grids]
        found_mine = [h for h in mine if h["found"]]
        theirs = [r for r in requests if r["responsible"] in names]
        received = [r for r in theirs if r["received"]]
        answers = [a for r in theirs for a in r["follow_ups"]]
        done, due = schedule.get(user.id, (0, 0)) if user else (0, 0)
        person = {
            "kind": kind, "user": user.username if user else "", "name": name,
            "visits_done": done, "visits_due": due,
            "hazards_found": sum(h["found"] for h in logged),
            "hazards_closed": sum(h["status"] == "closed" for h in found_mine),
            "hazards_assessed": len(found_mine),
            "closure_rate": rate(sum(h["status"] == "closed" for h in found_mine),
                                 len(found_mine)),
            "hazards_overdue": sum(h["overdue"] for h in mine),
            "requests": len(received), "requests_resolved": sum(r["done"] for r in received),
            "resolution_rate": rate(sum(r["done"] for r in received), len(received)),
            "requests_overdue": sum(r["overdue"] for r in theirs),
            "follow_ups": len(answers),
            "satisfaction_rate": rate(sum(a in SATISFIED for a in answers), len(answers)),
        }
        involved = ((user is not None and user.id in linked)
                    or (grids is not None and grids & park_grids)
                    or any(person[k] for k in ("visits_done", "visits_due", "hazards_found",
                                               "hazards_overdue", "requests",
                                               "requests_overdue", "follow_ups")))
        if involved:
            person["score"] = score(person, w)
            staff.append(person)
    return {"park": {"code": park.code, "name": park.name}, "from": period.first.isoformat(),
            "to": period.last.isoformat(), "as_of": period.as_of.isoformat(), "weights": w,
            "staff": staff}


def score(person, w):
    """The weighted score of one person's figures (formula in the module docstring)."""
    rates = {"visits": (min(1.0, person["visits_done"] / person["visits_due"])
                        if person["visits_due"] else None),
             "closure": person["closure_rate"], "resolution": person["resolution_rate"],
             "satisfaction": person["satisfaction_rate"]}
    given = {m: r for m, r in rates.items() if r is not None}
    total = sum(w[m] for m in given)
    if not given or not total:
        return None
    value = 100 * sum(w[m] * r for m, r in given.items()) / total
    value -= w["overdue"] * (person["hazards_overdue"] + person["requests_overdue"])
    return round(max(0.0, value), 1)
