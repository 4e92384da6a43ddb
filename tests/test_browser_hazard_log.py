"""Logging and moving hazards on the park map in headless Chromium, on both backends.

These tests write, so they run against their own demo database per backend
(:func:`ledger_url`), never the shared read-only one of ``tests.browser``.
A user logs in through the real ``/login`` form; the hazard is logged by a
click on the map and checked in the database, the ledger API and page, the
map API's grid counts and the dashboard.
"""

import io
import json
import urllib.error
import urllib.request
from datetime import date, timedelta
from urllib.parse import urlsplit

import pytest
import shapely
import sqlalchemy as sa
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from geodata.models import Grid, Hazard, HazardEvent, Photo
from geodata.services import ledger
from geodata.services.hazards import locate
from geodata.services.parks import get_park
from geodata.storage import make_engine, session_scope
from tests.browser import (LiveServer, chrome, demo_database, screenshot,  # noqa: F401
                           severe_console_errors, submit_login, wait_ready)

pytestmark = pytest.mark.browser

PARK = "FGKFQ"
MAP = f"/parks/{PARK}/map"
WAIT = 60
#: A 1 x 1 PNG (the server checks the signature, not the name).
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f00050001ff89993d1d0000000049454e44"
                    "ae426082")  # a real 1 x 1 red pixel: uploads are decoded, not sniffed


@pytest.fixture(scope="session", params=["spatialite", "postgis"])
def ledger_url(request, tmp_path_factory):
    """A demo database per backend that these tests may write to."""
    return demo_database(request, tmp_path_factory, "gridmap_hazard_log")


@pytest.fixture(scope="session")
def ledger_server(ledger_url):
    """``gridmap serve`` on the writable demo database."""
    server = LiveServer(ledger_url)
    yield server
    server.stop()


@pytest.fixture
def browser(chrome):  # noqa: F811
    """The session's Chromium without cookies before and after the test."""
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield chrome
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})


def login(driver, server, username, password, next_path=MAP):
    """Log in with the real form and land on ``next_path``."""
    submit_login(driver, server.url, username, password, next_path)
    WebDriverWait(driver, WAIT).until(lambda d: urlsplit(d.current_url).path == next_path)


def get_json(server, path, driver=None):
    """GET a JSON document, with the browser's cookies when ``driver`` is given."""
    req = urllib.request.Request(server.url + path, headers={"Accept": "application/json"})
    if driver is not None:
        req.add_header("Cookie", "; ".join(f"{c['name']}={c['value']}"
                                           for c in driver.get_cookies()))
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_for(driver, script, *args, timeout=WAIT):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, *args))


def toggle(driver, name_part, on):
    """Switch an overlay of the layer control on or off."""
    for label in driver.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays label"):
        if name_part in label.text:
            box = label.find_element(By.TAG_NAME, "input")
            if box.is_selected() != on:
                box.click()
            return
    raise AssertionError(f"no layer {name_part!r}")


def click_map_at(driver, lon, lat):
    """Click the map at a lon/lat (pixel from Leaflet's latLngToContainerPoint)."""
    x, y = driver.execute_script(
        "const p = gridmap.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
        "return [p.x, p.y];", lon, lat)
    map_div = driver.find_element(By.CSS_SELECTOR, ".folium-map")
    ActionChains(driver).move_to_element_with_offset(
        map_div, int(x - map_div.size["width"] / 2), int(y - map_div.size["height"] / 2)
    ).click().perform()


def page_errors(driver, allowed=()):
    """Severe console messages, without the expected HTTP statuses in ``allowed``."""
    return [e for e in severe_console_errors(driver)
            if not any(f"status of {code}" in e["message"] for code in allowed)]


def count_hazards(url):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(Hazard)).scalar()
    finally:
        engine.dispose()


def a_grid(server, index=3):
    """A level-1 grid of the demo park (by code) and its anchor point."""
    grids = sorted(get_json(server, f"/api/parks/{PARK}/grids")["features"],
                   key=lambda f: f["id"])
    feature = grids[index]
    return feature["id"], feature["properties"]["anchor"]


def grid_open(server, code):
    return get_json(server, f"/api/parks/{PARK}/grids/{code}")["properties"]["open_hazards"]


