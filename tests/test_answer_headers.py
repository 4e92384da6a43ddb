"""The media type of every answer is well formed: every GET of ``app.url_map``, every format.

``send_file`` adds ``; charset=utf-8`` to a text type itself, so a type given
with its charset went out as ``text/csv; charset=utf-8; charset=utf-8`` (the
ledger and request exports, the weekly report's HTML).  Every text answer
names UTF-8 once, and every download says ``nosniff``.
"""

from werkzeug.http import parse_options_header

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
