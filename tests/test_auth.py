"""Logging in and out: password hashes, CSRF, sessions ended on the server, rate limit,
roles, tokens, password policy, login timing, security headers on every response."""

import hashlib
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geodata.cli import main
from geodata.config import Settings
from geodata.creditcode import make_credit_code
from geodata.errors import ConfigError, ValidationError
from geodata.models import ApiToken, Supervision, User
from geodata.services import ledger
from geodata.services import users as user_service
from geodata.services.parks import get_park
from geodata.services.users import check_password, hash_password, verify_password
from geodata.storage import session_scope
from geodata.workflow import AuthenticationRequiredError
from tests.conftest import table_counts
from tests.ledger_helpers import (ACTORS, PASSWORDS, PRODUCTION_SCRYPT_N, build_park,
                                  ledger_state, lonlat)
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


def _cookie(client):
    return client.get_cookie("session").value


def _with_cookie(client, value):
    """Another browser on the same app presenting a copied session cookie."""
    other = client.application.test_client()
    other.set_cookie("session", value)
    return other


def _logout(client):
    return client.post("/logout", data={"csrf_token": _token(client, "/parks/T/dashboard")})


def test_cookie_captured_before_logout_is_refused_after_it(site):
    client = site()
    _login(client, "inspector")
    captured = _cookie(client)
    assert _with_cookie(client, captured).get("/api/hazards").status_code == 200
    assert _logout(client).status_code == 302
    replayed = _with_cookie(client, captured)
    refused = replayed.get("/api/hazards")
    assert refused.status_code == 401 and refused.json["error"]["code"] == (
        "authentication_required")
    page = _with_cookie(client, captured).get("/parks/T/dashboard")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    # The replayed cookie cannot write either, and logging in again works.
    lon, lat = lonlat("T-002")
    assert _with_cookie(client, captured).post(
        "/api/parks/T/hazards", json={"lon": lon, "lat": lat, "category": "其他"}
    ).status_code == 401
    _login(client, "inspector")
    assert client.get("/api/hazards").status_code == 200


def test_logout_with_a_token_ends_no_session(site, engine):
    """A Bearer client has no session; logout leaves the user's browser sessions alone."""
    browser = site()
    _login(browser, "admin")
    script = browser.application.test_client()
    auth = {"Authorization": f"Bearer {site.tokens['admin']}"}
    csrf_token = _token(browser, "/parks/T/dashboard")
    script.set_cookie("session", _cookie(browser))  # the CSRF token lives in the session
    assert script.post("/logout", data={"csrf_token": csrf_token},
                       headers=auth).status_code == 302
    assert browser.get("/api/hazards").status_code == 200


def test_disabled_user_is_refused_everywhere(site, runner):
    client = site()
    _login(client, "viewer")
    captured = _cookie(client)
    auth = {"Authorization": f"Bearer {site.tokens['viewer']}"}
    assert client.get("/api/hazards").status_code == 200
    assert runner("users", "disable", "viewer").exit_code == 0
    assert client.get("/api/hazards").status_code == 401
    assert site().get("/api/hazards", headers=auth).status_code == 401
    fresh = site()
    refused = _login(fresh, "viewer")
    wrong = _login(site(), "viewer", "wrong-password-1")
    assert refused.status_code == wrong.status_code == 401
    message = re.compile(r'class="error"[^>]*>([^<]*)<')
    assert (message.search(refused.get_data(as_text=True)).group(1)
            == message.search(wrong.get_data(as_text=True)).group(1))
    assert runner("users", "enable", "viewer").exit_code == 0
    assert site().get("/api/hazards", headers=auth).status_code == 200
    # Enabling does not revive the old session; a new login works.
    assert _with_cookie(client, captured).get("/api/hazards").status_code == 401
    assert _login(fresh, "viewer").status_code == 302
    assert fresh.get("/api/hazards").status_code == 200


def test_set_password_ends_sessions_and_replaces_the_password(site, db_url):
    client = site()
    _login(client, "planner")
    result = CliRunner().invoke(main, ["--db", db_url, "users", "set-password", "planner"],
                                input="fresh-planner-7\nfresh-planner-7\n")
    assert result.exit_code == 0, result.output
    assert client.get("/api/hazards").status_code == 401
    assert _login(site(), "planner").status_code == 401
    again = site()
    assert _login(again, "planner", "fresh-planner-7").status_code == 302
    assert again.get("/api/hazards").status_code == 200


