"""The field app (/m/) in headless Chromium as a 375 x 812 touch phone, on both backends.

Real network conditions come from the DevTools protocol (:mod:`tests.cdp`): offline
means offline for the page *and* its service worker.  Each test gets its own
database, ``gridmap serve`` (so its own origin: no service worker or IndexedDB
carries over) and browser profile.  Nothing waits on the clock: every wait is for
a condition, with a generous cap that only turns a hang into a failure.
"""

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, HazardEvent, Photo, ServiceRequest, Visit, VisitEvent
from tests.browser import ARTIFACTS, CHROME_ARGS, CHROMEDRIVER, CHROMIUM, LiveServer
from tests.cdp import Network
from tests.ledger_helpers import PASSWORDS, build_park, lonlat

pytestmark = pytest.mark.browser

WAIT = 180
HOSTILE = "<img src=x onerror=alert(1)>"


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture
def park(db_url, engine):
    """Park T (grids T-001..T-004) with one user per role and the grid member ``member``."""
    tokens = build_park(engine)
    return {"url": db_url, "engine": engine, "tokens": tokens}


def start_server(park, **env):
    return LiveServer(park["url"], env={k: str(v) for k, v in env.items()})


@pytest.fixture
def server(park):
    live = start_server(park)
    yield live
    live.stop()


class Phone:
    """A headless Chromium with its own profile, emulating a 375 x 812 touch phone."""

    def __init__(self, profile):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in CHROME_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {
            "enabled": True, "maxTouchPoints": 5})
        self.network = Network(self.driver)
        self.running = True

    def quit(self):
        if not self.running:
            return
        self.running = False
        try:
            self.network.close()
        finally:
            self.driver.quit()


@pytest.fixture
def phones(tmp_path):
    """A factory of phones; ``phones(profile)`` reuses a profile folder (a browser restart)."""
    made = []

    def make(profile="phone"):
        phone = Phone(tmp_path / profile)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.quit()


# ---- helpers -----------------------------------------------------------------------------

def wait(driver, condition, timeout=WAIT):
    return WebDriverWait(driver, timeout).until(condition)


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def js_async(driver, script, *args):
    driver.set_script_timeout(WAIT)
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];" + script, *args)


def login(phone, server, username):
    password = "member-pass-123" if username == "member" else PASSWORDS[username]
    d = phone.driver
    d.get(f"{server.url}/login?next=/m/")
    d.find_element(By.NAME, "username").send_keys(username)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_app(phone)
    # the service worker controls the page and holds the shell
    wait(d, lambda d: js(d, "return navigator.serviceWorker.controller !== null"))
    wait(d, lambda d: js(d, "return Boolean(gridfield.bundle && gridfield.bundle.hazards)"))


def wait_app(phone):
    wait(phone.driver, lambda d: js(d, "return Boolean(window.gridfield && gridfield.ready)"))


def queue(phone):
    """The queue as IndexedDB holds it (blobs as their size and type)."""
    return js_async(phone.driver, """
        gridfield.queueAll().then((items) => done(items.sort((a, b) => a.seq - b.seq).map(
          (i) => ({id: i.id, kind: i.kind, state: i.state, parent: i.parent || null,
                   attempts: i.attempts, error: i.error, body: i.body || null,
                   blob: i.blob ? [i.blob.size, i.blob.type] : null}))));""")


def tab(phone, name):
    phone.driver.find_element(By.CSS_SELECTOR, f".fm-tabs button[data-view={name}]").click()


def gps(phone, server, lon, lat, accuracy=8):
    d = phone.driver
    d.execute_cdp_cmd("Browser.grantPermissions", {"origin": server.url,
                                                   "permissions": ["geolocation"]})
    d.execute_cdp_cmd("Emulation.setGeolocationOverride", {
        "latitude": lat, "longitude": lon, "accuracy": accuracy})


