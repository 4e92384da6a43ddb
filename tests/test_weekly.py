"""The weekly routine on both backends: a scripted week whose figures are rebuilt from the rows.

Week 2026-W48 runs Monday 2026-11-23 to Sunday 2026-11-29 in Asia/Shanghai,
that is from 2026-11-22 16:00 UTC to 2026-11-29 16:00 UTC.  The rows sit on
both edges: Sunday 23:30 local (15:30 UTC, inside) and Monday 00:30 local
(16:30 UTC, outside) at the end, the same pair one week earlier at the
start.  Each figure is checked twice: against the number known from the
script, and against a rebuild from the raw rows (plain SELECTs and Python
with the week's UTC instants written out here, not geodata's code path).
"""

import io
import json
import uuid
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import (EnterpriseLink, Enterprise, Hazard, HazardEvent, Park, RequestEvent,
                            ServiceRequest, User, Visit)
from geodata.models.base import to_element
from geodata.services.parks import get_park
from geodata.services.weekly import weekly_report
from geodata.storage import session_scope
from tests.conftest import metric_point, table_counts
from tests.ledger_helpers import IN_GRID, build_park

UTC = timezone.utc
TODAY = date(2026, 12, 10)
WEEK = "2026-W48"
#: The week's bounds in UTC, written out (not computed by geodata.periods).
START = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
END = datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
SUN_2330 = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)     # Sunday 23:30 local: in W48
MON_0030 = datetime(2026, 11, 29, 16, 30, tzinfo=UTC)     # Monday 00:30 local: W49
FIRST_0030 = datetime(2026, 11, 22, 16, 30, tzinfo=UTC)   # Monday 2026-11-23 00:30: in W48
PREV_2330 = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)    # Sunday 2026-11-22 23:30: W47


def _at(day, hour=2):
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _hazard(session, park, code, grid, found, events, *, status, deadline=None,
            escalation="grid", description=""):
    point = metric_point(*IN_GRID[grid])
    grid_id = session.execute(sa.text("SELECT id FROM grids WHERE code = :c"),
                              {"c": grid}).scalar()
    hazard = Hazard(park_id=park.id, code=code, grid_id=grid_id, location=to_element(point),
                    category="消防安全", level="general", description=description,
                    found_date=found, deadline=deadline, status=status, escalation=escalation)
    prev = None
    for at, target in events:
        hazard.events.append(HazardEvent(at=at, actor="inspector", from_status=prev,
                                         to_status=target, action="log" if prev is None
                                         else "move", note=""))
        prev = target
    session.add(hazard)


def _request(session, park, code, firm, received, events, *, status, deadline=None,
             responsible=None, satisfaction=None, description="诉求"):
    ent = session.execute(sa.select(Enterprise).where(Enterprise.name == firm)).scalar_one()
    item = ServiceRequest(park_id=park.id, enterprise_id=ent.id, grid_id=ent.grid_id, code=code,
                          category="用工", description=description, received_date=received,
                          source="phone", deadline=deadline, responsible=responsible,
                          status=status, resolution="", satisfaction=satisfaction)
    prev = None
    for at, target, action, answer in events:
        item.events.append(RequestEvent(at=at, actor="inspector", from_status=prev,
                                        to_status=target, action=action, note="",
                                        satisfaction=answer))
        prev = target
    session.add(item)


def _visit(session, park, user, firm, kind, when, grid):
    ent = session.execute(sa.select(Enterprise).where(Enterprise.name == firm)).scalar_one()
    uid = session.execute(sa.select(User.id).where(User.username == user)).scalar()
    grid_id = session.execute(sa.text("SELECT id FROM grids WHERE code = :c"),
                              {"c": grid}).scalar()
    session.add(Visit(park_id=park.id, grid_id=grid_id, enterprise_id=ent.id, user_id=uid,
                      actor=user, kind=kind, occurred_at=when, recorded_at=when,
                      location=to_element(metric_point(*IN_GRID[grid])), note="", findings="",
                      client_id=str(uuid.uuid4())))