def test_inspector_logs_a_hazard_on_the_map(ledger_server, ledger_url, browser, request,
                                            tmp_path):
    backend = request.node.callspec.params["ledger_url"]
    server, driver = ledger_server, browser
    target, (lon, lat) = a_grid(server)
    grid_before = grid_open(server, target)
    park_before = get_json(server, f"/api/parks/{PARK}")["properties"]["open_hazards"]

    login(driver, server, "inspector", "inspector-demo-2025")
    wait_ready(driver, WAIT)
    driver.get_log("browser")  # the login page's messages (favicon) are not the map's
    dashboard_before = get_json(server, f"/api/parks/{PARK}/dashboard", driver)
    assert driver.find_element(By.ID, "gm-log-start").is_displayed()
    assert driver.find_element(By.ID, "gm-log-form").is_displayed() is False

    # nothing but the grids may catch the click
    for layer in ("Enterprises", "Hidden units", "Open hazards"):
        toggle(driver, layer, False)
    driver.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 17);", lon, lat)
    wait_ready(driver, WAIT)
    driver.find_element(By.ID, "gm-log-start").click()
    assert driver.find_element(By.ID, "gm-log-start").get_attribute("aria-pressed") == "true"
    click_map_at(driver, lon, lat)
    wait_for(driver, "return !document.getElementById('gm-log-form').hidden")
    picked = driver.execute_script("return [gridmap.log.point.lon, gridmap.log.point.lat]")
    assert picked == pytest.approx([lon, lat], abs=5e-5)  # within a few pixels at zoom 17
    # in log mode the click picks a point; it opens no grid popup
    assert driver.execute_script("return document.querySelector('.gm-grid-popup')") is None

    # the category list is the server's
    options = [o.get_attribute("value") for o in
               Select(driver.find_element(By.ID, "gm-log-category")).options]
    assert options[1:] == list(ledger.CATEGORIES)
    Select(driver.find_element(By.ID, "gm-log-category")).select_by_value("用电安全")
    Select(driver.find_element(By.ID, "gm-log-level")).select_by_value("major")
    note = "配电箱门未关 <b>not bold</b>"
    driver.find_element(By.ID, "gm-log-description").send_keys(note)
    photo = tmp_path / "hazard.png"
    photo.write_bytes(PNG)
    driver.find_element(By.ID, "gm-log-photo").send_keys(str(photo))
    # an API error is shown as text in the panel and stores nothing
    before = count_hazards(ledger_url)
    west = "JSON.parse(document.getElementById('gridmap-config').textContent).bbox[0]"
    driver.execute_script(f"gridmap.log.point = {{lon: {west} - 0.05, lat: arguments[0]}};", lat)
    driver.find_element(By.ID, "gm-log-submit").click()
    wait_for(driver, "return document.getElementById('gm-log-msg').classList"
                     ".contains('gm-error')")
    assert "outside_park" in driver.find_element(By.ID, "gm-log-msg").text
    assert count_hazards(ledger_url) == before
    click_map_at(driver, lon, lat)  # pick the point again
    wait_for(driver, f"return gridmap.log.point.lon > {west}")
    picked = driver.execute_script("return [gridmap.log.point.lon, gridmap.log.point.lat]")

    toggle(driver, "Open hazards", True)
    wait_ready(driver, WAIT)
    driver.find_element(By.ID, "gm-log-submit").click()
    wait_for(driver, "return Boolean(gridmap.lastLogged) || "
                     "document.getElementById('gm-log-msg').classList.contains('gm-error')")
    message = driver.find_element(By.ID, "gm-log-msg").text
    logged = driver.execute_script("return gridmap.lastLogged")
    assert logged, message
    code = logged["code"]
    assert code in message

    # the marker is in the hazards layer, the grid and the panel count one more
    wait_for(driver, "return gridmap.groups.hazards.getLayers()"
                     ".some(m => m.hazardCode === arguments[0])", code)
    wait_ready(driver, WAIT)
    assert driver.execute_script(
        "return gridmap.grids[arguments[0]].feature.properties.open_hazards", target
    ) == grid_before + 1
    wait_for(driver, "return document.getElementById('gm-count-open-hazards').dataset.value"
                     " === String(arguments[0])", park_before + 1)
    assert driver.find_element(By.ID, "gm-count-open-hazards").text == str(park_before + 1)
    assert driver.find_element(By.ID, "gm-log-form").is_displayed() is False
    screenshot(driver, f"hazard-log-{backend}")
    assert page_errors(driver, allowed=(422,)) == []
    assert driver.execute_script("return gridmap.errors") == []

    # the database: category, level, note, state and the grid locate() gives for the point
    engine = make_engine(ledger_url)
    try:
        with session_scope(engine) as session:
            hazard = session.execute(sa.select(Hazard).where(Hazard.code == code)).scalar_one()
            park = get_park(session, PARK)
            (item,) = ledger.hazard_dicts(session, [hazard])
            point = shapely.Point(item["lon"], item["lat"])
            (grid_id,), _ = locate(session, park, [point])
            grid = session.get(Grid, hazard.grid_id)
            top = grid if grid.parent_id is None else session.get(Grid, grid.parent_id)
            photos = session.execute(sa.select(Photo.content_type, Photo.size).where(
                Photo.hazard_id == hazard.id)).all()
            events = session.execute(sa.select(HazardEvent.actor, HazardEvent.action).where(
                HazardEvent.hazard_id == hazard.id)).all()
            stored = (hazard.category, hazard.level, hazard.description, hazard.status,
                      hazard.grid_id, grid.code, top.code)
    finally:
        engine.dispose()
    assert stored == ("用电安全", "major", note, "found", grid_id, logged["grid"]["code"],
                      target)
    assert (item["lon"], item["lat"]) == pytest.approx(picked, abs=1e-6)
    assert events == [("inspector", "log")]
    # stored re-encoded as JPEG (tests/test_photos.py), tagged 整改前 by default
    assert photos == [("image/jpeg", logged["photo"]["size"])]
    assert logged["photo"]["tag"] == "before"

    # the ledger API, the map API, the dashboard and the ledger page
    listed = get_json(server, f"/api/hazards?park={PARK}&status=found&limit=1000", driver)
    (row,) = [h for h in listed["hazards"] if h["code"] == code]
    assert (row["category"], row["level"], row["grid"]["code"]) == (
        "用电安全", "major", grid.code)
    assert grid_open(server, target) == grid_before + 1
    assert get_json(server, f"/api/parks/{PARK}")["properties"]["open_hazards"] == \
        park_before + 1
    dashboard = get_json(server, f"/api/parks/{PARK}/dashboard", driver)
    assert dashboard["by_cell"].get(grid.code, 0) == \
        dashboard_before["by_cell"].get(grid.code, 0) + 1
    assert dashboard["by_grid"][target]["open"] == dashboard_before["by_grid"][target]["open"] + 1
    driver.get(f"{server.url}/parks/{PARK}/ledger?status=found")
    cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#ledger tbody td")]
    assert code in cells and note in cells


