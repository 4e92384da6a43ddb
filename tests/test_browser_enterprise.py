"""The enterprise file (一企一档) in Chromium: the map draws the site, no JS error, links work."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import (chrome, demo_url, live_server, screenshot,  # noqa: F401
                           severe_console_errors)
from tests.test_browser_pages import log_in

pytestmark = pytest.mark.browser

PARK = "FGKFQ"
HOST = "9141162149432352X9"  # a demo enterprise of grid FGKFQ-001 with a hidden unit inside

#: Painted pixels of the map's canvas (Leaflet draws vectors there with preferCanvas).
PAINTED = """
var c = document.querySelector('#ent-map canvas');
if (!c) { return 0; }
var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, n = 0;
for (var i = 3; i < d.length; i += 4) { if (d[i] > 0) { n++; } }
return n;
"""


def open_file(driver, url):
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.getElementById('ent-map').dataset.ready"))


def test_the_enterprise_map_draws_and_links_lead_on(chrome, live_server, demo_url):  # noqa: F811
    base = live_server.url.rstrip("/")
    backend = "postgis" if demo_url.startswith("postgresql") else "spatialite"
    chrome.delete_all_cookies()
    log_in(chrome, base, "viewer")
    severe_console_errors(chrome)  # forget the login page's messages
    # from the grid page to the file, as a person would
    chrome.get(f"{base}/parks/{PARK}/grids/{PARK}-001")
    chrome.find_element(By.CSS_SELECTOR, f'#enterprise-table a[href$="{HOST}"]').click()
    WebDriverWait(chrome, 30).until(lambda d: d.execute_script(
        "var m = document.getElementById('ent-map'); return m && m.dataset.ready"))
    assert chrome.find_element(By.ID, "ent-code").text == HOST
    assert chrome.execute_script("return document.getElementById('ent-map').dataset.ready") \
        == "site"
    assert chrome.execute_script(PAINTED) > 500  # site, grid and hidden unit are painted
    screenshot(chrome, f"enterprise-{backend}")
    assert severe_console_errors(chrome) == []
    # the hidden unit inside it: its own file names this enterprise as its host
    unit = chrome.find_element(By.CSS_SELECTOR, "#ent-units a")
    unit.click()
    WebDriverWait(chrome, 30).until(lambda d: d.find_elements(By.ID, "ent-host"))
    open_file(chrome, chrome.current_url)
    host = chrome.find_element(By.CSS_SELECTOR, "#ent-host a")
    assert host.get_attribute("href").endswith(f"/parks/{PARK}/enterprises/{HOST}")
    assert chrome.execute_script(PAINTED) > 500
    assert severe_console_errors(chrome) == []
    chrome.delete_all_cookies()
