"""The field-work API and Idempotency-Key on both backends: log, replay, bad input, roles."""

import io
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from geodata.models import Hazard, HazardEvent, IdempotencyRecord, Photo
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.ledger_helpers import OUTSIDE, future, image_bytes, lonlat
from tests.test_hazards_api import api  # noqa: F401  (the ledger API fixture: park T, tokens)

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def visit_body(where="T-003", **change):
    lon, lat = lonlat(where)
    body = {"client_id": str(uuid.uuid4()), "kind": "visit", "lon": lon, "lat": lat,
            "occurred_at": (NOW - timedelta(hours=1)).astimezone(
                timezone(timedelta(hours=8))).isoformat(),
            "accuracy_m": 6.5, "note": "走访：消防通道畅通", "findings": ""}
    body.update(change)
    return body


def log(api, role="inspector", body=None, key=None, **change):  # noqa: F811
    headers = {"Idempotency-Key": key} if key else None
    return api.call("POST", "/api/parks/T/visits", role, body or visit_body(**change),
                    headers=headers)


def test_log_a_visit_resolves_grid_and_enterprise_and_keeps_history(api):  # noqa: F811
    created = log(api, where=(150, 150))  # inside 甲公司's site in T-003
    assert created.status_code == 201, created.json
    v = created.json
    assert (v["kind"], v["kind_name"], v["grid"]["code"]) == ("visit", "走访", "T-003")
    assert v["enterprise"]["name"] == "甲公司" and v["accuracy_m"] == 6.5
    assert created.headers["Location"].endswith(f"/api/visits/{v['id']}")
    got = api.call("GET", f"/api/visits/{v['id']}", "viewer")
    assert got.status_code == 200 and got.json == v
    history = api.call("GET", f"/api/visits/{v['id']}/history", "viewer").json
    assert [(e["action"], e["actor"]) for e in history["events"]] == [("log", "inspector")]
    photo = api.call("POST", f"/api/visits/{v['id']}/photos", "inspector",
                     data={"photo": (io.BytesIO(image_bytes()), "门口.png")},
                     content_type="multipart/form-data")
    assert photo.status_code == 201, photo.json
    assert api.call("GET", f"/api/visits/{v['id']}", "viewer").json["photos"] == [
        photo.json["id"]]
    history = api.call("GET", f"/api/visits/{v['id']}/history", "viewer").json
    assert [e["action"] for e in history["events"]] == ["log", "photo"]
    listed = api.call("GET", "/api/visits?park=T&kind=visit&grid=T-003", "viewer").json
    assert listed["total"] == 1 and listed["visits"][0]["id"] == v["id"]
    assert api.call("GET", "/api/visits?park=T&kind=patrol", "viewer").json["total"] == 0


