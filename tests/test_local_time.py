"""Dates are Asia/Shanghai dates everywhere (geodata.periods), never the server's.

On a server running in UTC the server's date is yesterday's in Shanghai
from 00:00 to 08:00 local time: a phone logging a hazard found "today" was
refused as found in the future, and overdue flags turned eight hours late.
This scan fails on any new use of the server's local date or a naive "now".
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_CLOCK = re.compile(r"\bdate\.today\(\)|\bdatetime\.(?:today|now)\(\s*\)|"
                          r"\bdatetime\.utcnow\(\)")


@pytest.mark.parametrize("package", ["geodata", "webmap"])
def test_no_server_local_dates(package):
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if SERVER_CLOCK.search(line)]
    assert found == [], "use geodata.periods.local_today() / local_now():\n" + "\n".join(found)


def test_local_today_turns_at_midnight_in_shanghai():
    from datetime import date, datetime, timezone

    from geodata.periods import local_today

    assert local_today(datetime(2026, 11, 29, 15, 59, tzinfo=timezone.utc)) == date(2026, 11, 29)
    assert local_today(datetime(2026, 11, 29, 16, 0, tzinfo=timezone.utc)) == date(2026, 11, 30)