def pick_on_map(phone, lon, lat):
    """Press "在地图上选点" has opened the map: tap the map at lon/lat."""
    d = phone.driver
    wait(d, lambda d: js(d, "return !document.getElementById('fm-view-map').hidden "
                            "&& gridfield.map !== null && gridfield.picking !== null"))
    x, y = js(d, "const p = gridfield.map.latLngToContainerPoint([arguments[1], arguments[0]]);"
                 "return [p.x, p.y];", lon, lat)
    box = d.find_element(By.ID, "fm-map")
    ActionChains(d).move_to_element_with_offset(
        box, int(x - box.size["width"] / 2), int(y - box.size["height"] / 2)).click().perform()


def photo_file(folder, name, size=(2400, 1800)):
    """A JPEG larger than the phone keeps, with EXIF GPS and a camera model to strip."""
    image = Image.new("RGB", size, (200, 60, 40))
    for x in range(0, size[0], 200):
        image.paste((30, 30, 160), (x, 0, x + 100, size[1]))
    exif = Image.Exif()
    exif[0x0110] = "PhoneCam X1"  # Model
    exif[0x8825] = {1: "N", 2: (31.0, 12.0, 30.0), 3: "E", 4: (121.0, 28.0, 15.0)}
    path = folder / name
    image.save(path, "JPEG", exif=exif.tobytes(), quality=90)
    return path


def log_hazard(phone, server, description, photos, where):
    d = phone.driver
    tab(phone, "hazard")
    form = d.find_element(By.ID, "fm-hazard-form")
    Select(form.find_element(By.NAME, "category")).select_by_value("消防安全")
    form.find_element(By.NAME, "description").send_keys(description)
    if photos:
        form.find_element(By.NAME, "photo").send_keys("\n".join(str(p) for p in photos))
    gps(phone, server, *where)
    form.find_element(By.CSS_SELECTOR, ".fm-gps").click()
    wait(d, lambda d: "GPS" in form.find_element(By.CSS_SELECTOR, ".fm-point").text)
    submit(phone, form)