def test_viewer_cannot_log(ledger_server, ledger_url, browser):
    server, driver = ledger_server, browser
    # anonymous: a login link, no log button
    driver.get(server.url + MAP)
    wait_ready(driver, WAIT)
    assert driver.find_elements(By.ID, "gm-log-start") == []
    assert driver.find_element(By.ID, "gm-login").get_attribute("href").endswith(
        "/login?next=" + MAP)

    login(driver, server, "viewer", "viewer-demo-2025")
    wait_ready(driver, WAIT)
    driver.get_log("browser")
    assert driver.find_elements(By.ID, "gm-log-start") == []
    assert driver.find_elements(By.ID, "gm-log-form") == []
    assert "read only" in driver.find_element(By.ID, "gm-log").text
    assert driver.execute_script("return JSON.parse(document.getElementById("
                                 "'gridmap-config').textContent).canLog") is False

    # a viewer's hazard popup offers no action
    opened = driver.execute_script("""
        const m = gridmap.groups.hazards.getLayers()[0];
        gridmap.map.addLayer(m); m.openPopup(); return m.hazardCode;""")
    assert opened
    wait_for(driver, "return document.querySelector('.gm-hazard-popup .gm-hz-none') !== null")
    assert driver.find_elements(By.CSS_SELECTOR, ".gm-hazard-popup button") == []

    # the server refuses a viewer's POST from the page anyway, and stores nothing
    before = count_hazards(ledger_url)
    _, (lon, lat) = a_grid(server)
    post = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({lon: arguments[1], lat: arguments[2],
                                    category: '消防安全', description: 'viewer'})})
          .then(r => r.json().then(b => done([r.status, b])));"""
    status, body = driver.execute_async_script(post, f"/api/parks/{PARK}/hazards", lon, lat)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert count_hazards(ledger_url) == before
    assert page_errors(driver, allowed=(403,)) == []


def test_popup_moves_a_hazard(ledger_server, ledger_url, browser, request):
    backend = request.node.callspec.params["ledger_url"]
    server, driver = ledger_server, browser
    _, (lon, lat) = a_grid(server, index=5)
    engine = make_engine(ledger_url)
    actor = ledger.Actor("inspector", "inspector")
    try:
        with session_scope(engine, write=True) as session:
            hazard = ledger.create_hazard(session, get_park(session, PARK),
                                          point=shapely.Point(lon, lat), category="消防安全",
                                          actor=actor, description="popup test")
            hazard_id, code = hazard.id, hazard.code

        login(driver, server, "inspector", "inspector-demo-2025")
        wait_ready(driver, WAIT)
        driver.get_log("browser")
        driver.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 19);", lon, lat)
        wait_ready(driver, WAIT)
        open_popup = """
            const m = gridmap.groups.hazards.getLayers().find(x => x.hazardId === arguments[0]);
            if (!m) { return false; }
            gridmap.map.addLayer(m); m.openPopup(); return true;"""
        assert driver.execute_script(open_popup, hazard_id)
        start = ".gm-hazard-popup .gm-hz-actions button[data-to='rectifying']"
        wait_for(driver, f"return document.querySelector(\"{start}\") !== null")
        targets = driver.execute_script(
            "return [...document.querySelectorAll('.gm-hazard-popup .gm-hz-action')]"
            ".map(b => b.dataset.to)")
        assert targets == ["rectifying", "supervising"]

        # someone else changes the hazard behind the popup's back: 412, reloaded, unchanged
        with session_scope(engine, write=True) as session:
            ledger.escalate(session, hazard_id, "park", actor=actor, reason="test",
                            expected_version=session.get(Hazard, hazard_id).version)
        deadline = (date.today() + timedelta(days=7)).isoformat()
        set_deadline = ("document.querySelector('.gm-hazard-popup .gm-hz-deadline').value = "
                        "arguments[0];")
        driver.execute_script(set_deadline, deadline)
        driver.find_element(By.CSS_SELECTOR, ".gm-hazard-popup .gm-hz-note").send_keys("整改中")
        driver.find_element(By.CSS_SELECTOR, start).click()
        wait_for(driver, "const m = document.querySelector('.gm-hazard-popup .gm-hz-msg');"
                         "return m && /changed by someone else, reloaded/i.test(m.textContent);")
        assert driver.find_element(By.CSS_SELECTOR, ".gm-hazard-popup td[data-field="
                                   "'escalation']").text.endswith("park")
        with session_scope(engine) as session:
            assert session.get(Hazard, hazard_id).status == "found"

        # the reloaded popup carries the new version: the second try goes through
        driver.execute_script(set_deadline, deadline)
        driver.find_element(By.CSS_SELECTOR, start).click()
        wait_for(driver, "return gridmap.lastTransition && "
                         "gridmap.lastTransition.id === arguments[0]", hazard_id)
        assert code in driver.find_element(By.ID, "gm-log-msg").text
        wait_ready(driver, WAIT)
        with session_scope(engine) as session:
            h = session.get(Hazard, hazard_id)
            assert (h.status, h.deadline.isoformat(), h.escalation) == (
                "rectifying", deadline, "park")
            actions = session.execute(sa.select(HazardEvent.action).where(
                HazardEvent.hazard_id == hazard_id).order_by(HazardEvent.id)).scalars().all()
        assert actions == ["log", "escalate", "start"]
        # the map shows the new state
        assert driver.execute_script(open_popup, hazard_id)
        wait_for(driver, "const p = document.querySelector('.gm-hazard-popup');"
                         "return p && p.querySelector('.gm-hz-actions button') !== null")
        # textContent, not .text: a popup panned under the navigation bar still holds it
        status = driver.find_element(By.CSS_SELECTOR, ".gm-hazard-popup td[data-field="
                                     "'status']").get_attribute("textContent")
        assert "rectifying" in status
        screenshot(driver, f"hazard-popup-{backend}")
        assert page_errors(driver, allowed=(412,)) == []
    finally:
        engine.dispose()


def test_create_refused_without_login(ledger_server, ledger_url):
    before = count_hazards(ledger_url)
    _, (lon, lat) = a_grid(ledger_server)
    req = urllib.request.Request(
        f"{ledger_server.url}/api/parks/{PARK}/hazards", method="POST",
        data=json.dumps({"lon": lon, "lat": lat, "category": "消防安全"}).encode(),
        headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    err.value.close()  # the error holds the response's socket
    assert err.value.code == 401
    assert count_hazards(ledger_url) == before


def upload_photo(server, token, hazard_id, data, tag):
    """POST a photo as a phone app would: multipart, with an API token."""
    body = (f'--b0undary\r\nContent-Disposition: form-data; name="tag"\r\n\r\n{tag}\r\n'
            '--b0undary\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
            'Content-Type: image/jpeg\r\n\r\n').encode() + data + b"\r\n--b0undary--\r\n"
    req = urllib.request.Request(
        f"{server.url}/api/hazards/{hazard_id}/photos", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                 "Content-Type": "multipart/form-data; boundary=b0undary"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201
        return json.load(r)


LOADED = """
    const img = document.querySelector(arguments[0]);
    if (img !== null) { img.scrollIntoView(); }  // thumbnails load lazily, when in view
    return img !== null && img.complete && img.naturalWidth > 0;"""
FETCH = """
    const done = arguments[arguments.length - 1];
    fetch(arguments[0], {credentials: 'same-origin'})
      .then(r => done([r.status, r.headers.get('Content-Type')]));"""


def test_photo_thumbnails_on_the_desk(ledger_server, ledger_url, browser, request):
    from PIL import Image

    from geodata.services.users import add_user, create_token

    backend = request.node.callspec.params["ledger_url"]
    server, driver = ledger_server, browser
    grid, (lon, lat) = a_grid(server, index=7)
    other_grid, _ = a_grid(server, index=0)
    engine = make_engine(ledger_url)
    try:
        with session_scope(engine, write=True) as session:
            park = get_park(session, PARK)
            hazard = ledger.create_hazard(session, park, point=shapely.Point(lon, lat),
                                          category="消防安全", description="照片测试",
                                          actor=ledger.Actor("inspector", "inspector"))
            hazard_id, code = hazard.id, hazard.code
            token, _ = create_token(session, "inspector", f"photos-{backend}")
            add_user(session, "photo.member", "photo-member-pass-1", "inspector",
                     grid_codes=[other_grid], park=park)
    finally:
        engine.dispose()
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (30, 120, 200)).save(buffer, "JPEG")
    photo = upload_photo(server, token, hazard_id, buffer.getvalue(), "after")
    thumb = f"a.gm-thumb[data-photo='{photo['id']}'] img"

    # the ledger page: a thumbnail that loads, linking to the full photo
    # (the ledger shows 200 rows per page: the new hazard is found by its number)
    login(driver, server, "viewer", "viewer-demo-2025", f"/parks/{PARK}/ledger")
    driver.get(f"{server.url}/parks/{PARK}/ledger?number={code}")
    wait_for(driver, LOADED, thumb)
    image = driver.find_element(By.CSS_SELECTOR, thumb)
    assert code in image.get_attribute("alt") and "after" in image.get_attribute("alt")
    link = image.find_element(By.XPATH, "..").get_attribute("href")
    assert urlsplit(link).path == photo["url"]
    assert driver.execute_async_script(FETCH, link) == [200, "image/jpeg"]
    width = driver.execute_script("return document.querySelector(arguments[0]).naturalWidth",
                                  thumb)
    assert width == 320  # the thumbnail, not the 640 px photo

    # the map popup of the hazard
    driver.get(server.url + MAP)
    wait_ready(driver, WAIT)
    driver.get_log("browser")
    driver.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 19);", lon, lat)
    wait_ready(driver, WAIT)
    open_popup = """
        const m = gridmap.groups.hazards.getLayers().find(x => x.hazardId === arguments[0]);
        if (!m) { return false; }
        gridmap.map.addLayer(m); m.openPopup(); return true;"""
    assert driver.execute_script(open_popup, hazard_id)
    wait_for(driver, LOADED, ".gm-hazard-popup " + thumb)
    screenshot(driver, f"hazard-popup-photo-{backend}")
    assert page_errors(driver) == []

    # a grid member of another grid: 403 for the URL, no thumbnail in the popup
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    login(driver, server, "photo.member", "photo-member-pass-1")
    wait_ready(driver, WAIT)
    driver.get_log("browser")
    for url in (photo["url"], photo["thumbnail_url"]):
        assert driver.execute_async_script(FETCH, url)[0] == 403
    driver.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 19);", lon, lat)
    wait_ready(driver, WAIT)
    assert driver.execute_script(open_popup, hazard_id)
    wait_for(driver, "const p = document.querySelector('.gm-hazard-popup .gm-hz-photos');"
                     "return p && /No access/.test(p.textContent);")
    assert driver.find_elements(By.CSS_SELECTOR, ".gm-hazard-popup img") == []
    assert page_errors(driver, allowed=(403,)) == []
