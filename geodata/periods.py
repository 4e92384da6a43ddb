"""Local days and ISO weeks in Asia/Shanghai, the time zone every park works in.

"Today", "overdue" and weeks are decided on the Beijing clock, not the
server's: a deadline of 2026-11-29 is overdue from 2026-11-30 00:00 in
Shanghai (2026-11-29 16:00 UTC), wherever the server runs.  Weeks are ISO
weeks, Monday to Sunday.
"""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from geodata.errors import ValidationError

ZONE = ZoneInfo("Asia/Shanghai")


def local_today(now=None):
    """Today's date in Asia/Shanghai (``now``: an aware datetime, default the current time)."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(ZONE).date()


def iso_week(d):
    """The ISO week holding date ``d``, as ``"2026-W48"``."""
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week):
    """Monday and Sunday (dates) of ISO week ``"2026-W48"``.

    Raises
    ------
    ValidationError
        422 ``invalid_week`` for anything else.
    """
    try:
        year, number = str(week).strip().upper().split("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise ValidationError(f"{str(week)[:40]!r} is not an ISO week like 2026-W48",
                              code="invalid_week", details={"field": "week"}) from None
    return monday, monday + timedelta(days=6)


def local_day_bounds_utc(d):
    """The UTC instants ``[start, end)`` of local day ``d`` in Asia/Shanghai."""
    start = datetime.combine(d, time.min, ZONE)
    end = datetime.combine(d + timedelta(days=1), time.min, ZONE)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
