"""Benchmark the field app (/m/) and its sync path on the demo park.

1. First load of ``/m/`` on a cold profile as a 375 x 812 phone under Puppeteer's
   "Slow 3G" (2 s RTT, 50 kB/s each way) set over the DevTools protocol: bytes
   the page transferred (HTML, scripts, styles, icons, the work list; there are
   no map tiles), the bytes the service worker then stores for offline use, and
   the time until the work list is drawn from the network.
2. Time to sync 500 items queued offline (hazards and patrols), unthrottled.
3. Twenty phones syncing at once: 20 threads through the JSON API, each sending
   hazards and visits with an ``Idempotency-Key`` and resending 10 % of them
   with the same key (a lost answer).  Reports requests per second and checks
   that the rows stored equal the distinct keys.

Usage::

    python scripts/bench_field.py [--db URL] [--items 500] [--phones 20] [--per-phone 50]
        [--screenshot docs/field-worklist-375.png]

The database defaults to a fresh SpatiaLite file holding the demo park.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodata import schema  # noqa: E402
from geodata.services.demo_loader import PARK_CODE, load_demo  # noqa: E402
from geodata.services.users import create_demo_accounts, create_token  # noqa: E402
from geodata.storage import make_engine, session_scope  # noqa: E402
from tests.cdp import SLOW_3G, Network  # noqa: E402

USER, PASSWORD = "inspector", "inspector-demo-2025"  # demo accounts (docs/ledger.md)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(url, phones):
    """Migrate, load the demo park and its accounts; return API tokens for the phones."""
    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    load_demo(engine)
    with session_scope(engine, write=True) as session:
        create_demo_accounts(session)
        tokens = [create_token(session, USER, f"bench-phone-{i}")[0] for i in range(phones)]
    engine.dispose()
    return tokens


def serve(url, data_dir):
    port = free_port()
    log = open(Path(data_dir) / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "geodata.cli", "--db", url, "serve", "--port", str(port),
         "--threads", "8"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "GRIDMAP_DATA_DIR": str(data_dir)})
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gridmap serve did not start")


def phone(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    driver.set_script_timeout(3600)
    return driver


def until(driver, script, timeout=3600):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(script))


def first_load(driver, base, screenshot=None):
    """Figures of a cold first load of /m/ under Slow 3G (the login is not counted)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login?next=/")
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    until(driver, "return location.pathname === '/'")
    network = Network(driver)
    network.apply(SLOW_3G)
    driver.get(f"{base}/m/")
    until(driver, "return Boolean(window.gridfield && gridfield.loadedAt)")
    usable_ms = driver.execute_script("return gridfield.loadedAt")
    page_bytes = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].transferSize + "
        "performance.getEntriesByType('resource').reduce((s, e) => s + e.transferSize, 0)")
    until(driver, "return navigator.serviceWorker.controller !== null")
    network.apply({"offline": False, "latency": 0, "downloadThroughput": -1,
                   "uploadThroughput": -1})
    cached = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          let total = 0;
          for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const request of await cache.keys()) {
              total += (await (await cache.match(request)).arrayBuffer()).byteLength;
            }
          }
          return total;
        })().then(done);""")
    hazards = driver.execute_script("return gridfield.bundle.hazards.length")
    if screenshot:
        driver.save_screenshot(str(screenshot))
    return {"page_bytes": page_bytes, "sw_cache_bytes": cached, "usable_ms": usable_ms,
            "hazards_listed": hazards}, network


def sync_queue(driver, network, n_items, points):
    """Queue ``n_items`` offline (half hazards, half patrols at grid anchors); time the sync.

    Returns the figures and the items the server refused (none expected).
    """
    network.offline()
    until(driver, "return navigator.onLine === false")
    driver.execute_async_script("""
        const [n, points, done] = arguments;
        (async () => {
          for (let i = 0; i < n; i++) {
            const location = {type: "Point", coordinates: points[i % points.length]};
            if (i % 2 === 0) {
              await gridfield.enqueue("hazard", {body: {location, category: "消防安全",
                level: "general", description: `bench ${i}`}});
            } else {
              await gridfield.enqueue("visit", {body: {kind: "patrol", location,
                occurred_at: new Date().toISOString(), note: `bench ${i}`}});
            }
          }
        })().then(done);""", n_items, points)
    t = time.perf_counter()
    network.online()
    until(driver, "return navigator.onLine === true")
    refused = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          for (;;) {  // until nothing is pending: stored, or refused and kept
            await gridfield.syncNow();
            const left = await gridfield.queueAll();
            if (!left.some((i) => i.state === "pending")) return left.map((i) => i.error);
            await new Promise((r) => setTimeout(r, 20));
          }
        })().then(done);""")
    seconds = time.perf_counter() - t
    return {"items": n_items, "seconds": round(seconds, 2), "refused": refused,
            "items_per_s": round(n_items / seconds, 1)}