def script_week(engine):
    """Park T with the scripted hazards, requests, links and visits of week 2026-W48."""
    build_park(engine)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        d = date
        # H1 found Monday 00:30 and closed Sunday 23:30: found and closed in the week.
        _hazard(session, park, "YH2026-0001", "T-001", d(2026, 11, 23),
                [(FIRST_0030, "found"), (SUN_2330, "closed")], status="closed")
        # H2 found the Sunday before, closed Monday 00:30 after: open and overdue at week end.
        _hazard(session, park, "YH2026-0002", "T-001", d(2026, 11, 22),
                [(PREV_2330, "found"), (_at(d(2026, 11, 23)), "rectifying"),
                 (MON_0030, "closed")], status="closed", deadline=d(2026, 11, 25))
        # H3 found on Sunday, escalated to the park, no deadline.
        _hazard(session, park, "YH2026-0003", "T-002", d(2026, 11, 29),
                [(SUN_2330, "found")], status="found", escalation="park",
                description="<b>配电箱</b> & 电线")
        # H4 found the Monday after; H5 found and closed two weeks before.
        _hazard(session, park, "YH2026-0004", "T-002", d(2026, 11, 30),
                [(MON_0030, "found")], status="found", deadline=d(2026, 11, 20))
        _hazard(session, park, "YH2026-0005", "T-004", d(2026, 11, 10),
                [(_at(d(2026, 11, 10)), "found"), (_at(d(2026, 11, 12)), "closed")],
                status="closed")
        # R1 甲: received Monday, resolved Sunday 23:30, followed up satisfied.
        _request(session, park, "SQ2026-0001", "甲公司", d(2026, 11, 23), [
            (FIRST_0030, "accepted", "accept", None),
            (_at(d(2026, 11, 23)), "assigned", "assign", None),
            (_at(d(2026, 11, 24)), "in_progress", "start", None),
            (SUN_2330, "resolved", "resolve", None),
            (datetime(2026, 11, 29, 15, 40, tzinfo=UTC), "followed_up", "follow_up",
             "satisfied")], status="followed_up", deadline=d(2026, 11, 27),
            responsible="member", satisfaction="satisfied")
        # R2 乙: in progress past its deadline all week, resolved Monday 00:30 after.
        _request(session, park, "SQ2026-0002", "乙公司", d(2026, 11, 20), [
            (_at(d(2026, 11, 20)), "accepted", "accept", None),
            (_at(d(2026, 11, 20), 3), "assigned", "assign", None),
            (_at(d(2026, 11, 21)), "in_progress", "start", None),
            (MON_0030, "resolved", "resolve", None)], status="resolved",
            deadline=d(2026, 11, 26), responsible="inspector")
        # R3 甲: resolved before, followed up 不满意 in the week, reopened.
        _request(session, park, "SQ2026-0003", "甲公司", d(2026, 11, 16), [
            (_at(d(2026, 11, 16)), "accepted", "accept", None),
            (_at(d(2026, 11, 16), 3), "assigned", "assign", None),
            (_at(d(2026, 11, 17)), "in_progress", "start", None),
            (_at(d(2026, 11, 18)), "resolved", "resolve", None),
            (_at(d(2026, 11, 24)), "followed_up", "follow_up", "unsatisfied"),
            (_at(d(2026, 11, 24)), "in_progress", "reopen", None)], status="in_progress",
            deadline=d(2026, 12, 5), responsible="member", satisfaction="unsatisfied",
            description="用工 <script>alert(1)</script>")
        # R4 乙 received on Sunday; R5 the Monday after; R6 followed up the Sunday before.
        _request(session, park, "SQ2026-0004", "乙公司", d(2026, 11, 29),
                 [(SUN_2330, "accepted", "accept", None)], status="accepted")
        _request(session, park, "SQ2026-0005", "甲公司", d(2026, 11, 30),
                 [(MON_0030, "accepted", "accept", None)], status="accepted")
        _request(session, park, "SQ2026-0006", "乙公司", d(2026, 11, 10), [
            (_at(d(2026, 11, 10)), "accepted", "accept", None),
            (_at(d(2026, 11, 15)), "resolved", "resolve", None),
            (PREV_2330, "followed_up", "follow_up", "basically_satisfied")],
            status="followed_up", satisfaction="basically_satisfied")
        # Cadres linked before the week: one visit each is due (the default rule).
        for user, firm in (("member", "甲公司"), ("inspector", "乙公司")):
            session.add(EnterpriseLink(
                user_id=session.execute(sa.select(User.id).where(
                    User.username == user)).scalar(),
                enterprise_id=session.execute(sa.select(Enterprise.id).where(
                    Enterprise.name == firm)).scalar(),
                created_at=datetime(2026, 11, 1, tzinfo=UTC)))
        _visit(session, park, "member", "甲公司", "visit", SUN_2330, "T-003")
        _visit(session, park, "member", "甲公司", "visit", MON_0030, "T-003")
        _visit(session, park, "inspector", "乙公司", "patrol", FIRST_0030, "T-002")
        _visit(session, park, "inspector", "乙公司", "visit", PREV_2330, "T-002")


