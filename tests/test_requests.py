"""The request ledger (诉求台账) on both backends: API, roles, grid limits, versions, bad input,
overdue around local midnight, exports, CLI, categories and the demo month."""

import csv
import io
import json
import threading
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import LedgerCounter, RequestEvent, ServiceRequest
from geodata.periods import local_today
from geodata.request_export import COLUMNS
from geodata.services import requests as service
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import stored_snapshot, table_counts
from tests.ledger_helpers import ACTORS, build_park
from tests.test_migrations import fresh_url  # noqa: F401 -- the fixture
from webmap import create_app

FIRM_A = make_credit_code("411621", 1)  # 甲公司, in grid T-003 (the member's grid)
FIRM_B = make_credit_code("411621", 2)  # 乙公司, in grid T-002
HEADERS = [h for h, _ in COLUMNS]


def soon(days=7):
    """A deadline ``days`` after local today (Asia/Shanghai), never in the past."""
    return (local_today() + timedelta(days=days)).isoformat()


@pytest.fixture
def api(db_url, engine):
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})

    class Api:
        def __init__(self):
            self.app, self.tokens = app, tokens

        def call(self, method, url, role="inspector", body=None, headers=None, client=None,
                 **kwargs):
            headers = dict(headers or {})
            if role:
                headers["Authorization"] = f"Bearer {tokens[role]}"
            if body is not None:
                kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
                kwargs.setdefault("content_type", "application/json")
            return (client or app.test_client()).open(url, method=method, headers=headers,
                                                      **kwargs)

        def create(self, firm=FIRM_A, role="inspector", client=None, **fields):
            body = {"enterprise": firm, "category": "用工", "description": "急需招聘缝纫工30名",
                    "source": "visit", **fields}
            return self.call("POST", "/api/parks/T/requests", role, body, client=client)

        def move(self, rid, to, version, role="supervisor", **fields):
            return self.call("POST", f"/api/requests/{rid}/transitions", role,
                             {"to": to, **fields}, headers={"If-Match": f'"{version}"'})

        def assigned(self, firm=FIRM_A, deadline=None):
            rid = self.create(firm).json["id"]
            response = self.move(rid, "assigned", 1, department="县人社局", responsible="李四",
                                 deadline=deadline or soon())
            assert response.status_code == 200, response.json
            return rid

    yield Api()
    app.extensions["gridmap.engine"].dispose()


def request_state(engine):
    """Everything a refused request must leave unchanged: rows and every stored value."""
    with session_scope(engine) as session:
        rows = session.execute(sa.select(ServiceRequest).order_by(ServiceRequest.id)).scalars()
        items = [(r.id, r.status, r.version, r.department, r.deadline, r.responsible,
                  r.resolution, r.satisfaction, r.category, r.description) for r in rows]
        events = session.execute(sa.select(sa.func.count()).select_from(RequestEvent)).scalar()
    return stored_snapshot(engine), items, events


