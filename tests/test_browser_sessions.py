"""A session in the browser ends where it ends (headless Chromium, both backends).

* Answers to a logged-in user are ``Cache-Control: private, no-store``
  (:mod:`webmap.security`), so going back after logging out asks the server
  again, which answers with the login form, instead of showing the last
  user's ledger from the browser's cache.
* A page opened for one user sends its writes for that user only
  (``X-Gridmap-User``): after another tab logged someone else in, they are
  refused instead of being recorded as the new user's.
"""

import pytest
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from geodata.models import Hazard
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.browser import LiveServer, chrome, submit_login, wait_ready  # noqa: F401
from tests.ledger_helpers import PASSWORDS, build_park, lonlat
from tests.test_browser_field import session_cookie
from tests.test_browser_hazard_log import click_map_at, toggle, wait_for

pytestmark = pytest.mark.browser

SECRET = "只给登录用户看的隐患描述"
#: Pages for logged-in users only, each showing the hazard's description.
PAGES = ["/parks/T/ledger", "/api/hazards?park=T"]


def _loaded(driver):
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    return driver.page_source


@pytest.mark.parametrize("page", PAGES)
def test_back_after_logout_shows_the_login_not_the_page(db_url, engine, chrome, page):  # noqa: F811
    build_park(engine)
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "T"),
                             point=ledger.parse_point(*lonlat("T-001")), category="其他",
                             description=SECRET, actor=ledger.Actor("admin", "admin"))
    server = LiveServer(db_url)
    try:
        chrome.delete_all_cookies()
        submit_login(chrome, server.url, "viewer", PASSWORDS["viewer"], "/parks/T/ledger")
        WebDriverWait(chrome, 60).until(lambda d: d.current_url.endswith("/parks/T/ledger"))
        chrome.get(server.url + page)
        assert SECRET in _loaded(chrome)
        chrome.get(server.url + "/parks/T/weekly")  # a page with the logout button
        _loaded(chrome)
        chrome.find_element(By.ID, "nav-logout").click()
        WebDriverWait(chrome, 60).until(lambda d: "/login" in d.current_url)
        chrome.back()  # the weekly page
        chrome.back()  # the page under test
        WebDriverWait(chrome, 60).until(lambda d: page.split("?")[0] in d.current_url
                                        or "/login" in d.current_url)
        assert SECRET not in _loaded(chrome)
    finally:
        chrome.delete_all_cookies()
        server.stop()


def test_a_map_page_of_one_user_cannot_log_as_the_next(db_url, engine, chrome):  # noqa: F811
    """The inspector's map stays open while another tab logs the supervisor in: a hazard
    logged on it is refused (401 ``account_changed``), not recorded as the supervisor's."""
    build_park(engine)
    server = LiveServer(db_url)
    try:
        chrome.delete_all_cookies()
        submit_login(chrome, server.url, "inspector", PASSWORDS["inspector"], "/parks/T/map")
        wait_ready(chrome)
        lon, lat = lonlat("T-001")
        chrome.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 17);", lon, lat)
        wait_ready(chrome)
        for layer in ("Enterprises", "Hidden units", "Open hazards"):
            toggle(chrome, layer, False)
        chrome.find_element(By.ID, "gm-log-start").click()
        click_map_at(chrome, lon, lat)
        wait_for(chrome, "return !document.getElementById('gm-log-form').hidden")
        Select(chrome.find_element(By.ID, "gm-log-category")).select_by_value("用电安全")
        chrome.find_element(By.ID, "gm-log-description").send_keys(SECRET)
        chrome.execute_cdp_cmd("Network.setCookie", {  # the other tab's login
            "name": "session", "value": session_cookie(server, "supervisor"),
            "url": server.url + "/", "path": "/", "httpOnly": True, "sameSite": "Lax"})
        chrome.find_element(By.ID, "gm-log-submit").click()
        wait_for(chrome, "return document.getElementById('gm-log-msg').classList"
                         ".contains('gm-error')")
        assert "account_changed" in chrome.find_element(By.ID, "gm-log-msg").text
        with session_scope(engine) as session:
            assert session.execute(sa.select(sa.func.count()).select_from(Hazard)).scalar() == 0
    finally:
        chrome.delete_all_cookies()
        server.stop()
