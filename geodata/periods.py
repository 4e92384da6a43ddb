"""Days and ISO weeks in the parks' time zone (Asia/Shanghai).

Every period gridmap reports on (a week of the weekly routine, "today" for
overdue) is a local period: a week runs from Monday 00:00 to Sunday 24:00
in Asia/Shanghai (UTC+8, no daylight saving), whatever the server's zone.
Timestamps are stored in UTC; :func:`local_day_bounds_utc` gives the UTC
instants that bound a local day.
"""

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from geodata.domains import DATE_MAX, DATE_MIN
from geodata.errors import ValidationError

ZONE = ZoneInfo("Asia/Shanghai")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")


def local_today():
    """Today's date in Asia/Shanghai."""
    return datetime.now(ZONE).date()


def iso_week(d):
    """The ISO week of date ``d`` as ``"2026-W48"``."""
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week):
    """Return ``(monday, sunday)`` (dates) of ISO week ``"2026-W48"``.

    Raises
    ------
    ValidationError
        422 ``invalid_week`` for anything but ``YYYY-Www`` naming a week that
        exists (``2026-W54`` does not; ``2026-W53`` exists only in 53-week years).
    """
    match = _WEEK.fullmatch(week.strip()) if isinstance(week, str) else None
    if match is None:
        raise ValidationError(f"week must look like 2026-W48, got {week!r}",
                              code="invalid_week", details={"field": "week"})
    year, number = int(match[1]), int(match[2])
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValidationError(f"{year} has no ISO week {number} (weeks run 1 to "
                              f"{date(year, 12, 28).isocalendar()[1]})", code="invalid_week",
                              details={"field": "week"}) from None
    if not DATE_MIN <= monday <= DATE_MAX - timedelta(days=6):
        raise ValidationError(f"week {week} is outside {DATE_MIN.year}..{DATE_MAX.year}",
                              code="invalid_week", details={"field": "week"})
    return monday, monday + timedelta(days=6)


def local_day_bounds_utc(d):
    """Return the UTC instants ``(start, end)`` of local day ``d``; ``end`` is exclusive."""
    start = datetime.combine(d, time.min, ZONE)
    end = datetime.combine(d + timedelta(days=1), time.min, ZONE)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
