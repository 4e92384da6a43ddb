"""Field domains (geodata/domains.py): no value that enters can break a later read.

Unit tables for the domain functions, then the API, the importers and the
CLI on both backends: each refusal has its status and ``error.code`` and
leaves every table unchanged, and each accepted extreme value reads back
through the ledger page, its CSV and XLSX, the history and the map.
"""

import io
from datetime import date, datetime, timezone

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geodata import domains
from geodata.creditcode import make_credit_code
from geodata.errors import FeatureError
from geodata.services.parks import get_park, import_parks
from geodata.services.sites import import_enterprises
from geodata.storage import session_scope
from tests.conftest import metric_box, table_counts
from tests.ledger_helpers import build_park, image_bytes, lonlat
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)

RING = [[114.0, 34.0], [114.001, 34.0], [114.001, 34.001], [114.0, 34.0]]


@pytest.mark.parametrize("call, value, code", [
    (lambda v: domains.code(v, "code", kind="park"), "A/B", "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "A B", "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), 'A"B', "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "A<B", "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "园区", "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "-A", "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "A" * 33, "invalid_value"),
    (lambda v: domains.code(v, "code", kind="park"), "A\r\nB", "invalid_text"),
    (lambda v: domains.code(v, "code"), "A\x00", "invalid_text"),
    (lambda v: domains.code(v, "code"), "G" * 65, "invalid_value"),
    (domains.ledger_code, "YH2026-9999999999999999999999999", "invalid_value"),
    (domains.ledger_code, "YH2026-0", "invalid_value"),
    (domains.ledger_code, "YH0001-0001", "invalid_value"),
    (domains.ledger_code, "YH-1", "invalid_value"),
    (lambda v: domains.text(v, "name"), "a\nb", "invalid_text"),
    (lambda v: domains.text(v, "name"), "\u202eevil", "invalid_text"),
    (lambda v: domains.text(v, "name"), "lone \ud800", "invalid_text"),
    (lambda v: domains.text(v, "name"), "a\x85b", "invalid_text"),
    (lambda v: domains.text(v, "d", kind="note"), "nul\x00", "invalid_text"),
    (lambda v: domains.text(v, "n", kind="person"), "长" * 101, "text_too_long"),
    (lambda v: domains.text(v, "name"), 12, "invalid_type"),
    (lambda v: domains.day(v, "d"), "0001-01-01", "invalid_value"),
    (lambda v: domains.day(v, "d"), "9999-12-31", "invalid_value"),
    (lambda v: domains.day(v, "d"), "2025-02-30", "invalid_date"),
    (lambda v: domains.moment(v, "t"), "0001-01-01T00:00:00+14:00", "invalid_value"),
    (lambda v: domains.moment(v, "t"), "9999-12-31T23:59:59-14:00", "invalid_value"),
    (lambda v: domains.moment(v, "t"), "2100-12-31T23:00:00-14:00", "invalid_value"),
    (lambda v: domains.moment(v, "t"), "yesterday", "invalid_date"),
    (lambda v: domains.integer(v, "n"), 2**63, "invalid_value"),
    (lambda v: domains.integer(v, "n"), -2**63 - 1, "invalid_value"),
    (lambda v: domains.integer(v, "n"), True, "invalid_type"),
    (lambda v: domains.integer(v, "n"), 1.5, "invalid_type"),
])
def test_values_outside_their_domain_are_refused(call, value, code):
    with pytest.raises(FeatureError) as info:
        call(value)
    assert info.value.code == code and info.value.http_status == 422
    assert info.value.details["field"] and "domain" in info.value.details


def test_values_inside_their_domain_are_normalised():
    assert domains.code(" ｆｇ-001 ", "code") == "FG-001"
    assert domains.ledger_code("yh2025-000001") == "YH2025-000001"
    assert domains.text("  第一行\n第二行\t", "note", kind="note") == "第一行\n第二行"
    assert domains.text("😀 <b>x</b>", "name") == "😀 <b>x</b>"
    assert domains.moment("2025-01-01T06:00:00+08:00", "t") == datetime(
        2024, 12, 31, 22, tzinfo=timezone.utc)
    assert domains.moment("1970-01-01T00:00:00", "t").tzinfo is timezone.utc
    assert domains.integer(2**63 - 1, "n") == 2**63 - 1
    assert not domains.is_id(2**31) and domains.is_id(2**31 - 1) and not domains.is_id(True)


# -- the hazard API --------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def _create_body(**change):
    lon, lat = lonlat("T-001")
    return {"lon": lon, "lat": lat, "category": "消防安全", **change}