def test_whole_loop_through_the_api(api):
    created = api.create(source="走访")
    assert created.status_code == 201, created.json
    r = created.json
    assert created.headers["ETag"].startswith('"1.')
    assert created.headers["Location"].endswith(f"/api/requests/{r['id']}")
    year = local_today().year
    assert (r["code"], r["status"], r["status_name"]) == (f"SQ{year}-0001", "accepted", "受理")
    assert (r["grid"]["code"], r["enterprise"]["name"], r["source"]) == ("T-003", "甲公司",
                                                                         "visit")
    assert r["received_date"] == local_today().isoformat()
    assert r["allowed_transitions"] == []  # an inspector does not hand requests over
    rid = r["id"]
    assert api.call("GET", f"/api/requests/{rid}", "supervisor").json[
        "allowed_transitions"] == ["assigned"]
    steps = [("assigned", "supervisor", {"department": "县人社局", "responsible": "李四",
                                         "deadline": soon()}),
             ("in_progress", "inspector", {}),
             ("resolved", "inspector", {"note": "组织专场招聘会，招聘到岗25人"}),
             ("followed_up", "supervisor", {"satisfaction": "不满意", "note": "仍缺熟练工"}),
             ("resolved", "inspector", {"note": "对接职教中心，订单班到岗"}),
             ("followed_up", "supervisor", {"satisfaction": "满意"})]
    v = 1
    for to, role, fields in steps:
        response = api.move(rid, to, v, role, **fields)
        assert response.status_code == 200, (to, response.json)
        assert response.json["version"] == v + 1
        assert response.headers["ETag"].startswith(f'"{v + 1}.')
        v += 1
        if fields.get("satisfaction") == "不满意":  # 不满意 reopens
            assert response.json["status"] == "in_progress"
            assert response.json["satisfaction"] == "unsatisfied"
        else:
            assert response.json["status"] == to
    final = api.call("GET", f"/api/requests/{rid}", "viewer")
    assert final.json["satisfaction_name"] == "满意" and final.json["allowed_transitions"] == []
    assert final.json["department"] == "县人社局" and final.json["resolution"].startswith("对接")
    assert api.call("GET", f"/api/requests/{rid}", "viewer",
                    headers={"If-None-Match": final.headers["ETag"]}).status_code == 304
    events = api.call("GET", f"/api/requests/{rid}/history", "viewer").json["events"]
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("accept", None, "accepted"), ("assign", "accepted", "assigned"),
        ("start", "assigned", "in_progress"), ("resolve", "in_progress", "resolved"),
        ("follow_up", "resolved", "followed_up"), ("reopen", "followed_up", "in_progress"),
        ("resolve", "in_progress", "resolved"), ("follow_up", "resolved", "followed_up")]
    assert [e["satisfaction"] for e in events if e["action"] == "follow_up"] == [
        "unsatisfied", "satisfied"]
    assert [e["actor"] for e in events][:2] == ["inspector", "supervisor"]
    listed = api.call("GET", "/api/requests?park=T&status=followed_up&category=用工&source=visit"
                      f"&grid=T-003&enterprise={FIRM_A.lower()}", "viewer").json
    assert listed["total"] == 1 and listed["requests"][0]["id"] == rid
    for query in ("status=accepted", "category=融资", "source=phone", "grid=T-002",
                  f"enterprise={FIRM_B}", "overdue=true"):
        assert api.call("GET", f"/api/requests?{query}", "viewer").json["total"] == 0, query


def test_ledger_numbers_follow_the_received_year(api, engine):
    year = local_today().year
    codes = [api.create(received_date=f"{year - 1}-12-30").json["code"],
             api.create().json["code"], api.create(received_date=f"{year - 1}-12-31").json["code"]]
    assert codes == [f"SQ{year - 1}-0001", f"SQ{year}-0001", f"SQ{year - 1}-0002"]
    # the last number of a year taken (the number and the park's counter of that year, as
    # a service leaves them): the next one is a 409, nothing is written
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(ServiceRequest).where(ServiceRequest.code == f"SQ{year}-0001")
                        .values(code=f"SQ{year}-999999"))
        session.execute(sa.update(LedgerCounter).where(
            LedgerCounter.ledger == "SQ", LedgerCounter.year == year).values(last=999999))
    before = request_state(engine), stored_snapshot(engine)
    refused = api.create()
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "ledger_numbers_exhausted"
    assert (request_state(engine), stored_snapshot(engine)) == before


def _create_body(**change):
    body = {"enterprise": FIRM_A, "category": "融资", "description": "流动资金紧张",
            "source": "phone"}
    body.update(change)
    return {k: v for k, v in body.items() if v is not ...}


BAD_CREATE = [
    (_create_body(enterprise=...), 422, "missing_field", "enterprise"),
    (_create_body(enterprise="91411621MA00000000"), 422, "unknown_enterprise", "enterprise"),
    (_create_body(enterprise=12345), 422, "invalid_type", "enterprise"),
    (_create_body(enterprise="9" * 19), 422, "text_too_long", "enterprise"),
    (_create_body(category="外星人"), 422, "unknown_category", "category"),
    (_create_body(category=None), 422, "unknown_category", "category"),
    (_create_body(source="email"), 422, "unknown_source", "source"),
    (_create_body(source=...), 422, "unknown_source", "source"),
    (_create_body(description=...), 422, "missing_field", "description"),
    (_create_body(description="  "), 422, "missing_field", "description"),
    (_create_body(description="a\x00b"), 422, "invalid_text", "description"),
    (_create_body(description="\u202eevil"), 422, "invalid_text", "description"),
    (_create_body(description="长" * 2001), 422, "text_too_long", "description"),
    (_create_body(received_date="2026-02-30"), 422, "invalid_date", "received_date"),
    (_create_body(received_date="0001-01-01"), 422, "invalid_value", "received_date"),
    (_create_body(received_date="2999-01-01"), 422, "invalid_value", "received_date"),
    (_create_body(received_date=(local_today() + timedelta(days=1)).isoformat()), 422,
     "invalid_date", "received_date"),
    (_create_body(visit_id=1), 422, "unknown_property", None),
    ("[1, 2]", 422, "invalid_body", None),
    ('{"enterprise": ', 400, "invalid_json", None),
]


