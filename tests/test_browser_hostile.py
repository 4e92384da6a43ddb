"""Stored text is inert in the browser: every HTML page in headless Chromium (both backends).

``tests/test_hostile_text.py`` checks the HTML the server sends; this checks
what the browser makes of it once the pages' scripts have run (the map's
popups, the editor, the enterprise map, the field app's work list and queue
are built in the browser from JSON).  Every free-text column holds a marked
payload (:func:`tests.test_hostile_text.build_hostile`); every HTML route of
``app.url_map`` is opened as a visitor and as an admin (whose user name is
hostile too), and on each page:

* no dialog opened and no Content-Security-Policy violation was reported
  (an injected inline handler or script would be one);
* no element that only a payload could have made exists (``img[src=x]``, an
  ``on…`` attribute, an inline script that is not a JSON block);
* every marker in the page's text holds the stored value exactly, and the
  page shows the user text it is for.
"""

import pytest
import sqlalchemy as sa
from selenium.webdriver.support.ui import WebDriverWait

from geodata.models import Enterprise, Grid, Hazard, Photo, ServiceRequest, User, Visit
from geodata.storage import session_scope
from tests.browser import LiveServer, chrome, severe_console_errors, submit_login  # noqa: F401
from tests.test_browser_map import no_dialog
from tests.test_hostile_text import (HTML_PAGES, OGC, OGC_COLLECTIONS, PAGE_SHOWS, build_hostile,
                                     check_text, stored, urls)
from webmap import create_app

pytestmark = pytest.mark.browser

#: Each fits every column with its marker (32 characters); one per way out of a context
#: (markup, a script block, a template literal or a link).  Template syntax ({{7*7}}) is
#: the server's business: tests/test_hostile_text.py.
PAYLOADS = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)//",
            "javascript:${alert(3)}`"]

#: Script run on each page once it is ready: the text of every popup the page can open.
OPEN_POPUPS = """
    const out = [];
    if (!window.gridmap || !gridmap.map) { return out; }
    const grab = (x) => { x.openPopup(); const e = x.getPopup().getElement();
                          if (e) { out.push(e.textContent); } x.closePopup(); };
    const walk = (l) => { if (l.getPopup && l.getPopup()) { grab(l); }
                          else if (l.eachLayer) { l.eachLayer(walk); } };
    Object.values(gridmap.groups || {}).forEach((g) => {
        const on = gridmap.map.hasLayer(g); if (!on) { gridmap.map.addLayer(g); }
        walk(g); if (!on) { gridmap.map.removeLayer(g); } });
    Object.values(gridmap.grids || {}).forEach(walk);
    return out;"""

#: Elements and attributes that only a payload could have made (the map's own inline
#: scripts carry the response's nonce, which no stored text can know).
INJECTED = """
    return Array.from(document.querySelectorAll('img[src="x"], svg, script, *')).filter((e) =>
        (e.tagName === 'IMG' && e.getAttribute('src') === 'x') ||
        (e.tagName === 'SCRIPT' && !e.src && e.type !== 'application/json' &&
         !e.hasAttribute('nonce')) ||
        Array.from(e.attributes).some((a) => a.name.startsWith('on'))
    ).map((e) => e.outerHTML.slice(0, 120));"""

#: Per page, a condition meaning its scripts have drawn what they draw.
READY = {
    "maps.park_map": "return window.gridmap && gridmap.ready && gridmap.loads === 0 "
                     "&& !gridmap.scheduled",
    "editor.edit_page": "return !document.getElementById('ed-map') || "
                        "(window.gridEditor && gridEditor.idle())",
    "enterprises.page": "const m = document.getElementById('ent-map'); "
                        "return !m || Boolean(m.dataset.ready);",
    "field.shell": "return !location.pathname.startsWith('/m/') || (window.gridfield "
                   "&& gridfield.ready && gridfield.bundle && gridfield.syncs > 0)",
}