def tap(phone, element):
    """Scroll ``element`` to the middle of the screen, as a thumb would, and tap it.

    A button just above the bottom edge is "in view" for the driver but under
    the fixed tab bar.
    """
    js(phone.driver, "arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def submit(phone, form):
    """Submit a capture form and wait until its items are in the queue."""
    captured = js(phone.driver, "return gridfield.captured")
    tap(phone, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait(phone.driver, lambda d: js(d, "return gridfield.captured") == captured + 1)


def log_visit(phone, kind, note, photos, where, enterprise=None, request=None):
    """Log a visit on the phone; ``request`` = (category, text) raises a request on it."""
    d = phone.driver
    tab(phone, "visit")
    form = d.find_element(By.ID, "fm-visit-form")
    Select(form.find_element(By.NAME, "kind")).select_by_value(kind)
    if enterprise:
        Select(form.find_element(By.NAME, "enterprise")).select_by_value(enterprise)
    form.find_element(By.NAME, "note").send_keys(note)
    if request:
        Select(form.find_element(By.NAME, "request_category")).select_by_value(request[0])
        form.find_element(By.NAME, "request_text").send_keys(request[1])
    if photos:
        form.find_element(By.NAME, "photo").send_keys("\n".join(str(p) for p in photos))
    tap(phone, form.find_element(By.CSS_SELECTOR, ".fm-pick"))  # no GPS: pick on the map
    pick_on_map(phone, *where)
    wait(d, lambda d: not d.find_element(By.ID, "fm-view-visit").get_attribute("hidden"))
    assert "地图选点" in form.find_element(By.CSS_SELECTOR, ".fm-point").text
    submit(phone, form)


def api(server, path, token, method="GET", body=None, headers=None):
    """Call the JSON API with a Bearer token; return (status, JSON or bytes, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json",
        **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw, status, got = r.read(), r.status, r.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, exc.headers
    if got.get_content_type() == "application/json":
        return status, json.loads(raw), got
    return status, raw, got


def desk_hazard(server, park, grid, description, category="消防安全"):
    """A hazard logged at the desk by the inspector in ``grid``; its JSON."""
    lon, lat = lonlat(grid)
    status, body, _ = api(server, "/api/parks/T/hazards", park["tokens"]["inspector"], "POST",
                          {"lon": lon, "lat": lat, "category": category,
                           "description": description})
    assert status == 201, body
    return body


def rows(engine, query):
    with engine.connect() as conn:
        return conn.execute(query).all()


def count(engine, model):
    return rows(engine, sa.select(sa.func.count()).select_from(model))[0][0]


def shot(phone, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    phone.driver.save_screenshot(str(path))
    return path


# ---- tests -------------------------------------------------------------------------------

def test_offline_round_trip(park, server, phones, tmp_path, request):
    backend = request.node.callspec.params["backend"]
    engine = park["engine"]
    phone = phones()
    login(phone, server, "inspector")
    d = phone.driver
    assert js(d, "return window.innerWidth") == 375
    assert js(d, "return navigator.maxTouchPoints") >= 1
    counts = {m: count(engine, m) for m in (Hazard, Visit, Photo, HazardEvent, VisitEvent,
                                            ServiceRequest)}

    # offline for the page and its service worker
    assert phone.network.offline() == {"page", "service_worker"}
    wait(d, lambda d: js(d, "return navigator.onLine === false"))
    big = [photo_file(tmp_path, f"p{i}.jpg") for i in range(5)]
    points = {"T-001": lonlat("T-001"), "T-002": lonlat("T-002"), "T-004": lonlat("T-004")}
    descriptions = [f"{HOSTILE} 灭火器过期 {i}" for i in range(3)]
    for i, (text, where) in enumerate(zip(descriptions, points.values())):
        log_hazard(phone, server, text, [big[i]], where)
    log_visit(phone, "patrol", "巡查 东门 ✓", [big[3]], lonlat("T-003"),
              enterprise=make_credit_code("411621", 1), request=("融资", f"贷款 {HOSTILE}"))
    log_visit(phone, "visit", f"走访 {HOSTILE}", [big[4]], lonlat("T-004"))
    items = queue(phone)
    assert [i["kind"] for i in items if not i["parent"]] == ["hazard"] * 3 + ["visit"] * 2
    assert sum(i["kind"] == "photo" for i in items) == 5
    assert sum(i["kind"] == "request" for i in items) == 1
    assert all(i["state"] == "pending" for i in items)
    for item in items:
        if item["kind"] == "photo":  # downscaled on the phone: a JPEG smaller than the file
            assert item["blob"][1] == "image/jpeg"
            assert item["blob"][0] < big[0].stat().st_size
    assert {m: count(engine, m) for m in counts} == counts  # nothing reached the server
    # user text is text: no element was created from it, nothing ran
    tab(phone, "queue")
    assert HOSTILE in d.find_element(By.ID, "fm-queue").text
    assert not d.find_elements(By.CSS_SELECTOR, "#fm-queue img[src=x]")

    # reload while offline: the shell comes from the service worker, the queue is intact
    d.refresh()
    wait_app(phone)
    assert js(d, "return navigator.serviceWorker.controller !== null")
    assert js(d, "return performance.getEntriesByType('navigation')[0].workerStart") > 0
    assert queue(phone) == items
    shot(phone, f"field-offline-queue-{backend}")

    # a browser restart (same profile), still offline
    profile_ids = [i["id"] for i in items]
    phone.quit()
    phone = phones("phone")
    d = phone.driver
    phone.network.offline()
    d.get(server.url + "/m/")
    wait_app(phone)
    assert [i["id"] for i in queue(phone)] == profile_ids
    assert js(d, "return Boolean(gridfield.bundle && gridfield.bundle.grids)")

    # back online: everything is stored exactly once
    js(d, "gridfield.backoff.base = 200;")
    phone.network.online()
    wait(d, lambda d: queue(phone) == [])
    assert count(engine, Hazard) == counts[Hazard] + 3
    assert count(engine, Visit) == counts[Visit] + 2
    assert count(engine, Photo) == counts[Photo] + 5
    stored = rows(engine, sa.select(Hazard.id, Hazard.description).where(
        Hazard.description.in_(descriptions)))
    assert sorted(r[1] for r in stored) == sorted(descriptions)
    visits = rows(engine, sa.select(Visit.id, Visit.client_id, Visit.kind, Visit.accuracy_m))
    by_client = {r[1]: r for r in visits}
    visit_items = [i for i in items if i["kind"] == "visit"]
    assert {i["id"] for i in visit_items} <= set(by_client)
    assert all(by_client[i["id"]][3] is None for i in visit_items)  # picked: no GPS accuracy
    token = park["tokens"]["inspector"]
    for hazard_id, _ in stored:
        status, listing, _ = api(server, f"/api/hazards/{hazard_id}/photos", token)
        assert status == 200, listing
        (photo,) = listing["photos"]
        check_photo(server, token, photo)
    for visit_id, *_ in [by_client[i["id"]] for i in visit_items]:
        photo_ids = rows(engine, sa.select(Photo.id).where(Photo.visit_id == visit_id))
        assert len(photo_ids) == 1
        check_photo(server, token, {"id": photo_ids[0][0]})
    # the request raised on the patrol: stored once, on that visit, for 甲公司, text as typed
    assert count(engine, ServiceRequest) == counts[ServiceRequest] + 1
    (raised,) = rows(engine, sa.select(ServiceRequest.visit_id, ServiceRequest.source,
                                       ServiceRequest.description, ServiceRequest.category))
    assert raised == (by_client[visit_items[0]["id"]][0], "visit", f"贷款 {HOSTILE}", "融资")
    # the work list now shows the three hazards, as text
    wait(d, lambda d: all(t in d.find_element(By.ID, "fm-hazards").text for t in descriptions))
    assert not d.find_elements(By.CSS_SELECTOR, "#fm-hazards img[src=x]")
    tab(phone, "list")
    # docs/field-worklist-375.png is a copy of this screenshot
    shot(phone, f"field-worklist-{backend}")


def check_photo(server, token, photo):
    """The photo and its thumbnail download as JPEG, without EXIF, no larger than the phone made."""
    status, body, headers = api(server, f"/api/photos/{photo['id']}", token)
    assert status == 200 and headers.get_content_type() == "image/jpeg", body
    image = Image.open(io.BytesIO(body))
    assert max(image.size) <= 1600 and not image.getexif()
    status, thumb, headers = api(server, f"/api/photos/{photo['id']}/thumbnail", token)
    assert status == 200 and headers.get_content_type().startswith("image/")
    assert max(Image.open(io.BytesIO(thumb)).size) <= 320


def test_lost_answers_are_retried_without_duplicates(park, phones, tmp_path):
    engine = park["engine"]
    live = start_server(park, GRIDMAP_FAULTS_ENABLED=1, GRIDMAP_FAULT_DROP_RESPONSE_RATE=0.3,
                        GRIDMAP_FAULT_SEED=11)
    try:
        phone = phones()
        login(phone, live, "inspector")
        d = phone.driver
        phone.network.offline()
        counts = {m: count(engine, m) for m in (Hazard, Visit, Photo, HazardEvent, VisitEvent)}
        picture = photo_file(tmp_path, "lost.jpg", (800, 600))
        texts = [f"丢失应答 {i}" for i in range(6)]
        for i, text in enumerate(texts):
            log_hazard(phone, live, text, [picture] if i % 2 == 0 else [], lonlat("T-004"))
        for i in range(4):
            log_visit(phone, "patrol", f"巡查 {i}", [picture] if i % 2 else [],
                      lonlat("T-002"))
        js(d, "gridfield.backoff.base = 100; gridfield.backoff.max = 2000;")
        phone.network.online()
        wait(d, lambda d: queue(phone) == [])
        stats = js(d, "return gridfield.stats")
        assert stats["lost"] > 0, stats  # answers were lost and the items sent again
        assert count(engine, Hazard) == counts[Hazard] + 6
        assert count(engine, Visit) == counts[Visit] + 4
        assert count(engine, Photo) == counts[Photo] + 3 + 2
        hazard_ids = [r[0] for r in rows(engine, sa.select(Hazard.id).where(
            Hazard.description.in_(texts)))]
        assert len(hazard_ids) == 6
        events = rows(engine, sa.select(HazardEvent.hazard_id, HazardEvent.action).where(
            HazardEvent.hazard_id.in_(hazard_ids)))
        assert sorted(e[0] for e in events) == sorted(hazard_ids)  # one 'found' event each
        visit_events = rows(engine, sa.select(VisitEvent.visit_id, sa.func.count())
                            .group_by(VisitEvent.visit_id))
        per_visit = dict(visit_events)
        for visit_id, in rows(engine, sa.select(Visit.id)):
            photos = count_where(engine, Photo, Photo.visit_id == visit_id)
            assert per_visit[visit_id] == 1 + photos  # logged, plus one per photo
        for hazard_id in hazard_ids:
            assert count_where(engine, Photo, Photo.hazard_id == hazard_id) <= 1
    finally:
        live.stop()


def count_where(engine, model, condition):
    return rows(engine, sa.select(sa.func.count()).select_from(model).where(condition))[0][0]


def test_stale_transition_is_shown_and_the_desk_change_stands(park, server, phones):
    engine = park["engine"]
    tokens = park["tokens"]
    hazard = desk_hazard(server, park, "T-004", "配电箱门未关", "用电安全")
    phone = phones()
    login(phone, server, "inspector")
    d = phone.driver
    card = wait(d, lambda d: d.find_element(By.CSS_SELECTOR,
                                            f"#fm-hazards li[data-hazard='{hazard['id']}']"))
    phone.network.offline()
    card.find_element(By.TAG_NAME, "button").click()
    form = d.find_element(By.ID, "fm-move-form")
    Select(form.find_element(By.NAME, "to")).select_by_value("rectifying")
    deadline = (date.today() + timedelta(days=7)).isoformat()
    js(d, "arguments[0].value = arguments[1];", form.find_element(By.NAME, "deadline"),
       deadline)
    note = "手机端：限期整改 <b>7天</b>"
    form.find_element(By.NAME, "note").send_keys(note)
    submit(phone, form)
    assert len(queue(phone)) == 1

    # the desk fixes it on the spot meanwhile
    status, moved, _ = api(server, f"/api/hazards/{hazard['id']}/transitions",
                           tokens["supervisor"], "POST",
                           {"to": "supervising", "note": "桌面端：立行立改"},
                           headers={"If-Match": f'"{hazard["version"]}"'})
    assert status == 200, moved
    phone.network.online()
    wait(d, lambda d: queue(phone)[0]["state"] == "conflict")
    (item,) = queue(phone)
    assert item["error"]["status"] == 412 and item["body"]["note"] == note
    syncs = js(d, "return gridfield.syncs")
    wait(d, lambda d: js(d, "return gridfield.syncs") >= syncs + 3)
    (again,) = queue(phone)
    assert again["attempts"] == 1 and again["state"] == "conflict"  # not retried for ever
    assert "未能同步" in d.find_element(By.ID, "fm-msg").text
    tab(phone, "queue")
    shown = d.find_element(By.CSS_SELECTOR, f"#fm-queue li[data-id='{item['id']}']")
    assert "冲突" in shown.text and note in shown.text
    row = rows(engine, sa.select(Hazard.status, Hazard.version).where(
        Hazard.id == hazard["id"]))[0]
    assert tuple(row) == ("supervising", moved["version"])
    actions = [r[0] for r in rows(engine, sa.select(HazardEvent.note).where(
        HazardEvent.hazard_id == hazard["id"]))]
    assert note not in actions and "桌面端：立行立改" in actions
    # retrying on the current version: an inspector may not move a supervised hazard
    shown.find_element(By.XPATH, ".//button[contains(., '按最新版本重试')]").click()
    wait(d, lambda d: "已不适用" in d.find_element(By.ID, "fm-msg").text)
    assert queue(phone)[0]["state"] == "conflict"
    shown = d.find_element(By.CSS_SELECTOR, f"#fm-queue li[data-id='{item['id']}']")
    shown.find_element(By.XPATH, ".//button[contains(., '放弃')]").click()
    wait(d, lambda d: queue(phone) == [])
    assert tuple(rows(engine, sa.select(Hazard.status, Hazard.version).where(
        Hazard.id == hazard["id"]))[0]) == ("supervising", moved["version"])


def test_grid_member_sees_and_acts_only_on_their_grids(park, server, phones, tmp_path):
    """Work list, map and writes of a grid member, on the API and the phone; a shared phone."""
    engine = park["engine"]
    tokens = park["tokens"]
    made = {}
    for grid in ("T-003", "T-004"):
        made[grid] = desk_hazard(server, park, grid, f"隐患 {grid}")
    # through the API
    status, listing, _ = api(server, "/api/me/worklist?park=T", tokens["member"])
    assert status == 200
    assert [h["id"] for h in listing["hazards"]] == [made["T-003"]["id"]]
    assert {f["properties"]["code"] for f in listing["grids"]["features"]} == {"T-003"}
    lon, lat = lonlat("T-004")
    before = count(engine, Hazard)
    status, body, _ = api(server, "/api/parks/T/hazards", tokens["member"], "POST",
                          {"lon": lon, "lat": lat, "category": "消防安全"})
    assert status == 403 and body["error"]["code"] == "outside_your_grids"
    status, body, _ = api(server, f"/api/hazards/{made['T-004']['id']}/transitions",
                          tokens["member"], "POST", {"to": "supervising"},
                          headers={"If-Match": f'"{made["T-004"]["version"]}"'})
    assert status == 403
    assert count(engine, Hazard) == before

    # on the phone: only T-003 is listed and drawn; a hazard logged in T-004 is refused
    phone = phones()
    login(phone, server, "member")
    d = phone.driver
    listed = d.find_element(By.ID, "fm-hazards").text
    assert made["T-003"]["code"] in listed and made["T-004"]["code"] not in listed
    tab(phone, "map")
    wait(d, lambda d: js(d, "return gridfield.layers && "
                            "gridfield.layers.grids.getLayers().length") == 1)
    log_hazard(phone, server, "越界上报", [photo_file(tmp_path, "out.jpg", (400, 300))],
               lonlat("T-004"))
    wait(d, lambda d: queue(phone) and queue(phone)[0]["state"] == "failed")
    item, held = queue(phone)
    assert item["error"]["status"] == 403 and item["error"]["code"] == "outside_your_grids"
    # its photo is never sent, and says why it waits
    assert held["kind"] == "photo" and held["state"] == "pending" and held["attempts"] == 0
    tab(phone, "queue")
    blocked = d.find_element(By.CSS_SELECTOR, f'li[data-id="{held["id"]}"] .fm-blocked')
    assert "未能同步" in blocked.text
    assert count(engine, Hazard) == before
    log_hazard(phone, server, "本网格上报", [], lonlat("T-003"))
    wait(d, lambda d: len(queue(phone)) == 2)  # the refused one stays, the good one synced
    assert rows(engine, sa.select(Hazard.description).where(
        Hazard.description == "本网格上报"))
    assert count(engine, Hazard) == before + 1

    # a shared phone: what the member captured is sent only by the member's session
    phone.network.offline()
    log_hazard(phone, server, "交班前记录", [], lonlat("T-003"))
    d.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the member's session ends
    phone.network.online()
    wait(d, lambda d: js(d, "return gridfield.loggedOut === true"))
    login(phone, server, "inspector")
    syncs = js(d, "return gridfield.syncs")
    wait(d, lambda d: js(d, "return gridfield.syncs") >= syncs + 3)
    waiting = [i for i in queue(phone) if (i["body"] or {}).get("description") == "交班前记录"]
    assert waiting and waiting[0]["state"] == "pending" and waiting[0]["attempts"] == 0
    assert count(engine, Hazard) == before + 1
    tab(phone, "queue")
    assert "由 member 记录" in d.find_element(By.ID, "fm-queue").text


def kv_keys(phone):
    return js_async(phone.driver, """
        const req = indexedDB.open("gridmap-field");
        req.onsuccess = () => {
          const keys = req.result.transaction("kv").objectStore("kv").getAllKeys();
          keys.onsuccess = () => done(keys.result.map(String));
        };""")


def session_status(phone):
    """What the server says of the phone's cookie: 200 logged in, 401 not."""
    return js_async(phone.driver, "fetch('/m/session.json', {cache: 'no-store'})"
                                  ".then((r) => done(r.status), () => done(0));")


def test_logout_on_a_shared_phone_leaves_no_work_list(park, server, phones):
    """Logging out (offline or online) drops the cached work list; the queue keeps its items
    for their user without showing their content to the next one."""
    engine = park["engine"]
    made = desk_hazard(server, park, "T-003", "仓库通道堵塞")
    lon, lat = lonlat("T-003")
    before = count(engine, Hazard)
    phone = phones()
    d = phone.driver
    login(phone, server, "member")
    assert made["code"] in d.find_element(By.ID, "fm-hazards").text
    assert any(k.startswith("bundle:member:") for k in kv_keys(phone))

    # offline logout: forgotten at once; the capture waits for the member's next session
    phone.network.offline()
    log_hazard(phone, server, "交班前的私人记录", [], (lon, lat))
    tab(phone, "list")
    tap(phone, d.find_element(By.ID, "fm-logout"))
    wait(d, lambda d: "已退出登录" in d.find_element(By.ID, "fm-msg").text)
    keys = kv_keys(phone)
    assert "logout" in keys and not [k for k in keys if k.startswith("bundle:") or k == "session"]
    assert made["code"] not in d.find_element(By.ID, "fm-hazards").text

    # the next holder opens the app offline: the shell, no list, the queue without content
    d.get(f"{server.url}/m/")
    wait_app(phone)
    assert d.find_element(By.ID, "fm-hazards").text == ""
    tab(phone, "queue")
    listed = d.find_element(By.ID, "fm-queue").text
    assert "由 member 记录" in listed and "交班前的私人记录" not in listed

    # back online, the app ends the member's server session before anything else
    phone.network.online()
    d.get(f"{server.url}/m/")
    wait(d, lambda d: "/login" in d.current_url or js(d, "return Boolean(window.gridfield && "
                                                         "gridfield.ready)"))
    wait(d, lambda d: session_status(phone) == 401)
    assert "logout" not in kv_keys(phone)
    assert count(engine, Hazard) == before

    # another user logs in: their own list; the member's item waits, unsent and unread
    login(phone, server, "inspector")
    assert made["code"] in d.find_element(By.ID, "fm-hazards").text
    tab(phone, "queue")
    assert "交班前的私人记录" not in d.find_element(By.ID, "fm-queue").text
    waiting = [i for i in queue(phone) if i["body"]["description"] == "交班前的私人记录"]
    assert waiting and waiting[0]["state"] == "pending" and waiting[0]["attempts"] == 0

    # online logout: the server session ends at once and no list stays
    tab(phone, "list")
    tap(phone, d.find_element(By.ID, "fm-logout"))
    wait(d, lambda d: "已退出登录" in d.find_element(By.ID, "fm-msg").text)
    assert session_status(phone) == 401
    assert not [k for k in kv_keys(phone) if k.startswith("bundle:") or k == "session"]
    assert made["code"] not in d.find_element(By.ID, "fm-hazards").text
    assert count(engine, Hazard) == before


def session_cookie(server, username):
    """Log ``username`` in with the form, outside the browser; return the session cookie."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{server.url}/login", timeout=60) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
    form = urllib.parse.urlencode({"username": username, "password": PASSWORDS[username],
                                   "csrf_token": token}).encode()
    with opener.open(f"{server.url}/login", data=form, timeout=60) as answer:
        assert answer.status == 200  # followed the redirect
    return {c.name: c.value for c in jar}["session"]


def test_a_queue_is_never_sent_as_the_next_user_of_the_phone(park, server, phones):
    """The member captures offline; meanwhile another tab of the phone logs the inspector in.

    The app still holds the member's session, but the cookie is the inspector's
    now: back online, nothing may be sent (or read) as the inspector.  The
    server refuses a request made for another account (``X-Gridmap-User``),
    the app drops its cached session and work list, learns who is logged in
    and keeps the member's item for the member, who sends it later as
    themselves.
    """
    engine = park["engine"]
    lon, lat = lonlat("T-003")
    before = count(engine, Hazard)
    phone = phones()
    d = phone.driver
    login(phone, server, "member")
    phone.network.offline()
    log_hazard(phone, server, "网格员的离线记录", [], (lon, lat))
    # another tab logs the inspector in: the phone's cookie changes hands
    d.execute_cdp_cmd("Network.setCookie", {  # host-only, as the server sets it
        "name": "session", "value": session_cookie(server, "inspector"), "url": server.url + "/",
        "path": "/", "httpOnly": True, "sameSite": "Lax"})
    assert [c["domain"] for c in d.get_cookies() if c["name"] == "session"] == ["127.0.0.1"]
    assert js(d, "return gridfield.session.user.name") == "member"
    phone.network.online()
    wait(d, lambda d: js(d, "return gridfield.session && gridfield.session.user.name") ==
         "inspector" or count(engine, Hazard) != before)
    # the inspector's own work list replaces the member's
    wait(d, lambda d: "bundle:inspector:T" in kv_keys(phone) or count(engine, Hazard) != before)
    assert count(engine, Hazard) == before
    item, = [i for i in queue(phone) if i["kind"] == "hazard"]
    assert item["state"] == "pending" and item["attempts"] == 0
    assert not [k for k in kv_keys(phone) if k.startswith("bundle:member:")]

    # the inspector logs out in the app, the member logs in: the item goes, as theirs
    tab(phone, "list")
    tap(phone, d.find_element(By.ID, "fm-logout"))
    wait(d, lambda d: "已退出登录" in d.find_element(By.ID, "fm-msg").text)
    login(phone, server, "member")
    wait(d, lambda d: queue(phone) == [])
    assert count(engine, Hazard) == before + 1
    actors = rows(engine, sa.select(HazardEvent.actor).join(Hazard).where(
        Hazard.description == "网格员的离线记录"))
    assert actors == [("member",)]

    # logged out, the forms keep nothing: an item of no user could never be sent
    tab(phone, "list")
    tap(phone, d.find_element(By.ID, "fm-logout"))
    wait(d, lambda d: "已退出登录" in d.find_element(By.ID, "fm-msg").text)
    tab(phone, "hazard")
    form = d.find_element(By.ID, "fm-hazard-form")
    tap(phone, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait(d, lambda d: "请先登录" in d.find_element(By.ID, "fm-msg").text)
    assert queue(phone) == [] and js(d, "return gridfield.captured") == 0
