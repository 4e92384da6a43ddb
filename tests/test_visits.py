"""Schedules in Asia/Shanghai, re-checks, coverage, history and the CLI, on both backends."""

import json
import uuid
from datetime import date, datetime, timezone

import pytest
import shapely
import sqlalchemy as sa

from geodata import periods
from geodata.creditcode import make_credit_code
from geodata.errors import ValidationError
from geodata.models import Enterprise, EnterpriseLink, Visit, VisitRule
from geodata.services import ledger, visits
from geodata.services.parks import get_park
from geodata.services.users import get_user
from geodata.storage import session_scope
from tests.conftest import stored_snapshot, table_counts
from tests.ledger_helpers import ACTORS, build_park, lonlat

JIA, YI = make_credit_code("411621", 1), make_credit_code("411621", 2)  # in T-003, T-002
LONG_AGO = datetime(2025, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)  # the server clock of these tests


def test_periods_are_iso_weeks_and_days_in_shanghai():
    assert periods.iso_week(date(2025, 11, 30)) == "2025-W48"  # a Sunday
    assert periods.iso_week(date(2025, 12, 1)) == "2025-W49"
    assert periods.iso_week(date(2026, 1, 1)) == "2026-W01"
    assert periods.iso_week(date(2027, 1, 1)) == "2026-W53"
    assert periods.week_bounds("2025-W48") == (date(2025, 11, 24), date(2025, 11, 30))
    start, end = periods.local_day_bounds_utc(date(2025, 12, 1))
    assert (start.isoformat(), end.isoformat()) == ("2025-11-30T16:00:00+00:00",
                                                    "2025-12-01T16:00:00+00:00")
    sunday_late = datetime(2025, 11, 30, 15, 30, tzinfo=timezone.utc)  # 23:30 local
    monday_early = datetime(2025, 11, 30, 16, 30, tzinfo=timezone.utc)  # 00:30 local
    assert periods.period_of(sunday_late, "week") == "2025-W48"
    assert periods.period_of(monday_early, "week") == "2025-W49"
    assert periods.period_of(monday_early, "day") == "2025-12-01"
    assert periods.local_today(monday_early) == date(2025, 12, 1)
    assert periods.previous_period("2026-W01", "week") == "2025-W52"
    for bad in ("2025-W54", "2025-48", "W48", 2025, "2026-W00"):
        with pytest.raises(ValidationError):
            periods.parse_week(bad)


@pytest.fixture
def park_t(engine):
    """Park T; inspector linked to 甲公司 long ago."""
    build_park(engine)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        visits.link(session, park, "inspector", JIA)
        session.execute(sa.update(EnterpriseLink).values(created_at=LONG_AGO))
    return engine


def _log(engine, when, kind="visit", who="inspector", where=(150, 150), **kw):
    with session_scope(engine, write=True) as session:
        visit, new = visits.create_visit(
            session, get_park(session, "T"), actor=ACTORS[who], client_id_=str(uuid.uuid4()),
            kind=kind, occurred_at_=when, point=shapely.Point(*lonlat(where)), now=NOW, **kw)
        assert new
        return visit.id


def _entries(engine, on, kind="visit"):
    with session_scope(engine) as session:
        return [e for e in visits.schedule(session, get_park(session, "T"), today=on)
                if e["kind"] == kind]


@pytest.mark.parametrize("when, week", [("2025-11-30T23:30:00+08:00", "2025-W48"),
                                        ("2025-12-01T00:30:00+08:00", "2025-W49"),
                                        ("2025-11-30T16:30:00Z", "2025-W49")])
def test_a_visit_counts_in_its_local_week(park_t, when, week):
    _log(park_t, when)
    (w48,) = _entries(park_t, date(2025, 11, 30))
    (w49,) = _entries(park_t, date(2025, 12, 1))
    (w50,) = _entries(park_t, date(2025, 12, 8))
    in_48 = week == "2025-W48"
    assert (w48["current"], w48["done"], w48["status"]) == (
        "2025-W48", int(in_48), "done" if in_48 else "overdue")
    # Monday 1 December: last week had the visit (or not); this week is open (or done).
    assert (w49["previous_done"], w49["done"]) == (int(in_48), int(not in_48))
    assert w49["status"] == ("open" if in_48 else "done")
    # A week later, W49 passed without a visit only when the visit was on Sunday night.
    assert w50["status"] == ("overdue" if in_48 else "open")
    with session_scope(park_t) as session:
        due = visits.due(session, get_park(session, "T"), today=date(2025, 12, 8))
    assert [(e["enterprise"]["credit_code"], e["user"], e["previous"]) for e in due] == (
        [(JIA, "inspector", "2025-W49")] if in_48 else [])