def test_same_client_id_again_returns_the_stored_visit(api, engine):  # noqa: F811
    body = visit_body()
    first = log(api, body=body)
    again = log(api, body=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    other = log(api, "supervisor", body=body)  # someone else's id is not theirs to reuse
    assert other.status_code == 409 and other.json["error"]["code"] == "duplicate_client_id"
    changed = log(api, body={**body, "note": "另一条"})
    assert changed.status_code == 409
    assert table_counts(engine)["visits"] == 1


def _hazard_steps(api):  # noqa: F811
    """Every keyed write of the ledger: (method, url, role, body or multipart)."""
    lon, lat = lonlat("T-004")
    created = api.create()
    hid, v = created.json["id"], created.json["version"]
    return hid, [
        ("POST", "/api/parks/T/hazards", {"lon": lon, "lat": lat, "category": "用电安全"}),
        ("POST", f"/api/hazards/{hid}/transitions",
         {"to": "rectifying", "version": v, "deadline": future().isoformat()}),
        ("POST", f"/api/hazards/{hid}/escalations",
         {"to": "park", "reason": "拖延", "version": v + 1}),
        ("POST", "/api/parks/T/visits", visit_body("T-004")),
    ]


def test_every_keyed_write_is_done_once_and_replayed(api, engine):  # noqa: F811
    hid, steps = _hazard_steps(api)
    for i, (method, url, body) in enumerate(steps):
        before = table_counts(engine)
        first = api.call(method, url, "inspector", body, headers={"Idempotency-Key": f"k{i}"})
        assert 200 <= first.status_code < 300, (url, first.json)
        after = table_counts(engine)
        again = api.call(method, url, "inspector", body, headers={"Idempotency-Key": f"k{i}"})
        assert again.status_code == first.status_code and again.json == first.json
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers.get("ETag") == first.headers.get("ETag")
        assert table_counts(engine) == after != before
        assert after["idempotency_keys"] == before["idempotency_keys"] + 1
    with session_scope(engine) as session:
        events = session.execute(sa.select(HazardEvent.action).where(
            HazardEvent.hazard_id == hid).order_by(HazardEvent.id)).scalars().all()
    assert events == ["log", "start", "escalate"]  # each step once


def test_photo_upload_with_a_key_is_stored_once(api, engine):  # noqa: F811
    vid = log(api).json["id"]
    hid = api.create().json["id"]
    for i, url in enumerate((f"/api/visits/{vid}/photos", f"/api/hazards/{hid}/photos")):
        answers = [api.call("POST", url, "inspector", headers={"Idempotency-Key": f"photo-{i}"},
                            data={"photo": (io.BytesIO(image_bytes()), "a.png")},
                            content_type="multipart/form-data") for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].json == answers[1].json
        assert answers[1].headers["Idempotent-Replayed"] == "true"
    with session_scope(engine) as session:
        owners = session.execute(sa.select(Photo.hazard_id, Photo.visit_id)).all()
    assert sorted(owners, key=str) == sorted([(None, vid), (hid, None)], key=str)


def test_same_key_with_another_body_is_422_and_changes_nothing(api, engine):  # noqa: F811
    assert log(api, key="k-1").status_code == 201
    before = table_counts(engine)
    reused = log(api, key="k-1")  # a new client_id: another request
    assert reused.status_code == 422
    assert reused.json["error"]["code"] == "idempotency_key_reused"
    elsewhere = api.call(
        "POST", "/api/parks/T/hazards", "inspector",
        {"lon": lonlat("T-004")[0], "lat": lonlat("T-004")[1], "category": "其他"},
        headers={"Idempotency-Key": "k-1"})
    assert elsewhere.status_code == 422
    assert table_counts(engine) == before


def test_another_users_key_does_not_replay(api, engine):  # noqa: F811
    body = {"lon": lonlat("T-004")[0], "lat": lonlat("T-004")[1], "category": "其他"}
    mine = api.call("POST", "/api/parks/T/hazards", "inspector", body,
                    headers={"Idempotency-Key": "shared"})
    theirs = api.call("POST", "/api/parks/T/hazards", "supervisor", body,
                      headers={"Idempotency-Key": "shared"})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers and theirs.json["id"] != mine.json["id"]
    with session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Hazard)).scalar() == 2
        assert session.execute(sa.select(sa.func.count()).select_from(
            IdempotencyRecord)).scalar() == 2


def test_a_refused_keyed_request_stores_no_key_and_can_be_retried(api, engine):  # noqa: F811
    hid = api.create().json["id"]
    before = table_counts(engine)
    stale = api.move(hid, "rectifying", 7, deadline=future().isoformat())
    assert stale.status_code == 409
    keyed = api.call("POST", f"/api/hazards/{hid}/transitions", "inspector",
                     {"to": "rectifying", "version": 7, "deadline": future().isoformat()},
                     headers={"Idempotency-Key": "retry-me"})
    assert keyed.status_code == 409 and table_counts(engine) == before
    fixed = api.call("POST", f"/api/hazards/{hid}/transitions", "inspector",
                     {"to": "rectifying", "version": 1, "deadline": future().isoformat()},
                     headers={"Idempotency-Key": "retry-me"})
    assert fixed.status_code == 200


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "ключ", "a/b"])
def test_malformed_idempotency_keys_are_400(api, engine, key):  # noqa: F811
    before = table_counts(engine)
    response = log(api, key=key) if key else api.call(
        "POST", "/api/parks/T/visits", "inspector", visit_body(),
        headers={"Idempotency-Key": ""})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_idempotency_key"
    assert table_counts(engine) == before