@pytest.mark.parametrize("body, status, code, field", BAD_CREATE)
def test_bad_create_names_the_field_and_stores_nothing(api, engine, body, status, code, field):
    before = request_state(engine)
    response = api.call("POST", "/api/parks/T/requests", "inspector", body)
    assert (response.status_code, response.json["error"]["code"]) == (status, code), response.json
    if field:
        assert response.json["error"]["details"]["field"] == field
        assert field in response.json["error"]["message"]
    assert request_state(engine) == before


def test_a_full_width_or_lower_case_credit_code_finds_its_enterprise(api):
    # As imports store codes: NFKC (full-width digits and letters), upper case.
    wide = "".join(chr(ord(c) + 0xFEE0) for c in FIRM_A.lower())
    created = api.call("POST", "/api/parks/T/requests", "inspector", _create_body(enterprise=wide))
    assert created.status_code == 201, created.json
    assert created.json["enterprise"]["credit_code"] == FIRM_A


def test_create_refusals_by_media_type_park_and_role(api, engine):
    before = request_state(engine)
    form = api.call("POST", "/api/parks/T/requests", "inspector", "enterprise=x",
                    content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert api.call("POST", "/api/parks/NOPE/requests", "inspector",
                    _create_body()).status_code == 404
    assert api.create(role=None).status_code == 401
    for role in ("viewer", "planner"):
        refused = api.create(role=role)
        assert (refused.status_code, refused.json["error"]["code"]) == (403, "forbidden")
    outside = api.create(FIRM_B, role="member")
    assert (outside.status_code, outside.json["error"]["code"]) == (403, "outside_your_grids")
    assert request_state(engine) == before
    assert api.create(FIRM_A, role="member").status_code == 201


BAD_MOVES = [
    # (to, role, fields, headers, status, code)
    ("assigned", "supervisor", {}, {"If-Match": '"2"'}, 412, "precondition_failed"),
    ("assigned", "supervisor", {"version": 2}, {}, 409, "stale_version"),
    ("assigned", "supervisor", {}, {}, 428, "version_required"),
    ("assigned", "supervisor", {}, {"If-Match": "1"}, 400, "invalid_if_match"),
    ("resolved", "supervisor", {"note": "x"}, None, 409, "illegal_transition"),
    ("followed_up", "admin", {"satisfaction": "满意"}, None, 409, "illegal_transition"),
    ("closed", "supervisor", {}, None, 422, "unknown_status"),
    (5, "supervisor", {}, None, 422, "unknown_status"),
    ("assigned", "inspector", {"department": "县人社局", "responsible": "李四"}, None, 403,
     "forbidden"),
    ("assigned", "viewer", {}, None, 403, "forbidden"),
    ("assigned", "supervisor", {"responsible": "李四"}, None, 422, "missing_field"),
    ("assigned", "supervisor", {"department": "县人社局"}, None, 422, "missing_field"),
    ("assigned", "supervisor", {"department": "县人社局", "responsible": "李四",
                                "deadline": "2020-01-01"}, None, 422, "deadline_in_past"),
    ("assigned", "supervisor", {"department": "县人社局", "responsible": "李四",
                                "deadline": "tomorrow"}, None, 422, "invalid_date"),
    ("assigned", "supervisor", {"department": "a\nb", "responsible": "李四"}, None, 422,
     "invalid_text"),
    ("assigned", "supervisor", {"department": "县" * 201, "responsible": "李四"}, None, 422,
     "text_too_long"),
    ("assigned", "supervisor", {"satisfaction": "很满意"}, None, 422, "unknown_satisfaction"),
    ("assigned", "supervisor", {"comment": "x"}, None, 422, "unknown_property"),
]


@pytest.mark.parametrize("to, role, fields, headers, status, code", BAD_MOVES)
def test_refused_transitions_write_nothing(api, engine, to, role, fields, headers,
                                           status, code):
    rid = api.create().json["id"]
    before = request_state(engine)
    headers = {"If-Match": '"1"'} if headers is None else headers
    response = api.call("POST", f"/api/requests/{rid}/transitions", role,
                        {"to": to, "deadline": soon(), **fields}, headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (status, code), response.json
    assert request_state(engine) == before


def test_later_steps_refused_by_role_grid_and_values(api, engine):
    mine, other = api.assigned(FIRM_A), api.assigned(FIRM_B)
    assert api.move(mine, "in_progress", 2, "member").status_code == 200
    before = request_state(engine)
    outside = api.move(other, "in_progress", 2, "member")
    assert (outside.status_code, outside.json["error"]["code"]) == (403, "outside_your_grids")
    no_note = api.move(mine, "resolved", 3, "member")
    assert (no_note.status_code, no_note.json["error"]["details"]["field"]) == (422, "note")
    assert request_state(engine) == before
    assert api.move(mine, "resolved", 3, "member", note="已办结").status_code == 200
    before = request_state(engine)
    refusals = [("member", {"satisfaction": "满意"}, 403, "forbidden"),  # workers never rate
                ("supervisor", {}, 422, "satisfaction_required"),
                ("supervisor", {"satisfaction": "不满意"}, 422, "note_required"),
                ("supervisor", {"satisfaction": "不满意", "note": "x",
                                "deadline": "2020-01-01"}, 422, "deadline_in_past")]
    for role, fields, status, code in refusals:
        response = api.move(mine, "followed_up", 4, role, **fields)
        assert (response.status_code, response.json["error"]["code"]) == (status, code), fields
    assert request_state(engine) == before
    reopened = api.move(mine, "followed_up", 4, "supervisor", satisfaction="unsatisfied",
                        note="没解决", deadline=soon(3))
    assert reopened.status_code == 200
    assert (reopened.json["status"], reopened.json["deadline"]) == ("in_progress", soon(3))
    assert reopened.json["resolved_at"] is None


@pytest.mark.parametrize("url, status, code", [
    ("/api/requests/999999", 404, "request_not_found"),
    ("/api/requests/99999999999999999999", 404, "request_not_found"),
    ("/api/requests/999999/history", 404, "request_not_found"),
    ("/api/requests?status=open", 422, "unknown_status"),
    ("/api/requests?category=外星人", 422, "unknown_category"),
    ("/api/requests?source=email", 422, "unknown_source"),
    ("/api/requests?sort=code;--", 422, "unknown_parameter"),
    ("/api/requests?park=1;DROP TABLE service_requests", 404, "not_found"),
    ("/api/requests?limit=1000000000", 422, "invalid_limit"),
    ("/api/requests?offset=-1", 422, "invalid_offset"),
    ("/api/requests?limit=ten", 400, "invalid_limit"),
    ("/api/requests?overdue=maybe", 422, "invalid_overdue"),
    ("/api/requests?status=accepted&status=resolved", 400, "repeated_parameter"),
])
def test_bad_reads(api, engine, url, status, code):
    api.create()
    before = table_counts(engine)
    response = api.call("GET", url, "viewer")
    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert table_counts(engine) == before


def test_filters_that_name_nothing_match_nothing(api):
    api.create()
    for query in ("grid=T-%25", "grid=T_003", "enterprise=%25", "enterprise=<b>"):
        assert api.call("GET", f"/api/requests?{query}", "viewer").json["total"] == 0, query
    assert api.call("GET", "/api/requests?grid=T-003&status=受理", "viewer").json["total"] == 1
    assert api.call("GET", "/api/requests", None).status_code == 401


def test_overdue_turns_at_midnight_in_shanghai(db_url, engine):
    """Deadline 2026-11-29: not overdue at 23:59:59 in Shanghai, overdue one second later."""
    tokens = build_park(engine)
    deadline = date(2026, 11, 29)
    with session_scope(engine, write=True) as session:
        item = service.create_request(session, get_park(session, "T"), enterprise=FIRM_A,
                                      category="用地", description="扩建用地", source="walk_in",
                                      actor=ACTORS["inspector"], today=date(2026, 11, 20))
        service.transition(session, item.id, "assigned", actor=ACTORS["admin"],
                           expected_version=1, department="县自然资源局", responsible="王五",
                           deadline=deadline, today=date(2026, 11, 20))
    last_second = datetime(2026, 11, 29, 15, 59, 59, tzinfo=timezone.utc)
    for moment, late in ((last_second, False), (last_second + timedelta(seconds=1), True)):
        today = local_today(moment)
        with session_scope(engine) as session:
            items, total = service.list_requests(session, overdue=True, today=today)
            (shown,) = service.request_dicts(session, service.list_requests(
                session, today=today)[0], today=today)
        assert (total, shown["overdue"]) == (int(late), late), moment
        # the API and the page decide on the same local day
        app = create_app({"DATABASE_URL": db_url, "TESTING": True, "TODAY": today})
        try:
            client = app.test_client()
            auth = {"Authorization": f"Bearer {tokens['viewer']}"}
            listed = client.get("/api/requests?overdue=true", headers=auth).json
            assert listed["total"] == int(late), moment
            one = client.get(f"/api/requests/{item.id}", headers=auth).json
            assert one["overdue"] is late
            page = client.get("/parks/T/requests", headers=auth).get_data(as_text=True)
            assert (f"逾期 overdue {int(late)}" in page) and (('<tr class="late">' in page) is late)
        finally:
            app.extensions["gridmap.engine"].dispose()
    # resolving ends it being overdue
    with session_scope(engine, write=True) as session:
        service.transition(session, item.id, "in_progress", actor=ACTORS["admin"],
                           expected_version=2, today=date(2026, 12, 1))
        service.transition(session, item.id, "resolved", actor=ACTORS["admin"],
                           expected_version=3, note="已解决", today=date(2026, 12, 1))
    with session_scope(engine) as session:
        assert service.list_requests(session, overdue=True, today=date(2026, 12, 1))[1] == 0


@pytest.mark.parametrize("mode", ["if_match", "body_version"])
def test_two_clients_move_the_same_request_at_once(api, engine, mode):
    rid = api.create().json["id"]
    events_before = request_state(engine)[2]
    barrier = threading.Barrier(2)
    results = [None, None]

    def worker(i):
        body = {"to": "assigned", "department": f"部门{i}", "responsible": "李四",
                "deadline": soon()}
        headers = {"Authorization": f"Bearer {api.tokens['supervisor']}"}
        if mode == "if_match":
            headers["If-Match"] = '"1"'
        else:
            body["version"] = 1
        client = api.app.test_client()
        barrier.wait()
        results[i] = client.post(f"/api/requests/{rid}/transitions", json=body, headers=headers)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loser = 412 if mode == "if_match" else 409
    assert sorted(r.status_code for r in results) == [200, loser], [r.json for r in results]
    _, items, events = request_state(engine)
    assert events == events_before + 1 and items[0][1:3] == ("assigned", 2)


def test_clients_taking_requests_at_once_get_distinct_ledger_numbers(api, engine):
    barrier = threading.Barrier(4)
    results = [None] * 4

    def worker(i):
        client = api.app.test_client()
        barrier.wait()
        results[i] = api.create(client=client, description=f"客户端{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 4, [r.json for r in results]
    year = local_today().year
    assert sorted(r.json["code"] for r in results) == [f"SQ{year}-{n:04d}" for n in range(1, 5)]
    assert table_counts(engine)["request_events"] == 4


def test_history_is_append_only(api, engine):
    api.create()
    for statement in ("UPDATE request_events SET note = 'x'", "DELETE FROM request_events"):
        with pytest.raises(sa.exc.DBAPIError):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    assert table_counts(engine)["request_events"] == 1


def test_database_refuses_unknown_status_source_and_satisfaction(api, engine):
    rid = api.create().json["id"]
    for column, value in (("status", "closed"), ("source", "email"),
                          ("satisfaction", "happy")):
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.update(ServiceRequest).where(ServiceRequest.id == rid)
                             .values({column: value}))


def test_categories_per_park(runner, engine, api):
    assert runner("requests", "categories", "list", "--park", "T").output.split() == [
        "用工", "用地", "融资", "政策扶持", "道路出行", "工业用燃气", "其他"]
    assert api.create(category="环保").json["error"]["code"] == "unknown_category"
    added = runner("requests", "categories", "add", " 环保 ", "--park", "T")
    assert added.exit_code == 0 and "环保" in added.output
    assert runner("requests", "categories", "list", "--park", "T",
                  "--format", "json").output.strip().endswith('"其他", "环保"]')
    assert api.create(category="环保").status_code == 201
    before = table_counts(engine)
    for args in (("环保",), ("用工",), ("",), ("a\x00b",), ("长" * 101,)):
        result = runner("requests", "categories", "add", *args, "--park", "T")
        assert result.exit_code == 2 and result.output.startswith("error:"), args
    assert runner("requests", "categories", "add", "x", "--park", "NOPE").exit_code == 2
    assert table_counts(engine) == before


def _read_xlsx(data):
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["诉求台账"]
    rows = [list(r) for r in book["诉求台账"].iter_rows(values_only=True)]
    book.close()
    return rows


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "=1+1", "+1", "-1", "@SUM(1)"])
def test_page_and_exports_neutralise_formulas(api, engine, text):
    rid = api.create(description=text).json["id"]
    api.move(rid, "assigned", 1, department="县人社局", responsible="李四",
             deadline=soon())
    auth = {"Authorization": f"Bearer {api.tokens['viewer']}"}
    client = api.app.test_client()
    assert client.get("/parks/T/requests.csv").status_code == 302  # login first
    body = client.get("/parks/T/requests.csv", headers=auth)
    assert body.status_code == 200 and body.data.startswith(b"\xef\xbb\xbf")
    assert "request-ledger-T-" in body.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(body.data.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    row = dict(zip(rows[0], rows[1]))
    assert row["诉求内容"] == "'" + text
    assert (row["所属网格"], row["企业名称"], row["当前状态"], row["诉求来源"]) == (
        "T-003", "甲公司", "交办", "走访")
    xlsx = client.get("/parks/T/requests.xlsx?status=assigned", headers=auth)
    sheet = _read_xlsx(xlsx.data)
    assert sheet[0] == HEADERS and dict(zip(sheet[0], sheet[1]))["诉求内容"] == "'" + text
    assert client.get("/parks/T/requests.pdf", headers=auth).status_code == 422
    page = client.get("/parks/T/requests?category=用工&overdue=false", headers=auth)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "甲公司" in html and "县人社局" in html
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert client.get("/parks/T/requests?overdue=maybe", headers=auth).status_code == 422


def test_page_marks_overdue_and_export_links_keep_only_filters(api, db_url, engine):
    rid = api.assigned()
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(ServiceRequest).where(ServiceRequest.id == rid)
                        .values(deadline=local_today() - timedelta(days=1)))
    auth = {"Authorization": f"Bearer {api.tokens['viewer']}"}
    client = api.app.test_client()
    html = client.get("/parks/T/requests?overdue=true&status=assigned&_external=1&code=x",
                      headers=auth).get_data(as_text=True)
    assert '<tr class="late">' in html and "逾期 overdue 1" in html
    import re
    links = re.findall(r'href="([^"]*requests\.(?:csv|xlsx)[^"]*)"', html)
    assert links == ["/parks/T/requests.csv?status=assigned&amp;overdue=true",
                     "/parks/T/requests.xlsx?status=assigned&amp;overdue=true"]
    nav = client.get("/parks/T/ledger", headers=auth).get_data(as_text=True)
    assert 'id="nav-requests" href="/parks/T/requests"' in nav