def test_only_the_linked_cadres_own_visit_meets_their_link(park_t):
    _log(park_t, "2025-12-02T10:00:00+08:00", who="supervisor")
    (entry,) = _entries(park_t, date(2025, 12, 3))
    assert entry["done"] == 0 and entry["user"] == "inspector"


def test_a_new_link_is_not_overdue_for_the_week_before_it(park_t):
    with session_scope(park_t, write=True) as session:
        visits.link(session, get_park(session, "T"), "supervisor", JIA)
        session.execute(sa.update(EnterpriseLink).where(EnterpriseLink.created_at > LONG_AGO)
                        .values(created_at=datetime(2025, 12, 3, tzinfo=timezone.utc)))
    states = {e["user"]: e["status"] for e in _entries(park_t, date(2025, 12, 4))}
    assert states == {"inspector": "overdue", "supervisor": "open"}


def test_twice_daily_patrols_around_local_midnight(park_t):
    with session_scope(park_t, write=True) as session:
        rule = visits.set_rule(session, get_park(session, "T"), "patrol", enterprise=YI,
                               period="day", times=2)
        rule.created_at = LONG_AGO
    yi = (650, 650)
    _log(park_t, "2025-12-01T23:59:00+08:00", "patrol", where=yi)
    _log(park_t, "2025-12-02T00:01:00+08:00", "patrol", where=yi)
    (entry,) = _entries(park_t, date(2025, 12, 2), "patrol")
    assert (entry["previous"], entry["previous_done"], entry["done"]) == ("2025-12-01", 1, 1)
    assert entry["status"] == "overdue"
    _log(park_t, "2025-12-01T08:00:00+08:00", "patrol", where=yi)
    (entry,) = _entries(park_t, date(2025, 12, 2), "patrol")
    assert (entry["previous_done"], entry["status"]) == (2, "open")
    _log(park_t, "2025-12-02T15:00:00+08:00", "patrol", where=yi)
    assert _entries(park_t, date(2025, 12, 2), "patrol")[0]["status"] == "done"
    with session_scope(park_t) as session:
        cov = visits.coverage(session, get_park(session, "T"), week="2025-W49",
                              today=date(2025, 12, 2))
    # Patrols: Mon 2/2 and Tue 2/2 so far; 甲's weekly visit 0/1.
    assert (cov["expected"], cov["done"], cov["rate"]) == (5, 4, 0.8)
    assert cov["by_grid"]["T-002"] == {"expected": 4, "done": 4, "rate": 1.0}
    assert cov["by_grid"]["T-003"] == {"expected": 1, "done": 0, "rate": 0.0}


def test_recheck_is_due_after_the_parks_delay_until_logged(park_t):
    with session_scope(park_t, write=True) as session:
        park = get_park(session, "T")
        visits.set_rule(session, park, "recheck", after_days=7)
        hazard = ledger.create_hazard(session, park, point=shapely.Point(*lonlat((150, 150))),
                                      category="消防安全", actor=ACTORS["admin"])
        for to in ("rectifying", "supervising", "closed"):
            ledger.transition(session, hazard.id, to, actor=ACTORS["admin"],
                              expected_version=hazard.version, deadline=date(2100, 1, 1),
                              supervision={"note": "ok"} if to == "closed" else None)
        # Closed at 23:00 local on 1 December (15:00 UTC).
        hazard.closed_at = datetime(2025, 12, 1, 15, 0, tzinfo=timezone.utc)
        hid = hazard.id
        # Fixed on the spot (立行立改, no deadline): nothing to re-check.
        spot = ledger.create_hazard(session, park, point=shapely.Point(*lonlat((150, 150))),
                                    category="消防安全", actor=ACTORS["admin"])
        for to in ("supervising", "closed"):
            ledger.transition(session, spot.id, to, actor=ACTORS["admin"],
                              expected_version=spot.version,
                              supervision={"note": "ok"} if to == "closed" else None)
        spot.closed_at = hazard.closed_at

    def due(on):
        with session_scope(park_t) as session:
            return [h["id"] for h in visits.rechecks_due(session, get_park(session, "T"),
                                                         today=on)]

    assert due(date(2025, 12, 7)) == [] and due(date(2025, 12, 8)) == [hid]
    _log(park_t, "2025-12-09T09:00:00+08:00", "recheck", hazard_id=hid, note="回头看：未反弹")
    assert due(date(2025, 12, 10)) == []


