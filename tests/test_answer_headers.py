"""Headers every answer owes its client: every route of ``app.url_map`` (both backends).

The media type of every GET answer, in every format, is well formed:

``send_file`` adds ``; charset=utf-8`` to a text type itself, so a type given
with its charset went out as ``text/csv; charset=utf-8; charset=utf-8`` (the
ledger and request exports, the weekly report's HTML).  Every text answer
names UTF-8 once, and every download says ``nosniff``.  Every 401, on any
route and method, carries the ``WWW-Authenticate: Bearer`` challenge.
"""

from werkzeug.http import parse_options_header

from tests.conftest import stored_snapshot
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_http_surface import _rules, _samples, _url

FORMATS = ("csv", "xlsx", "html", "pdf")


def test_every_answer_names_one_charset_and_downloads_are_not_sniffed(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    client = api.client()
    checked = 0
    for rule in _rules(api.app):
        if "GET" not in rule.methods:
            continue
        for fmt in FORMATS if "<fmt>" in rule.rule else FORMATS[:1]:
            url = _url(rule, {**samples, "fmt": fmt})
            response = client.get(url, headers={"Authorization": f"Bearer {api.tokens['admin']}"})
            response.close()
            header = response.headers.get("Content-Type", "")
            media, options = parse_options_header(header)
            assert header.lower().count("charset") <= 1, (url, header)
            if media.startswith("text/"):
                assert options.get("charset", "").lower() == "utf-8", (url, header)
            if response.status_code == 200 and "attachment" in response.headers.get(
                    "Content-Disposition", ""):
                assert response.headers.get("X-Content-Type-Options") == "nosniff", url
                checked += 1
    assert checked >= 6  # ledger, requests (csv, xlsx) and the weekly report (three formats)


def test_every_401_carries_its_bearer_challenge(api, engine):  # noqa: F811
    """RFC 9110: a 401 MUST say how to authenticate (it said nothing on any route)."""
    samples = _samples(api, engine)
    before = stored_snapshot(engine)
    challenged = set()
    for rule in _rules(api.app):
        url = _url(rule, samples)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for authorization, error in ((None, None), ("Bearer nope", "invalid_token"),
                                         ("Basic YWRtaW46eA==", "invalid_token")):
                headers = {"Authorization": authorization} if authorization else {}
                response = api.call(method, url, None, body={}, headers=headers)
                response.close()
                if response.status_code != 401:
                    continue
                challenge = response.headers.get("WWW-Authenticate", "")
                assert challenge.startswith('Bearer realm="gridmap"'), (method, url)
                assert ('error="invalid_token"' in challenge) == (error is not None), (
                    method, url, authorization)
                challenged.add((method, rule.rule))
    assert len(challenged) > 30
    assert stored_snapshot(engine) == before
