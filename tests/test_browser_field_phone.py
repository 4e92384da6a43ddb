"""What real phones do to the field app (/m/), in headless Chromium, on both backends.

A third audit of the offline app: a new deploy while the phone runs the old
script, a phone set to another time zone than the park's, and a capture whose
photo the phone cannot read.  The fixtures and helpers are those of
:mod:`tests.test_browser_field` (each test its own database, server, origin
and browser profile; every wait is for a condition).
"""

import shutil
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, IdempotencyRecord, Photo, ServiceRequest, Visit
from geodata.periods import ZONE, local_date, local_today
from geodata.services import visits
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.browser import ROOT, LiveServer
from tests.ledger_helpers import lonlat
from tests.test_browser_field import park, phones, server  # noqa: F401 (fixtures)
from tests.test_browser_field import (api, count, count_where, js, js_async, log_hazard,
                                      log_visit, login, photo_file, pick_on_map, queue, rows,
                                      submit, tab, tap, wait)

pytestmark = pytest.mark.browser

#: Appended to the deployed copy's field.js: the page runs the new script when it is set.
DEPLOY_MARK = "\nwindow.gridfieldDeploy = 2;\n"


def deployed_copy(folder):
    """The checkout's packages with a changed field.js: what a new deploy serves."""
    for package in ("geodata", "webmap"):
        shutil.copytree(ROOT / package, folder / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    script = folder / "webmap" / "static" / "field" / "field.js"
    script.write_text(script.read_text(encoding="utf-8") + DEPLOY_MARK, encoding="utf-8")
    return folder


def cache_names(phone):
    return js_async(phone.driver, "caches.keys().then(done);")


def cached_texts(phone):
    """The text of every response the service worker keeps."""
    return js_async(phone.driver, """
        (async () => {
          const out = [];
          for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const request of await cache.keys()) {
              out.push([request.url, await (await cache.match(request)).text()]);
            }
          }
          return out;
        })().then(done);""")


def test_a_deploy_replaces_the_old_script_before_it_sends(park, phones, tmp_path):  # noqa: F811
    """The phone runs the app of yesterday's deploy; today's server has changed it.

    The server goes down with a visit waiting and comes back as the new deploy on
    the same origin: the old script sends nothing, the service worker installs the
    new shell, the page reloads and the new script sends the visit, once.  The
    cached shell holds no data of the user.
    """
    engine = park["engine"]
    # A deploy keeps the secret key: the phone's session stays valid.
    secret = {"GRIDMAP_SECRET_KEY": "a-deploy-keeps-its-secret-key-0123456789"}
    old = LiveServer(park["url"], env=secret)
    try:
        phone = phones()
        login(phone, old, "member")
        d = phone.driver
        first = js(d, "return document.querySelector('script[data-version]').dataset.version")
        assert cache_names(phone) == [f"gridmap-field-{first}"]
        private = [js(d, "return gridfield.session.csrf"), "T-003", '"member"', ">member<"]
        for url, text in cached_texts(phone):
            assert not [p for p in private if p in text], url
    finally:
        old.stop()
    before = count(engine, Visit)
    log_visit(phone, "patrol", "部署前的巡查", [], lonlat("T-003"))
    wait(d, lambda d: queue(phone)[0]["attempts"] >= 1)  # tried: no server
    new = LiveServer(park["url"], env=secret, cwd=deployed_copy(tmp_path / "deploy"),
                     port=old.port)
    try:
        wait(d, lambda d: js(d, "return window.gridfieldDeploy === 2 && "
                                "Boolean(window.gridfield && gridfield.ready)"))
        wait(d, lambda d: queue(phone) == [])
        assert js(d, "return gridfield.stats.sent") >= 1  # sent by the new script
        version = js(d, "return document.querySelector('script[data-version]')"
                        ".dataset.version")
        assert version != first
        assert js_async(d, "fetch('/m/session.json').then((r) => r.json())"
                           ".then((s) => done(s.version));") == version
        assert cache_names(phone) == [f"gridmap-field-{version}"]
        assert count(engine, Visit) == before + 1
        assert rows(engine, sa.select(Visit.note, Visit.actor)) == [("部署前的巡查", "member")]
    finally:
        new.stop()


def other_zone():
    """A zone whose date differs from the park's now (UTC-12 or UTC+14, by the hour)."""
    zone = "Pacific/Kiritimati" if 10 <= datetime.now(timezone.utc).hour < 16 else "Etc/GMT+12"
    return zone


def test_a_phone_in_another_zone_dates_on_the_parks_day(park, server, phones):  # noqa: F811
    """A phone set to UTC-12 or UTC+14 (a traveller, a wrong setting): the hazard's
    found_date is the park's local day, not the phone's, so it is neither a day early
    nor refused as a day in the future; the visit keeps the instant it was made."""
    engine = park["engine"]
    phone = phones()
    d = phone.driver
    zone = other_zone()
    d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    login(phone, server, "inspector")
    phone_day = js(d, "const n = new Date(); return [n.getFullYear(), n.getMonth() + 1, "
                      "n.getDate()].map((x) => String(x).padStart(2, '0')).join('-')")
    park_day = local_today().isoformat()
    assert phone_day != park_day, zone
    phone.network.offline()
    log_hazard(phone, server, "时区不同的手机", [], lonlat("T-003"))
    log_visit(phone, "patrol", "时区不同的巡查", [], lonlat("T-003"))
    hazard, visit = queue(phone)
    assert hazard["body"]["found_date"] == park_day
    phone.network.online()
    wait(d, lambda d: queue(phone) == [])
    assert rows(engine, sa.select(Hazard.found_date).where(
        Hazard.description == "时区不同的手机"))[0][0].isoformat() == park_day
    (occurred,) = rows(engine, sa.select(Visit.occurred_at))[0]
    assert local_date(occurred.replace(tzinfo=occurred.tzinfo or timezone.utc)) == \
        local_today(), ZONE


def test_an_unreadable_photo_keeps_nothing_but_the_form(park, server, phones,  # noqa: F811
                                                        tmp_path):
    """A visit with a request and two photos, one of which the phone cannot decode.

    Nothing is queued (not the visit without its photo), the message names the
    file, the form keeps what was typed; without that photo the visit, its photo
    and its request are kept together and stored once.
    """
    engine = park["engine"]
    phone = phones()
    d = phone.driver
    login(phone, server, "inspector")
    phone.network.offline()
    broken = tmp_path / "IMG_0001.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    good = photo_file(tmp_path, "good.jpg", (800, 600))
    counts = {m: count(engine, m) for m in (Visit, ServiceRequest)}
    tab(phone, "visit")
    form = d.find_element(By.ID, "fm-visit-form")
    captured = js(d, "return gridfield.captured")
    log_visit_unsubmitted(phone, form, [good, broken])
    # a request needs its enterprise: said before anything is kept
    tap(phone, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait(d, lambda d: "需要选择企业" in d.find_element(By.ID, "fm-msg").text)
    assert queue(phone) == []
    Select(form.find_element(By.NAME, "enterprise")).select_by_value(
        make_credit_code("411621", 1))
    tap(phone, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait(d, lambda d: "IMG_0001.jpg" in d.find_element(By.ID, "fm-msg").text)
    assert "尚未保存" in d.find_element(By.ID, "fm-msg").text
    assert queue(phone) == [] and js(d, "return gridfield.captured") == captured
    assert form.find_element(By.NAME, "note").get_attribute("value") == "照片坏了的走访"
    # the member takes the broken photo out and saves again
    js(d, "arguments[0].value = '';", form.find_element(By.NAME, "photo"))
    form.find_element(By.NAME, "photo").send_keys(str(good))
    tap(phone, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait(d, lambda d: js(d, "return gridfield.captured") == captured + 1)
    assert sorted(i["kind"] for i in queue(phone)) == ["photo", "request", "visit"]
    phone.network.online()
    wait(d, lambda d: queue(phone) == [])
    assert count(engine, Visit) == counts[Visit] + 1
    assert count(engine, ServiceRequest) == counts[ServiceRequest] + 1


def log_visit_unsubmitted(phone, form, photos):
    """Fill the visit form (note, request, photos, a point on the map) without saving."""
    form.find_element(By.NAME, "note").send_keys("照片坏了的走访")
    Select(form.find_element(By.NAME, "request_category")).select_by_value("融资")
    form.find_element(By.NAME, "request_text").send_keys("贷款难")
    form.find_element(By.NAME, "photo").send_keys("\n".join(str(p) for p in photos))
    tap(phone, form.find_element(By.CSS_SELECTOR, ".fm-pick"))
    pick_on_map(phone, *lonlat("T-003"))
    wait(phone.driver, lambda d: not d.find_element(By.ID, "fm-view-visit")
         .get_attribute("hidden"))


def hostile(field):
    """Markup that would make an element carrying ``data-f=field`` if it were ever parsed."""
    return f'<img src=x data-f="{field}">{field}<b data-f="{field}">'


def test_every_text_the_phone_shows_stays_text(park, server, phones):  # noqa: F811
    """Hostile markup in every user-written text the field app shows: the park, grid and
    enterprise names, the user's display name, a hazard's description (work list, map
    tooltips, selects) and a visit's note, findings and request (queue): shown as text,
    no element made from any of it."""
    engine = park["engine"]
    texts = {f: hostile(f) for f in ("park", "grid", "enterprise", "user", "hazard", "note",
                                     "findings", "request")}
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE parks SET name = :t"), {"t": texts["park"]})
        conn.execute(sa.text("UPDATE grids SET name = :t"), {"t": texts["grid"]})
        conn.execute(sa.text("UPDATE enterprises SET name = :t"), {"t": texts["enterprise"]})
        conn.execute(sa.text("UPDATE users SET display_name = :t"), {"t": texts["user"]})
    with session_scope(engine, write=True) as session:
        visits.link(session, get_park(session, "T"), "inspector", make_credit_code("411621", 1))
    status, made, _ = api(server, "/api/parks/T/hazards", park["tokens"]["inspector"], "POST",
                          dict(zip(("lon", "lat"), lonlat((150, 150))), category="消防安全",
                               description=texts["hazard"]))
    assert status == 201 and made["enterprise"], made
    phone = phones()
    d = phone.driver
    login(phone, server, "inspector")
    phone.network.offline()
    tab(phone, "visit")
    form = d.find_element(By.ID, "fm-visit-form")
    Select(form.find_element(By.NAME, "enterprise")).select_by_value(make_credit_code("411621", 1))
    form.find_element(By.NAME, "note").send_keys(texts["note"])
    form.find_element(By.NAME, "findings").send_keys(texts["findings"])
    Select(form.find_element(By.NAME, "request_category")).select_by_value("融资")
    form.find_element(By.NAME, "request_text").send_keys(texts["request"])
    tap(phone, form.find_element(By.CSS_SELECTOR, ".fm-pick"))
    pick_on_map(phone, *lonlat("T-003"))
    wait(d, lambda d: not d.find_element(By.ID, "fm-view-visit").get_attribute("hidden"))
    submit(phone, form)
    # every view drawn: list, map with its grid tooltips open, the move form, the queue
    tab(phone, "map")
    wait(d, lambda d: js(d, "return gridfield.layers.grids.getLayers().length") == 4)
    js(d, "gridfield.layers.grids.eachLayer((l) => l.openTooltip());")
    shown = {"map": d.find_element(By.ID, "fm-map").text}
    tab(phone, "list")
    shown["list"] = d.find_element(By.ID, "fm-view-list").text
    shown["selects"] = js(d, "return Array.from(document.querySelectorAll('option'))"
                             ".map((o) => o.textContent).join(' ')")
    tab(phone, "queue")
    shown["queue"] = d.find_element(By.ID, "fm-queue").text
    everything = " ".join(shown.values())
    for field, text in texts.items():
        assert text in everything, field  # as typed, as text
    assert texts["grid"] in shown["map"] and texts["user"] in shown["list"]
    assert texts["park"] in shown["selects"] and texts["enterprise"] in shown["selects"]
    assert texts["hazard"] in shown["list"] and texts["enterprise"] in shown["list"]
    assert js(d, "return document.querySelectorAll('[data-f], img[src=x]').length") == 0
    phone.network.online()
    wait(d, lambda d: queue(phone) == [])
    assert js(d, "return document.querySelectorAll('[data-f], img[src=x]').length") == 0


def test_a_refused_capture_is_corrected_and_sent_under_a_new_key(park, server, phones,  # noqa: F811
                                                                 tmp_path):
    """The member picked a point in the neighbouring grid: 403 on replay, kept with the
    reason, never retried by itself.  修改后重发 opens it in its form; the member moves the
    point into their grid and saves: the same item (its photo still waiting for it) is
    sent under a new Idempotency-Key, since its body changed, and stored once."""
    engine = park["engine"]
    phone = phones()
    d = phone.driver
    login(phone, server, "member")
    phone.network.offline()
    log_hazard(phone, server, "选错了位置", [photo_file(tmp_path, "p.jpg", (400, 300))],
               lonlat("T-004"))
    phone.network.online()
    wait(d, lambda d: queue(phone)[0]["state"] == "failed")
    item, photo = queue(phone)
    assert item["error"]["code"] == "outside_your_grids" and photo["attempts"] == 0
    syncs = js(d, "return gridfield.syncs")
    wait(d, lambda d: js(d, "return gridfield.syncs") >= syncs + 3)
    assert queue(phone)[0]["attempts"] == 1  # not retried by itself
    tab(phone, "queue")
    shown = d.find_element(By.CSS_SELECTOR, f"#fm-queue li[data-id='{item['id']}']")
    assert "服务器拒绝" in shown.text
    tap(phone, shown.find_element(By.XPATH, ".//button[contains(., '修改后重发')]"))
    form = d.find_element(By.ID, "fm-hazard-form")
    wait(d, lambda d: not d.find_element(By.ID, "fm-view-hazard").get_attribute("hidden"))
    assert form.find_element(By.NAME, "description").get_attribute("value") == "选错了位置"
    tap(phone, form.find_element(By.CSS_SELECTOR, ".fm-pick"))
    pick_on_map(phone, *lonlat("T-003"))
    wait(d, lambda d: not d.find_element(By.ID, "fm-view-hazard").get_attribute("hidden"))
    submit(phone, form)
    wait(d, lambda d: queue(phone) == [])
    ((hazard_id, found),) = rows(engine, sa.select(Hazard.id, Hazard.found_date).where(
        Hazard.description == "选错了位置"))
    assert found.isoformat() == item["body"]["found_date"]  # the day it was found
    assert count_where(engine, Photo, Photo.hazard_id == hazard_id) == 1
    keys = {k for (k,) in rows(engine, sa.select(IdempotencyRecord.key))}
    assert keys == {f"{item['id']}-r1", photo["id"]}


def test_two_tabs_of_the_app_send_each_item_once(park, server, phones, tmp_path):  # noqa: F811
    """Two tabs of the app share one queue: one of them sends it, each item once (before,
    both sent every item, photos included, and the server replayed the second copies)."""
    engine = park["engine"]
    phone = phones()
    d = phone.driver
    login(phone, server, "inspector")
    phone.network.offline()
    picture = photo_file(tmp_path, "tabs.jpg", (1600, 1200))
    texts = [f"两个标签页 {i}" for i in range(6)]
    for text in texts:
        log_hazard(phone, server, text, [picture], lonlat("T-003"))
    first = d.current_window_handle
    d.switch_to.new_window("tab")
    d.get(server.url + "/m/")
    wait(d, lambda d: js(d, "return Boolean(window.gridfield && gridfield.ready)"))
    phone.network.offline()  # the new tab's target too
    phone.network.online()
    wait(d, lambda d: queue(phone) == [])
    stats = [js(d, "return gridfield.stats")]
    d.switch_to.window(first)
    stats.append(js(d, "return gridfield.stats"))
    assert sum(s["sent"] - s["lost"] for s in stats) == 12, stats
    assert sum(s["replayed"] for s in stats) == 0, stats
    stored = [r[0] for r in rows(engine, sa.select(Hazard.id).where(
        Hazard.description.in_(texts)))]
    assert len(stored) == 6
    assert count_where(engine, Photo, Photo.hazard_id.in_(stored)) == 6