BAD = [
    ({"client_id": "not-a-uuid"}, 422, "invalid_client_id"),
    ({"client_id": 42}, 422, "invalid_client_id"),
    ({"kind": "picnic"}, 422, "unknown_kind"),
    ({"occurred_at": "2025-11-30T09:00:00"}, 422, "invalid_date"),  # no offset
    ({"occurred_at": "yesterday"}, 422, "invalid_date"),
    ({"occurred_at": 1700000000}, 422, "invalid_date"),
    ({"occurred_at": "0001-01-01T00:00:00+08:00"}, 422, "invalid_value"),
    ({"occurred_at": (NOW + timedelta(days=2)).isoformat()}, 422, "occurred_in_future"),
    ({"accuracy_m": -1}, 422, "invalid_accuracy"),
    ({"accuracy_m": 1e9}, 422, "invalid_accuracy"),
    ({"accuracy_m": "5"}, 422, "invalid_accuracy"),
    ({"accuracy_m": True}, 422, "invalid_accuracy"),
    ({"enterprise": "91411621000000019X"}, 422, "unknown_enterprise"),
    ({"kind": "recheck"}, 422, "hazard_required"),
    ({"kind": "recheck", "hazard_id": 999999}, 422, "unknown_hazard"),
    ({"hazard_id": 1}, 422, "invalid_value"),
    ({"note": "bad\u0000text"}, 422, "invalid_text"),
    ({"findings": "x" * 5000}, 422, "text_too_long"),
    ({"lon": lonlat(OUTSIDE)[0], "lat": lonlat(OUTSIDE)[1]}, 422, "outside_park"),
    ({"lon": 200}, 422, "coordinate_out_of_range"),
    ({"user": "admin"}, 422, "unknown_property"),
    ({"recorded_at": "2025-01-01T00:00:00Z"}, 422, "unknown_property"),
]


@pytest.mark.parametrize("change, status, code", BAD)
def test_bad_visits_are_refused_and_change_nothing(api, engine, change, status,  # noqa: F811
                                                   code):
    before = table_counts(engine)
    response = log(api, body=visit_body(**change), key="bad-1")
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert table_counts(engine) == before