BAD_CREATES = [
    (_create_body(code="YH2026-9999999999999999999999999"), 422, "invalid_value"),
    (_create_body(code="YH2026-1\u0000"), 422, "invalid_text"),
    (_create_body(code="A/1"), 422, "invalid_value"),
    (_create_body(found_date="0001-01-01"), 422, "invalid_value"),
    (_create_body(found_date="1969-12-31"), 422, "invalid_value"),
    (_create_body(description="surrogate \ud800"), 422, "invalid_text"),
    (_create_body(description=["not", "text"]), 422, "invalid_type"),
    (DEEP, 400, "invalid_json"),
    ('{"lon": ' * 50_000, 400, "invalid_json"),
]


@pytest.mark.parametrize("body, status, code", BAD_CREATES)
def test_bad_create_values_change_nothing(api, engine, body, status, code):  # noqa: F811
    before = table_counts(engine)
    response = api.call("POST", "/api/parks/T/hazards", "inspector", body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.json["error"]["code"] == code
    assert table_counts(engine) == before


def _in_supervision(api):  # noqa: F811
    created = api.create("T-001")
    hid = created.json["id"]
    moved = api.move(hid, "supervising", created.json["version"])
    assert moved.status_code == 200, moved.json
    return hid, moved.json["version"]


BAD_CLOSES = [
    ({"checked_at": "0001-01-01T00:00:00+14:00"}, 422, "invalid_value"),
    ({"checked_at": "9999-12-31T23:59:59-14:00"}, 422, "invalid_value"),
    ({"photo_id": 2**70}, 422, "invalid_value"),
    ({"photo_id": -(2**70)}, 422, "invalid_value"),
    # past the id domain the document declares (1..ID_MAX): refused as a value, not looked up
    ({"photo_id": 2**31}, 422, "invalid_value"),
    ({"photo_id": 2**31 - 1}, 422, "unknown_photo"),
    ({"photo_id": True}, 422, "invalid_type"),
    # the supervisor is the acting user: any other name is refused, one outside the person
    # text domain (the document's) as such first
    ({"supervisor": "王五"}, 422, "supervisor_not_actor"),
    ({"supervisor": "王\n五"}, 422, "invalid_text"),
    ({"supervisor": "王" * 101}, 422, "text_too_long"),
]


@pytest.mark.parametrize("fields, status, code", BAD_CLOSES)
def test_bad_supervision_values_change_nothing(api, engine, fields, status,  # noqa: F811
                                               code):
    hid, version = _in_supervision(api)
    before = table_counts(engine)
    response = api.move(hid, "closed", version, "supervisor",
                        supervision={"note": "复核合格", **fields})
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert table_counts(engine) == before


@pytest.mark.parametrize("deadline", ["9999-12-31", "2101-01-01"])
def test_deadline_beyond_the_date_range_is_refused(api, engine, deadline):  # noqa: F811
    created = api.create("T-001")
    before = table_counts(engine)
    response = api.move(created.json["id"], "rectifying", 1, deadline=deadline)
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_value"
    assert response.json["error"]["details"]["field"] == "deadline"
    assert table_counts(engine) == before


@pytest.mark.parametrize("method, url, body, status, code", [
    ("GET", "/api/hazards?offset=9223372036854775808", None, 422, "invalid_offset"),
    ("GET", "/api/hazards?offset=9223372036854775807", None, 422, "invalid_offset"),
    ("GET", "/api/hazards?offset=" + "9" * 5000, None, 400, "invalid_offset"),
    ("GET", "/api/hazards?limit=-1", None, 422, "invalid_limit"),
    ("GET", "/api/parks/T/hazards?offset=9223372036854775808", None, 422, "invalid_offset"),
    ("GET", "/api/hazards/1180591620717411303424", None, 404, "hazard_not_found"),
    ("GET", "/api/hazards/1180591620717411303424/history", None, 404, "hazard_not_found"),
    ("POST", "/api/hazards/1180591620717411303424/transitions",
     {"to": "rectifying", "version": 1}, 404, "hazard_not_found"),
    ("POST", "/api/hazards/1180591620717411303424/escalations",
     {"to": "park", "reason": "x", "version": 1}, 404, "hazard_not_found"),
    ("POST", "/api/hazards/1/transitions", DEEP, 400, "invalid_json"),
    ("GET", "/api/parks/T/search?q=%00", None, 422, "invalid_text"),
    ("GET", "/api/parks/T/search?q=a%1Bb", None, 422, "invalid_text"),
    ("GET", "/api/parks/T/search?q=%E2%80%AE", None, 422, "invalid_text"),
    ("GET", "/api/parks/T%00/search?q=a", None, 404, "not_found"),
    ("GET", "/api/parks/A%2FB", None, 404, "not_found"),
    ("GET", "/api/hazards?grid=T-%00", None, 200, None),
])
def test_bad_parameters_are_4xx_on_both_backends(api, engine, method, url, body,  # noqa: F811
                                                 status, code):
    before = table_counts(engine)
    response = api.call(method, url, "inspector", body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if code is not None:
        assert response.json["error"]["code"] == code
    assert table_counts(engine) == before


def test_a_client_ledger_number_cannot_block_later_creates(api, engine):  # noqa: F811
    year = date.today().year
    top = api.create("T-001", code=f"yh{year}-999999")
    assert top.status_code == 201 and top.json["code"] == f"YH{year}-999999"
    before = table_counts(engine)
    exhausted = api.create("T-001")
    assert exhausted.status_code == 409
    assert exhausted.json["error"]["code"] == "ledger_numbers_exhausted"
    assert table_counts(engine) == before
    explicit = api.create("T-002", code=f"YH{year}-0001")
    assert explicit.status_code == 201
    last_year = api.create("T-003", found_date=date(year - 1, 6, 1).isoformat())
    assert last_year.status_code == 201 and last_year.json["code"] == f"YH{year - 1}-0001"
    _all_reads_succeed(api)


def test_extreme_accepted_values_read_back_everywhere(api):  # noqa: F811
    hid, version = _in_supervision(api)
    closed = api.move(hid, "closed", version, "supervisor", supervision={
        "note": "多行\n备注\t😀", "checked_at": "1970-01-01T14:00:00+14:00"})
    assert closed.status_code == 200, closed.json
    created = api.create("T-002", description="长" * 2000, found_date="1970-01-01",
                         code="YH1970-999999")
    assert created.status_code == 201, created.json
    history = api.call("GET", f"/api/hazards/{hid}/history", "viewer").json
    checked = datetime.fromisoformat(history["supervisions"][0]["checked_at"])
    assert checked.replace(tzinfo=checked.tzinfo or timezone.utc) == domains.DATETIME_MIN
    _all_reads_succeed(api)


def _all_reads_succeed(api):  # noqa: F811
    """Every page and export that shows the park's hazards answers 200."""
    for url in ("/parks/T/ledger", "/parks/T/ledger.csv", "/parks/T/ledger.xlsx",
                "/parks/T/dashboard", "/parks/T/map", "/api/parks/T/hazards",
                "/api/hazards?park=T", "/api/parks/T/dashboard", "/api/parks/T"):
        response = api.call("GET", url, "viewer")
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
    for hazard in api.call("GET", "/api/hazards?park=T&limit=1000", "viewer").json["hazards"]:
        for url in (f"/api/hazards/{hazard['id']}", f"/api/hazards/{hazard['id']}/history"):
            response = api.call("GET", url, "viewer")
            assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])


