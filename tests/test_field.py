"""The field app's server side on both backends: shell, manifest, service worker, fault switch.

The browser behaviour (offline queue, sync, conflicts) is in
``tests/test_browser_field.py``; these tests check what the server promises it.
"""

import json
import re

import pytest
import sqlalchemy as sa

from geodata.errors import ConfigError
from geodata.models import Hazard, HazardEvent
from tests.conftest import table_counts
from tests.ledger_helpers import build_park, lonlat
from webmap import create_app


def _app(db_url, tmp_path, **config):
    return create_app({"DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "data"), **config})


@pytest.fixture
def field(db_url, engine, tmp_path):
    tokens = build_park(engine)
    app = _app(db_url, tmp_path, TESTING=True)
    app.tokens = tokens
    yield app
    app.extensions["gridmap.engine"].dispose()


def login(client, username, password):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": token, "next": "/m/"})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def test_shell_needs_a_login_and_keeps_the_nonce_csp(field):
    client = field.test_client()
    anonymous = client.get("/m/")
    assert anonymous.status_code == 302 and "/login?next=/m/" in anonymous.headers["Location"]
    login(client, "inspector", "inspector-pass-123")
    page = client.get("/m/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert re.search(r"script-src 'self' 'nonce-[^']+'", csp)
    assert "img-src 'self' data: blob:" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    # no inline script at all: every <script> loads a file of this site
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)
    assert 'rel="manifest" href="/m/manifest.webmanifest"' in html
    assert "/assets/vendor/leaflet/leaflet.js" in html
    for accept in re.findall(r'<input type="file"[^>]*>', html):
        assert 'accept="image/*"' in accept and "capture" in accept


def test_manifest_icons_and_service_worker(field):
    client = field.test_client()
    manifest = client.get("/m/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.mimetype == "application/manifest+json"
    data = json.loads(manifest.get_data())
    assert (data["scope"], data["start_url"], data["display"]) == ("/m/", "/m/", "standalone")
    sizes = set()
    for icon in data["icons"]:
        with client.get(icon["src"]) as png:
            assert png.status_code == 200 and png.mimetype == "image/png"
            assert png.get_data()[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.add(icon["sizes"])
    assert {"192x192", "512x512"} <= sizes
    sw = client.get("/m/sw.js")
    assert sw.status_code == 200 and sw.mimetype == "text/javascript"
    assert sw.headers["Cache-Control"] == "no-cache"
    body = sw.get_data(as_text=True)
    cache = re.search(r'const CACHE = "(gridmap-field-[0-9a-f]{12})";', body).group(1)
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", body).group(1))
    assert shell[0] == "/m/" and "/m/static/field.js" in shell
    for url in shell[1:]:  # everything the worker stores at install is served
        with client.get(url) as response:
            assert response.status_code == 200, url
    # the cache name follows the shell's files: the same within one app
    assert cache in client.get("/m/sw.js").get_data(as_text=True)


def test_session_lists_the_users_parks_and_vocabularies(field):
    client = field.test_client()
    assert client.get("/m/session.json").status_code == 401
    login(client, "member", "member-pass-123")
    data = client.get("/m/session.json").get_json()
    assert data["user"] == {"name": "member", "role": "inspector",
                            "display_name": data["user"]["display_name"]}
    assert data["grid_limited"] is True and [p["code"] for p in data["parks"]] == ["T"]
    assert "消防安全" in data["categories"] and data["states"]["closed"] == "销号"
    assert data["csrf"]


def _post_hazard(client, token, key):
    lon, lat = lonlat("T-004")
    return client.post("/api/parks/T/hazards", headers={
        "Authorization": f"Bearer {token}", "Idempotency-Key": key},
        json={"lon": lon, "lat": lat, "category": "消防安全", "description": key})


def test_fault_switch_drops_answers_after_commit(db_url, engine, tmp_path):
    tokens = build_park(engine)
    app = _app(db_url, tmp_path, TESTING=True, FAULT_DROP_RESPONSE_RATE=0.5, FAULT_SEED=7)
    try:
        client = app.test_client()
        before = table_counts(engine)["hazards"]
        answers = [_post_hazard(client, tokens["inspector"], f"k{i}") for i in range(20)]
        dropped = [a for a in answers if a.status_code == 502]
        assert 0 < len(dropped) < 20 and all(a.get_data() == b"" for a in dropped)
        assert app.extensions["gridmap.faults.dropped"] == len(dropped)
        # every request committed, whether its answer arrived or not
        with engine.connect() as conn:
            stored = conn.execute(sa.select(Hazard.description)).scalars().all()
            events = conn.execute(sa.select(sa.func.count()).select_from(HazardEvent)).scalar()
        assert table_counts(engine)["hazards"] == before + 20
        assert {f"k{i}" for i in range(20)} <= set(stored)
        assert events >= 20
        # reads are never dropped
        assert all(client.get("/api/hazards?park=T", headers={
            "Authorization": f"Bearer {tokens['viewer']}"}).status_code == 200
            for _ in range(10))
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_fault_switch_is_inert_outside_tests(db_url, engine, tmp_path):
    tokens = build_park(engine)
    app = _app(db_url, tmp_path, FAULT_DROP_RESPONSE_RATE=1.0)
    try:
        assert "gridmap.faults.dropped" not in app.extensions
        assert _post_hazard(app.test_client(), tokens["inspector"], "a").status_code == 201
    finally:
        app.extensions["gridmap.engine"].dispose()
    armed = _app(db_url, tmp_path, FAULTS_ENABLED=True, FAULT_DROP_RESPONSE_RATE=1.0)
    try:
        assert _post_hazard(armed.test_client(), tokens["inspector"], "b").status_code == 502
    finally:
        armed.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("rate", ["1.5", "-0.1", "nan", "x"])
def test_fault_rate_must_be_a_share(rate, monkeypatch, tmp_path):
    monkeypatch.setenv("GRIDMAP_FAULT_DROP_RESPONSE_RATE", rate)
    with pytest.raises(ConfigError, match="GRIDMAP_FAULT_DROP_RESPONSE_RATE"):
        create_app({"DATA_DIR": str(tmp_path)})
