"""The hazard JSON API on both backends: the loop, bad input, permissions, concurrency."""

import io
import json

import pytest
import sqlalchemy as sa

from geodata.services import ledger
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.ledger_helpers import (ACTORS, OUTSIDE, at_once, build_park, future, image_bytes,
                                  ledger_state, lonlat)
from webmap import create_app


@pytest.fixture
def api(db_url, engine, tmp_path):
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path / "data")})

    class Api:
        def __init__(self):
            self.app, self.tokens = app, tokens

        def client(self):
            return app.test_client()

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

        def create(self, where="T-004", role="inspector", **fields):
            lon, lat = lonlat(where)
            body = {"lon": lon, "lat": lat, "category": "消防安全", "description": "灭火器过期",
                    **fields}
            return self.call("POST", "/api/parks/T/hazards", role, body)

        def move(self, hid, to, version, role="inspector", **fields):
            return self.call("POST", f"/api/hazards/{hid}/transitions", role,
                             {"to": to, "version": version, **fields})

    yield Api()
    app.extensions["gridmap.engine"].dispose()


def test_whole_loop_through_the_api(api):
    created = api.create()
    assert created.status_code == 201, created.json
    h = created.json
    assert created.headers["ETag"].startswith('"1.') and created.headers["Location"].endswith(
        f"/api/hazards/{h['id']}")
    assert (h["status"], h["grid"]["code"], h["code"][:2]) == ("found", "T-004", "YH")
    assert h["allowed_transitions"] == ["rectifying", "supervising"]
    hid, v = h["id"], h["version"]
    steps = [("rectifying", "inspector", {"deadline": future().isoformat(), "note": "限期"}),
             ("supervising", "inspector", {"note": "已整改"}),
             ("rectifying", "supervisor", {"note": "不合格，退回"}),
             ("supervising", "inspector", {}),
             ("closed", "supervisor", {"supervision": {"note": "复核合格"}}),
             ("rectifying", "supervisor", {"note": "回头看反弹", "deadline": future(5).isoformat()})]
    for to, role, fields in steps:
        response = api.move(hid, to, v, role, **fields)
        assert response.status_code == 200, response.json
        assert response.json["status"] == to and response.json["version"] == v + 1
        v = response.json["version"]
    escalated = api.call("POST", f"/api/hazards/{hid}/escalations", "inspector",
                         {"to": "county", "reason": "反复整改不到位"},
                         headers={"If-Match": f'"{v}"'})
    assert escalated.status_code == 200 and escalated.json["escalation"] == "county"
    history = api.call("GET", f"/api/hazards/{hid}/history", "viewer").json
    assert [e["to"] for e in history["events"]] == [
        "found", "rectifying", "supervising", "rectifying", "supervising", "closed",
        "rectifying", "rectifying"]
    assert [r["outcome"] for r in history["supervisions"]] == [
        "rejected", "passed", "recheck_failed"]
    got = api.call("GET", f"/api/hazards/{hid}", "viewer")
    assert got.json["allowed_transitions"] == [] and got.headers["ETag"].startswith(f'"{v + 1}.')
    assert api.call("GET", f"/api/hazards/{hid}", "viewer",
                    headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    listed = api.call("GET", "/api/hazards?park=T&status=rectifying&escalation=county",
                      "viewer").json
    assert listed["total"] == 1 and listed["hazards"][0]["id"] == hid
    board = api.call("GET", "/api/parks/T/dashboard", "viewer").json
    assert board["by_grid"]["T-004"]["total"] == 1 and board["by_escalation"]["county"] == 1
    assert board["by_cell"] == {"T-004": 1}


def test_point_on_a_shared_boundary_goes_to_the_lowest_code(api):
    lon, lat = lonlat((500, 750))  # on the edge between T-001 and T-002
    response = api.call("POST", "/api/parks/T/hazards", "inspector",
                        {"location": {"type": "Point", "coordinates": [lon, lat]},
                         "category": "用电安全"})
    assert response.status_code == 201 and response.json["grid"]["code"] == "T-001"


def test_a_point_declaring_lon_lat_is_taken(api):
    lon, lat = lonlat("T-002")
    response = api.call("POST", "/api/parks/T/hazards", "inspector", {
        "location": {"type": "Point", "coordinates": [lon, lat], "crs": {
            "type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}},
        "category": "用电安全"})
    assert response.status_code == 201 and response.json["grid"]["code"] == "T-002"


def _valid(**change):
    lon, lat = lonlat("T-001")
    body = {"lon": lon, "lat": lat, "category": "消防安全"}
    body.update(change)
    return json.dumps(body)


BAD_CREATE = [
    ('{"lon": NaN, "lat": 34.0, "category": "消防安全"}', "application/json", 422,
     "invalid_coordinate"),
    ('{"lon": Infinity, "lat": 34.0, "category": "消防安全"}', "application/json", 422,
     "invalid_coordinate"),
    (_valid(lon="114.3"), "application/json", 422, "invalid_coordinate"),
    (_valid(lon=34.06, lat=114.39), "application/json", 422, "coordinate_out_of_range"),
    (_valid(lon=lonlat(OUTSIDE)[0], lat=lonlat(OUTSIDE)[1]), "application/json", 422,
     "outside_park"),
    (_valid(category="外星人"), "application/json", 422, "unknown_category"),
    (_valid(level="catastrophic"), "application/json", 422, "unknown_level"),
    (_valid(description="x" * 5000), "application/json", 422, "text_too_long"),
    (_valid(description="bad\u0000text"), "application/json", 422, "invalid_text"),
    (_valid(description="\u202eevil"), "application/json", 422, "invalid_text"),
    (_valid(status="closed"), "application/json", 422, "unknown_property"),
    (_valid(code="YH2024-0001", found_date="2025-03-01"), "application/json", 422,
     "code_year_mismatch"),
    # empty before the type, as for every geometry member and file (test_geometry_surfaces)
    (json.dumps({"location": {"type": "Polygon", "coordinates": []}, "category": "消防安全"}),
     "application/json", 422, "empty_geometry"),
    (json.dumps({"location": {"type": "Polygon", "coordinates": [[[114.3, 34.0], [114.4, 34.0],
                                                                  [114.4, 34.1], [114.3, 34.0]]]},
                 "category": "消防安全"}), "application/json", 422, "wrong_geometry_type"),
    (_valid(location={"type": "Point", "coordinates": [114.3, 34.0]}), "application/json", 422,
     "invalid_value"),
    # A Point declaring another CRS: its numbers are not degrees (web mercator metres here).
    (json.dumps({"location": {"type": "Point", "coordinates": [1.27e7, 4.03e6], "crs": {
        "type": "name", "properties": {"name": "EPSG:3857"}}}, "category": "消防安全"}),
     "application/json", 422, "unsupported_crs"),
    ('{"lon": 114.3, "lat":', "application/json", 400, "invalid_json"),
    ("not json at all", "application/json", 400, "invalid_json"),
    (b"\xff\xfe\x00", "application/json", 400, "invalid_json"),
    ("[1, 2]", "application/json", 422, "invalid_body"),
    (_valid(), "text/plain", 415, "unsupported_media_type"),
    ("lon=1&lat=2", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("body, content_type, status, code", BAD_CREATE)
def test_bad_create_is_refused_and_changes_nothing(api, engine, body, content_type, status,
                                                   code):
    before = table_counts(engine)
    response = api.call("POST", "/api/parks/T/hazards", "inspector", body,
                        content_type=content_type)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert table_counts(engine) == before


@pytest.mark.parametrize("role, body, headers, status, code", [
    ("supervisor", {"to": "found"}, {}, 409, "illegal_transition"),
    ("inspector", {"to": "closed"}, {}, 403, "forbidden"),
    ("supervisor", {"to": "rectifying"}, {}, 422, "note_required"),
    ("viewer", {"to": "rectifying", "deadline": "2099-01-01"}, {}, 403, "forbidden"),
    ("planner", {"to": "rectifying", "deadline": "2099-01-01"}, {}, 403, "forbidden"),
    (None, {"to": "rectifying", "deadline": "2099-01-01"}, {}, 401, "authentication_required"),
    ("inspector", {"to": "archived"}, {}, 422, "unknown_status"),
    ("inspector", {"to": None}, {}, 422, "unknown_status"),
    ("supervisor", {"to": "closed"}, {}, 422, "supervision_required"),
    ("supervisor", {"to": "closed", "supervision": "yes"}, {}, 422, "invalid_type"),
    ("supervisor", {"to": "closed", "supervision": {"note": ""}}, {}, 422, "missing_field"),
    ("supervisor", {"to": "closed", "supervision": {"note": "ok", "photo_id": 999}}, {}, 422,
     "unknown_photo"),
    ("supervisor", {"to": "closed", "supervision": {"note": "ok", "extra": 1}}, {}, 422,
     "unknown_property"),
    ("supervisor", {"to": "closed", "supervision": {"note": "ok"}}, {"If-Match": '"1"'}, 412,
     "precondition_failed"),
    ("supervisor", {"to": "closed", "supervision": {"note": "ok"}, "version": 1}, {}, 409,
     "stale_version"),
    ("supervisor", {"to": "closed", "supervision": {"note": "ok"}}, {"If-Match": "junk"}, 400,
     "invalid_if_match"),
    ("supervisor", {"to": "rectifying", "note": "\x00"}, {}, 422, "invalid_text"),
    ("supervisor", {"to": "rectifying", "note": "长" * 2001}, {}, 422, "text_too_long"),
    ("supervisor", {"to": "rectifying", "note": "x", "deadline": "soon"}, {}, 422,
     "invalid_date"),
    # outside their grids, a member learns nothing of the step (not even that it is a
    # supervisor's): the grid limit is checked first
    ("member", {"to": "rectifying", "deadline": "2099-01-01"}, {}, 403, "outside_your_grids"),
    ("inspector", {"to": "closed", "version": "3"}, {}, 422, "invalid_type"),
])
def test_illegal_transitions_change_nothing(api, engine, role, body, headers, status, code):
    hid = api.create("T-001").json["id"]
    assert api.move(hid, "supervising", 1).status_code == 200  # fixed on the spot, version 2
    if "version" not in body and "If-Match" not in headers:
        body = {**body, "version": 2}
    before = ledger_state(engine), table_counts(engine)
    response = api.call("POST", f"/api/hazards/{hid}/transitions", role, body, headers=headers)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert (ledger_state(engine), table_counts(engine)) == before


@pytest.mark.parametrize("to, extra", [("rectifying", {"deadline": "2099-01-01"}),
                                       ("supervising", {})])
def test_a_supervision_record_on_a_step_that_keeps_none_is_refused(api, engine, to, extra):
    """排查 → 整改 or 排查 → 督导 stores no 督导记录: one sent is refused, not dropped."""
    hid = api.create("T-001").json["id"]
    before = ledger_state(engine), table_counts(engine)
    response = api.move(hid, to, 1, supervision={"note": "已督导"}, **extra)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "unknown_property"
    assert response.json["error"]["details"]["field"] == "supervision"
    assert (ledger_state(engine), table_counts(engine)) == before
    assert api.move(hid, to, 1, **extra).status_code == 200


def test_version_is_required(api):
    hid = api.create().json["id"]
    response = api.call("POST", f"/api/hazards/{hid}/transitions", "inspector",
                        {"to": "supervising"})
    assert response.status_code == 428 and response.json["error"]["code"] == "version_required"


@pytest.mark.parametrize("url, status, code", [
    ("/api/hazards/999999", 404, "hazard_not_found"),
    ("/api/hazards/abc", 404, "not_found"),
    ("/api/hazards/99999999999999999999", 404, "hazard_not_found"),
    ("/api/hazards?status=open", 422, "unknown_status"),
    ("/api/hazards?sort=code;--", 422, "unknown_parameter"),
    ("/api/hazards?park=1;DROP TABLE hazards", 404, "not_found"),
    ("/api/hazards?limit=1000000000", 422, "invalid_limit"),
    ("/api/hazards?limit=ten", 400, "invalid_limit"),
    ("/api/hazards?overdue=maybe", 422, "invalid_overdue"),
    ("/api/parks/NOPE/dashboard", 404, "not_found"),
])
def test_bad_reads(api, engine, url, status, code):
    before = table_counts(engine)
    response = api.call("GET", url, "viewer")
    assert response.status_code == status and response.json["error"]["code"] == code
    assert table_counts(engine) == before


def test_anonymous_and_bad_tokens(api):
    assert api.call("GET", "/api/hazards", None).status_code == 401
    bad = api.call("GET", "/api/hazards", None, headers={"Authorization": "Bearer gm_nope"})
    assert bad.status_code == 401 and bad.json["error"]["code"] == "invalid_token"
    basic = api.call("GET", "/api/hazards", None, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    assert api.create(role="viewer").status_code == 403
    wrong_method = api.call("DELETE", "/api/hazards/1", "admin")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]


def test_grid_member_logs_only_in_their_grid(api):
    assert api.create("T-003", role="member").status_code == 201
    refused = api.create("T-001", role="member")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "outside_your_grids"
    hid = api.create("T-001").json["id"]
    escalation = api.call("POST", f"/api/hazards/{hid}/escalations", "member",
                          {"to": "park", "reason": "x", "version": 1})
    assert escalation.status_code == 403
    assert escalation.json["error"]["code"] == "outside_your_grids"


def multipart(data, filename="photo.jpg"):
    """A multipart body with one ``photo`` field, built in memory.

    (Werkzeug's test client spools bodies over 500 KB to a file it never closes.)
    """
    head = (f'--b0undary\r\nContent-Disposition: form-data; name="photo"; filename="{filename}"'
            '\r\nContent-Type: image/jpeg\r\n\r\n').encode()
    return {"data": head + data + b"\r\n--b0undary--\r\n",
            "content_type": "multipart/form-data; boundary=b0undary"}


def photo_files(tmp_path):
    """Every file in the app's photo folder, temporary ones included."""
    folder = tmp_path / "data" / "photos"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_photo_upload_and_close_with_it(api, tmp_path):
    hid = api.create().json["id"]
    assert api.move(hid, "supervising", 1).status_code == 200
    png = image_bytes()
    uploaded = api.call("POST", f"/api/hazards/{hid}/photos", "inspector",
                        data={"photo": (io.BytesIO(png), "../../etc/passwd.png")})
    assert uploaded.status_code == 201, uploaded.json
    stored = sorted((tmp_path / "data" / "photos").iterdir(), key=lambda p: len(p.name))
    # the server's re-encoded JPEG and its thumbnail (tests/test_photos.py), under its names
    assert len(stored) == 2 and all(".." not in p.name and p.suffix == ".jpg" for p in stored)
    assert stored[1].name == stored[0].stem + ".thumb.jpg"
    assert uploaded.json["original_name"] == "../../etc/passwd.png"
    closed = api.move(hid, "closed", 2, "supervisor",
                      supervision={"note": "已复核", "photo_id": uploaded.json["id"]})
    assert closed.status_code == 200
    history = api.call("GET", f"/api/hazards/{hid}/history", "viewer").json
    assert history["supervisions"][0]["photo_id"] == uploaded.json["id"]


JPEG = image_bytes("JPEG", (64, 48))
REFUSED_UPLOADS = [
    ("too big", "inspector", b"\xff\xd8\xff" + b"\x00" * (11 * 2**20), "own", 413,
     "payload_too_large"),
    ("script named .jpg", "inspector", b"<svg onload=alert(1)>", "own", 415,
     "unsupported_photo"),
    ("PDF", "inspector", b"%PDF-1.7\n" + b"0" * 200, "own", 415, "unsupported_photo"),
    ("PNG signature, junk after", "inspector", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "own",
     415, "unsupported_photo"),
    ("PNG with a bad checksum", "inspector", image_bytes()[:-5] + b"XXXXX", "own", 422,
     "invalid_photo"),
    ("truncated JPEG", "inspector", JPEG[:len(JPEG) // 2], "own", 422, "invalid_photo"),
    ("hazard outside the member's grids", "member", JPEG, "other", 403, "outside_your_grids"),
    ("viewer may not upload", "viewer", JPEG, "own", 403, "forbidden"),
    ("unknown hazard", "inspector", JPEG, 999_999, 404, "hazard_not_found"),
]


def test_refused_photo_uploads_leave_no_file_and_no_row(api, engine, tmp_path):
    own = api.create("T-003").json["id"]  # a member's grid
    other = api.create("T-001").json["id"]
    before = table_counts(engine)
    for label, role, data, target, status, code in REFUSED_UPLOADS:
        hid = {"own": own, "other": other}.get(target, target)
        response = api.call("POST", f"/api/hazards/{hid}/photos", role, **multipart(data))
        assert (response.status_code, response.json["error"]["code"]) == (status, code), label
        assert photo_files(tmp_path) == [], label
    assert table_counts(engine) == before
    accepted = api.call("POST", f"/api/hazards/{own}/photos", "member", **multipart(JPEG))
    assert accepted.status_code == 201, accepted.json
    assert accepted.json["content_type"] == "image/jpeg"
    assert [n.endswith(".jpg") for n in photo_files(tmp_path)] == [True, True]
    assert table_counts(engine) == {**before, "hazard_photos": before["hazard_photos"] + 1}


def test_photo_is_moved_into_place_only_when_the_transaction_commits(api, engine, tmp_path):
    hid = api.create().json["id"]
    folder = tmp_path / "photos"
    with pytest.raises(RuntimeError):
        with session_scope(engine, write=True) as session:
            ledger.save_photo(session, hid, JPEG, actor=ACTORS["inspector"], directory=folder)
            # the temporary files of the photo and its thumbnail, before the commit
            assert len(list(folder.iterdir())) == 2
            raise RuntimeError("something after the photo failed")
    assert list(folder.iterdir()) == [] and table_counts(engine)["hazard_photos"] == 0
    with session_scope(engine, write=True) as session:
        photo = ledger.save_photo(session, hid, JPEG, actor=ACTORS["inspector"],
                                  directory=folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [photo.stored_name, photo.thumbnail_name])


@pytest.mark.parametrize("mode", ["if_match", "body_version"])
def test_two_clients_move_the_same_hazard_at_once(api, engine, mode):
    hid = api.create().json["id"]
    events_before = ledger_state(engine)[1]

    def worker(i):
        body = {"to": "rectifying", "deadline": future().isoformat(), "note": f"client {i}"}
        headers = {"Authorization": f"Bearer {api.tokens['inspector']}"}
        if mode == "if_match":
            headers["If-Match"] = '"1"'
        else:
            body["version"] = 1
        return api.client().post(f"/api/hazards/{hid}/transitions", json=body,
                                 headers=headers)

    results = at_once(worker)
    statuses = sorted(r.status_code for r in results)
    loser = 412 if mode == "if_match" else 409
    assert statuses == [200, loser], [r.json for r in results]
    hazards, events, _ = ledger_state(engine)
    assert events == events_before + 1
    assert hazards[0][1:3] == ("rectifying", 2)
    history = api.call("GET", f"/api/hazards/{hid}/history", "viewer").json["events"]
    assert [e["to"] for e in history] == ["found", "rectifying"]


def test_grid_filter_includes_sub_grids_and_escapes_wildcards(api):
    assert api.create("T-001").status_code == 201
    assert api.create("T-002").status_code == 201
    by_grid = api.call("GET", "/api/hazards?park=T&grid=T-001", "viewer").json
    assert by_grid["total"] == 1 and by_grid["hazards"][0]["grid"]["code"] == "T-001"
    assert api.call("GET", "/api/hazards?grid=T-%25", "viewer").json["total"] == 0
    assert api.call("GET", "/api/hazards?grid=T_001", "viewer").json["total"] == 0


def test_cjk_emoji_and_markup_round_trip(api):
    text = "消防通道堵塞 🚒 <b>x</b> ${alert(1)} `rm`"
    created = api.create(description=text)
    assert created.status_code == 201
    assert api.call("GET", f"/api/hazards/{created.json['id']}", "viewer").json[
        "description"] == text


@pytest.mark.parametrize("where", [(150, 150), "T-002"])  # in 甲公司's site (T-003); in none
def test_write_answers_name_what_a_fresh_read_names(api, engine, where):
    """A create answers with names read in its write transaction, a transition and an
    escalation with those read beside the hazard's row lock: each equals a later GET."""
    created = api.create(where)
    assert created.status_code == 201, created.json
    hid = created.json["id"]
    assert created.json == api.call("GET", f"/api/hazards/{hid}").json
    assert (created.json["enterprise"] or {}).get("name") == ("甲公司" if where != "T-002"
                                                              else None)
    with engine.begin() as conn:  # renamed meanwhile: the next answer shows the new name
        conn.execute(sa.text("UPDATE grids SET name = '改名网格' WHERE code = :code"),
                     {"code": created.json["grid"]["code"]})
    moved = api.move(hid, "rectifying", 1, deadline=future().isoformat())
    assert moved.status_code == 200, moved.json
    assert moved.json["grid"]["name"] == "改名网格"
    assert moved.json == api.call("GET", f"/api/hazards/{hid}").json
    escalated = api.call("POST", f"/api/hazards/{hid}/escalations", "inspector",
                         {"to": "county", "reason": "整改不到位", "version": 2})
    assert escalated.status_code == 200, escalated.json
    assert escalated.json == api.call("GET", f"/api/hazards/{hid}").json