def test_revoked_token_fails_and_sessions_end(site, runner, engine):
    client = site()
    _login(client, "inspector")
    auth = {"Authorization": f"Bearer {site.tokens['inspector']}"}
    assert site().get("/api/hazards", headers=auth).status_code == 200
    other = site.tokens["admin"]
    result = runner("users", "revoke-token", "inspector")
    assert result.exit_code == 0 and "revoked 1 token(s)" in result.output
    refused = site().get("/api/hazards", headers=auth)
    assert refused.status_code == 401 and refused.json["error"]["code"] == "invalid_token"
    assert client.get("/api/hazards").status_code == 401
    # Other users' tokens are untouched.
    assert site().get("/api/hazards", headers={
        "Authorization": f"Bearer {other}"}).status_code == 200
    with session_scope(engine) as session:
        rows = session.execute(sa.select(ApiToken.revoked).join(User).where(
            User.username == "inspector")).scalars().all()
    assert rows == [True]


def _count_scrypt(monkeypatch):
    calls = []
    real = hashlib.scrypt

    def counting(password, **kwargs):
        calls.append(kwargs["n"])
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_unknown_disabled_and_wrong_password_do_the_same_work(engine, monkeypatch):
    build_park(engine)
    with session_scope(engine, write=True) as session:
        user_service.set_active(session, "planner", False)
    cases = {"unknown": ("nobody", "whatever-pass-1"),
             "disabled": ("planner", PASSWORDS["planner"]),
             "wrong": ("viewer", "wrong-password-1"), "long name": ("x" * 65, "a-password-1"),
             "not text": ("viewer", None)}
    work = {}
    for case, (name, password) in cases.items():
        calls = _count_scrypt(monkeypatch)
        with session_scope(engine) as session:
            with pytest.raises(AuthenticationRequiredError) as caught:
                user_service.authenticate(session, name, password)
        assert (caught.value.http_status, caught.value.code, caught.value.message) == (
            401, "invalid_credentials", "wrong user name or password"), case
        work[case] = list(calls)
    calls = _count_scrypt(monkeypatch)
    with session_scope(engine) as session:
        assert user_service.authenticate(session, "viewer", PASSWORDS["viewer"])
    # One scrypt run with the configured cost, whatever went wrong.
    assert all(w == calls == [user_service.SCRYPT_N] for w in work.values()), work


@pytest.mark.parametrize("password, username, rule", [
    ("short-1", "wang", "min_length"),
    ("          ", "wang", "whitespace"),
    ("\t \u3000\n \t \u3000\n  ", "wang", "whitespace"),
    ("aaaaaaaaaaaa", "wang", "repeated"),
    ("Password123", "wang", "common"),
    ("  qwertyuiop ", "wang", "common"),
    ("Wang.Xiaoming", "wang.xiaoming", "username"),
    ("x" * 1025, "wang", "max_length"),
    (12345678901, "wang", "type"),
])
def test_password_policy_names_the_rule(password, username, rule):
    with pytest.raises(ValidationError) as caught:
        check_password(password, username)
    assert caught.value.code == "weak_password" and caught.value.http_status == 422
    assert caught.value.details == {"field": "password", "rule": rule}


def test_password_policy_accepts_good_ones():
    for password in ("correct horse battery", "网格化服务管理2025", "ab" * 512):
        assert check_password(password, "wang") == password


def test_session_cookie_flags_and_hsts(site):
    plain = site()
    logged = _login(plain)
    assert "Secure" not in logged.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in logged.headers
    secure = site(SECURE_COOKIES=True)
    logged = _login(secure)
    cookie = logged.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert logged.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert secure.get("/nope").headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("raw, value", [("true", True), ("1", True), ("ON", True),
                                        ("no", False), ("0", False), ("false", False)])
def test_secure_cookies_setting(raw, value):
    assert Settings.from_env({"GRIDMAP_SECURE_COOKIES": raw}).secure_cookies is value


def test_secure_cookies_setting_refuses_nonsense():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GRIDMAP_SECURE_COOKIES": "maybe"})
    assert caught.value.details == {"setting": "GRIDMAP_SECURE_COOKIES"}


_SAMPLES = {"int": "1", "float": "1.5", "path": "x/y.js"}