@pytest.mark.parametrize("body, content_type, status, code", [
    ("{not json", "application/json", 400, "invalid_json"),
    ('{"lon": NaN}', "application/json", 422, "invalid_coordinate"),
    ("kind=visit", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
])
def test_unparseable_visit_bodies(api, engine, body, content_type, status, code):  # noqa: F811
    before = table_counts(engine)
    response = api.call("POST", "/api/parks/T/visits", "inspector", body,
                        content_type=content_type)
    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert table_counts(engine) == before


def test_roles_and_grids(api, engine):  # noqa: F811
    before = table_counts(engine)
    assert log(api, None).status_code == 401
    for role in ("viewer", "planner"):
        assert log(api, role).status_code == 403
    outside = log(api, "member", where="T-001")
    assert outside.status_code == 403
    assert outside.json["error"]["code"] == "outside_your_grids"
    assert table_counts(engine) == before
    assert log(api, "member", where="T-003").status_code == 201
    other = log(api, "inspector", where="T-001").json["id"]
    assert api.call("GET", f"/api/visits/{other}", "member").status_code == 403
    assert api.call("GET", f"/api/visits/{other}/history", "member").status_code == 403
    photo = api.call("POST", f"/api/visits/{other}/photos", "member",
                     data={"photo": (io.BytesIO(image_bytes()), "a.png")},
                     content_type="multipart/form-data")
    assert photo.status_code == 403
    seen = api.call("GET", "/api/visits", "member").json
    assert seen["total"] == 1 and seen["visits"][0]["grid"]["code"] == "T-003"
    assert api.call("GET", "/api/visits", "viewer").json["total"] == 2


@pytest.mark.parametrize("url, status, code", [
    ("/api/visits/999999", 404, "visit_not_found"),
    ("/api/visits/999999/history", 404, "visit_not_found"),
    ("/api/visits?sort=id;drop", 422, "unknown_parameter"),
    ("/api/visits?kind=picnic", 422, "unknown_kind"),
    ("/api/visits?from=yesterday", 422, "invalid_date"),
    ("/api/visits?limit=0", 422, "invalid_limit"),
    ("/api/visits?park=NOPE", 404, "not_found"),
    ("/api/me/worklist", 422, "missing_field"),
    ("/api/me/worklist?park=T&x=1", 422, "unknown_parameter"),
    ("/api/parks/T/visits/due?week=2025-W60", 422, "invalid_week"),
])
def test_bad_reads(api, url, status, code):  # noqa: F811
    response = api.call("GET", url, "viewer")
    assert (response.status_code, response.json["error"]["code"]) == (status, code)


def test_worklist_of_a_grid_member_and_of_an_unlimited_user(api, engine):  # noqa: F811
    from tests.ledger_helpers import IN_GRID

    late = api.create("T-003").json
    soon = api.create("T-003").json
    api.create("T-001")
    with session_scope(engine, write=True) as session:
        session.get(Hazard, late["id"]).deadline = datetime(2020, 1, 1).date()
        session.get(Hazard, soon["id"]).deadline = future(3)
    mine = api.call("GET", "/api/me/worklist?park=T", "member").json
    assert [f["properties"]["code"] for f in mine["grids"]["features"]] == ["T-003"]
    assert [h["id"] for h in mine["hazards"]] == [late["id"], soon["id"]]
    assert mine["hazards"][0]["overdue"] and "version" in mine["hazards"][0]
    assert [e["name"] for e in mine["enterprises"]] == ["甲公司"]
    assert mine["user"]["limited"] is True and len(IN_GRID) == 4
    everyone = api.call("GET", "/api/me/worklist?park=T", "inspector").json
    assert len(everyone["grids"]["features"]) == 4 and len(everyone["hazards"]) == 3
    assert everyone["user"]["limited"] is False
    assert all(h["photos"] == [] for h in everyone["hazards"])

    # The phone shows a hazard's photos: thumbnails it can fetch with the same login.
    photo = api.call("POST", f"/api/hazards/{late['id']}/photos", "inspector",
                     data={"photo": (io.BytesIO(image_bytes("JPEG", (64, 48))), "现场.jpg"),
                           "tag": "before"}, content_type="multipart/form-data")
    assert photo.status_code == 201, photo.json
    mine = api.call("GET", "/api/me/worklist?park=T", "member").json
    (shown,) = mine["hazards"][0]["photos"]
    assert (shown["id"], shown["tag"], shown["hazard_id"]) == (
        photo.json["id"], "before", late["id"])
    thumb = api.call("GET", shown["thumbnail_url"], "member")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"


def test_due_and_layer_routes(api, engine):  # noqa: F811
    due = api.call("GET", "/api/parks/T/visits/due", "viewer")
    assert due.status_code == 200 and set(due.json) == {"today", "visits_due", "rechecks_due",
                                                        "coverage"}
    layer = api.call("GET", "/api/parks/T/visits/layer", "viewer")
    assert layer.status_code == 200 and layer.mimetype == "application/geo+json"
    # No patrol logged today: every level-1 grid is in the layer.
    assert sorted(f["properties"]["code"] for f in layer.json["features"]) == [
        "T-001", "T-002", "T-003", "T-004"]
    assert log(api, kind="patrol", occurred_at=NOW.isoformat()).status_code == 201
    layer = api.call("GET", "/api/parks/T/visits/layer", "viewer").json
    assert "T-003" not in [f["properties"].get("code") for f in layer["features"]]
    assert api.call("GET", "/api/parks/T/visits/layer", None).status_code == 401


def test_visit_text_round_trips(api):  # noqa: F811
    text = "回头看 🏭 <img src=x onerror=alert(1)> {{7*7}}"
    v = log(api, note=text, findings=text).json
    assert (v["note"], v["findings"]) == (text, text)
    stored = api.call("GET", f"/api/visits/{v['id']}", "viewer").json
    assert (stored["note"], stored["findings"]) == (text, text)


def test_two_retries_racing_with_one_key_make_one_hazard(api, engine):  # noqa: F811
    import threading

    barrier = threading.Barrier(2)
    results = [None, None]
    lon, lat = lonlat("T-004")

    def worker(i):
        client = api.client()
        barrier.wait()
        results[i] = client.post("/api/parks/T/hazards", json={
            "lon": lon, "lat": lat, "category": "消防安全"}, headers={
            "Authorization": f"Bearer {api.tokens['inspector']}", "Idempotency-Key": "race"})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201, 201]
    assert results[0].json == results[1].json
    counts = table_counts(engine)
    assert (counts["hazards"], counts["hazard_events"], counts["idempotency_keys"]) == (1, 1, 1)


