"""Every page in Chromium: one layout, a navigation bar that reaches every page, phone widths.

Each page is loaded at 1280 px and, with mobile emulation, at 375 px
(screenshots in ``test-artifacts/pages-*.png``); at 375 px the document must
not scroll sideways.  The bar shows each page only to the roles that may
open it, and following its links reaches every page from every other one.
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from geodata.services.users import DEMO_ACCOUNTS
from tests.browser import (chrome, demo_url, live_server, screenshot, submit_login,  # noqa: F401
                           severe_console_errors, wait_ready)

pytestmark = pytest.mark.browser

PARK = "FGKFQ"
#: The pages of the demo park: name → path.
PAGES = {
    "parks": "/",
    "map": f"/parks/{PARK}/map",
    "grid": f"/parks/{PARK}/grids/{PARK}-001",
    "enterprise": f"/parks/{PARK}/enterprises/9141162149432352X9",  # in grid 001, a host
    "ledger": f"/parks/{PARK}/ledger",
    "requests": f"/parks/{PARK}/requests",
    "dashboard": f"/parks/{PARK}/dashboard",
    "weekly": f"/parks/{PARK}/weekly",
    "assessment": f"/parks/{PARK}/assessment",
    "editor": f"/parks/{PARK}/edit",
    "ogcapi": "/ogcapi/",
    "login": "/login",
}
#: Nav bar entries (link ids) each role sees on a park page.
NAV_BY_ROLE = {
    None: {"nav-map", "nav-login"},
    "viewer": {"nav-map", "nav-ledger", "nav-requests", "nav-dashboard", "nav-weekly",
               "nav-user", "nav-logout"},
    "admin": {"nav-map", "nav-ledger", "nav-requests", "nav-dashboard", "nav-weekly",
              "nav-assessment", "nav-editor", "nav-user", "nav-logout"},
}


@pytest.fixture
def browser(chrome):  # noqa: F811
    """The shared Chromium, logged out and at desktop size before and after."""
    chrome.delete_all_cookies()
    chrome.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    yield chrome
    chrome.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    chrome.delete_all_cookies()


def log_in(driver, base, username):
    submit_login(driver, base, username, DEMO_ACCOUNTS[username][1])
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "nav-user"))


def open_page(driver, base, name):
    driver.get(base + PAGES[name])
    if name == "map":
        wait_ready(driver)
    elif name == "enterprise":
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.getElementById('ent-map').dataset.ready"))
    elif name == "editor":
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return !!(window.gridEditor && window.gridEditor.idle())"))


def nav_ids(driver):
    return {e.get_attribute("id") for e in driver.find_elements(
        By.CSS_SELECTOR, ".gm-topnav [id^=nav-]")}


def nav_paths(driver, base):
    return {e.get_attribute("href")[len(base):] for e in driver.find_elements(
        By.CSS_SELECTOR, ".gm-topnav a") if e.get_attribute("href").startswith(base)}


def test_every_page_lays_out_at_1280_and_375_px(browser, live_server, demo_url):  # noqa: F811
    base = live_server.url.rstrip("/")
    backend = "postgis" if demo_url.startswith("postgresql") else "spatialite"
    log_in(browser, base, "admin")
    for width, height, mobile in ((1280, 900, False), (375, 812, True)):
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        for name in PAGES:
            open_page(browser, base, name)
            assert browser.find_elements(By.CSS_SELECTOR, "nav.gm-topnav"), name
            screenshot(browser, f"pages-{name}-{width}-{backend}")
            scroll, client, inner = browser.execute_script(
                "var e = document.documentElement;"
                "return [e.scrollWidth, e.clientWidth, window.innerWidth];")
            assert inner == width, (name, inner)
            assert scroll <= client, f"{name} scrolls sideways at {width} px: {scroll} > {client}"
            # the bar stays one row, inside the window
            bar = browser.find_element(By.CSS_SELECTOR, "nav.gm-topnav").rect
            assert bar["x"] == 0 and bar["width"] <= width and bar["height"] <= 48, (name, bar)
            assert severe_console_errors(browser) == [], name


@pytest.mark.parametrize("role", [None, "viewer", "admin"])
def test_nav_shows_each_page_to_the_roles_that_may_open_it(browser, live_server,  # noqa: F811
                                                           role):
    base = live_server.url.rstrip("/")
    if role:
        log_in(browser, base, role)
    for name in ("map", "grid", "ledger", "requests", "dashboard", "editor"):
        if role is None and name not in ("map", "grid"):
            browser.get(base + PAGES[name])
            # pages that need a login send the visitor to the login form, with the bar
            assert browser.current_url.startswith(base + "/login")
            assert "nav-login" in nav_ids(browser)
            continue
        if role == "viewer" and name == "editor":
            continue  # the editor answers 403 to a viewer, which the bar does not offer
        open_page(browser, base, name)
        assert nav_ids(browser) == NAV_BY_ROLE[role], (role, name)
        if role:
            assert browser.find_element(By.ID, "nav-user").text.startswith(f"演示{role}")


def test_nav_reaches_every_page_from_every_page(browser, live_server):  # noqa: F811
    base = live_server.url.rstrip("/")
    log_in(browser, base, "admin")
    links = {}
    for name in PAGES:
        open_page(browser, base, name)
        links[name] = nav_paths(browser, base) | {
            e.get_attribute("href")[len(base):] for e in browser.find_elements(
                By.CSS_SELECTOR, "main a[href]") if e.get_attribute("href").startswith(base)}
    by_path = {path: name for name, path in PAGES.items()}

    def page_of(path):
        path = path.split("?")[0]
        if path.startswith(f"/parks/{PARK}/enterprises/"):
            return "enterprise"
        return "grid" if path.startswith(f"/parks/{PARK}/grids/") else by_path.get(path)

    for start in PAGES:
        if start == "login":
            continue  # a logged-in user is not sent to the login form
        seen, todo = {start}, [start]
        while todo:
            for path in links[todo.pop()]:
                name = page_of(path)
                if name and name not in seen:
                    seen.add(name)
                    todo.append(name)
        assert seen >= set(PAGES) - {"login"}, (start, set(PAGES) - seen)
    # and every park page's bar leads back to the park list and the park's map
    for name in PAGES:
        if name not in ("parks", "login", "ogcapi"):
            assert {"/", PAGES["map"]} <= links[name], name