def _urls(app):
    """One concrete URL per route and method of ``app``, arguments filled with samples."""
    out = []
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>",
                     lambda m: _SAMPLES.get(m.group(1), "T"), rule.rule)
        out.extend((method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return out


def _assert_no_framing(client, method, url, headers=None):
    """Request ``url`` and check its framing headers; returns the status."""
    with client.open(url, method=method, headers=headers or {}) as response:
        where = (method, url, response.status_code)
        assert response.headers.get("X-Frame-Options") == "DENY", where
        policy = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy, (where, policy)
        return response.status_code


def test_every_response_forbids_framing(site):
    client = site(PROPAGATE_EXCEPTIONS=False)
    app = client.application

    @app.get("/test-boom")
    def _boom():
        raise RuntimeError("boom")

    urls = _urls(app)
    assert len(urls) > 40 and ("GET", "/static/x/y.js") in urls
    bearer = {"Authorization": f"Bearer {site.tokens['admin']}"}
    statuses = {_assert_no_framing(client, method, url, headers)
                for method, url in urls for headers in ({}, bearer)}
    _login(client, "admin")
    statuses |= {_assert_no_framing(client, method, url) for method, url in urls
                 if method == "GET"}
    for method, url in (("GET", "/static/gridmap.css"), ("GET", "/no/such/page"),
                        ("DELETE", "/login"), ("GET", "/api/hazards/999999"),
                        ("GET", "/test-boom")):
        statuses.add(_assert_no_framing(client, method, url))
    assert {200, 302, 400, 401, 404, 405, 415, 500} <= statuses


def test_supervisor_is_the_acting_user(site, engine):
    hid = _hazard_in_supervision(engine)
    client = site()
    auth = {"Authorization": f"Bearer {site.tokens['supervisor']}"}
    before, counts = ledger_state(engine), table_counts(engine)
    forged = client.post(f"/api/hazards/{hid}/transitions", headers=auth, json={
        "to": "closed", "version": 3, "supervision": {"note": "合格", "supervisor": "张局长"}})
    assert forged.status_code == 422
    assert forged.json["error"]["code"] == "supervisor_not_actor"
    assert forged.json["error"]["details"] == {"field": "supervision.supervisor"}
    assert ledger_state(engine) == before and table_counts(engine) == counts
    closed = client.post(f"/api/hazards/{hid}/transitions", headers=auth, json={
        "to": "closed", "version": 3, "supervision": {"note": "合格"}})
    assert closed.status_code == 200
    history = client.get(f"/api/hazards/{hid}/history", headers=auth).json
    assert [r["supervisor"] for r in history["supervisions"]] == ["supervisor"]
    assert history["events"][-1]["actor"] == "supervisor"
    with session_scope(engine) as session:
        assert session.execute(sa.select(Supervision.supervisor)).scalars().all() == [
            "supervisor"]


def test_naming_yourself_as_supervisor_is_accepted(site, engine):
    hid = _hazard_in_supervision(engine)
    response = site().post(f"/api/hazards/{hid}/transitions", headers={
        "Authorization": f"Bearer {site.tokens['admin']}"}, json={
        "to": "closed", "version": 3, "supervision": {"note": "合格", "supervisor": "admin"}})
    assert response.status_code == 200


def _hazard_in_supervision(engine):
    with session_scope(engine, write=True) as session:
        hazard = ledger.create_hazard(session, get_park(session, "T"),
                                      point=ledger.parse_point(*lonlat("T-004")),
                                      category="其他", actor=ACTORS["inspector"])
        ledger.transition(session, hazard.id, "rectifying", actor=ACTORS["inspector"],
                          expected_version=1, deadline=datetime.now().date() + timedelta(9))
        ledger.transition(session, hazard.id, "supervising", actor=ACTORS["inspector"],
                          expected_version=2)
        return hazard.id


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


@pytest.mark.parametrize("command", [
    ("hazards", "transition", "1", "supervising", "--as", "inspector"),
    ("requests", "transition", "1", "assigned", "--as", "inspector", "--department", "x",
     "--responsible", "x", "--deadline", "2099-01-01"),
    ("weekly", "assign", "--park", "T", "--week", "2099-W01", "--hazard", "1", "--owner",
     "admin", "--deadline", "2099-01-01", "--as", "inspector"),
])
def test_a_disabled_account_cannot_act_from_the_shell_either(site, runner, engine, command):
    """``--as`` a disabled user is refused (exit 2) and records nothing in their name."""
    from geodata.services import requests as request_service

    with session_scope(engine, write=True) as session:
        request_service.create_request(
            session, get_park(session, "T"), enterprise=make_credit_code("411621", 1),
            category="其他", description="x", source="visit", actor=ACTORS["admin"])
    assert runner("users", "disable", "inspector").exit_code == 0
    before = table_counts(engine)
    result = runner(*command)
    assert result.exit_code == 2 and "disabled" in result.output, result.output
    assert "Traceback" not in result.output
    assert table_counts(engine) == before
