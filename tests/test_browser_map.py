"""The park map in headless Chromium, served by a real ``gridmap serve`` on both backends.

The live server computes "overdue" against the real date, so the database checks
here use ``date.today()`` too.
"""

import json
import urllib.request
from datetime import date

import pytest
import sqlalchemy as sa
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from geodata.models import Enterprise, Grid, GridStaff, Hazard
from geodata.storage import make_engine
from tests.browser import (PAYLOAD_NAME, PAYLOAD_NOTE, PAYLOAD_PARK, PAYLOAD_STAFF,  # noqa: F401
                           PAYLOAD_PLANNER, PAYLOAD_USER, LiveServer, chrome, demo_url,
                           live_server, load_payload_park, screenshot, severe_console_errors,
                           submit_login, wait_ready)

pytestmark = pytest.mark.browser

OPEN = ("found", "rectifying", "supervising")


def scalar(url, query):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar()
    finally:
        engine.dispose()


def overlay_labels(driver):
    return {label.text.strip(): label for label in driver.find_elements(
        By.CSS_SELECTOR, ".leaflet-control-layers-overlays label")}


def toggle(driver, name_part):
    label = next(v for k, v in overlay_labels(driver).items() if name_part in k)
    label.find_element(By.TAG_NAME, "input").click()


def wait_for(driver, script, timeout=30):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def no_dialog(driver):
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"a dialog opened: {text!r}")