def many_phones(base, tokens, per_phone, park_points):
    """Each token is a phone sending ``per_phone`` writes (10 % resent with the same key)."""
    host, port = base.split("//")[1].split(":")
    counts = {"requests": 0, "created": 0, "replayed": 0, "busy": 0, "errors": 0}
    lock = threading.Lock()

    def run(index, token):
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        local = dict.fromkeys(counts, 0)
        for k in range(per_phone):
            lon, lat = park_points[(index * per_phone + k) % len(park_points)]
            key = str(uuid.uuid4())
            if k % 2:
                path, body = f"/api/parks/{PARK_CODE}/visits", {
                    "client_id": key, "kind": "patrol", "lon": lon, "lat": lat,
                    "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
            else:
                path, body = f"/api/parks/{PARK_CODE}/hazards", {
                    "lon": lon, "lat": lat, "category": "消防安全", "description": key}
            sends = 2 if k % 10 == 0 else 1  # every tenth answer "lost": sent again
            while sends:
                conn.request("POST", path, json.dumps(body), {
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Idempotency-Key": key})
                response = conn.getresponse()
                response.read()
                local["requests"] += 1
                if response.status >= 500 or response.status == 429:
                    # busy (SQLite's one writer): wait as told and send the same again,
                    # as the phone's queue does
                    local["busy"] += 1
                    time.sleep(float(response.getheader("Retry-After") or 1))
                    continue
                sends -= 1
                if response.getheader("Idempotent-Replayed") == "true":
                    local["replayed"] += 1
                elif response.status == 201:
                    local["created"] += 1
                else:
                    local["errors"] += 1
        conn.close()
        with lock:
            for name, value in local.items():
                counts[name] += value

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(tokens)]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t
    return {**counts, "phones": len(tokens), "seconds": round(seconds, 2),
            "requests_per_s": round(counts["requests"] / seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a fresh SpatiaLite file)")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--phones", type=int, default=20)
    parser.add_argument("--per-phone", type=int, default=50)
    parser.add_argument("--screenshot", type=Path, help="save the work list at 375 px here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-field-"))
    url = args.db or f"sqlite:///{tmp / 'bench.sqlite'}"
    tokens = setup(url, args.phones)
    proc, base = serve(url, tmp)
    driver = phone(tmp / "profile")
    try:
        load, network = first_load(driver, base, args.screenshot)
        print(f"first load of /m/ (Slow 3G): {load['page_bytes']:,} bytes transferred, "
              f"usable after {load['usable_ms'] / 1000:.1f} s with {load['hazards_listed']} "
              f"open hazards listed; the service worker then holds "
              f"{load['sw_cache_bytes']:,} bytes for offline starts")
        with urllib.request.urlopen(f"{base}/api/parks/{PARK_CODE}/grids") as r:
            points = [f["properties"]["anchor"] for f in json.load(r)["features"]]
        synced = sync_queue(driver, network, args.items, points)
        print(f"sync of {synced['items']} queued items: {synced['seconds']} s "
              f"({synced['items_per_s']} items/s); refused: {synced['refused'] or 'none'}")
        before = stored_counts(url)
        phones = many_phones(base, tokens, args.per_phone, points)
        after = stored_counts(url)
        new_rows = sum(after[k] - before[k] for k in after)
        print(f"{phones['phones']} phones at once: {phones['requests']} requests in "
              f"{phones['seconds']} s = {phones['requests_per_s']} requests/s; "
              f"{phones['created']} created, {phones['replayed']} replayed, "
              f"{phones['busy']} busy answers sent again, {phones['errors']} errors; "
              f"rows stored {new_rows} "
              f"(expected {args.phones * args.per_phone})")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(30)


def stored_counts(url):
    import sqlalchemy as sa

    from geodata.models import Hazard, Visit

    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {m.__tablename__: conn.execute(sa.select(sa.func.count()).select_from(m))
                  .scalar() for m in (Hazard, Visit)}
    engine.dispose()
    return counts


if __name__ == "__main__":
    main()
