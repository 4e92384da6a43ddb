"""One file per enterprise (一企一档): page and JSON on both backends, roles, bad codes, links."""

import re
import uuid
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pytest

from geodata.creditcode import make_credit_code
from geodata.services import ledger, requests, visits
from geodata.services.parks import get_park
from geodata.services.sites import import_enterprises
from geodata.storage import session_scope
from tests.conftest import metric_box, table_counts
from tests.ledger_helpers import build_park, future, lonlat
from webmap import create_app

JIA = make_credit_code("411621", 1)   # 甲公司, grid T-003 (the member's grid)
YI = make_credit_code("411621", 2)    # 乙公司, grid T-002
BING = make_credit_code("411621", 3)  # 丙, a hidden unit inside 甲's site
ADMIN = ledger.Actor("admin", "admin")  # an account of build_park


def make_file(engine):
    """Park T, 丙 inside 甲, a hazard moved once, a request followed up, a visit."""
    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": "丙车间", "credit_code": BING, "host_credit_code": JIA}],
            geometry=[metric_box(120, 120, 160, 160)], crs=4326))
        hazard = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat((190, 110))),
                                      category="消防安全", description="灭火器过期", actor=ADMIN)
        ledger.transition(session, hazard.id, "rectifying", actor=ADMIN, expected_version=1,
                          note="限期更换", deadline=future())
        item = requests.create_request(session, park, enterprise=JIA, category="用工",
                                       description="缺少熟练工", source="visit", actor=ADMIN)
        steps = [("assigned", {"department": "人社局", "responsible": "李科长",
                               "deadline": future()}),
                 ("in_progress", {}), ("resolved", {"note": "已组织招聘会"}),
                 ("followed_up", {"satisfaction": "basically_satisfied", "note": "回访"})]
        for version, (target, extra) in enumerate(steps, 1):
            requests.transition(session, item.id, target, actor=ADMIN, expected_version=version,
                                **extra)
        visits.create_visit(session, park, actor=ADMIN, client_id_=str(uuid.uuid4()),
                            kind="visit", point=ledger.parse_point(*lonlat((150, 150))),
                            occurred_at_=(datetime.now(timezone.utc) - timedelta(hours=1))
                            .isoformat(), enterprise=JIA, note="走访了解用工")
    return tokens


