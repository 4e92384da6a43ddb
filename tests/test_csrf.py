"""No cross-site write: every state-changing route of ``app.url_map`` (both backends).

A page on another site can make a logged-in browser send a form
(``application/x-www-form-urlencoded`` or ``multipart/form-data``) or a
``text/plain`` body, with the session cookie, to any route; it cannot set a
JSON content type or an ``X-CSRFToken`` header without a CORS preflight,
which this app never grants.  So every POST/PUT/PATCH/DELETE route answered
with a session cookie must refuse those three bodies without the token: 400
``csrf_failed`` (forms, multipart uploads) or 415 (the JSON API), and store
nothing.  The routes are read from ``app.url_map``, so a new one is covered.
"""

import io
import re

from flask import url_for

from tests.conftest import stored_snapshot
from tests.ledger_helpers import image_bytes
from tests.scope_helpers import build_scopes
from webmap import create_app

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _login(client, user, password):
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      client.get("/login").get_data(as_text=True)).group(1)
    answer = client.post("/login", data={"username": user, "password": password,
                                         "csrf_token": token})
    assert answer.status_code == 302


def test_no_write_accepts_a_cross_site_body_with_the_session_cookie(db_url, engine, tmp_path):
    _, ids = build_scopes(engine, tmp_path / "photos")
    own = ids["own"]
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()
        _login(client, "admin", "admin-pass-123")
        values = {"code": "T", "hazard_id": own["hazard"], "request_id": own["request"],
                  "visit_id": own["visit"]}
        before = stored_snapshot(engine)
        writes = [r for r in app.url_map.iter_rules() if r.methods & WRITES]
        assert len(writes) >= 15
        for rule in writes:
            assert set(rule.arguments) <= set(values), f"{rule.endpoint}: give its arguments"
            with app.test_request_context():
                url = url_for(rule.endpoint, **{a: values[a] for a in rule.arguments})
            for method in sorted(rule.methods & WRITES):
                for kind, body in (
                        ("form", {"data": {"to": "closed", "lon": "114.39", "lat": "34.06"}}),
                        ("text", {"data": '{"to": "closed"}', "content_type": "text/plain"}),
                        ("multipart", {"data": {"photo": (io.BytesIO(image_bytes("JPEG")),
                                                          "p.jpg")},
                                       "content_type": "multipart/form-data"})):
                    got = client.open(url, method=method, **body)
                    where = f"{method} {url} as {kind}"
                    assert got.status_code in (400, 415), where
                    assert got.get_json()["error"]["code"] in (
                        "csrf_failed", "unsupported_media_type"), where
        # still logged in (logout refused too), and nothing changed
        assert client.get("/m/session.json").status_code == 200
        assert stored_snapshot(engine) == before
    finally:
        app.extensions["gridmap.engine"].dispose()
