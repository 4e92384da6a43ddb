"""Sessions that ended, and what browsers keep: every route of ``app.url_map`` (both backends).

* An ended session is refused on every route, whatever ended it (logout,
  ``users disable``, ``set-password``, ``set-role``, ``revoke-token``): a
  cookie copied before gets exactly what a visitor with no cookie gets (a
  login redirect, 401, or the public page without the account's menu), and
  a write changes nothing.  Tokens of a disabled or revoked account are 401
  everywhere.
* Nothing answered to a logged-in user (cookie or token) may be kept by a
  browser or a proxy (``Cache-Control: private, no-store``), except the
  app's own files and what is revalidated on every use (photos, tiles).

The routes and their arguments come from ``tests/test_grid_scope.py``, so a
new route is walked here as soon as it is classified there.
"""

import re

import pytest
from click.testing import CliRunner
from flask import url_for

from geodata.cli import main

from tests.conftest import stored_snapshot
from tests.scope_helpers import build_scopes
from tests.test_csrf import _login
from tests.test_grid_scope import QUERY, arguments, body_for
from webmap import create_app
from webmap.auth import CookieSessions
from webmap.security import ASSET_ENDPOINTS

#: Revalidated with the login on every use (``private, no-cache`` and an ETag).
REVALIDATED = {"photos_api.photo", "photos_api.thumbnail", "api.grid_tile"}


def _requests(app, ids, methods):
    """``(endpoint, method, url, body)`` for every route of ``app`` with a method in ``methods``.

    ``body()`` makes the request's keywords afresh (an upload's file is read once).
    """
    s = {**ids["own"], "enterprise_id": 1}
    out = []
    for rule in app.url_map.iter_rules():
        query = QUERY.get(rule.endpoint, "").format(park=s["park"])
        files = {"static": {"filename": "gridmap.css"}, "field.static": {"filename": "field.js"},
                 "maps.vendor": {"package": "leaflet", "filename": "leaflet.js"}}
        for args in ([files[rule.endpoint]] if rule.endpoint in files
                     else arguments(rule, s, "own")):
            with app.test_request_context():
                url = url_for(rule.endpoint, **args) + (f"?{query}" if query else "")
            for method in sorted(rule.methods & methods):
                out.append((rule.endpoint, method, url, lambda e=rule.endpoint, m=method: (
                    body_for(e, s, "own") if m != "GET" else {})))
    return out


@pytest.fixture
def scoped(db_url, engine, tmp_path):
    """The two parks of :mod:`tests.scope_helpers`; yields ``(app, tokens, ids)``."""
    tokens, ids = build_scopes(engine, tmp_path / "photos")
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    yield app, tokens, ids
    app.extensions["gridmap.engine"].dispose()


def test_no_answer_to_a_logged_in_user_is_kept_by_the_browser(scoped):
    app, tokens, ids = scoped
    browser = app.test_client()
    _login(browser, "admin", "admin-pass-123")
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    walked = set()
    for endpoint, _, url, _ in _requests(app, ids, {"GET"}):
        for client, headers in ((browser, {}), (app.test_client(), bearer)):
            with client.get(url, headers=headers) as got:
                where = (endpoint, url, got.status_code, headers)
                assert got.status_code < 500, where
                cache = got.headers.get("Cache-Control", "")
                if endpoint in ASSET_ENDPOINTS:
                    assert "private" not in cache and "no-store" not in cache, where
                elif endpoint in REVALIDATED and got.status_code == 200:
                    assert cache == "private, no-cache" and got.headers["ETag"], where
                else:
                    assert cache == "private, no-store", (where, cache)
        walked.add(endpoint)
    assert {"ledger_pages.ledger_file", "request_pages.requests_file", "weekly_pages.weekly_file",
            "field.session_info", "visits_api.worklist", "ledger_pages.ledger_page"} <= walked
    # the login form (its CSRF token is in the session) and the login itself
    anonymous = app.test_client()
    form = anonymous.get("/login")
    assert form.headers["Cache-Control"] == "private, no-store"
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    logged_in = anonymous.post("/login", data={"username": "viewer", "password": "viewer-pass-123",
                                               "csrf_token": token})
    assert logged_in.status_code == 302
    assert logged_in.headers["Cache-Control"] == "private, no-store"
    # a visitor's public map may be cached: it is the same for every visitor
    assert "no-store" not in app.test_client().get("/parks/T/map").headers.get(
        "Cache-Control", "")


def _end_by_logout(client, runner, db_url):
    page = client.get("/parks/T/dashboard").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