def test_cli_list_show_transition_export(runner, engine, tmp_path):
    tokens = build_park(engine)  # noqa: F841 -- the accounts
    with session_scope(engine, write=True) as session:
        code = service.create_request(session, get_park(session, "T"), enterprise=FIRM_B,
                                      category="道路出行", description="门前道路破损",
                                      source="platform", actor=ACTORS["inspector"]).code
    listed = runner("requests", "list", "--park", "T", "--format", "json")
    assert listed.exit_code == 0 and json.loads(listed.output)["requests"][0]["code"] == code
    assert code in runner("requests", "list", "--source", "平台").output
    assert "道路出行" in runner("requests", "show", code).output
    before = table_counts(engine)
    for args in (("transition", code, "assigned", "--as", "inspector", "--department", "x",
                  "--responsible", "y", "--deadline", soon()),  # role
                 ("transition", code, "assigned", "--as", "supervisor"),  # no department
                 ("transition", code, "assigned", "--as", "nobody"),
                 ("transition", code, "assigned", "--as", "supervisor", "--version", "7",
                  "--department", "x", "--responsible", "y", "--deadline", soon()),
                 ("transition", "SQ1999-0001", "assigned", "--as", "supervisor"),
                 ("show", "99999"), ("list", "--park", "NOPE"), ("list", "--category", "外星人"),
                 ("export", tmp_path / "x.pdf")):
        result = runner("requests", *args)
        assert result.exit_code == 2 and "error" in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert runner("requests", "transition", code, "bogus", "--as", "admin").exit_code == 2
    assert table_counts(engine) == before
    moved = runner("requests", "transition", code, "交办", "--as", "supervisor", "--department",
                   "市政管理处", "--responsible", "赵六", "--deadline", soon(), "--format", "json")
    assert moved.exit_code == 0 and json.loads(moved.output)["status"] == "assigned"
    shown = json.loads(runner("requests", "show", code, "--format", "json").output)
    assert [e["action"] for e in shown["history"]] == ["accept", "assign"]
    assert runner("requests", "export", tmp_path / "sq.xlsx", "--park", "T").exit_code == 0
    with open(tmp_path / "sq.xlsx", "rb") as f:
        rows = _read_xlsx(f.read())
    assert rows[0] == HEADERS and rows[1][HEADERS.index("交办单位")] == "市政管理处"
    assert runner("requests", "export", tmp_path / "none.csv", "--overdue").exit_code == 0
    lines = (tmp_path / "none.csv").read_text(encoding="utf-8-sig").splitlines()
    assert lines == [",".join(HEADERS)]