def _utc(value):
    # Raw rows: SQLite gives naive UTC datetimes (or strings), PostgreSQL aware ones.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _day(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def rebuild(engine):
    """The week's figures from plain SELECTs over the rows (see the module docstring)."""
    first, last, as_of = date(2026, 11, 23), date(2026, 11, 29), date(2026, 11, 29)
    q = {}
    with engine.connect() as conn:
        def rows(sql):
            return conn.execute(sa.text(sql)).all()

        grid_code = dict(rows("SELECT id, code FROM grids"))
        hazards = rows("SELECT id, found_date, deadline, escalation, grid_id FROM hazards")
        h_events = rows("SELECT hazard_id, at, to_status FROM hazard_events ORDER BY id")
        requests = rows("SELECT id, received_date, deadline, grid_id FROM service_requests")
        r_events = rows("SELECT request_id, at, to_status, action, satisfaction "
                        "FROM request_events ORDER BY id")
        visits = rows("SELECT grid_id, occurred_at, kind, user_id, enterprise_id FROM visits")
        links = rows("SELECT user_id, enterprise_id FROM enterprise_links")
        ents = rows("SELECT grid_id, name, credit_code, industry, employees, contact_name, "
                    "contact_phone FROM enterprises")
        staff = rows("SELECT grid_id, role, published FROM grid_staff")
        level1 = [i for i, in rows("SELECT id FROM grids WHERE level = 1 AND active_to IS NULL")]

    def state_at_end(events, item):
        states = [s for i, at, s, *_ in events if i == item and _utc(at) < END]
        return states[-1] if states else None

    def moved_in_week(events, item, status):
        return any(i == item and s == status and START <= _utc(at) < END
                   for i, at, s, *_ in events)

    h_open = {h[0] for h in hazards if _day(h[1]) <= as_of
              and state_at_end(h_events, h[0]) != "closed"}
    q["hazards"] = {
        "found": sum(first <= _day(h[1]) <= last for h in hazards),
        "closed": sum(moved_in_week(h_events, h[0], "closed") for h in hazards),
        "open": len(h_open),
        "overdue": sum(h[0] in h_open and h[2] is not None and _day(h[2]) < as_of
                       for h in hazards)}
    r_open = {r[0] for r in requests if _day(r[1]) <= as_of
              and state_at_end(r_events, r[0]) not in ("resolved", "followed_up")}
    answers = [e[4] for e in r_events if e[3] == "follow_up" and START <= _utc(e[1]) < END]
    happy = sum(a in ("satisfied", "basically_satisfied") for a in answers)
    q["requests"] = {
        "received": sum(first <= _day(r[1]) <= last for r in requests),
        "resolved": sum(moved_in_week(r_events, r[0], "resolved") for r in requests),
        "open": len(r_open),
        "overdue": sum(r[0] in r_open and r[2] is not None and _day(r[2]) < as_of
                       for r in requests),
        "follow_ups": len(answers), "satisfied": happy,
        "satisfaction_rate": round(happy / len(answers), 4) if answers else None}
    in_week = [v for v in visits if START <= _utc(v[1]) < END]
    done = sum(any(v[2] == "visit" and v[3] == u and v[4] == e for v in in_week)
               for u, e in links)
    q["visits"] = {"records": len(in_week), "done": done, "due": len(links),
                   "rate": round(done / len(links), 4) if links else None}
    complete = [e for e in ents if all(v not in (None, "") for v in e)]
    chiefs = {s[0] for s in staff if s[1] == "grid_chief"}
    hidden = {s[0] for s in staff if not s[2]}
    q["rates"] = {
        "enterprises_in_grid": round(sum(e[0] is not None for e in ents) / len(ents), 4),
        "grids_with_staff": round(sum(g in chiefs and g not in hidden for g in level1)
                                  / len(level1), 4),
        "enterprises_complete": round(len(complete) / len(ents), 4)}
    q["visited_grids"] = sorted({grid_code[v[0]] for v in in_week})
    return q


