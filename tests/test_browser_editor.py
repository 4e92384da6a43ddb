"""Issue 6, done when: a planner draws, splits and merges grids through the real editing page.

A headless Chromium logs in as the demo planner through the ``/login`` form,
opens ``/parks/FGKFQ/edit`` on a live ``gridmap serve`` and, with mouse
clicks on the Leaflet map (pixel positions from the page's own
``map.latLngToContainerPoint``):

1. draws a new grid over uncovered ground,
2. splits a grid with a drawn line,
3. merges two adjacent grids,
4. drags a vertex where three grids meet (reshape; the neighbours follow),
5. gets a refused edit explained, with its area drawn;

then the database must show the results and ``gridmap check`` must pass.

Uncovered ground is made in the setup, on a fresh copy of the demo park:
one level-1 grid without sub-grids is switched off by SQL
(``active_to`` set, as if it had been deleted outside the editor), so its
whole area is a gap of known shape.  The planner's polygon is drawn well
beyond that gap; the server clips it to the park and the uncovered ground,
so the new grid must be exactly the old gap.
"""

import subprocess
import sys
import time
from datetime import date

import pytest
import shapely
import sqlalchemy as sa
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from geodata.crs import to_metric, to_storage
from geodata.models import Grid, GridLineage
from geodata.services.demo_loader import load_demo
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.browser import ROOT, LiveServer, chrome, screenshot, severe_console_errors  # noqa: F401
from tests.conftest import stored_snapshot

pytestmark = pytest.mark.browser

PARK = "FGKFQ"
EPSG = 4547
WAIT = 60


def level1(engine):
    """``{code: (geometry EPSG:4326, grid id)}`` of the active level-1 grids without children."""
    with session_scope(engine) as session:
        park = get_park(session, PARK)
        rows = active_grids(session, park)
        parents = {g.parent_id for g in rows if g.parent_id}
        rows = [g for g in rows if g.level == 1 and g.id not in parents]
        return {g.code: (geom, g.id) for g, geom in zip(rows, grid_geometries(rows))}


def choose(cells):
    """The gap grid, the grid to split and two adjacent grids to merge (all different)."""
    metric = {c: to_metric(g, EPSG) for c, (g, _) in cells.items()}

    def touching(a, b):
        return shapely.intersection(metric[a].buffer(0.05), metric[b].buffer(0.05)).area > 20

    codes = sorted(cells)
    gap = codes[len(codes) // 2]
    split = next(c for c in codes if c != gap and not touching(c, gap)
                 and metric[c].area > 20_000)
    used = {gap, split}
    for a in codes:
        for b in codes:
            if a < b and not used & {a, b} and not touching(a, split) and not touching(
                    b, split) and not touching(a, gap) and not touching(b, gap) \
                    and touching(a, b):
                return gap, split, (a, b)
    raise AssertionError("no pair of adjacent grids to merge")


@pytest.fixture
def editor_site(engine, db_url):
    load_demo(engine, today=date(2025, 11, 30))
    cells = level1(engine)
    gap, split, pair = choose(cells)
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(Grid).where(Grid.code == gap).values(
            active_to=date(2025, 11, 30)))
    server = LiveServer(db_url)
    yield server, cells, gap, split, pair
    server.stop()


@pytest.fixture
def browser(chrome):  # noqa: F811
    """The session's Chromium, logged out again afterwards (other tests share it)."""
    chrome.delete_all_cookies()
    yield chrome
    chrome.delete_all_cookies()


def wait_idle(driver, timeout=WAIT):
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return !!(window.gridEditor && window.gridEditor.idle())"))


def fit(driver, geom):
    """Show ``geom`` (EPSG:4326) and its surroundings, without animation."""
    x0, y0, x1, y1 = geom.bounds
    driver.execute_script(
        "window.gridEditor.map.fitBounds([[arguments[1], arguments[0]], "
        "[arguments[3], arguments[2]]], {animate: false, padding: [60, 60]});",
        x0, y0, x1, y1)


