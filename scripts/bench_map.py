"""Benchmark the park map: page size, time to first render in Chromium, API bbox time.

For the demo park and a synthetic park (default 10 000 grids, 100 000 hazards),
compares the served map (grids fetched by bbox, coverage-simplified per zoom)
with the naive approach (the whole grid layer as unsimplified GeoJSON, inlined
in a folium page or fetched whole from the API).

    python scripts/bench_map.py                       # SpatiaLite temp file
    python scripts/bench_map.py --db postgresql+psycopg://...   # an empty database
    python scripts/bench_map.py --grids 2500 --hazards 25000    # smaller synthetic park

Needs Debian ``chromium`` + ``chromium-driver`` and the npm assets
(``scripts/install.sh``).  Prints a Markdown table.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import folium  # noqa: E402
import geopandas as gpd  # noqa: E402
import shapely  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from geodata import schema  # noqa: E402
from geodata.crs import to_storage  # noqa: E402
from geodata.models import Grid, Hazard, Park  # noqa: E402
from geodata.models.base import to_element  # noqa: E402
from geodata.services.demo_loader import load_demo  # noqa: E402
from geodata.services.parks import import_parks  # noqa: E402
from geodata.storage import make_engine, session_scope  # noqa: E402

BIG = "BIGPARK"
EPSG = 4547
ORIGIN = (530_000.0, 3_760_000.0)
CELL_M = 100.0


def build_synthetic(engine, n_grids, n_hazards, seed=1):
    """Insert a square park of n_grids square cells (100 m) and n_hazards random hazards."""
    side = int(round(n_grids ** 0.5))
    x0, y0 = ORIGIN
    with session_scope(engine) as session:
        if session.execute(sa.select(Park.id).where(Park.code == BIG)).first():
            return
    t = time.perf_counter()
    boundary = to_storage(shapely.box(x0, y0, x0 + side * CELL_M, y0 + side * CELL_M), EPSG)
    with session_scope(engine, write=True) as session:
        (park,), _ = import_parks(session, gpd.GeoDataFrame(
            [{"code": BIG, "name": "合成园区 synthetic", "division_code": "411621"}],
            geometry=[shapely.MultiPolygon([boundary])], crs=4326))
        ii, jj = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        ii, jj = ii.ravel(), jj.ravel()
        boxes = shapely.box(x0 + jj * CELL_M, y0 + ii * CELL_M, x0 + (jj + 1) * CELL_M,
                            y0 + (ii + 1) * CELL_M)
        cells = shapely.multipolygons(shapely.get_parts(to_storage(boxes, EPSG))
                                      .reshape(-1, 1))
        rows = [{"park_id": park.id, "code": f"{BIG}-{k + 1:05d}", "name": f"第{k + 1}网格",
                 "level": 1, "kind": "area", "geom": to_element(cells[k]),
                 "area_m2": CELL_M * CELL_M, "active_from": date(2025, 1, 1), "version": 1}
                for k in range(len(cells))]
        session.execute(sa.insert(Grid), rows)
        ids = dict(session.execute(sa.select(Grid.code, Grid.id).where(
            Grid.park_id == park.id)).all())
        rng = np.random.default_rng(seed)
        xy = rng.uniform((x0 + 0.5, y0 + 0.5), (x0 + side * CELL_M - 0.5,
                                                y0 + side * CELL_M - 0.5), (n_hazards, 2))
        cell = ((xy[:, 1] - y0) // CELL_M).astype(int) * side + ((xy[:, 0] - x0)
                                                                 // CELL_M).astype(int)
        pts = to_storage(shapely.points(xy), EPSG)
        status = rng.choice(["found", "rectifying", "supervising", "closed"], n_hazards,
                            p=[0.1, 0.1, 0.1, 0.7])
        found = date(2025, 1, 1)
        days = rng.integers(0, 330, n_hazards)
        for start in range(0, n_hazards, 20_000):
            chunk = range(start, min(start + 20_000, n_hazards))
            session.execute(sa.insert(Hazard), [{
                "park_id": park.id, "grid_id": ids[f"{BIG}-{cell[k] + 1:05d}"],
                "code": f"YH2025-{k + 1:06d}", "location": to_element(pts[k]),
                "category": "消防", "level": "major" if k % 37 == 0 else "general",
                "description": "", "found_date": found + timedelta(days=int(days[k])),
                "deadline": found + timedelta(days=int(days[k]) + 30),
                "status": str(status[k]), "version": 1} for k in chunk])
    print(f"built {BIG}: {side * side} grids, {n_hazards} hazards in "
          f"{time.perf_counter() - t:.1f} s", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return body, time.perf_counter() - t


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, script, timeout=300):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(script))


READY = ("return window.gridmap && gridmap.ready && gridmap.loads === 0 && !gridmap.scheduled")


def served_map(driver, base, code):
    """Load the served map; return (first render ms, bytes transferred, pan+reload ms)."""
    driver.get(f"{base}/parks/{code}/map")
    wait(driver, READY)
    render_ms = driver.execute_script("return gridmap.readyAt")
    transferred = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].transferSize + "
        "performance.getEntriesByType('resource').reduce((s, e) => s + e.transferSize, 0)")
    # pan by a viewport and zoom in once: the time until the new bbox is drawn
    t = time.perf_counter()
    driver.execute_script("gridmap.map.panBy([1400, 0], {animate: false});")
    wait(driver, "return gridmap.scheduled === false && gridmap.loads === 0")
    driver.execute_script("gridmap.map.zoomIn(1, {animate: false});")
    wait(driver, "return gridmap.scheduled === false && gridmap.loads === 0")
    pan_ms = (time.perf_counter() - t) * 1000
    return render_ms, transferred, pan_ms


def naive_page(base, code, tmp):
    """A folium page with the whole grid layer inlined as unsimplified GeoJSON."""
    body, _ = fetch(f"{base}/api/parks/{code}/grids")
    fc = json.loads(body)
    park, _ = fetch(f"{base}/api/parks/{code}")
    minx, miny, maxx, maxy = json.loads(park)["properties"]["bbox"]
    m = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], tiles=None, zoom_start=13)
    m.default_js = [("leaflet", f"{base}/assets/vendor/leaflet/leaflet.js")]
    m.default_css = [("leaflet_css", f"{base}/assets/vendor/leaflet/leaflet.css")]
    folium.GeoJson(fc, name="grids", style_function=lambda f: {
        "fillColor": "#fdae61" if f["properties"]["open_hazards"] else "#fff",
        "color": "#555", "weight": 1}).add_to(m)
    m.fit_bounds([[miny, minx], [maxy, maxx]])
    path = Path(tmp) / f"naive-{code}.html"
    m.save(str(path))
    return path


def naive_render(driver, path):
    driver.get(path.as_uri())
    wait(driver, "return document.readyState === 'complete'")
    return driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;")


def bench_park(base, code, driver, tmp):
    """All figures for one park."""
    park = json.loads(fetch(f"{base}/api/parks/{code}")[0])["properties"]
    minx, miny, maxx, maxy = park["bbox"]
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    dx, dy = 0.012, 0.006  # about a 1400 x 1000 px view at zoom 15 at this latitude
    bbox = f"{cx - dx:.6f},{cy - dy:.6f},{cx + dx:.6f},{cy + dy:.6f}"
    page, page_s = fetch(f"{base}/parks/{code}/map")
    q = f"{base}/api/parks/{code}/grids?bbox={bbox}&zoom=15&limit=4000"
    cold_body, cold = fetch(q)
    warm = sorted(fetch(q)[1] for _ in range(5))[2]
    whole, whole_s = fetch(f"{base}/api/parks/{code}/grids")
    hz = f"{base}/api/parks/{code}/hazards?status=open&bbox={bbox}&limit=10000"
    hz_body, hz_s = fetch(hz)
    row = {
        "park": code, "grids": park["grids"], "open_hazards": park["open_hazards"],
        "page_html_bytes": len(page), "page_s": page_s,
        "bbox_grids": json.loads(cold_body)["numberReturned"],
        "bbox_bytes": len(cold_body), "bbox_cold_s": cold, "bbox_warm_s": warm,
        "naive_api_bytes": len(whole), "naive_api_s": whole_s,
        "bbox_hazards": json.loads(hz_body)["numberReturned"], "bbox_hazards_s": hz_s,
    }
    if driver is not None:
        render_ms, transferred, pan_ms = served_map(driver, base, code)
        path = naive_page(base, code, tmp)
        row.update(first_render_ms=render_ms, first_render_bytes=transferred, pan_ms=pan_ms,
                   naive_page_bytes=path.stat().st_size,
                   naive_render_ms=naive_render(driver, path))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a temporary SpatiaLite file)")
    parser.add_argument("--grids", type=int, default=10_000)
    parser.add_argument("--hazards", type=int, default=100_000)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_map_")
    url = args.db or f"sqlite:///{tmp}/bench.sqlite"
    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    t = time.perf_counter()
    load_demo(engine, today=date(2025, 11, 30))
    print(f"demo ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    parks = ["FGKFQ"]
    if not args.no_synthetic:
        build_synthetic(engine, args.grids, args.hazards)
        parks.append(BIG)
    engine.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "geodata.cli", "--db", url, "serve",
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=dict(os.environ))
    driver = None
    try:
        for _ in range(300):
            try:
                fetch(base + "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        driver = None if args.no_browser else chrome()
        rows = [bench_park(base, code, driver, tmp) for code in parks]
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
    backend = make_engine(url).dialect.name
    print(f"\n### {backend}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs\n")
    keys = [k for k in rows[0]]
    print("| measure | " + " | ".join(r["park"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys[1:]:
        cells = []
        for r in rows:
            v = r.get(k)
            cells.append(f"{v * 1000:.0f} ms" if k.endswith("_s") and v is not None
                         else f"{v:.0f}" if isinstance(v, float) else str(v))
        print(f"| {k} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