def test_the_loser_of_a_key_race_is_rolled_back_and_replays(api, engine, monkeypatch):  # noqa: F811
    """Force the race: the second request does not see the stored key before it writes."""
    from webmap import idempotency as decorator

    body = visit_body()
    first = log(api, body=body, key="race-2")
    before = table_counts(engine)
    real_find, calls = decorator.idempotency.find, []

    def blind_first_look(session, user_id, key):
        calls.append(key)
        return None if len(calls) == 1 else real_find(session, user_id, key)

    monkeypatch.setattr(decorator.idempotency, "find", blind_first_look)
    # A different client_id: without the key this would be a second visit.
    again = log(api, body={**body, "client_id": str(uuid.uuid4())}, key="race-2")
    assert len(calls) == 2  # looked, wrote, lost on UNIQUE(user_id, key), looked again
    assert again.status_code == 422  # the stored request had another body
    assert table_counts(engine) == before
    monkeypatch.undo()
    replay = log(api, body=body, key="race-2")
    assert replay.json == first.json and table_counts(engine) == before


def test_old_idempotency_keys_are_pruned(api, engine, runner):  # noqa: F811
    assert log(api, key="old").status_code == 201
    assert log(api, key="new").status_code == 201
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(IdempotencyRecord).where(IdempotencyRecord.key == "old")
                        .values(created_at=datetime(2020, 1, 1, tzinfo=timezone.utc)))
    result = runner("prune-idempotency-keys", "--days", "30")
    assert result.exit_code == 0 and "deleted 1 " in result.output
    with session_scope(engine) as session:
        assert session.execute(sa.select(IdempotencyRecord.key)).scalars().all() == ["new"]
    assert runner("prune-idempotency-keys", "--days", "0").exit_code == 2


def test_a_visit_logged_during_a_grid_edit_lands_in_a_grid_in_force(api, engine):  # noqa: F811
    """An edit splits the visit's grid while the visit is logged: the visit waits for the
    edit's park lock (PostgreSQL; SQLite's one writer) and lands in a piece, not in the
    grid the edit retired."""
    import threading

    from geodata.models import Grid, Visit
    from geodata.services import edits
    from geodata.services.parks import get_park
    from tests.test_numbering import _in_thread, _wait_until_blocked

    with session_scope(engine, write=True) as edit:
        split = edits.split_grid(edit, get_park(edit, "T", lock=True), "T-003", parts=2,
                                 actor="planner")
        client = api.client()
        started = threading.Event()

        def post():
            started.set()
            return client.post("/api/parks/T/visits", json=visit_body("T-003"), headers={
                "Authorization": f"Bearer {api.tokens['inspector']}"})

        thread, outcome = _in_thread(post)
        assert started.wait(60)
        _wait_until_blocked(engine)
        assert "value" not in outcome  # it waits for the edit
    thread.join(120)
    assert outcome["value"].status_code == 201, outcome
    with session_scope(engine) as session:
        visit = session.execute(sa.select(Visit)).scalar_one()
        grid = session.get(Grid, visit.grid_id)
        assert grid.active_to is None and grid.code in split.added
