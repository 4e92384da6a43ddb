"""After logout, the browser shows nothing of the session: the back button (headless Chromium).

Answers to a logged-in user are ``Cache-Control: private, no-store``
(:mod:`webmap.security`), so going back after logging out asks the server
again, which answers with the login form, instead of showing the last user's
ledger from the browser's cache.
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.browser import LiveServer, chrome  # noqa: F401
from tests.ledger_helpers import PASSWORDS, build_park, lonlat

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
        chrome.get(f"{server.url}/login?next=/parks/T/ledger")
        chrome.find_element(By.NAME, "username").send_keys("viewer")
        chrome.find_element(By.NAME, "password").send_keys(PASSWORDS["viewer"])
        chrome.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
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