def test_demo_has_a_month_of_requests_like_the_seeds(engine):
    from geodata.services.demo_loader import load_demo

    today = date(2026, 11, 30)
    load_demo(engine, today=today)
    with session_scope(engine) as session:
        items, total = service.list_requests(session, limit=1000, today=today)
        rows = service.request_dicts(session, items, today=today)
        actions = Counter(session.execute(sa.select(RequestEvent.action)).scalars())
        # events never lie after the demo's day and follow each other
        for item in items:
            stamps = [e.at.replace(tzinfo=e.at.tzinfo or timezone.utc) for e in item.events]
            assert stamps == sorted(stamps) and stamps[-1].date() <= today
    assert total == len(rows) > 100
    assert all(0 <= (today - date.fromisoformat(r["received_date"])).days < 30 for r in rows)
    categories = Counter(r["category"] for r in rows).most_common()
    assert [c for c, _ in categories[:2]] == ["用工", "融资"]
    assert {c for c, _ in categories} == {"用工", "用地", "融资", "政策扶持", "道路出行",
                                          "工业用燃气", "其他"}
    assert Counter(r["source"] for r in rows).most_common(1)[0][0] == "visit"
    statuses = Counter(r["status"] for r in rows)
    assert statuses["followed_up"] + statuses["resolved"] > 0.6 * total
    assert 2 <= sum(r["overdue"] for r in rows) <= 0.1 * total
    assert actions["reopen"] >= 2 and actions["accept"] == total
    assert any(r["satisfaction"] == "unsatisfied" and r["status"] == "in_progress" for r in rows)