def test_visit_history_is_append_only(park_t):
    vid = _log(park_t, "2025-12-01T10:00:00+08:00")
    for statement in (f"UPDATE visit_events SET note = 'x' WHERE visit_id = {vid}",
                      f"DELETE FROM visit_events WHERE visit_id = {vid}"):
        with pytest.raises(sa.exc.DBAPIError):
            with park_t.begin() as conn:
                conn.exec_driver_sql(statement)
    with session_scope(park_t) as session:
        assert [e.action for e in visits.history(session, vid)] == ["log"]


def test_a_photo_belongs_to_exactly_one_thing(park_t):
    vid = _log(park_t, "2025-12-01T10:00:00+08:00")
    for owners in ("NULL, NULL", f"1, {vid}"):
        with pytest.raises(sa.exc.IntegrityError):
            with park_t.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO hazard_photos (hazard_id, visit_id, stored_name, original_name, "
                    f"content_type, size, sha256, uploaded_by, uploaded_at) VALUES ({owners}, "
                    "'x.png', '', 'image/png', 1, '0', 'a', '2025-01-01 00:00:00')")


def test_rule_shapes_are_checked(park_t):
    before = stored_snapshot(park_t)
    with session_scope(park_t, write=True) as session:
        park = get_park(session, "T")
        for kwargs in ({"kind": "visit"}, {"kind": "visit", "period": "month", "times": 1},
                       {"kind": "patrol", "period": "day", "times": 0},
                       {"kind": "recheck", "after_days": -1},
                       {"kind": "recheck", "period": "day", "after_days": 3},
                       {"kind": "visit", "period": "week", "times": 1, "enterprise": "NOPE"}):
            with pytest.raises(ValidationError):
                visits.set_rule(session, park, **kwargs)
    assert stored_snapshot(park_t) == before


def test_worklist_visits_due_are_the_users_own_and_the_patrols_in_their_grids(park_t):
    with session_scope(park_t, write=True) as session:
        park = get_park(session, "T")
        visits.link(session, park, "member", JIA)
        visits.set_rule(session, park, "patrol", enterprise=YI, period="day", times=2)
        session.execute(sa.update(EnterpriseLink).values(created_at=LONG_AGO))
        session.execute(sa.update(VisitRule).values(created_at=LONG_AGO))
    with session_scope(park_t) as session:
        park = get_park(session, "T")
        member = visits.worklist(session, park, get_user(session, "member"),
                                 today=date(2025, 12, 2))
        inspector = visits.worklist(session, park, get_user(session, "inspector"),
                                    today=date(2025, 12, 2))
    assert [(e["kind"], e["user"]) for e in member["visits_due"]] == [("visit", "member")]
    # The unlimited inspector: their own link and every patrol of the park, overdue first.
    assert [(e["kind"], e["user"], e["status"]) for e in inspector["visits_due"]] == [
        ("visit", "inspector", "overdue"), ("patrol", None, "overdue")]


# --- the command line -----------------------------------------------------------------


