"""Benchmark the vector-tile map on the 10^5-grid park: first load, long tasks, tile p95.

    python scripts/bench_vector_map.py [--grids 100000] [--backends spatialite,postgis]
                                       [--data-dir DIR] [--rounds 3] [--cpu-throttle 1]
                                       [--pages tiles,bbox]

Generates the province park ``PV001`` (``gridmap demo --parks 1 --grids-per-park N``)
once into a SpatiaLite file under ``--data-dir`` (reused by later runs) and into a
throwaway PostGIS cluster, then for each backend, side by side in one run:

* in headless Chromium, the map page as served (grids from vector tiles above
  ``GRIDMAP_MAP_TILE_THRESHOLD``) and, for comparison, the same page forced onto the
  bbox GeoJSON path (threshold 10^9): bytes transferred until the first view is drawn
  (goal: ≤ 1 MB) and every long task (``PerformanceObserver('longtask')``, goal: none
  over 200 ms) during a scripted walk of pans and zooms;
* over HTTP, each z14 tile around the park centre as MVT and the same area as the bbox
  GeoJSON layer (``zoom=14``), interleaved, cold (no ``If-None-Match``): median and p95
  (``--rounds 0`` skips this).

``--cpu-throttle 4`` slows the page's CPU four times (DevTools
``Emulation.setCPUThrottlingRate``): a loaded machine, reproducibly, for the long tasks.
``--pages tiles`` skips the GeoJSON page.

Not a test: the machine is shared, so figures move between runs.  Needs Debian
``chromium`` + ``chromium-driver``.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_map import chrome, fetch, free_port, wait  # noqa: E402
from geodata import schema  # noqa: E402
from geodata.pgcluster import ThrowawayCluster  # noqa: E402
from geodata.province import park_codes  # noqa: E402
from geodata.services.demo_loader import load_province  # noqa: E402
from geodata.storage import make_engine  # noqa: E402

CODE = park_codes(1)[0]
LONGTASKS = ("window.__longtasks = [];"
             "new PerformanceObserver(l => l.getEntries().forEach("
             "e => window.__longtasks.push(Math.round(e.duration))))"
             ".observe({type: 'longtask', buffered: true});")
SETTLED = ("return window.gridmap && gridmap.ready && gridmap.loads === 0 && !gridmap.scheduled"
           " && (!gridmap.tiles || gridmap.tiles.loading === 0)")
#: The scripted walk: (method, argument) on the Leaflet map, animated like a user's.
WALK = [("panBy", [600, 0]), ("panBy", [0, 400]), ("zoomIn", 1), ("panBy", [-700, 0]),
        ("zoomIn", 1), ("panBy", [0, -500]), ("zoomOut", 1), ("panBy", [900, 300]),
        ("zoomOut", 1), ("zoomOut", 1), ("panBy", [-800, -200]), ("zoomIn", 1),
        ("panBy", [500, 500]), ("zoomIn", 1), ("panBy", [-400, 0])]


def load(url, grids):
    """Load PV001 with ``grids`` grids unless it is there; return seconds spent."""
    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    t = time.perf_counter()
    print(load_province(engine, 1, grids), file=sys.stderr)
    engine.dispose()
    return time.perf_counter() - t


def serve(url, threshold=None):
    """``gridmap serve`` in a subprocess; return (process, base URL)."""
    port = free_port()
    env = dict(os.environ)
    if threshold is not None:
        env["GRIDMAP_MAP_TILE_THRESHOLD"] = str(threshold)
    proc = subprocess.Popen([sys.executable, "-m", "geodata.cli", "--db", url, "serve",
                             "--port", str(port), "--threads", "4"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            fetch(base + "/healthz")
            return proc, base
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gridmap serve did not start")


def browse(base, throttle=1):
    """First-load bytes and time, then long tasks during the scripted walk."""
    driver = chrome()
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LONGTASKS})
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        if throttle > 1:
            driver.execute_cdp_cmd("Emulation.setCPUThrottlingRate", {"rate": throttle})
        t = time.perf_counter()
        driver.get(f"{base}/parks/{CODE}/map")
        wait(driver, SETTLED)
        first_s = time.perf_counter() - t
        first = driver.execute_script(
            "const r = performance.getEntriesByType('resource');"
            "return [performance.getEntriesByType('navigation')[0].transferSize"
            " + r.reduce((s, e) => s + e.transferSize, 0),"
            " r.filter(e => e.name.includes('.mvt')).length,"
            " r.filter(e => e.name.includes('/grids?')).length, window.__longtasks.slice()];")
        driver.execute_script("window.__longtasks.length = 0;")
        t = time.perf_counter()
        for method, arg in WALK:
            driver.execute_script(f"gridmap.map.{method}(arguments[0]);", arg)
            time.sleep(0.3)  # the animation ends and moveend schedules the reload
            wait(driver, SETTLED)
        walk_s = time.perf_counter() - t
        tasks = driver.execute_script("return window.__longtasks.slice();")
        return {"first_bytes": first[0], "first_s": first_s, "first_tiles": first[1],
                "first_bbox_requests": first[2], "first_longtasks": first[3],
                "walk_s": walk_s, "walk_longtasks": tasks}
    finally:
        driver.quit()


def z14_tiles(base, rounds):
    """Cold MVT tiles versus bbox GeoJSON for the 5 x 5 z14 tiles at the park centre."""
    park = json.loads(fetch(f"{base}/api/parks/{CODE}")[0])["properties"]
    minx, miny, maxx, maxy = park["bbox"]
    lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
    z, n = 14, 2 ** 14
    x0 = int((lon + 180) / 360 * n)
    y0 = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)

    def lat_of(t):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * t / n))))

    times = {"mvt": [], "geojson": []}
    sizes = {"mvt": [], "geojson": []}
    for _ in range(rounds):
        for x in range(x0 - 2, x0 + 3):
            for y in range(y0 - 2, y0 + 3):
                bbox = (f"{x / n * 360 - 180:.7f},{lat_of(y + 1):.7f},"
                        f"{(x + 1) / n * 360 - 180:.7f},{lat_of(y):.7f}")
                for kind, url in (
                        ("mvt", f"{base}/api/parks/{CODE}/tiles/grids/{z}/{x}/{y}.mvt"),
                        ("geojson", f"{base}/api/parks/{CODE}/grids?bbox={bbox}&zoom={z}"
                                    "&limit=20000")):
                    body, seconds = fetch(url)
                    times[kind].append(seconds * 1000)
                    sizes[kind].append(len(body))

    def p95(values):
        return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]

    return {kind: {"median_ms": statistics.median(v), "p95_ms": p95(v),
                   "median_bytes": statistics.median(sizes[kind]), "n": len(v)}
            for kind, v in times.items()}


def bench(url, rounds, throttle=1, pages=("tiles", "bbox")):
    """Every figure for one database."""
    row = {}
    for label, threshold in (("tiles", None), ("bbox", 10**9)):
        if label not in pages:
            continue
        proc, base = serve(url, threshold)
        try:
            fetch(f"{base}/parks/{CODE}/map")  # warm the server's caches once
            row[label] = browse(base, throttle)
            if label == "tiles" and rounds:
                row["z14"] = z14_tiles(base, rounds)
        finally:
            proc.terminate()
            proc.wait(10)
    return row


def report(backend, row, load_s, throttle=1):
    print(f"\n### {backend}: {CODE}, {load_s:.0f} s to load, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, CPU throttling {throttle}x\n")
    print("| measure | vector tiles | bbox GeoJSON |")
    print("|---|---|---|")
    # a page not measured (--pages) shows as n/a
    empty = {"first_bytes": "n/a", "first_s": math.nan, "first_tiles": "n/a",
             "first_bbox_requests": "n/a", "walk_s": math.nan, "first_longtasks": [],
             "walk_longtasks": []}
    t, b = row.get("tiles", empty), row.get("bbox", empty)
    for key, label in (("first_bytes", "first load, bytes transferred"),
                       ("first_s", "first load until drawn, s"),
                       ("first_tiles", "MVT requests in the first load"),
                       ("first_bbox_requests", "bbox grid requests in the first load"),
                       ("walk_s", f"walk of {len(WALK)} pans/zooms, s")):
        fmt = (lambda v: f"{v:.1f}") if key.endswith("_s") else str
        print(f"| {label} | {fmt(t[key])} | {fmt(b[key])} |")
    for key, label in (("first_longtasks", "long tasks in the first load, ms"),
                       ("walk_longtasks", "long tasks while panning/zooming, ms")):
        print(f"| {label} | {max(t[key], default=0)} max, {len(t[key])} tasks, "
              f"{sum(d > 200 for d in t[key])} > 200 ms | {max(b[key], default=0)} max, "
              f"{len(b[key])} tasks, {sum(d > 200 for d in b[key])} > 200 ms |")
    if "z14" not in row:
        return
    z = row["z14"]
    print(f"\nz14 tiles around the centre, cold, {z['mvt']['n']} requests each:\n")
    print("| path | median ms | p95 ms | median bytes |")
    print("|---|---|---|---|")
    for kind, label in (("mvt", "MVT tile"), ("geojson", "bbox GeoJSON, zoom=14")):
        print(f"| {label} | {z[kind]['median_ms']:.0f} | {z[kind]['p95_ms']:.0f} | "
              f"{z[kind]['median_bytes']:.0f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--backends", default="spatialite,postgis")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/gridmap-bench-vector"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-throttle", type=float, default=1)
    parser.add_argument("--pages", default="tiles,bbox")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    options = {"throttle": args.cpu_throttle, "pages": args.pages.split(",")}
    if "spatialite" in backends:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{args.data_dir / f'province-{args.grids}.sqlite'}"
        load_s = load(url, args.grids)
        report("SpatiaLite", bench(url, args.rounds, **options), load_s, args.cpu_throttle)
    if "postgis" in backends:
        with ThrowawayCluster() as cluster:
            url = cluster.create_database("vector_map")
            load_s = load(url, args.grids)
            report("PostGIS", bench(url, args.rounds, **options), load_s, args.cpu_throttle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