def test_demo_map(live_server, chrome, demo_url, request):  # noqa: F811
    backend = request.node.callspec.params["demo_url"]
    chrome.get_log("browser")  # drop messages of earlier pages
    chrome.get(live_server.url + "/parks/FGKFQ/map")
    wait_ready(chrome)

    labels = overlay_labels(chrome)
    for part in ("Grids", "Sub-grids", "Hidden units", "Open hazards", "Enterprises"):
        assert any(part in k for k in labels), labels.keys()
    # An idle map repaints nothing: no endless CSS or Web animation (a pulse on the 117
    # hidden-unit pins kept a core busy, on phones too).
    endless = chrome.execute_script(
        "return document.getAnimations().filter(a => a.effect && "
        "a.effect.getComputedTiming().iterations === Infinity).length")
    assert endless == 0
    state = "return [gridmap.map.hasLayer(gridmap.groups.subgrids), " \
            "Object.keys(gridmap.subgrids).length]"
    assert chrome.execute_script(state) == [False, 0]
    toggle(chrome, "Sub-grids")
    wait_for(chrome, "return Object.keys(gridmap.subgrids).length > 0 && gridmap.loads === 0")
    n_sub = scalar(demo_url, sa.select(sa.func.count()).where(Grid.level == 2))
    assert chrome.execute_script(state) == [True, n_sub]

    # counts on the page == API == database
    today = date.today()
    db = {
        "grids": scalar(demo_url, sa.select(sa.func.count()).where(Grid.level == 1)),
        "sub-grids": n_sub,
        "enterprises": scalar(demo_url, sa.select(sa.func.count()).select_from(Enterprise)),
        "hidden-units": scalar(demo_url, sa.select(sa.func.count()).where(
            Enterprise.host_id.is_not(None))),
        "open-hazards": scalar(demo_url, sa.select(sa.func.count()).where(
            Hazard.status.in_(OPEN))),
        "overdue-hazards": scalar(demo_url, sa.select(sa.func.count()).where(
            Hazard.status.in_(OPEN), Hazard.deadline < today)),
    }
    page = {k: int(chrome.find_element(By.ID, f"gm-count-{k}").get_attribute("data-value"))
            for k in db}
    with urllib.request.urlopen(live_server.url + "/api/parks/FGKFQ") as r:
        api = json.load(r)["properties"]
    assert page == db
    assert {k: api[k.replace("-", "_")] for k in db} == db
    drawn = chrome.execute_script(
        "return [Object.keys(gridmap.grids).length, gridmap.sites.hidden, gridmap.hazards]")
    assert drawn == [db["grids"], db["hidden-units"], db["open-hazards"]]

    # open the popup of the grid with the most open hazards by clicking it
    with urllib.request.urlopen(live_server.url + "/api/parks/FGKFQ/grids") as r:
        grids = json.load(r)["features"]
    target = max(grids, key=lambda f: (f["properties"]["open_hazards"], f["id"]))
    code = target["id"]
    for layer in ("Enterprises", "Hidden units", "Open hazards", "Sub-grids"):
        toggle(chrome, layer)
    chrome.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 16);",
                          *target["properties"]["anchor"])
    wait_ready(chrome)
    map_div = chrome.find_element(By.CSS_SELECTOR, ".folium-map")
    for attempt in range(3):
        # Leaflet's canvas renderer registers click targets when it next draws (an
        # animation frame after the layers changed): let two frames pass, then click.
        chrome.execute_async_script(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
        x, y = chrome.execute_script(
            "const p = gridmap.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
            "return [p.x, p.y];", *target["properties"]["anchor"])
        ActionChains(chrome).move_to_element_with_offset(
            map_div, int(x - map_div.size["width"] / 2), int(y - map_div.size["height"] / 2)
        ).click().perform()
        try:
            # Leaflet rebuilds popup content on update: read it in one script, never hold it
            wait_for(chrome, "return document.querySelector('.gm-grid-popup') !== null", 10)
            break
        except TimeoutException:
            if attempt == 2:
                raise
    wait_ready(chrome)

    fields = chrome.execute_script("""
        const out = {};
        document.querySelectorAll('.gm-grid-popup td[data-field]').forEach(td => {
            out[td.dataset.field] = td.dataset.value || td.textContent; });
        const p = document.querySelector('.gm-grid-popup');
        out.grid = p.dataset.grid;
        out.staff = p.querySelector('.gm-staff').textContent;
        out.link = p.querySelector('td[data-field="open_hazards"] a').href;
        return out;""")
    assert fields["grid"] == code

    grid_id = scalar(demo_url, sa.select(Grid.id).where(Grid.code == code))
    family = sa.select(Grid.id).where(sa.or_(Grid.id == grid_id, Grid.parent_id == grid_id))
    expected_open = scalar(demo_url, sa.select(sa.func.count()).where(
        Hazard.status.in_(OPEN), Hazard.grid_id.in_(family)))
    expected_overdue = scalar(demo_url, sa.select(sa.func.count()).where(
        Hazard.status.in_(OPEN), Hazard.deadline < today, Hazard.grid_id.in_(family)))
    assert int(fields["open_hazards"]) == expected_open > 0
    assert int(fields["overdue_hazards"]) == expected_overdue
    assert int(fields["enterprise_count"]) == scalar(
        demo_url, sa.select(sa.func.count()).where(Enterprise.grid_id == grid_id))
    hosted = sa.select(sa.func.count()).where(Enterprise.grid_id == grid_id,
                                              Enterprise.host_id.is_not(None))
    assert int(fields["hidden_count"]) == scalar(demo_url, hosted)
    assert float(fields["area"]) == pytest.approx(
        scalar(demo_url, sa.select(Grid.area_m2).where(Grid.id == grid_id)), abs=0.1)
    assert fields["code"] == code
    staff_text = fields["staff"]
    engine = make_engine(demo_url)
    with engine.connect() as conn:
        staff = conn.execute(sa.select(GridStaff.name, GridStaff.phone).where(
            GridStaff.grid_id == grid_id)).all()
    engine.dispose()
    assert staff and all(n in staff_text and p in staff_text for n, p in staff)
    assert fields["link"].endswith(f"/parks/FGKFQ/grids/{code}#hazards")
    screenshot(chrome, f"map-demo-{backend}")

    # search by enterprise name zooms there; by grid code opens its popup
    chrome.find_element(By.ID, "gm-q").send_keys("FGKFQ-022\n")
    wait_for(chrome, "const p = document.querySelector('.gm-grid-popup');"
                     "return p && p.dataset.grid === 'FGKFQ-022';")

    errors = severe_console_errors(chrome)
    assert errors == []
    assert chrome.execute_script("return gridmap.errors") == []


def test_grid_page_in_browser(live_server, chrome):  # noqa: F811
    chrome.get_log("browser")
    chrome.get(live_server.url + "/parks/FGKFQ/grids/FGKFQ-022")
    rows = chrome.find_elements(By.CSS_SELECTOR, "#hazard-table tbody tr")
    assert rows and chrome.find_element(By.ID, "grid-code").text.startswith("FGKFQ-022")
    assert severe_console_errors(chrome) == []


#: A grid code holding markup, as one stored before codes were checked could: the
#: editor shows codes in Leaflet tooltips, which parse strings as HTML.
PAYLOAD_CODE = "X-<img src=x onerror=alert(7)>"


def log_in(driver, base, username, password, target):
    driver.delete_all_cookies()
    submit_login(driver, base, username, password, target)
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith(target))


def injected(driver):
    """Elements that only a payload could have made (the pages themselves have none)."""
    return driver.execute_script(
        "return document.querySelectorAll('img[src=\"x\"], svg[onload], [onerror], "
        ".leaflet-popup script, .leaflet-tooltip *').length")


