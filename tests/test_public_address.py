"""Absolute links never follow a client's ``Host``: every GET of ``app.url_map`` (both backends).

With ``GRIDMAP_PUBLIC_URL`` set, the OGC API's ``links``, the paging
``Link`` headers and the OpenAPI ``servers`` are below it whatever ``Host``
the request names; without it, ``X-Forwarded-Host``/``-Proto`` are never
read.  A redirect to this site is relative whatever the ``Host`` (Werkzeug's
slash redirects named it).  A ``GRIDMAP_PUBLIC_URL`` that is no http(s)
address stops the app from starting.
"""

import pytest

from geodata.errors import ConfigError
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_http_surface import _rules, _samples, _url
from webmap import create_app

PUBLIC = "https://gridmap.example.cn/gm"
EVIL = "evil.example"


def _answers(app, token, samples, headers):
    """``(url, answer text with its headers)`` of every GET route, as the admin."""
    client = app.test_client()
    for rule in _rules(app):
        if "GET" not in rule.methods:
            continue
        url = _url(rule, samples)
        for query in ("", "?limit=1"):
            response = client.get(url + query,
                                  headers={"Authorization": f"Bearer {token}", **headers})
            text = response.get_data().decode("utf-8", "replace") + str(response.headers)
            response.close()
            yield url + query, response, text


def test_links_are_below_the_public_url_whatever_the_host(api, engine, db_url):  # noqa: F811
    samples = _samples(api, engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "PUBLIC_URL": PUBLIC})
    try:
        linked = 0
        for url, response, text in _answers(app, api.tokens["admin"], samples,
                                            {"Host": EVIL, "X-Forwarded-Host": EVIL}):
            assert response.status_code < 500, url
            assert EVIL not in text, url
            linked += PUBLIC + "/" in text
        # the OGC API pages and every paged list link to the public address
        assert linked > 10
        landing = app.test_client().get("/ogcapi/?f=json", headers={"Host": EVIL}).json
        assert {link["href"].split("?")[0] for link in landing["links"]} >= {
            f"{PUBLIC}/ogcapi/", f"{PUBLIC}/ogcapi/conformance"}
        page = app.test_client().get("/api/parks/T/grids?limit=1", headers={
            "Authorization": f"Bearer {api.tokens['admin']}", "Host": EVIL})
        assert page.headers["Link"].startswith(f"<{PUBLIC}/api/parks/T/grids?")
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_forwarded_headers_are_never_read(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    for url, response, text in _answers(api.app, api.tokens["admin"], samples, {
            "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "javascript",
            "X-Forwarded-Prefix": "/" + EVIL, "Forwarded": f"host={EVIL}"}):
        assert response.status_code < 500, url
        assert EVIL not in text and "javascript:" not in text, url


def test_redirects_on_this_site_are_relative_whatever_the_host(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    client = api.client()
    redirects = set()
    for rule in _rules(api.app):
        url = _url(rule, samples)
        for variant in {url, url.rstrip("/"), url + "/", url + "?x=1"}:
            for host in (EVIL, "evil.example/<x>", "[::1"):
                for method in ("GET", "POST"):
                    response = client.open(variant or "/", method=method, headers={"Host": host})
                    response.close()
                    location = response.headers.get("Location")
                    if location is None:
                        continue
                    assert location.startswith("/") and not location.startswith("//"), (
                        variant, host, location)
                    redirects.add(response.status_code)
    assert {302, 308} <= redirects  # a page to the login form, /m to /m/


@pytest.mark.parametrize("value", ["gridmap.example.cn", "ftp://gridmap.example.cn",
                                   "https://user:pw@gridmap.example.cn", "https://x.cn/?q=1"])
def test_a_public_url_that_is_no_address_stops_the_app(db_url, value):
    with pytest.raises(ConfigError, match="GRIDMAP_PUBLIC_URL"):
        create_app({"DATABASE_URL": db_url, "PUBLIC_URL": value})