def test_0006_database_with_data_upgrades_to_the_request_ledger(fresh_url):  # noqa: F811
    """Migration 0007 only adds tables: an older park takes requests after the upgrade."""
    from geodata import schema
    from geodata.storage import make_engine

    engine = make_engine(fresh_url, create=True)
    try:
        schema.upgrade(engine, "0006")  # the revision before the request ledger
        tokens = build_park(engine, users=False)  # noqa: F841 -- park T, stored before 0007
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with session_scope(engine, write=True) as session:
            item = service.create_request(session, get_park(session, "T"), enterprise=FIRM_B,
                                          category="工业用燃气", description="管网压力不足",
                                          source="phone", actor=ACTORS["inspector"])
            assert (item.code[:2], item.grid.code) == ("SQ", "T-002")
        with pytest.raises(sa.exc.DBAPIError):
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM request_events")
    finally:
        engine.dispose()


def test_open_requests_follow_their_enterprise_through_a_grid_edit(engine):
    """Merging T-003 into a new grid moves 甲公司's open request; a resolved one stays."""
    from geodata.models import Grid
    from geodata.services import edits

    build_park(engine, users=False)
    admin = ACTORS["admin"]
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        ids = []
        for _ in range(2):
            item = service.create_request(session, park, enterprise=FIRM_A, category="用工",
                                          description="招工", source="visit", actor=admin)
            ids.append(item.id)
        for to, extra in (("assigned", {"department": "x", "responsible": "y",
                                        "deadline": local_today()}),
                          ("in_progress", {}), ("resolved", {"note": "已解决"})):
            service.transition(session, ids[1], to, actor=admin,
                               expected_version=service.get_request(session, ids[1]).version,
                               **extra)
    with session_scope(engine, write=True) as session:
        out = edits.merge_grids(session, get_park(session, "T"), ["T-003", "T-004"],
                                actor="planner", reason="合并")
    (merged,) = out.added
    with session_scope(engine) as session:
        grid_of = {r.id: (r.grid.code, r.version) for r in session.execute(
            sa.select(ServiceRequest).order_by(ServiceRequest.id)).scalars()}
        assert session.execute(sa.select(Grid.active_to).where(
            Grid.code == "T-003")).scalar() is not None
    assert grid_of == {ids[0]: (merged, 2), ids[1]: ("T-003", 4)}