def _page_urls(app, ids):
    """``(endpoint, url)`` for every HTML page of ``app``: desk pages and OGC's HTML views."""
    out = []
    with app.test_request_context():
        for endpoint in sorted(HTML_PAGES):
            out += [(endpoint, u) for u in urls(endpoint, ids)]
        for endpoint in sorted(OGC - {"ogcapi.openapi"}):
            out += [(endpoint, u) for u in urls(endpoint, ids) if "f=html" in u]
    return out


def _log_in(driver, base, username, password):
    driver.delete_all_cookies()
    submit_login(driver, base, username, password)
    WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)


def _check(driver, endpoint, payload, where):
    """Wait for the page, check it is inert and exact; return the tags shown."""
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    if endpoint in READY:
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(READY[endpoint]))
    texts = [driver.title, driver.execute_script("return document.body.innerText")]
    texts += driver.execute_script(OPEN_POPUPS)
    no_dialog(driver)
    assert driver.execute_script(INJECTED) == [], where
    assert [e["message"] for e in severe_console_errors(driver)
            if "Content Security Policy" in e["message"]] == [], where
    seen = set()
    for text in texts:
        seen |= check_text(text, payload, html=False)
    return seen


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_page_keeps_hostile_text_inert_in_chromium(db_url, engine, tmp_path,
                                                         chrome, payload):  # noqa: F811
    build_hostile(engine, payload, tmp_path / "photos")
    with session_scope(engine) as session:
        ids = {"park": "T", "grids": session.execute(sa.select(Grid.code)).scalars().all(),
               "enterprises": session.execute(sa.select(Enterprise.credit_code)).scalars().all(),
               "hazards": [], "requests": [], "visits": [], "photos": [], "tiles": [],
               "features": [("parks", "T")] + [
                   (c, i) for c, model in (("grids", Grid), ("enterprises", Enterprise),
                                           ("hazards", Hazard))
                   for i in session.execute(sa.select(model.id)).scalars()]}
        admin = session.execute(sa.select(User.username).where(User.role == "admin")).scalar()
        assert session.execute(sa.select(sa.func.count()).select_from(Photo)).scalar()
        assert session.execute(sa.select(sa.func.count()).select_from(ServiceRequest)).scalar()
        assert session.execute(sa.select(sa.func.count()).select_from(Visit)).scalar()
    assert admin == stored("w", payload) + "5"  # the admin's own name is hostile too
    app = create_app({"DATABASE_URL": db_url})
    server = LiveServer(db_url, env={"GRIDMAP_DATA_DIR": str(tmp_path)})
    try:
        pages = _page_urls(app, ids)
        assert {e for e, _ in pages} == HTML_PAGES | OGC - {"ogcapi.openapi"}  # JSON only
        assert set(OGC_COLLECTIONS) <= {u.split("/")[3] for e, u in pages
                                        if e == "ogcapi.items"}
        chrome.delete_all_cookies()
        chrome.get_log("browser")
        for endpoint, url in pages:  # as a visitor (the login form for the desk pages)
            chrome.get(server.url + url)
            _check(chrome, endpoint, payload, ("visitor", url))
        _log_in(chrome, server.url, admin, "admin-pass-123")
        shown = {}
        for endpoint, url in pages:
            chrome.get(server.url + url)
            shown.setdefault(endpoint, set()).update(
                _check(chrome, endpoint, payload, ("admin", url)))
        for endpoint, tags in PAGE_SHOWS.items():
            assert tags <= shown[endpoint], (endpoint, tags - shown[endpoint])
        # the field app's work list: the open hazard's category and description, the user
        assert {"l", "m", "x"} <= shown["field.shell"], shown["field.shell"]
        # the map's popups: enterprise, grid and hazard text built in the browser
        assert {"e", "c", "l", "m", "i"} <= shown["maps.park_map"], shown["maps.park_map"]
    finally:
        chrome.delete_all_cookies()
        server.stop()
        app.extensions["gridmap.engine"].dispose()
