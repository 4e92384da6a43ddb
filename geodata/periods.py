"""Days and ISO weeks in Asia/Shanghai: the periods every schedule counts in.

Field work in a Chinese park happens on Beijing time whatever the server's
clock zone is: a visit at 23:30 on Sunday (15:30 UTC) belongs to that week,
one at 00:30 on Monday (16:30 UTC on Sunday) to the next.  Times are stored
in UTC (:func:`geodata.domains.moment`); these helpers turn them into local
days and weeks and back.  Weeks are ISO 8601: Monday to Sunday, written
``2026-W48``.
"""

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from geodata.errors import ValidationError

ZONE = ZoneInfo("Asia/Shanghai")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def local_now(now=None):
    """Return ``now`` (default: the clock) as an aware datetime in Asia/Shanghai."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:  # SQLite hands back naive UTC
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(ZONE)


def local_today(now=None):
    """Return today's date in Asia/Shanghai (of ``now`` when given)."""
    return local_now(now).date()


def local_date(moment):
    """Return the Asia/Shanghai date of an instant (naive values are UTC)."""
    return local_now(moment).date()


def iso_week(d):
    """Return the ISO week of date ``d`` as ``"2026-W48"``."""
    year, week, _ = d.isocalendar()
    return f"{year:04d}-W{week:02d}"


def parse_week(text, field="week"):
    """Return ``text`` (``YYYY-Www``) as a valid ISO week string, or raise 422.

    Raises
    ------
    ValidationError
        ``invalid_week`` for another shape or a week the year does not have.
    """
    match = _WEEK.match(text) if isinstance(text, str) else None
    if match:
        try:
            monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
        except ValueError:
            monday = None
        if monday is not None and date(1970, 1, 1) <= monday <= date(2100, 12, 25):
            return text
    raise ValidationError(f"{field} must be an ISO week like 2026-W48, got {str(text)[:40]!r}",
                          code="invalid_week", details={"field": field})


def week_bounds(week):
    """Return ``(monday, sunday)`` dates of the ISO week ``"2026-W48"``."""
    year, number = (int(part) for part in parse_week(week).split("-W"))
    monday = date.fromisocalendar(year, number, 1)
    return monday, monday + timedelta(days=6)


def local_day_bounds_utc(d):
    """Return ``[start, end)`` of the Asia/Shanghai day ``d`` as aware UTC datetimes."""
    start = datetime.combine(d, time.min, ZONE)
    end = datetime.combine(d + timedelta(days=1), time.min, ZONE)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def week_bounds_utc(week):
    """Return ``[start, end)`` of the ISO week in Asia/Shanghai as aware UTC datetimes."""
    monday, sunday = week_bounds(week)
    return local_day_bounds_utc(monday)[0], local_day_bounds_utc(sunday)[1]


def period_of(moment, period):
    """Return the local ``"day"`` (``2026-11-29``) or ``"week"`` (``2026-W48``) of an instant."""
    d = local_date(moment)
    return d.isoformat() if period == "day" else iso_week(d)


def period_bounds_utc(key, period):
    """Return ``[start, end)`` in UTC of a period key made by :func:`period_of`."""
    if period == "day":
        return local_day_bounds_utc(date.fromisoformat(key))
    return week_bounds_utc(key)


def previous_period(key, period):
    """Return the period before ``key`` (yesterday, last week)."""
    if period == "day":
        return (date.fromisoformat(key) - timedelta(days=1)).isoformat()
    return iso_week(week_bounds(key)[0] - timedelta(days=7))
