"""Logging in and out: password hashes, CSRF, session expiry, rate limit, roles, tokens."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from geodata.models import ApiToken, User
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.services.users import hash_password, verify_password
from geodata.storage import session_scope
from tests.ledger_helpers import ACTORS, PASSWORDS, PRODUCTION_SCRYPT_N, build_park, lonlat
from webmap import create_app

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_password_hash_uses_stdlib_scrypt_with_salt(monkeypatch):
    from geodata.services import users

    monkeypatch.setattr(users, "SCRYPT_N", PRODUCTION_SCRYPT_N)
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith(f"scrypt${2**14}$8$1$") and first != second
    assert verify_password("correct horse", first) and not verify_password("wrong", first)
    assert not verify_password("x", "md5$abc") and not verify_password("x", "garbage")


@pytest.fixture
def site(db_url, engine):
    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "T"),
                             point=ledger.parse_point(*lonlat("T-001")), category="其他",
                             description=XSS, actor=ACTORS["inspector"])
    apps = []

    def make(**config):
        app = create_app({"DATABASE_URL": db_url, "TESTING": True, **config})
        apps.append(app)
        return app.test_client()

    make.tokens = tokens
    yield make
    for app in apps:
        app.extensions["gridmap.engine"].dispose()


def _token(client, url="/login"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(
        as_text=True)).group(1)


def _login(client, user="viewer", password=None, next_url="", csrf=True):
    form = {"username": user, "password": password or PASSWORDS[user], "next": next_url}
    if csrf:
        form["csrf_token"] = _token(client)
    return client.post("/login", data=form)


def test_login_dashboard_logout(site):
    client = site()
    first = client.get("/parks/T/dashboard")
    assert first.status_code == 302 and "/login" in first.headers["Location"]
    assert _login(client, "viewer", "wrong-password").status_code == 401
    assert client.get("/parks/T/dashboard").status_code == 302
    logged = _login(client, next_url="/parks/T/dashboard")
    assert logged.status_code == 302 and logged.headers["Location"] == "/parks/T/dashboard"
    assert "HttpOnly" in logged.headers["Set-Cookie"]
    assert "SameSite=Lax" in logged.headers["Set-Cookie"]
    page = client.get("/parks/T/dashboard")
    assert page.status_code == 200
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert 'id="rate-in-grid">100.0%' in page.get_data(as_text=True)
    ledger_page = client.get("/parks/T/ledger").get_data(as_text=True)
    assert XSS not in ledger_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in ledger_page
    # The map page calls the JSON API with the session cookie.
    assert client.get("/api/hazards?park=T").json["total"] == 1
    refused = client.post("/logout")
    assert refused.status_code == 400 and refused.json["error"]["code"] == "csrf_failed"
    token = _token(client, "/parks/T/dashboard")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/parks/T/dashboard").status_code == 302
    assert client.get("/api/hazards").status_code == 401


def test_login_without_csrf_token_is_refused(site):
    client = site()
    response = _login(client, csrf=False)
    assert response.status_code == 400 and response.json["error"]["code"] == "csrf_failed"
    assert client.get("/api/hazards").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "javascript:alert(1)"])
def test_no_open_redirect_after_login(site, target):
    response = _login(site(), next_url=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_session_expires(site):
    client = site(PERMANENT_SESSION_LIFETIME=timedelta(seconds=1))
    _login(client)
    assert client.get("/api/hazards").status_code == 200
    time.sleep(2.2)
    assert client.get("/api/hazards").status_code == 401


def test_role_change_ends_sessions(site, runner):
    client = site()
    _login(client, "inspector")
    assert client.get("/api/hazards").status_code == 200
    assert runner("users", "set-role", "inspector", "viewer").exit_code == 0
    assert client.get("/api/hazards").status_code == 401


def test_login_is_rate_limited(site):
    client = site(LOGIN_RATE_LIMIT="3 per minute")
    for _ in range(3):
        assert _login(client, "viewer", "wrong-password").status_code == 401
    limited = _login(client)  # even the right password
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert client.get("/api/hazards").status_code == 401


def test_expired_and_revoked_tokens(site, engine):
    client = site()
    auth = {"Authorization": f"Bearer {site.tokens['admin']}"}
    assert client.get("/api/hazards", headers=auth).status_code == 200
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(ApiToken).values(
            expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
    assert client.get("/api/hazards", headers=auth).status_code == 401
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(ApiToken).values(expires_at=None, revoked=True))
    assert client.get("/api/hazards", headers=auth).status_code == 401


def test_disabled_user_cannot_log_in(site, engine):
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(User).where(User.username == "viewer").values(
            active=False, version=User.version + 1))
    assert _login(site(), "viewer").status_code == 401


def test_api_post_with_session_cookie_needs_json(site):
    client = site()
    _login(client, "inspector")
    lon, lat = lonlat("T-002")
    form = client.post("/api/parks/T/hazards", data={"lon": lon, "lat": lat,
                                                     "category": "其他"})
    assert form.status_code == 415
    created = client.post("/api/parks/T/hazards", json={"lon": lon, "lat": lat,
                                                        "category": "其他"})
    assert created.status_code == 201 and created.json["grid"]["code"] == "T-002"