def test_a_request_raised_on_a_visit_keeps_the_visit(api, engine):
    """走访发现诉求: a request names its visit; source and enterprise follow from it."""
    from tests.test_visits_api import visit_body

    visit = api.call("POST", "/api/parks/T/visits", "inspector", visit_body(where=(150, 150)))
    assert visit.status_code == 201 and visit.json["enterprise"]["credit_code"] == FIRM_A
    raised = api.call("POST", "/api/parks/T/requests", "inspector", {
        "visit": visit.json["client_id"].upper(), "category": "融资",
        "description": "流动资金紧张"})
    assert raised.status_code == 201, raised.json
    r = raised.json
    assert (r["visit"], r["source"], r["enterprise"]["credit_code"]) == (
        visit.json["client_id"], "visit", FIRM_A)
    assert api.call("GET", f"/api/requests/{r['id']}", "viewer").json["visit"] == r["visit"]
    with session_scope(engine) as session:
        assert session.get(ServiceRequest, r["id"]).visit_id == visit.json["id"]

    before = request_state(engine)
    for body, code in (({"visit": "not-a-uuid"}, "unknown_visit"),
                       ({"visit": "0b7e6a52-7f2c-4d5e-9a41-1c2d3e4f5a6b"}, "unknown_visit"),
                       ({"visit": visit.json["client_id"], "source": "phone"}, "unknown_source")):
        refused = api.call("POST", "/api/parks/T/requests", "inspector",
                           {"category": "融资", "description": "x", **body})
        assert refused.status_code == 422, refused.json
        assert refused.json["error"]["code"] == code
        assert refused.json["error"]["details"]["field"] in ("visit", "source")
    assert request_state(engine) == before