def test_scripted_week_figures_match_the_script_and_a_rebuild_from_raw_rows(engine):
    script_week(engine)
    with session_scope(engine) as session:
        report = weekly_report(session, get_park(session, "T"), WEEK, today=TODAY)
    expected = rebuild(engine)
    # Known from the script.
    assert report["hazards"] == {"found": 2, "closed": 1, "open": 2, "overdue": 1}
    assert report["requests"] == {"received": 2, "resolved": 1, "open": 3, "overdue": 1,
                                  "follow_ups": 2, "satisfied": 1, "satisfaction_rate": 0.5}
    assert report["visits"] == {"records": 2, "done": 1, "due": 2, "rate": 0.5}
    assert {k: v["value"] for k, v in report["rates"].items()} == {
        "enterprises_in_grid": 1.0, "grids_with_staff": 0.25, "enterprises_complete": 0.5}
    # Rebuilt from the rows.
    for key in ("hazards", "requests", "visits"):
        assert report[key] == expected[key], key
    assert {k: v["value"] for k, v in report["rates"].items()} == expected["rates"]
    assert (report["week"], report["monday"], report["sunday"], report["as_of"]) == (
        WEEK, "2026-11-23", "2026-11-29", "2026-11-29")
    grids = {g["code"]: g for g in report["grids"]}
    assert [c for c, g in grids.items() if g["visits"]] == expected["visited_grids"]
    assert (grids["T-001"]["hazards_found"], grids["T-001"]["hazards_closed"],
            grids["T-001"]["hazards_overdue"], grids["T-002"]["hazards_found"]) == (1, 1, 1, 1)
    assert (grids["T-002"]["requests_received"], grids["T-002"]["requests_overdue"],
            grids["T-003"]["requests_received"], grids["T-003"]["requests_resolved"],
            grids["T-003"]["visits_done"], grids["T-002"]["visits_due"]) == (1, 1, 1, 1, 1, 1)
    for key in ("hazards_found", "hazards_closed", "hazards_open", "hazards_overdue",
                "requests_received", "requests_resolved", "requests_open", "requests_overdue",
                "visits"):
        total = report["visits"]["records"] if key == "visits" else report[
            key.split("_")[0]][key.split("_")[1]]
        assert sum(g[key] for g in report["grids"]) == total, key
    review = {(i["kind"], i["ref"]): i["reason"] for i in report["review"]}
    assert set(review) == {("hazard", "YH2026-0002"), ("hazard", "YH2026-0003"),
                           ("request", "SQ2026-0002"), ("request", "SQ2026-0003"),
                           ("grid", "T-001"), ("grid", "T-004")}
    assert "unsatisfied" in review[("request", "SQ2026-0003")]
    assert "park" in review[("hazard", "YH2026-0003")]
    assert sorted(i["ref"] for i in report["open_items"]) == [
        "SQ2026-0002", "SQ2026-0003", "SQ2026-0004", "YH2026-0002", "YH2026-0003"]


def test_the_next_week_sees_the_monday_rows(engine):
    script_week(engine)
    with session_scope(engine) as session:
        report = weekly_report(session, get_park(session, "T"), "2026-W49", today=TODAY)
    assert report["hazards"]["found"] == 1            # H4, Monday 2026-11-30
    assert report["hazards"]["closed"] == 1           # H2, Monday 00:30
    assert report["requests"]["received"] == 1        # R5
    assert report["requests"]["resolved"] == 1        # R2, Monday 00:30
    assert report["visits"]["records"] == 1           # member's Monday 00:30 visit


@pytest.mark.parametrize("suffix", ["xlsx", "html", "pdf"])
def test_weekly_report_files_hold_the_figures_and_text_literally(engine, runner, tmp_path,
                                                                 suffix):
    script_week(engine)
    out = tmp_path / f"week.{suffix}"
    result = runner("weekly-report", "--park", "T", "--week", WEEK, "--out", str(out))
    assert result.exit_code == 0, result.output
    if suffix == "xlsx":
        from openpyxl import load_workbook

        book = load_workbook(out)
        assert book.sheetnames == ["周汇报", "分网格", "周研判", "周交办"]
        figures = {r[0]: r[1] for r in book["周汇报"].iter_rows(values_only=True)}
        assert figures["周次"] == WEEK
        assert figures["发现隐患 hazards found"] == 2
        assert figures["满意率 satisfaction rate (满意+基本满意)/回访"] == "50.0%"
        texts = [c for r in book["周研判"].iter_rows(values_only=True) for c in r]
        assert "用工 <script>alert(1)</script>" in texts
    elif suffix == "html":
        html = out.read_text(encoding="utf-8")
        assert "<script>" not in html
        assert "用工 &lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;b&gt;配电箱&lt;/b&gt; &amp; 电线" in html
        assert 'src="data:image/png;base64,' in html
        assert "测试园区（T）周汇报" in html
    else:
        from pypdf import PdfReader

        reader = PdfReader(out)
        text = "".join(page.extract_text() for page in reader.pages)
        for phrase in ("测试园区（T）周汇报", "周研判", "周交办", "用工 <script>alert(1)</script>",
                       "企业网格划分率", "网格员信息公示率", "基础信息建档率", "50.0%"):
            assert phrase in text, phrase
        fonts = {str(f.get_object()["/BaseFont"]) for page in reader.pages
                 for f in page["/Resources"]["/Font"].values()}
        assert any("NotoSansSC" in f for f in fonts), fonts  # the subset geodata.pdf embeds
        assert any(len(page.images) for page in reader.pages), "the map is embedded"