ENDINGS = {
    "logout": _end_by_logout,
    "disable": lambda client, runner, db_url: runner("users", "disable", "inspector"),
    "set-role": lambda client, runner, db_url: runner("users", "set-role", "inspector", "viewer"),
    "revoke-token": lambda client, runner, db_url: runner("users", "revoke-token", "inspector"),
    "set-password": lambda client, runner, db_url: CliRunner().invoke(
        main, ["--db", db_url, "users", "set-password", "inspector"],
        input="fresh-inspector-7\nfresh-inspector-7\n"),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_an_ended_session_is_a_visitor_on_every_route(scoped, runner, engine, db_url, ending):
    app, tokens, ids = scoped
    browser = app.test_client()
    _login(browser, "inspector", "inspector-pass-123")
    captured = browser.get_cookie("session").value
    assert browser.get("/m/session.json").status_code == 200
    result = ENDINGS[ending](browser, runner, db_url)
    assert result is None or result.exit_code == 0, result.output
    stale = app.test_client()
    stale.set_cookie("session", captured)
    bearer = {"Authorization": f"Bearer {tokens['inspector']}"}
    token_ended = ending in ("disable", "revoke-token")
    before = stored_snapshot(engine)
    count = 0
    for endpoint, method, url, body in _requests(app, ids, {"GET", "POST", "PUT", "PATCH",
                                                            "DELETE"}):
        stale.set_cookie("session", captured)  # a refused cookie is cleared: present it again
        where = (ending, method, url)
        got = stale.open(url, method=method, **body())
        visitor = app.test_client().open(url, method=method, **body())
        assert got.status_code == visitor.status_code, (where, got.status_code)
        if got.status_code == 302:
            assert got.headers["Location"] == visitor.headers["Location"], where
        if got.mimetype == "text/html":
            assert 'id="nav-logout"' not in got.get_data(as_text=True), where
        if token_ended and endpoint not in ASSET_ENDPOINTS:
            refused = app.test_client().open(url, method=method, headers=bearer, **body())
            # the two form posts check their CSRF token first
            expected = ((400, "csrf_failed") if method == "POST" and endpoint in ("login", "logout")
                        else (401, "invalid_token"))
            assert (refused.status_code, refused.get_json()["error"]["code"]) == expected, where
        got.close()
        visitor.close()
        count += 1
    assert count > 80
    assert stored_snapshot(engine) == before


def test_a_request_made_for_another_account_is_refused_on_every_route(scoped, engine):
    """``X-Gridmap-User`` (the field app's queue) must name the logged-in user, or 401."""
    app, tokens, ids = scoped
    browser = app.test_client()
    _login(browser, "inspector", "inspector-pass-123")
    before = stored_snapshot(engine)
    count = 0
    for endpoint, method, url, body in _requests(app, ids, {"GET", "POST", "PUT", "PATCH",
                                                            "DELETE"}):
        for named in ("member", "%ff", "", "inspector%00"):
            got = browser.open(url, method=method, headers={"X-Gridmap-User": named}, **body())
            where = (method, url, named)
            if method == "POST" and endpoint in ("login", "logout"):
                assert got.status_code == 400, where  # their CSRF check comes first
                continue
            assert got.status_code == 401, where
            assert got.get_json()["error"]["code"] == "account_changed", where
            count += 1
    assert count > 300
    assert stored_snapshot(engine) == before
    # the same requests naming the user who is logged in are answered as usual
    ok = browser.get("/api/me/worklist?park=T", headers={"X-Gridmap-User": "inspector"})
    assert ok.status_code == 200
    assert browser.get("/m/session.json").get_json()["user"]["name"] == "inspector"


def test_every_html_answer_carries_a_script_policy(scoped):
    """Every page, for visitors and users alike, runs only the app's own scripts (CSP)."""
    app, tokens, ids = scoped
    browser = app.test_client()
    _login(browser, "admin", "admin-pass-123")
    pages = 0
    for client in (app.test_client(), browser):
        for endpoint, _, url, _ in _requests(app, ids, {"GET"}):
            for target in (url, url.replace("f=json", "f=html")):
                with client.get(target) as got:
                    if got.mimetype != "text/html":
                        continue
                    policy = dict(part.strip().split(" ", 1) for part in
                                  got.headers["Content-Security-Policy"].split(";"))
                    scripts = policy["script-src"]
                    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
                    assert scripts == "'none'" or scripts.startswith("'self' 'nonce-"), target
                    assert policy["object-src" if "object-src" in policy else "default-src"] in (
                        "'none'", "'self'") and policy["base-uri"] == "'none'", target
                    assert policy["frame-ancestors"] == "'none'", target
                    pages += 1
    assert pages > 40


def test_a_request_without_the_cookie_opens_the_session_flask_would(scoped):
    """``CookieSessions`` skips the signer only when no cookie came; the session is Flask's."""
    from flask import request
    from flask.sessions import SecureCookieSessionInterface

    app, tokens, _ = scoped
    assert isinstance(app.session_interface, CookieSessions)
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    flask_own = SecureCookieSessionInterface()
    with app.test_request_context("/api/hazards", headers=bearer):
        ours = app.session_interface.open_session(app, request)
        theirs = flask_own.open_session(app, request)
        assert type(ours) is type(theirs)
        assert dict(ours) == dict(theirs) == {} and not ours.modified
    browser = app.test_client()
    assert "Set-Cookie" not in browser.get("/api/hazards", headers=bearer).headers
    # The empty session can be written (the login form's CSRF token), and the cookie written
    # is read back as Flask reads it: after the login the API knows the user without a token.
    assert "Set-Cookie" in browser.get("/login").headers
    assert browser.get("/api/hazards").status_code == 401
    _login(browser, "admin", "admin-pass-123")
    assert browser.get("/api/hazards").status_code == 200
    # A cookie that does not verify is an empty session, as in Flask: a visitor again.
    browser.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), "forged.cookie.value")
    assert browser.get("/api/hazards").status_code == 401