def test_request_writes_are_idempotent(api, engine):
    """A retried create or step with the same Idempotency-Key is answered, not redone."""
    body = {"enterprise": FIRM_A, "category": "用工", "description": "招工", "source": "phone"}
    first = api.call("POST", "/api/parks/T/requests", "inspector", body,
                     headers={"Idempotency-Key": "req-1"})
    again = api.call("POST", "/api/parks/T/requests", "inspector", body,
                     headers={"Idempotency-Key": "req-1"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    rid = first.json["id"]
    step = {"to": "assigned", "department": "县人社局", "responsible": "李四",
            "deadline": soon()}
    moves = [api.call("POST", f"/api/requests/{rid}/transitions", "supervisor", step,
                      headers={"If-Match": '"1"', "Idempotency-Key": "req-2"})
             for _ in range(2)]
    assert [m.status_code for m in moves] == [200, 200] and moves[0].json == moves[1].json
    with session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(ServiceRequest)).scalar() == 1
        assert session.execute(sa.select(sa.func.count()).select_from(RequestEvent)).scalar() == 2
    other = api.call("POST", "/api/parks/T/requests", "inspector", {**body, "description": "另"},
                     headers={"Idempotency-Key": "req-1"})
    assert other.status_code == 422 and other.json["error"]["code"] == "idempotency_key_reused"