@pytest.mark.parametrize("args, message", [
    (["--park", "NOPE", "--week", WEEK], "NOPE"),
    (["--park", "T", "--week", "2026-W54"], "2026-W54"),
    (["--park", "T", "--week", "2026-48"], "2026-48"),
    (["--park", "T", "--week", "2026-W00"], "2026-W00"),
    (["--park", "T", "--week", WEEK, "--out", "{tmp}/week.docx"], ".docx"),
    (["--park", "T", "--week", WEEK, "--out", "{tmp}/missing/week.pdf"], "cannot write"),
])
def test_weekly_report_bad_input_exits_2_and_writes_nothing(engine, runner, tmp_path, args,
                                                            message):
    script_week(engine)
    before = table_counts(engine)
    folder = tmp_path / "out"
    folder.mkdir()
    args = [a.replace("{tmp}", str(folder)) for a in args]
    if "--out" not in args:
        args += ["--out", str(folder / "week.xlsx")]
    result = runner("weekly-report", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(folder.rglob("*")) == []
    assert table_counts(engine) == before


def test_out_under_a_file_exits_2_and_keeps_the_old_file(engine, runner, tmp_path):
    script_week(engine)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "old.pdf").write_bytes(b"old")
    result = runner("weekly-report", "--park", "T", "--week", WEEK, "--out",
                    str(folder / "old.pdf" / "week.pdf"))
    assert result.exit_code == 2 and "cannot write" in result.output
    assert [p.name for p in folder.iterdir()] == ["old.pdf"]
    assert (folder / "old.pdf").read_bytes() == b"old"


def test_assignments_track_the_hazard_and_export(engine, runner, tmp_path):
    script_week(engine)
    result = runner("weekly", "assign", "--park", "T", "--week", WEEK, "--hazard", "YH2026-0003",
                    "--owner", "inspector", "--deadline", "2026-12-04", "--note", "限期整改",
                    "--as", "supervisor")
    assert result.exit_code == 0, result.output
    listed = runner("weekly", "assignments", "--park", "T", "--week", WEEK, "--format", "json")
    (item,) = json.loads(listed.output)
    assert (item["ref"], item["owner"], item["deadline"], item["state"], item["done"]) == (
        "YH2026-0003", "inspector", "2026-12-04", "排查", False)
    out = tmp_path / "assignments.xlsx"
    assert runner("weekly", "assignments", "--park", "T", "--format", "xlsx", "--out",
                  str(out)).exit_code == 0
    from openpyxl import load_workbook

    rows = list(load_workbook(out)["周交办"].iter_rows(values_only=True))
    assert rows[1][2:5] == ("YH2026-0003", "inspector", "2026-12-04")
    with session_scope(engine) as session:
        report = weekly_report(session, get_park(session, "T"), WEEK, today=TODAY)
    assert [a["ref"] for a in report["assignments"]] == ["YH2026-0003"]