@pytest.fixture
def site(db_url, engine):
    tokens = make_file(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    client.tokens = tokens
    yield client
    app.extensions["gridmap.engine"].dispose()


def auth(client, role):
    return {"Authorization": f"Bearer {client.tokens[role]}"}


def test_the_file_holds_site_grid_staff_hidden_units_hazards_requests_visits(site):
    data = site.get(f"/api/parks/T/enterprises/{JIA}", headers=auth(site, "viewer")).get_json()
    assert data["enterprise"]["name"] == "甲公司" and data["enterprise"]["site_kind"] == "parcel"
    assert data["enterprise"]["site"]["type"] == "Polygon"
    assert data["grid"]["code"] == "T-003" and data["grid"]["geometry"]["type"] == "MultiPolygon"
    assert data["host"] is None
    assert [(u["name"], u["credit_code"]) for u in data["hidden_units"]] == [("丙车间", BING)]
    (hazard,) = data["hazards"]
    assert hazard["category"] == "消防安全" and hazard["status"] == "rectifying"
    assert [e["to"] for e in hazard["history"]] == ["found", "rectifying"]
    assert hazard["history"][1]["note"] == "限期更换"
    (request,) = data["requests"]
    assert request["status"] == "followed_up" and request["department"] == "人社局"
    assert [e["to"] for e in request["history"]] == [
        "accepted", "assigned", "in_progress", "resolved", "followed_up"]
    assert [(a["request"], a["satisfaction"]) for a in data["satisfaction"]] == [
        (request["code"], "basically_satisfied")]
    (visit,) = data["visits"]
    assert visit["note"] == "走访了解用工" and visit["kind"] == "visit"
    assert data["counts"] == {"hazards": 1, "open_hazards": 1, "overdue_hazards": 0,
                              "requests": 1, "overdue_requests": 0, "visits": 1,
                              "satisfied": 1, "answers": 1}
    # the hidden unit's file names its host
    unit = site.get(f"/api/parks/T/enterprises/{BING}", headers=auth(site, "viewer")).get_json()
    assert unit["host"]["credit_code"] == JIA and unit["host"]["name"] == "甲公司"
    assert unit["hidden_units"] == [] and unit["hazards"] == []


def test_the_page_shows_the_same_file_with_links(site):
    html = site.get(f"/parks/T/enterprises/{JIA}", headers=auth(site, "viewer")).get_data(
        as_text=True)
    for text in ("甲公司", JIA, "T-003", "第3网格", "丙车间", "灭火器过期",
                 "限期更换", "缺少熟练工", "人社局", "基本满意", "走访了解用工"):
        assert text in html, text
    assert 'href="/parks/T/grids/T-003"' in html
    assert f'href="/parks/T/enterprises/{BING}"' in html
    assert 'href="/parks/T/requests"' in html
    # the hazard's link opens the ledger filtered to its number, whichever page it is on
    link = re.search(r'href="(/parks/T/ledger\?number=(YH\d{4}-\d+))#hazard-\2"', html)
    ledger = site.get(link.group(1), headers=auth(site, "viewer")).get_data(as_text=True)
    assert f'id="hazard-{link.group(2)}"' in ledger and "1 条 rows" in ledger
    assert 'id="ent-config"' in html and "/static/enterprise.js" in html
    unit = site.get(f"/parks/T/enterprises/{BING}", headers=auth(site, "viewer")).get_data(
        as_text=True)
    assert f'href="/parks/T/enterprises/{JIA}"' in unit  # its host


def test_pages_link_to_the_file(site):
    viewer = auth(site, "viewer")
    grid = site.get("/parks/T/grids/T-003").get_data(as_text=True)
    assert f'href="/parks/T/enterprises/{JIA}"' in grid
    ledger_page = site.get("/parks/T/ledger", headers=viewer).get_data(as_text=True)
    assert f'href="/parks/T/enterprises/{JIA}"' in ledger_page and 'id="hazard-' in ledger_page
    request_ledger = site.get("/parks/T/requests", headers=viewer).get_data(as_text=True)
    assert f'href="/parks/T/enterprises/{JIA}"' in request_ledger
    park_map = site.get("/parks/T/map").get_data(as_text=True)
    assert '"enterprisePage": "/parks/T/enterprises/__CODE__"' in park_map


def test_roles_and_grids(site):
    assert site.get(f"/api/parks/T/enterprises/{JIA}").status_code == 401
    page = site.get(f"/parks/T/enterprises/{JIA}")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    member = auth(site, "member")  # an inspector limited to grid T-003
    assert site.get(f"/api/parks/T/enterprises/{JIA}", headers=member).status_code == 200
    refused = site.get(f"/api/parks/T/enterprises/{YI}", headers=member)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "outside_your_grids"
    page = site.get(f"/parks/T/enterprises/{YI}", headers=member)
    assert page.status_code == 403 and page.mimetype == "text/html"
    assert "乙公司" not in page.get_data(as_text=True)
    for role in ("viewer", "planner", "admin"):
        assert site.get(f"/api/parks/T/enterprises/{YI}",
                        headers=auth(site, role)).status_code == 200


@pytest.mark.parametrize("code, status, error", [
    ("XYZ", 422, "invalid_credit_code"),
    (JIA[:-1] + ("A" if JIA[-1] != "A" else "B"), 422, "invalid_credit_code"),
    ("9141162100000001OI", 422, "invalid_credit_code"),
    ("<img src=x onerror=alert(1)>", 422, "invalid_credit_code"),
    (make_credit_code("411621", 99), 404, "not_found"),
])
def test_bad_and_unknown_codes(site, engine, code, status, error):
    before = table_counts(engine)
    for path in (f"/api/parks/T/enterprises/{code}", f"/parks/T/enterprises/{code}"):
        response = site.get(path, headers=auth(site, "viewer"))
        assert response.status_code == status, path
        body = response.get_json()["error"]
        assert body["code"] == error and "credit" in body["message"]
    assert site.get(f"/api/parks/NOPE/enterprises/{JIA}",
                    headers=auth(site, "viewer")).status_code == 404
    assert table_counts(engine) == before


def test_a_lower_case_code_finds_the_enterprise(site):
    response = site.get(f"/api/parks/T/enterprises/{JIA.lower()}", headers=auth(site, "viewer"))
    assert response.status_code == 200 and response.get_json()["enterprise"]["credit_code"] == JIA