def click_at(driver, lon, lat, pause=0.4):
    """Click the map at (lon, lat), through the page's own projection."""
    x, y = driver.execute_script(
        "var p = window.gridEditor.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
        "return [p.x, p.y];", lon, lat)
    element = driver.find_element(By.ID, "ed-map")
    size = element.size
    assert 0 < x < size["width"] and 0 < y < size["height"], (x, y, size)
    ActionChains(driver).move_to_element_with_offset(
        element, int(round(x - size["width"] / 2)), int(round(y - size["height"] / 2))
    ).pause(0.1).click().perform()
    time.sleep(pause)


def wait_result(driver, operation):
    """Wait for the server's answer to ``operation``; return it (or fail with the refusal)."""
    def answered(d):
        return d.execute_script(
            "var s = window.gridEditor.state; if (!window.gridEditor.idle()) return null;"
            "if (s.lastError) return {error: s.lastError};"
            "return s.lastResult && s.lastResult.operation === arguments[0] ? s.lastResult : null;",
            operation)
    result = WebDriverWait(driver, WAIT).until(answered)
    assert "error" not in result, result
    return result


def junction(cells, exclude):
    """A grid and one of its vertices shared with two other grids, away from the park edge."""
    metric = {c: to_metric(g, EPSG) for c, (g, _) in cells.items()}
    outer = shapely.union_all(list(metric.values())).boundary
    for code in sorted(cells):
        if code in exclude:
            continue
        for xy in shapely.get_coordinates(shapely.get_exterior_ring(
                shapely.get_parts(metric[code]))):
            point = shapely.Point(xy)
            if point.distance(outer) < 50:
                continue
            others = [c for c in metric if c != code and c not in exclude
                      and metric[c].distance(point) < 0.01]
            if len(others) >= 2:
                return code, shapely.Point(shapely.get_coordinates(
                    to_storage(point, EPSG))[0])
    raise AssertionError("no interior junction vertex")


def drag_at(driver, lon, lat, dx, dy):
    """Press at (lon, lat), move by (dx, dy) pixels in steps and release."""
    x, y = driver.execute_script(
        "var p = window.gridEditor.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
        "return [p.x, p.y];", lon, lat)
    element = driver.find_element(By.ID, "ed-map")
    size = element.size
    chain = ActionChains(driver).move_to_element_with_offset(
        element, int(round(x - size["width"] / 2)), int(round(y - size["height"] / 2)))
    chain.pause(0.2).click_and_hold().pause(0.2)
    for _ in range(5):
        chain.move_by_offset(dx // 5, dy // 5).pause(0.05)
    chain.pause(0.2).release().perform()
    time.sleep(0.5)


def login(driver, base):
    driver.delete_all_cookies()
    driver.get(f"{base}/login?next=/parks/{PARK}/edit")
    driver.find_element(By.NAME, "username").send_keys("planner")
    driver.find_element(By.NAME, "password").send_keys("planner-demo-2025")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url.endswith(f"/parks/{PARK}/edit"))
    wait_idle(driver)