@pytest.mark.parametrize("args, message", [
    (["--hazard", "YH2026-0003", "--owner", "inspector", "--as", "inspector"], "may not"),
    (["--hazard", "YH2026-0001", "--owner", "inspector", "--as", "supervisor"], "closed"),
    (["--hazard", "YH2026-0003", "--owner", "nobody", "--as", "supervisor"], "nobody"),
    (["--hazard", "YH2026-0003", "--owner", "member", "--as", "supervisor"], "does not serve"),
    (["--hazard", "YH2026-0099", "--owner", "inspector", "--as", "supervisor"], "YH2026-0099"),
    (["--hazard", "YH2026-0003", "--owner", "inspector", "--as", "supervisor",
      "--deadline", "2026-11-01"], "before week"),
    (["--hazard", "YH2026-0003", "--owner", "inspector", "--as", "supervisor",
      "--week", "2026-W54"], "2026-W54"),
])
def test_bad_assignments_exit_2_and_store_nothing(engine, runner, args, message):
    script_week(engine)
    before = table_counts(engine)
    base = {"--park": "T", "--week": WEEK, "--deadline": "2026-12-04"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = runner("weekly", "assign", *[x for kv in base.items() for x in kv])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert table_counts(engine) == before


def test_assignments_become_request_tasks(engine, runner):
    script_week(engine)
    base = ["weekly", "assign", "--park", "T", "--week", WEEK, "--deadline", "2026-12-04",
            "--as", "supervisor"]
    assert runner(*base, "--request", "SQ2026-0003", "--owner", "member").exit_code == 0
    before = table_counts(engine)
    made = runner(*base, "--enterprise", make_credit_code("411621", 2), "--category", "融资",
                  "--description", "贷款到期续贷", "--owner", "inspector", "--note", "对接银行")
    assert made.exit_code == 0, made.output
    after = table_counts(engine)
    assert (after["service_requests"], after["request_events"], after["weekly_assignments"]) == (
        before["service_requests"] + 1, before["request_events"] + 1,
        before["weekly_assignments"] + 1)
    items = json.loads(runner("weekly", "assignments", "--park", "T", "--format",
                              "json").output)
    assert [(i["kind"], i["owner"], i["state"], i["done"]) for i in items] == [
        ("request", "member", "办理", False), ("request", "inspector", "受理", False)]
    assert items[0]["ref"] == "SQ2026-0003" and items[1]["ref"].startswith("SQ2026-")
    assert items[1]["note"] == "对接银行"


@pytest.mark.parametrize("args, message", [
    (["--request", "SQ2026-0001"], "already done"),
    (["--request", "SQ2026-0003", "--hazard", "YH2026-0003"], "one of"),
    (["--enterprise", "91411621MA00000009", "--category", "融资", "--description", "x"],
     "91411621MA00000009"),
    (["--enterprise", "{ent}", "--category", "没有这类", "--description", "x"], "category"),
    (["--enterprise", "{ent}", "--category", "融资", "--description", "x", "--as",
      "inspector"], "may not"),
])
def test_bad_request_assignments_store_nothing(engine, runner, args, message):
    script_week(engine)
    before = table_counts(engine)
    args = [a.replace("{ent}", make_credit_code("411621", 2)) for a in args]
    base = {"--park": "T", "--week": WEEK, "--deadline": "2026-12-04", "--owner": "inspector",
            "--as": "supervisor"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = runner("weekly", "assign", *[x for kv in base.items() for x in kv])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert table_counts(engine) == before


def test_duplicate_assignment_is_refused(engine, runner):
    script_week(engine)
    args = ["weekly", "assign", "--park", "T", "--week", WEEK, "--hazard", "YH2026-0003",
            "--owner", "inspector", "--deadline", "2026-12-04", "--as", "supervisor"]
    assert runner(*args).exit_code == 0
    before = table_counts(engine)
    result = runner(*args)
    assert result.exit_code == 2 and "already assigned" in result.output
    assert table_counts(engine) == before


def test_park_model_is_unchanged_by_reports(engine, runner, tmp_path):
    script_week(engine)
    with session_scope(engine) as session:
        version = session.execute(sa.select(Park.version)).scalar()
    before = table_counts(engine)
    assert runner("weekly-report", "--park", "T", "--week", WEEK, "--out",
                  str(tmp_path / "w.html")).exit_code == 0
    assert table_counts(engine) == before
    with session_scope(engine) as session:
        assert session.execute(sa.select(Park.version)).scalar() == version


def test_two_pdfs_in_one_process_keep_their_own_chinese_text(engine):
    """Each PDF embeds a subset of the font for its own text (geodata/pdf.py)."""
    from pypdf import PdfReader

    from geodata.weekly_export import to_pdf

    script_week(engine)
    with session_scope(engine) as session:
        report = weekly_report(session, get_park(session, "T"), WEEK, today=TODAY)
    texts = []
    for name in ("测试园区", "鑫磊精密铸造园"):
        pdf = to_pdf({**report, "park": {"code": "T", "name": name}})
        texts.append("".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages))
    assert "测试园区（T）周汇报" in texts[0] and "鑫磊精密铸造园（T）周汇报" in texts[1]
