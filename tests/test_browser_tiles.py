"""The park map's vector-tile path in headless Chromium, on both backends.

The demo park (about 80 grids) is served with ``GRIDMAP_MAP_TILE_THRESHOLD=10`` so that
it takes the path that parks of 10^5 grids take: grids drawn from MVT tiles, no bbox
GeoJSON, and the choropleth, selection, popups and search still working.
"""

import json
import urllib.request

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import (LiveServer, chrome, demo_url, screenshot,  # noqa: F401
                           severe_console_errors, wait_ready)
from webmap.maps import CLASSES

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tiled_server(demo_url):  # noqa: F811
    server = LiveServer(demo_url, env={"GRIDMAP_MAP_TILE_THRESHOLD": "10"})
    yield server
    server.stop()


def wait_tiles(driver, timeout=30):
    """Wait until the page settled and every visible grid tile is drawn."""
    wait_ready(driver, timeout)
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("""
        const t = window.gridmap.tiles, z = window.gridmap.map.getZoom();
        if (!t || t.loading || window.gridmap.loads) { return false; }
        const here = Object.values(t.layers.grids._tiles).filter(x => x.coords.z === z);
        return here.length > 0 && here.every(x => x.loaded);"""))
    # protomaps-leaflet paints a tile after its data arrives: let two frames pass
    driver.execute_async_script(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")


def requests(driver):
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")


def pixel(driver, lon, lat):
    """RGBA of the grid tile canvas under a lon/lat (None when no tile covers it)."""
    return driver.execute_script("""
        const pt = gridmap.map.latLngToContainerPoint([arguments[1], arguments[0]]);
        const box = gridmap.map.getContainer().getBoundingClientRect();
        const cx = box.left + pt.x, cy = box.top + pt.y;
        const tiles = gridmap.tiles.layers.grids._tiles;
        for (const key in tiles) {
            // tiles of the zoom before may linger under the current ones
            if (tiles[key].coords.z !== gridmap.map.getZoom()) { continue; }
            const c = tiles[key].el, r = c.getBoundingClientRect();
            if (cx >= r.left && cx < r.right && cy >= r.top && cy < r.bottom) {
                const x = Math.floor((cx - r.left) * c.width / r.width);
                const y = Math.floor((cy - r.top) * c.height / r.height);
                return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);
            }
        }
        return null;""", lon, lat)


def class_colour(n):
    colour = CLASSES[0][1]
    for lowest, c, _ in CLASSES:
        if n >= lowest:
            colour = c
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


def click_at(driver, lon, lat):
    map_div = driver.find_element(By.CSS_SELECTOR, ".folium-map")
    x, y = driver.execute_script(
        "const p = gridmap.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
        "return [p.x, p.y];", lon, lat)
    ActionChains(driver).move_to_element_with_offset(
        map_div, int(x - map_div.size["width"] / 2), int(y - map_div.size["height"] / 2)
    ).click().perform()


def popup_grid(driver):
    return driver.execute_script(
        "const p = document.querySelector('.gm-grid-popup'); return p && p.dataset.grid;")


def test_big_park_map_draws_from_tiles(tiled_server, chrome, request):  # noqa: F811
    backend = request.node.callspec.params["demo_url"]
    chrome.get_log("browser")
    chrome.get(tiled_server.url + "/parks/FGKFQ/map")
    wait_tiles(chrome)
    with urllib.request.urlopen(tiled_server.url + "/api/parks/FGKFQ/grids") as r:
        grids = {f["id"]: f["properties"] for f in json.load(r)["features"]}

    loaded = requests(chrome)
    assert any("/api/parks/FGKFQ/tiles/grids/" in u and u.endswith(".mvt") for u in loaded)
    assert not any("/grids?" in u for u in loaded), "the page asked for bbox GeoJSON grids"
    assert chrome.execute_script("return Object.keys(gridmap.grids).length") == 0
    # No fade-in on tiled maps (it kept the compositor busy on every frame after a tile).
    assert chrome.execute_script(
        "return gridmap.map.options.fadeAnimation === false && !gridmap.map._fadeAnimated")

    # Only the grids' own layer: enterprises, hidden units and hazards would catch clicks.
    for name in ("Enterprises", "Hidden units", "Open hazards"):
        label = next(el for el in chrome.find_elements(
            By.CSS_SELECTOR, ".leaflet-control-layers-overlays label") if name in el.text)
        label.find_element(By.TAG_NAME, "input").click()

    # The choropleth: a grid's fill is its open-hazard class colour, at 60 % opacity.
    busiest = max(grids.values(), key=lambda p: (p["open_hazards"], p["code"]))
    quiet = min(grids.values(), key=lambda p: (p["open_hazards"], p["code"]))
    assert busiest["open_hazards"] > quiet["open_hazards"] == 0
    for grid in (busiest, quiet):
        chrome.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 17, "
                              "{animate: false});",
                              *grid["anchor"])
        wait_tiles(chrome)
        rgba = pixel(chrome, *grid["anchor"])
        assert rgba is not None, grid["code"]
        assert rgba[:3] == pytest.approx(class_colour(grid["open_hazards"]), abs=3), grid["code"]
        assert rgba[3] == pytest.approx(0.6 * 255, abs=3)

    # Selection: clicking the busiest grid opens its popup with the API's figures.
    chrome.execute_script("gridmap.map.setView([arguments[1], arguments[0]], 17, "
                          "{animate: false});", *busiest["anchor"])
    wait_tiles(chrome)
    for attempt in range(3):
        click_at(chrome, *busiest["anchor"])
        try:
            WebDriverWait(chrome, 10).until(lambda d: popup_grid(d) == busiest["code"])
            break
        except TimeoutException:
            if attempt == 2:
                raise
    fields = chrome.execute_script("""
        const out = {};
        document.querySelectorAll('.gm-grid-popup td[data-field]').forEach(td => {
            out[td.dataset.field] = td.dataset.value || td.textContent; });
        return out;""")
    assert fields["code"] == busiest["code"]
    assert int(fields["open_hazards"]) == busiest["open_hazards"]
    assert int(fields["overdue_hazards"]) == busiest["overdue_hazards"]
    assert int(fields["enterprise_count"]) == busiest["enterprise_count"]
    assert chrome.execute_script("return gridmap.tiles.selected") == busiest["code"]
    screenshot(chrome, f"map-tiles-{backend}")

    # Search by grid code zooms there and opens that grid's popup.
    target = "FGKFQ-022"
    chrome.find_element(By.ID, "gm-q").send_keys(target + "\n")
    WebDriverWait(chrome, 30).until(lambda d: popup_grid(d) == target)
    wait_tiles(chrome)

    loaded = requests(chrome)
    assert not any("/grids?" in u for u in loaded), "the page asked for bbox GeoJSON grids"
    assert chrome.execute_script("return gridmap.tiles.errors") == 0
    assert severe_console_errors(chrome) == []
    assert chrome.execute_script("return gridmap.errors") == []
