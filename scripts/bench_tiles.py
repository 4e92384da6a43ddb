"""Vector tiles (PostGIS ST_AsMVT) against the bbox GeoJSON layer for one z14 view.

    python scripts/bench_tiles.py [--grids 100000] [--hazards 100000] [--repeat 5]

Starts a throwaway PostGIS cluster, builds the synthetic square park of
``bench_map.py`` (100 m cells), and times, for the z14 tiles around the park
centre: ``ST_AsMVT`` tiles through the API route versus the same area as the
bbox GeoJSON layer (simplified for zoom 14, and unsimplified) through the API.
Prints bytes and median milliseconds per request.
"""

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_map import BIG, CELL_M, EPSG, ORIGIN, build_synthetic  # noqa: E402
from geodata import schema  # noqa: E402
from geodata.crs import transformer  # noqa: E402
from geodata.pgcluster import ThrowawayCluster  # noqa: E402
from geodata.storage import make_engine  # noqa: E402
from webmap import create_app  # noqa: E402


def tile_bounds(z, x, y):
    """Lon/lat bounds of a web-mercator tile."""
    n = 2 ** z

    def lat(t):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * t / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def timed(client, url, repeat):
    """Median milliseconds and size of a GET."""
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        size = len(response.data)
    return statistics.median(times), size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--hazards", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with ThrowawayCluster() as cluster:
        url = cluster.create_database("tiles")
        engine = make_engine(url)
        schema.upgrade(engine)
        build_synthetic(engine, args.grids, args.hazards)
        engine.dispose()
        app = create_app({"DATABASE_URL": url, "TESTING": True})
        client = app.test_client()
        side = round(args.grids ** 0.5) * CELL_M
        lon, lat = transformer(EPSG, 4326).transform(ORIGIN[0] + side / 2, ORIGIN[1] + side / 2)
        z = 14
        n = 2 ** z
        x0 = int((lon + 180) / 360 * n)
        y0 = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        tiles = [(x0 + dx, y0 + dy) for dx in (0, 1) for dy in (0, 1)]
        rows = []
        for x, y in tiles:
            bbox = ",".join(f"{v:.7f}" for v in tile_bounds(z, x, y))
            mvt = timed(client, f"/api/parks/{BIG}/tiles/grids/{z}/{x}/{y}.mvt", args.repeat)
            simplified = timed(client, f"/api/parks/{BIG}/grids?bbox={bbox}&zoom={z}"
                                       "&limit=20000", args.repeat)
            full = timed(client, f"/api/parks/{BIG}/grids?bbox={bbox}&limit=20000",
                         args.repeat)
            rows.append((f"{z}/{x}/{y}", mvt, simplified, full))
        app.extensions["gridmap.engine"].dispose()
    print(f"{args.grids} grids, {args.hazards} hazards on PostGIS; median of {args.repeat}")
    print("| tile | MVT ms | MVT bytes | bbox GeoJSON z14 ms | bytes | unsimplified ms | bytes |")
    print("|---|---|---|---|---|---|---|")
    for name, (mt, mb), (st, sb), (ft, fb) in rows:
        print(f"| {name} | {mt:.0f} | {mb} | {st:.0f} | {sb} | {ft:.0f} | {fb} |")


if __name__ == "__main__":
    main()
