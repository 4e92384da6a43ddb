"""The map and grid pages as served (no browser): local assets only, CSP with a nonce,
user text escaped, base map configurable."""

import re
from html.parser import HTMLParser

import pytest

from tests.browser import (PAYLOAD_NAME, PAYLOAD_NOTE, PAYLOAD_STAFF, demo_url,  # noqa: F401
                           load_payload_park)
from webmap import create_app


class Assets(HTMLParser):
    """Collect script src, stylesheet href and inline script bodies of a page."""

    def __init__(self):
        super().__init__()
        self.urls, self.scripts, self.nonces, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = True
            self.nonces.append(attrs.get("nonce"))
            if attrs.get("src"):
                self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        if tag in ("img", "iframe") and attrs.get("src"):
            self.urls.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(html):
    parser = Assets()
    parser.feed(html)
    return parser


@pytest.fixture
def demo_client(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


def test_map_page_uses_only_local_assets(demo_client):
    response = demo_client.get("/parks/FGKFQ/map")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = parse(html)
    assert page.urls, "no assets found"
    external = [u for u in page.urls if re.match(r"^(https?:)?//", u)]
    assert external == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    for url in page.urls:
        if url.startswith("data:"):
            continue
        with demo_client.get(url) as asset:
            assert asset.status_code == 200, url
            assert len(asset.data) > 100, url
    names = " ".join(page.urls)
    assert "leaflet.js" in names and "leaflet.markercluster.js" in names
    assert "jquery" not in names.lower() and "bootstrap" not in names.lower()


def test_csp_header_with_nonce_on_every_script(demo_client):
    first = demo_client.get("/parks/FGKFQ/map")
    second = demo_client.get("/parks/FGKFQ/map")
    csp = first.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "script-src 'self' 'nonce-" in csp and "'unsafe-inline'" not in csp.split(
        "script-src")[1].split(";")[0]
    assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert nonce not in second.headers["Content-Security-Policy"]
    page = parse(first.get_data(as_text=True))
    assert page.nonces and all(n == nonce for n in page.nonces)
    assert demo_client.get("/api/parks").headers["Content-Security-Policy"]
    assert first.headers["X-Content-Type-Options"] == "nosniff"


def test_map_page_layers_and_legend(demo_client):
    html = demo_client.get("/parks/FGKFQ/map").get_data(as_text=True)
    for layer in ("Grids", "Sub-grids", "Hidden units", "Open hazards", "Park boundary"):
        assert layer in html
    assert "L.control.layers" in html and 'id="gm-legend"' in html
    # the sub-grid group exists but is not added to the map at start
    sub = re.search(r'Sub-grids" : (feature_group_\w+)', html).group(1)
    assert f"{sub}.addTo(" not in html
    assert 'data-value="60"' in html  # the overview counts are rendered


def test_tiles_setting(demo_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GRIDMAP_TILES", "https://{s}.tile.example.org/{z}/{x}/{y}.png")
    app = create_app({"DATABASE_URL": demo_url})
    try:
        response = app.test_client().get("/parks/FGKFQ/map")
        html = response.get_data(as_text=True)
        assert "tile.example.org/{z}/{x}/{y}.png" in html
        assert "https://*.tile.example.org" in response.headers["Content-Security-Policy"]
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_user_text_is_escaped_on_the_server(db_url):
    from geodata.storage import make_engine

    engine = make_engine(db_url)
    load_payload_park(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": db_url})
    client = app.test_client()
    try:
        map_html = client.get("/parks/X/map").get_data(as_text=True)
        # user text never reaches the map page's markup or scripts: it arrives as JSON
        assert PAYLOAD_NAME not in map_html and "<b>X</b>" not in map_html
        assert "&lt;b&gt;X&lt;/b&gt;" in map_html
        grid_html = client.get("/parks/X/grids/X-001").get_data(as_text=True)
        for raw in (PAYLOAD_NAME, PAYLOAD_STAFF):
            assert raw not in grid_html
        assert "&lt;img src=x onerror=alert(1)&gt;" in grid_html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in grid_html
        assert PAYLOAD_NOTE in grid_html  # harmless as text, shown literally
        hazards = client.get("/api/parks/X/hazards").get_json()
        assert PAYLOAD_NOTE in [f["properties"]["description"] for f in hazards["features"]]
        index = client.get("/").get_data(as_text=True)
        assert "<b>X</b>" not in index
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_grid_page_lists_staff_enterprises_and_hazards(demo_client):
    summary = demo_client.get("/api/parks/FGKFQ/summaries/FGKFQ-022").get_json()
    html = demo_client.get("/parks/FGKFQ/grids/FGKFQ-022").get_data(as_text=True)
    for person in summary["staff"]:
        assert person["name"] in html and person["phone"] in html
    assert html.count('<tr class="gm-hidden-row">') == summary["hidden_count"]
    assert f'id="grid-open">{summary["open_hazards"]}<' in html