def test_hostile_text_renders_as_text(db_url, chrome, backend):  # noqa: F811
    engine = make_engine(db_url)
    load_payload_park(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(Grid).where(Grid.code == "X-004").values(code=PAYLOAD_CODE))
    engine.dispose()
    server = LiveServer(db_url)
    try:
        chrome.get_log("browser")
        chrome.get(server.url + "/parks/X/map")
        wait_ready(chrome)
        no_dialog(chrome)
        # the park's name is text in the title and the panel, never a template (not 测试49园区)
        assert chrome.title == f"{PAYLOAD_PARK} · X · gridmap"
        assert chrome.find_element(By.ID, "gm-park-name").text == PAYLOAD_PARK
        # open every enterprise popup, the grid popup and the hazard popups
        texts = chrome.execute_script("""
            const out = [];
            const grab = (x) => { x.openPopup(); const e = x.getPopup().getElement();
                                  out.push(e ? e.textContent : 'NO POPUP'); };
            const walk = (l) => { if (l.getPopup && l.getPopup()) { grab(l); }
                                  else if (l.eachLayer) { l.eachLayer(walk); } };
            walk(gridmap.groups.enterprises);
            walk(gridmap.groups.hidden);
            grab(gridmap.grids['X-001']);
            gridmap.groups.hazards.getLayers().forEach(m => {
                gridmap.map.addLayer(m); grab(m); gridmap.map.removeLayer(m); });
            return out;""")
        joined = "\n".join(texts)
        assert PAYLOAD_NAME in joined        # enterprise name and hazard category
        assert PAYLOAD_NOTE in joined        # hazard note, literally
        assert PAYLOAD_STAFF in joined       # grid chief
        assert "`${alert(3)}` javascript:alert(4)" in joined  # the hidden unit
        no_dialog(chrome)
        assert chrome.execute_script(
            "return document.querySelectorAll('img[src=\"x\"], .leaflet-popup script').length"
        ) == 0
        # the search results list shows the name as text too
        chrome.find_element(By.ID, "gm-q").send_keys("onerror\n")
        wait_for(chrome, "return document.querySelectorAll('#gm-results button').length > 0")
        assert PAYLOAD_NAME in chrome.find_element(By.ID, "gm-results").text
        no_dialog(chrome)
        screenshot(chrome, f"map-payload-{backend}")
        chrome.get(server.url + "/parks/X/grids/X-001")
        body = chrome.find_element(By.TAG_NAME, "body").text
        assert PAYLOAD_NAME in body and PAYLOAD_STAFF in body and PAYLOAD_NOTE in body
        no_dialog(chrome)
        assert chrome.execute_script("return document.querySelectorAll('img').length") == 0
        # the editor, as a planner: every grid code is tooltip text
        log_in(chrome, server.url, *PAYLOAD_PLANNER, "/parks/X/edit")
        WebDriverWait(chrome, 60).until(lambda d: d.execute_script(
            "return !!(window.gridEditor && window.gridEditor.idle())"))
        assert PAYLOAD_PARK in chrome.title
        tips = chrome.execute_script("""
            const out = {};
            Object.entries(gridEditor.state.layers).forEach(([code, layer]) => {
                layer.openTooltip();
                const e = layer.getTooltip().getElement();
                out[code] = [e.textContent, e.children.length];
                layer.closeTooltip(); });
            return out;""")
        assert tips == {code: [code, 0] for code in ("X-001", "X-002", "X-003", PAYLOAD_CODE)}
        assert injected(chrome) == 0
        no_dialog(chrome)
        chrome.get(server.url + "/parks/X/map")  # as the planner: the hazard form too
        wait_ready(chrome)
        assert injected(chrome) == 0
        # the ledger: category, note, park and the user's display name, all as text
        chrome.get(server.url + "/parks/X/ledger")
        assert chrome.title == f"{PAYLOAD_PARK} 隐患台账 · gridmap"
        body = chrome.find_element(By.TAG_NAME, "body").text
        assert all(text in body for text in (PAYLOAD_PARK, PAYLOAD_NAME, PAYLOAD_NOTE,
                                             PAYLOAD_USER))
        assert chrome.execute_script("return document.querySelectorAll('img, svg').length") == 0
        no_dialog(chrome)
        assert [e for e in severe_console_errors(chrome)
                if "Content Security Policy" in e["message"]] == []
    finally:
        chrome.delete_all_cookies()
        server.stop()


def test_field_work_layer_for_a_logged_in_user(live_server, chrome, demo_url):  # noqa: F811
    from geodata.services import visits
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    chrome.get(live_server.url + "/parks/FGKFQ/map")
    wait_ready(chrome)
    assert not any("Field work" in k for k in overlay_labels(chrome))  # not public
    chrome.get_log("browser")
    log_in(chrome, live_server.url, "inspector", "inspector-demo-2025", "/parks/FGKFQ/map")
    wait_ready(chrome)
    toggle(chrome, "Field work")
    field = wait_for(chrome, "return gridmap.loads === 0 && gridmap.field")
    engine = make_engine(demo_url)
    try:
        with session_scope(engine) as session:
            layer = visits.field_layer(session, get_park(session, "FGKFQ"))
    finally:
        engine.dispose()
    expected = {}
    for f in layer["features"]:
        expected[f["properties"]["layer"]] = expected.get(f["properties"]["layer"], 0) + 1
    assert field == expected and expected["overdue_enterprise"] >= 2
    names = {f["properties"]["name"] for f in layer["features"]
             if f["properties"]["layer"] == "overdue_enterprise"}
    shown = chrome.execute_script("""
        var found = null;
        gridmap.groups.field.eachLayer(function (g) {
          g.eachLayer(function (l) { if (!found && l.getPopup()) { found = l; } });
        });
        found.openPopup();
        return document.querySelector('.leaflet-popup-content h3').textContent;""")
    assert shown in names
    assert injected(chrome) == 0 and severe_console_errors(chrome) == []