def test_planner_draws_splits_and_merges_on_the_page(browser, editor_site, engine, db_url):
    server, cells, gap, split, (m1, m2) = editor_site
    driver = browser
    severe_console_errors(driver)  # drop what earlier tests left
    login(driver, server.url)
    assert "覆盖有问题" in driver.find_element(By.ID, "ed-status").text  # the gap shows

    # 1. Draw a new grid over the gap: a rectangle well beyond it, clipped by the server.
    gap_geom = cells[gap][0]
    x0, y0, x1, y1 = gap_geom.bounds
    dx, dy = (x1 - x0) * 0.15, (y1 - y0) * 0.15
    fit(driver, shapely.box(x0 - dx, y0 - dy, x1 + dx, y1 + dy))
    driver.find_element(By.ID, "ed-snapping").click()  # place the vertices where clicked
    driver.find_element(By.ID, "ed-reason").send_keys("补齐空白 fill the gap")
    driver.find_element(By.ID, "ed-draw").click()
    corners = [(x0 - dx, y0 - dy), (x1 + dx, y0 - dy), (x1 + dx, y1 + dy), (x0 - dx, y1 + dy)]
    for lon, lat in corners + corners[:1]:
        click_at(driver, lon, lat)
    drawn = wait_result(driver, "draw")
    (new_code,) = drawn["added"]
    assert drawn["coverage"]["valid"] is True
    WebDriverWait(driver, WAIT).until(lambda d: "coverage valid" in d.find_element(
        By.ID, "ed-status").text)
    driver.find_element(By.ID, "ed-draw").click()  # the draw tool off again
    wait_idle(driver)

    # 2. Split a grid by a line drawn across it.
    s_geom = cells[split][0]
    sx0, sy0, sx1, sy1 = s_geom.bounds
    inside = s_geom.representative_point()
    pad = (sx1 - sx0) * 0.1
    fit(driver, shapely.box(sx0 - 2 * pad, sy0, sx1 + 2 * pad, sy1))
    driver.find_element(By.ID, "ed-split").click()
    click_at(driver, inside.x, inside.y)  # select the grid; line drawing starts
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return window.gridEditor.map.pm.globalDrawModeEnabled()"))
    for lon in (sx0 - pad, sx1 + pad):
        click_at(driver, lon, inside.y)
    click_at(driver, sx1 + pad, inside.y)  # click the last vertex again: finish
    splitted = wait_result(driver, "split")
    assert splitted["retired"] == [split] and len(splitted["added"]) >= 2
    driver.find_element(By.ID, "ed-split").click()  # tool off
    wait_idle(driver)

    # 3. Merge two adjacent grids: select both, then Apply.
    both = shapely.union(cells[m1][0], cells[m2][0])
    fit(driver, both)
    driver.find_element(By.ID, "ed-merge").click()
    for code in (m1, m2):
        point = cells[code][0].representative_point()
        click_at(driver, point.x, point.y)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element(
        By.ID, "ed-selected").text.replace(" ", "") in (f"{m1},{m2}", f"{m2},{m1}"))
    driver.find_element(By.ID, "ed-apply").click()
    merged = wait_result(driver, "merge")
    assert sorted(merged["retired"]) == sorted([m1, m2]) and len(merged["added"]) == 1
    WebDriverWait(driver, WAIT).until(lambda d: "coverage valid" in d.find_element(
        By.ID, "ed-status").text)
    # 4. Reshape by dragging a vertex where three grids meet: the neighbours follow.
    x_code, vertex = junction(cells, exclude={gap, split, m1, m2})
    fit(driver, cells[x_code][0])
    driver.find_element(By.ID, "ed-reshape").click()
    inside = cells[x_code][0].representative_point()
    click_at(driver, inside.x, inside.y)
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "var s = window.gridEditor.state; return s.selected.length === 1 && "
        "s.layers[s.selected[0]].pm.enabled()"))
    drag_at(driver, vertex.x, vertex.y, 25, 18)
    driver.find_element(By.ID, "ed-apply").click()
    reshaped = wait_result(driver, "reshape")
    assert x_code in reshaped["reshaped"] and len(reshaped["reshaped"]) >= 2, reshaped
    assert reshaped["coverage"]["valid"] is True
    driver.find_element(By.ID, "ed-reshape").click()  # tool off
    wait_idle(driver)
    screenshot(driver, f"editor-{engine.dialect.name}")

    # 5. A refused edit says why, with the area, and draws where on the map.  (Dragging
    # vertices precisely is fragile in a headless browser, so the page's own send() posts
    # a reshape that pushes a grid 25 m into its neighbours.)
    other = next(c for c in sorted(cells) if c not in {gap, split, m1, m2})
    pushed = to_storage(to_metric(cells[other][0], EPSG).buffer(25, join_style="mitre"), EPSG)
    before = stored_snapshot(engine)
    driver.execute_script(
        "var s = window.gridEditor.state; window.gridEditor.send('reshape', {code: arguments[0],"
        " geometry: arguments[1], neighbours: [], expected_version: s.grids[arguments[0]].version"
        "});", other, shapely.geometry.mapping(pushed))
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return window.gridEditor.idle() && !!window.gridEditor.state.lastError"))
    message = driver.find_element(By.ID, "ed-error").text
    assert ("grid_overlap" in message or "outside_park" in message) and "m²" in message, message
    assert driver.execute_script("return window.gridEditor.refused.getLayers().length") >= 1
    screenshot(driver, f"editor-refused-{engine.dialect.name}")
    assert stored_snapshot(engine) == before
    # The refused reshape's 422 is logged by Chromium as a failed resource.
    errors = [e for e in severe_console_errors(driver)
              if not ("/edits/reshape" in e["message"] and "422" in e["message"])]
    assert errors == []

    # The database shows every result.
    with session_scope(engine) as session:
        park = get_park(session, PARK)
        by_code = {g.code: g for g in session.execute(
            sa.select(Grid).where(Grid.park_id == park.id)).scalars()}
        active = {c for c, g in by_code.items() if g.active_to is None}
        new_geom = grid_geometries([by_code[new_code]])[0]
        assert new_code in active and by_code[new_code].level == 1
        gap_m, new_m = to_metric(gap_geom, EPSG), to_metric(new_geom, EPSG)
        assert shapely.symmetric_difference(gap_m, new_m).area < 1.0  # m²
        assert split not in active and set(splitted["added"]) <= active
        pieces = session.execute(sa.select(Grid.code, GridLineage.relation).join(
            GridLineage, GridLineage.grid_id == Grid.id).where(
                GridLineage.source_id == by_code[split].id)).all()
        assert sorted(pieces) == sorted((c, "split") for c in splitted["added"])
        (merged_code,) = merged["added"]
        assert merged_code in active and not {m1, m2} & active
        sources = session.execute(sa.select(GridLineage.source_id).where(
            GridLineage.grid_id == by_code[merged_code].id)).scalars().all()
        assert sorted(sources) == sorted([by_code[m1].id, by_code[m2].id])
        assert shapely.symmetric_difference(
            to_metric(grid_geometries([by_code[merged_code]])[0], EPSG),
            to_metric(shapely.union(cells[m1][0], cells[m2][0]), EPSG)).area < 1.0
    check = subprocess.run([sys.executable, "-m", "geodata.cli", "--db", db_url, "check",
                            "--park", PARK], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stdout[-1500:] + check.stderr[-1500:]


@pytest.fixture
def big_site(engine, db_url):
    """The demo park served as a big one (``GRIDMAP_MAP_TILE_THRESHOLD=10``)."""
    load_demo(engine, today=date(2025, 11, 30))
    server = LiveServer(db_url, env={"GRIDMAP_MAP_TILE_THRESHOLD": "10"})
    yield server, level1(engine)
    server.stop()


def test_a_big_park_loads_the_editor_and_the_field_layer_by_the_view(browser, big_site):
    """Above the tile threshold the editor and the map's field layer ask for their view's bbox."""
    server, cells = big_site
    driver = browser
    severe_console_errors(driver)
    login(driver, server.url)
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    states = [u for u in loaded if "/edits/state" in u]
    assert states and all("bbox=" in u for u in states), states
    shown = set(driver.execute_script("return Object.keys(window.gridEditor.state.layers)"))
    assert shown and set(cells) - shown  # zoomed in on the centre: only the grids in view
    # Panning loads the grids of the new view.
    far = next(c for c in sorted(cells) if c not in shown)
    fit(driver, cells[far][0])
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return window.gridEditor.idle() && !!window.gridEditor.state.layers[arguments[0]]",
        far))
    # The map's field layer, switched on, is fetched for the view too.
    driver.get(f"{server.url}/parks/{PARK}/map")
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return window.gridmap && window.gridmap.ready && window.gridmap.loads === 0"))
    label = next(el for el in driver.find_elements(
        By.CSS_SELECTOR, ".leaflet-control-layers-overlays label") if "Field work" in el.text)
    label.find_element(By.TAG_NAME, "input").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return !!window.gridmap.field && window.gridmap.loads === 0"))
    fields = [u for u in driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
        if "/visits/layer" in u]
    assert fields and all("bbox=" in u for u in fields), fields
    assert not severe_console_errors(driver)