def test_cli_list_export_due_links_and_rules(park_t, runner, tmp_path):
    _log(park_t, "2025-12-01T10:00:00+08:00", note="走访, with \"quotes\"")
    listed = runner("visits", "list", "--park", "T", "--format", "json")
    assert listed.exit_code == 0
    assert json.loads(listed.output)["visits"][0]["note"] == "走访, with \"quotes\""
    out = tmp_path / "visits.csv"
    exported = runner("visits", "export", "--park", "T", "--out", out)
    assert exported.exit_code == 0 and "走访, with" in out.read_text(encoding="utf-8")
    due = runner("visits", "due", "--park", "T", "--on", "2025-12-15", "--format", "json")
    assert due.exit_code == 0
    assert [e["previous"] for e in json.loads(due.output)["T"]["visits_due"]] == ["2025-W50"]
    assert runner("visits", "due", "--on", "2025-12-15").exit_code == 0
    assert runner("visits", "link", "supervisor", YI, "--park", "T").exit_code == 0
    links = runner("visits", "links", "--park", "T", "--format", "csv")
    assert "supervisor" in links.output and YI in links.output
    assert runner("visits", "rule", "patrol", "--park", "T", "--enterprise", YI,
                  "--period", "day", "--times", "2").exit_code == 0
    rules = json.loads(runner("visits", "rules", "--park", "T", "--format", "json").output)
    assert rules == [{"kind": "patrol", "enterprise": YI, "period": "day", "times": 2,
                      "after_days": ""}]
    assert runner("visits", "rule", "patrol", "--park", "T", "--enterprise", YI,
                  "--delete").exit_code == 0
    assert runner("visits", "link", "supervisor", YI, "--park", "T", "--remove").exit_code == 0


@pytest.mark.parametrize("args", [
    ("visits", "list", "--park", "NOPE"),
    ("visits", "list", "--from", "yesterday"),
    ("visits", "due", "--park", "NOPE"),
    ("visits", "link", "nobody", JIA, "--park", "T"),
    ("visits", "link", "inspector", "NOTACODE", "--park", "T"),
    ("visits", "link", "supervisor", JIA, "--park", "T", "--remove"),
    ("visits", "rule", "visit", "--park", "T", "--times", "2"),
    ("visits", "rule", "recheck", "--park", "T", "--after-days", "99999"),
    ("visits", "rule", "patrol", "--park", "T", "--delete"),
    ("visits", "rule", "picnic", "--park", "T"),
])
def test_cli_bad_input_exits_2_and_changes_nothing(park_t, runner, args):
    before = table_counts(park_t)
    result = runner(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert table_counts(park_t) == before


def test_visits_for_enterprise_newest_first(park_t):
    first = _log(park_t, "2025-12-01T10:00:00+08:00")
    second = _log(park_t, "2025-12-08T10:00:00+08:00")
    _log(park_t, "2025-12-08T11:00:00+08:00", where=(650, 650))  # 乙公司
    with session_scope(park_t) as session:
        ent = session.execute(sa.select(Enterprise).where(
            Enterprise.credit_code == JIA)).scalar_one()
        assert [v["id"] for v in visits.visits_for_enterprise(session, ent)] == [second, first]
        assert session.execute(sa.select(sa.func.count()).select_from(Visit)).scalar() == 3


def test_demo_has_links_patrols_and_something_due(engine):
    from geodata.services.demo_loader import load_demo

    today = date(2025, 11, 30)  # a Sunday: this week is W48, last week W47
    load_demo(engine, today=today)
    with session_scope(engine) as session:
        park = get_park(session, "FGKFQ")
        assert len(visits.links(session, park)) == 9
        entries = visits.schedule(session, park, today=today)
        due = [e for e in entries if e["status"] == "overdue"]
        patrols = [e for e in entries if e["kind"] == "patrol"]
        cov = visits.coverage(session, park, week="2025-W47", today=today)
        kinds = dict(session.execute(sa.select(Visit.kind, sa.func.count()).group_by(
            Visit.kind)).all())
        first = session.execute(sa.select(Visit.client_id).order_by(Visit.id)).scalar()
    assert {e["user"] for e in due if e["kind"] == "visit"} == {"inspector", "supervisor"}
    assert all(e["previous"] == "2025-W47" for e in due if e["kind"] == "visit")
    assert len(patrols) == 3 and all(e["times"] == 2 for e in patrols)
    assert 0.5 < cov["rate"] < 1 and cov["expected"] == 9 + 3 * 2 * 7
    assert kinds["patrol"] > 100 and kinds["visit"] > 20 and kinds["recheck"] > 0
    # Deterministic: the default seed always gives the same records.
    assert first == "72d1f46b-a653-4548-8945-e8f4adf8da78"