def test_photo_with_a_bad_file_name_leaves_no_file(api, engine, tmp_path):  # noqa: F811
    hid = api.create().json["id"]
    before = table_counts(engine)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    # a real image, so that the name is what is refused (a damaged one is 415 first)
    response = api.call("POST", f"/api/hazards/{hid}/photos", "inspector",
                        data={"photo": (io.BytesIO(image_bytes("PNG")), "a\x1bb.png")})
    assert response.status_code == 422 and response.json["error"]["code"] == "invalid_text"
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert table_counts(engine) == before


# -- the edit API: GeoJSON with empty or short parts, bodies nested too deeply ---------------

EMPTY_FIRST = {"type": "MultiPolygon", "coordinates": [[], [RING]]}


@pytest.mark.parametrize("path, body, status, code", [
    ("/draw", {"geometry": EMPTY_FIRST, "reason": "x"}, 422, "empty_geometry"),
    ("/reshape", {"code": "T-001", "geometry": EMPTY_FIRST, "reason": "x"}, 422,
     "empty_geometry"),
    ("/draw", {"geometry": {"type": "MultiPolygon", "coordinates": [[[]]]}}, 422,
     "invalid_geometry"),
    ("/draw", {"geometry": {"type": "Polygon", "coordinates": [RING, []]}}, 422,
     "invalid_geometry"),
    ("/draw", {"geometry": {"type": "Polygon", "coordinates": [[[1e400, 0]] * 4]}}, 422,
     "invalid_coordinate"),
    ("/draw", {"geometry": {"type": "Polygon", "coordinates": [[[10**400, 0]] * 4]}}, 422,
     "invalid_coordinate"),
    ("/split", {"code": "T-001", "line": {"type": "LineString", "coordinates": [[114, 34]]}},
     422, "invalid_geometry"),
    ("/split", {"code": "T-001", "line": {"type": "LineString", "coordinates": []}}, 422,
     "empty_geometry"),
    ("/split", {"code": "T-001", "line": {"type": "LineString", "coordinates": [[]]}}, 422,
     "invalid_geojson"),
    ("/draw", {"geometry": {"type": "Polygon", "coordinates": [RING]}, "reason": "a\x00b"},
     422, "invalid_text"),
    ("/draw", {"geometry": {"type": "Polygon", "coordinates": [RING]}, "name": "a\nb"},
     422, "invalid_text"),
    ("/split", {"code": "T-001", "parts": 2, "expected_version": 2**70}, 422,
     "invalid_value"),
    ("/draw", DEEP, 400, "invalid_json"),
    ("/split", '{"code": "T-001", "line": ' + "[" * 100_000, 400, "invalid_json"),
])
def test_bad_edit_bodies_are_4xx_and_change_nothing(api, engine, path, body, status,  # noqa: F811
                                                    code):
    before = table_counts(engine)
    response = api.call("POST", f"/api/parks/T/edits{path}", "planner", body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.json["error"]["code"] == code
    assert table_counts(engine) == before


# -- importers and CLI -----------------------------------------------------------------------

def _park_frame(**row):
    return gpd.GeoDataFrame([{"code": "P", "name": "园区", "division_code": "411621", **row}],
                            geometry=[metric_box(0, 0, 1000, 1000)], crs=4326)


@pytest.mark.parametrize("row, field, code", [
    ({"code": "A/B"}, "code", "invalid_value"),
    ({"code": "P" * 33}, "code", "invalid_value"),
    ({"code": "P Q"}, "code", "invalid_value"),
    ({"name": "园" * 201}, "name", "text_too_long"),
    ({"name": "a\rb"}, "name", "invalid_text"),
    ({"division_code": "\u0664\u0661\u0661\u0666\u0662\u0661"}, "division_code",
     "invalid_value"),
])
def test_park_import_checks_domains(engine, row, field, code):
    before = table_counts(engine)
    with pytest.raises(FeatureError) as info:
        with session_scope(engine, write=True) as session:
            import_parks(session, _park_frame(**row))
    assert (info.value.code, info.value.details["field"]) == (code, field)
    assert table_counts(engine) == before


@pytest.mark.parametrize("row, field, code", [
    ({"employees": 2**40}, "employees", "invalid_value"),
    ({"employees": -1}, "employees", "invalid_value"),
    ({"industry": "纺" * 101}, "industry", "text_too_long"),
    ({"contact_name": "张" * 101}, "contact_name", "text_too_long"),
    ({"contact_phone": "1" * 33}, "contact_phone", "text_too_long"),
    ({"name": "甲\x00"}, "name", "invalid_text"),
])
def test_enterprise_import_checks_domains(engine, row, field, code):
    with session_scope(engine, write=True) as session:
        import_parks(session, _park_frame())
    before = table_counts(engine)
    frame = gpd.GeoDataFrame([{"name": "甲公司", "credit_code": make_credit_code("411621", 1),
                               **row}], geometry=[metric_box(10, 10, 20, 20)], crs=4326)
    with pytest.raises(FeatureError) as info:
        with session_scope(engine, write=True) as session:
            import_enterprises(session, get_park(session, "P"), frame)
    assert (info.value.code, info.value.details["field"]) == (code, field)
    assert table_counts(engine) == before


@pytest.mark.parametrize("args, message", [
    (("users", "add", "x1", "--role", "viewer", "--password", "password-1", "--name",
      "名" * 101), "at most 100"),
    (("users", "token", "admin", "--days", str(10**12)), "days"),
    (("users", "token", "admin", "--name", "a\nb"), "line-break"),
    (("hazards", "show", str(2**70)), "no hazard"),
    (("edit", "restore", "--park", "T", "--edit", str(2**70), "--actor", "admin"),
     "range"),
    (("edit", "split", "T-001", "--parts", "2", "--park", "T", "--actor", "admin",
      "--reason", "a\x1bb"), "control"),
    (("edit", "split", "T-001", "--parts", "2", "--park", "T", "--actor", "甲" * 101),
     "at most 100"),
])
def test_cli_refuses_values_outside_their_domain(engine, runner, args, message):
    build_park(engine)
    assert runner("hazards", "list").exit_code == 0
    with session_scope(engine) as session:
        assert session.execute(sa.text("select count(*) from parks")).scalar() == 1
    before = table_counts(engine)
    result = runner(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert table_counts(engine) == before
