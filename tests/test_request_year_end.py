"""The request ledger across a year end, and the weekly report of that week against the ledger.

ISO week 2026-W53 runs from Monday 28 December 2026 to Sunday 3 January 2027:
ledger numbers follow the year received, deadlines turn overdue on the local
day after, and the report's figures for the week are the ledger's.
"""

from datetime import date

from geodata.services import requests as service
from geodata.services.parks import get_park
from geodata.services.weekly import weekly_report
from geodata.storage import session_scope
from tests.test_requests import FIRM_A, FIRM_B, api  # noqa: F401 (the fixture)

NEW_YEARS_EVE, NEW_YEAR = date(2026, 12, 31), date(2027, 1, 1)


def test_a_year_end_in_the_ledger_and_in_the_weeks_report(api, engine):  # noqa: F811
    api.app.config["TODAY"] = NEW_YEARS_EVE
    first = api.create(FIRM_A).json
    assigned = api.move(first["id"], "assigned", 1, department="县人社局\u200b（二\u0301）",
                        responsible="李四", deadline=NEW_YEARS_EVE.isoformat())
    assert assigned.status_code == 200, assigned.json
    assert assigned.json["department"] == "县人社局\u200b（二\u0301）"  # as typed (NFC)
    assert not assigned.json["overdue"]  # due today: not late yet
    late = api.move(first["id"], "in_progress", 2, role="inspector")
    assert late.status_code == 200
    api.app.config["TODAY"] = NEW_YEAR
    second = api.create(FIRM_B).json
    assert (first["code"], second["code"]) == ("SQ2026-0001", "SQ2027-0001")
    assert [first["received_date"], second["received_date"]] == ["2026-12-31", "2027-01-01"]
    # a deadline of 31 December cannot be set on 1 January, and is overdue then
    refused = api.move(second["id"], "assigned", 1, department="县人社局", responsible="李四",
                       deadline=NEW_YEARS_EVE.isoformat())
    assert refused.status_code == 422 and refused.json["error"]["code"] == "deadline_in_past"
    overdue = api.call("GET", "/api/requests?park=T&overdue=true", "supervisor").json
    assert [r["code"] for r in overdue["requests"]] == ["SQ2026-0001"]
    listing = api.call("GET", "/api/requests?park=T", "supervisor").json["requests"]
    with session_scope(engine) as session:
        park = get_park(session, "T")
        report = weekly_report(session, park, "2026-W53", today=NEW_YEAR)
        earlier = weekly_report(session, park, "2026-W52", today=NEW_YEAR)
        items, total = service.list_requests(session, park=park, today=NEW_YEAR)
    figures = report["requests"]
    assert report["week"] == "2026-W53"
    assert figures["received"] == total == len(listing) == 2
    assert figures["open"] == sum(r["status"] not in ("resolved", "followed_up")
                                  for r in listing) == 2
    assert figures["overdue"] == overdue["total"] == 1
    assert figures["resolved"] == 0
    assert earlier["requests"]["received"] == 0 and earlier["requests"]["open"] == 0
