"""Benchmark gridmap's coverage check against PostGIS SQL, naive geopandas and GEOS.

For each size the script builds one irregular coverage (Voronoi cells of seeded
random points, clipped to an irregular park with holes, EPSG:4326) with
injected problems (removed cells, shifted vertices) and times, on that same
data:

* ``floor``   -- ``shapely.coverage_invalid_edges`` alone (the GEOS floor);
* ``gridmap`` -- :func:`geodata.coverage.check_coverage`;
* ``postgis`` -- the SQL a user would write: ``ST_Difference(park, ST_Union(cells))``
  and a GiST-indexed self-join with ``ST_Overlaps`` (loading is not timed);
* ``naive``   -- geopandas: ``to_crs``, ``union_all`` and an ``sjoin`` self-join
  with ``overlaps`` then pairwise intersections.

Every method runs in a forked child so its peak RSS and a time cap are its own.

Usage::

    python scripts/bench_coverage.py --sizes 1000,10000,100000
    python scripts/bench_coverage.py --no-postgis --sizes 1000000
    python scripts/bench_coverage.py --postgis-url postgresql://user@host/db
"""

import argparse
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import shapely
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geodata import crs  # noqa: E402
from geodata.coverage import check_coverage  # noqa: E402
from geodata.pgcluster import ThrowawayCluster  # noqa: E402

EPSG = 4547  # CGCS2000 / 3-degree GK CM 114E
ORIGIN = np.array([536000.0, 3769000.0])  # ~114.39E 34.06N
CELL_AREA_M2 = 4000.0  # mean cell area; the park grows with the cell count
MIN_AREA_M2 = 1e-4  # PostGIS/naive count parts above this; gridmap uses width


# ---- data --------------------------------------------------------------------------


def build_coverage(n, seed=0, n_gaps=5, n_shifts=5):
    """Return (cells, park) in EPSG:4326 with about ``n`` cells and injected problems.

    The park is a wobbly disc (metres, EPSG:4547) with three round holes.
    ``n_gaps`` interior cells are removed and one vertex of ``n_shifts`` other
    interior cells is moved by 1.5 m in both axes, making overlaps and gaps.
    """
    rng = np.random.default_rng(seed)
    radius = np.sqrt(n * CELL_AREA_M2 / np.pi) * 1.1
    angles = np.linspace(0, 2 * np.pi, 181)[:-1]
    wobble = radius * (1 + 0.12 * np.sin(5 * angles) + 0.05 * rng.standard_normal(len(angles)))
    shell = np.column_stack([np.cos(angles), np.sin(angles)]) * wobble[:, None] + ORIGIN
    holes = [
        shapely.Point(ORIGIN + radius * np.array(offset)).buffer(radius * r, quad_segs=8)
        for offset, r in [((0.3, 0.2), 0.08), ((-0.4, -0.1), 0.05), ((0.1, -0.5), 0.06)]
    ]
    park = shapely.make_valid(shapely.Polygon(shell)).difference(shapely.union_all(holes))
    park = shapely.get_parts(park)[np.argmax(shapely.area(shapely.get_parts(park)))]

    # Sample inside the park by rejection from its bounding box.
    xmin, ymin, xmax, ymax = park.bounds
    want = int(n * 1.0)
    pts = np.empty((0, 2))
    shapely.prepare(park)
    while len(pts) < want:
        cand = rng.uniform([xmin, ymin], [xmax, ymax], (want, 2))
        pts = np.vstack([pts, cand[shapely.contains_xy(park, cand[:, 0], cand[:, 1])]])
    pts = pts[:want]
    vor = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=park))
    cells = shapely.intersection(vor, park)
    cells = cells[~shapely.is_empty(cells)]
    cells = cells[np.isin(shapely.get_type_id(cells), [3, 6])]

    interior = np.flatnonzero(~shapely.intersects(cells, park.boundary))
    picks = rng.choice(interior, n_gaps + n_shifts, replace=False)
    for i in picks[n_gaps:]:
        coords = shapely.get_coordinates(cells[i])
        coords[0] += 1.5
        coords[-1] = coords[0]  # keep the ring closed
        moved = shapely.polygons(coords)
        if shapely.is_valid(moved):
            cells[i] = moved
    cells = np.delete(cells, picks[:n_gaps])
    return crs.to_storage(cells, EPSG), crs.to_storage(park, EPSG)


# ---- methods -----------------------------------------------------------------------


def run_floor(cells, park):
    """GEOS floor: coverage validation alone; counts flagged cells."""
    edges = shapely.coverage_invalid_edges(cells)
    return {"flagged": int((~shapely.is_empty(edges)).sum())}


def run_gridmap(cells, park, codes):
    """Run gridmap's full check; count gaps, overlaps and outside parts."""
    r = check_coverage(cells, codes, park=park, metric_epsg=EPSG)
    return {
        "gaps": len(r.gaps),
        "overlaps": len(r.overlaps),
        "outside": len(r.outside_park),
        "gap_m2": sum(g["area_m2"] for g in r.gaps),
        "overlap_m2": sum(o["area_m2"] for o in r.overlaps),
    }


def run_naive(cells, park):
    """Run what a geopandas user would write: to_crs, union_all, sjoin(overlaps)."""
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(geometry=cells, crs=4326).to_crs(EPSG)
    park_m = gpd.GeoSeries([park], crs=4326).to_crs(EPSG).iloc[0]
    gaps = shapely.get_parts(park_m.difference(gdf.union_all()))
    gaps = gaps[shapely.area(gaps) > MIN_AREA_M2]
    pairs = gpd.sjoin(gdf, gdf, predicate="overlaps")
    pairs = pairs[pairs.index < pairs["index_right"]]
    inter = shapely.intersection(
        gdf.geometry.values[pairs.index.to_numpy()],
        gdf.geometry.values[pairs["index_right"].to_numpy()],
    )
    return {
        "gaps": len(gaps),
        "overlaps": len(pairs),
        "gap_m2": float(shapely.area(gaps).sum()),
        "overlap_m2": float(shapely.area(inter).sum()),
    }


POSTGIS_GAPS = f"""
SELECT count(*), coalesce(sum(a), 0) FROM (
  SELECT ST_Area(ST_Transform(d.geom, {EPSG})) AS a
  FROM (SELECT (ST_Dump(ST_Difference(p.geom, (SELECT ST_Union(geom) FROM bench_cells)))).geom
        FROM bench_park p) d
) g WHERE a > {MIN_AREA_M2}
"""
POSTGIS_OVERLAPS = f"""
SELECT count(*), coalesce(sum(ST_Area(ST_Transform(ST_Intersection(a.geom, b.geom), {EPSG}))), 0)
FROM bench_cells a JOIN bench_cells b
  ON a.id < b.id AND a.geom && b.geom AND ST_Overlaps(a.geom, b.geom)
"""


def load_postgis(url, cells, park):
    """Load cells and park into fresh tables with a GiST index (not timed)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("DROP TABLE IF EXISTS bench_cells, bench_park")
        conn.execute(
            "CREATE TABLE bench_cells (id serial PRIMARY KEY, geom geometry(Geometry, 4326))"
        )
        conn.execute("CREATE TABLE bench_park (geom geometry(Geometry, 4326))")
        wkb = shapely.to_wkb(shapely.set_srid(cells, 4326), hex=True, include_srid=True)
        with conn.cursor() as cur:
            with cur.copy("COPY bench_cells (geom) FROM STDIN") as copy:
                for w in wkb:
                    copy.write_row((w,))
            cur.execute(
                "INSERT INTO bench_park VALUES (ST_GeomFromWKB(%s, 4326))", (shapely.to_wkb(park),)
            )
        conn.execute("CREATE INDEX ON bench_cells USING gist (geom)")
        conn.execute("ANALYZE bench_cells")


def postgis_versions(url):
    """Return 'PostgreSQL x, PostGIS y (GEOS z)' for the table header."""
    import psycopg

    with psycopg.connect(url) as conn:
        pg, postgis, geos = conn.execute(
            "SELECT current_setting('server_version'), postgis_lib_version(), "
            "postgis_geos_version()"
        ).fetchone()
    return f"PostgreSQL {pg}, PostGIS {postgis} (GEOS {geos})"


def run_postgis(url):
    """Run the gap and overlap SQL on the loaded tables."""
    import psycopg

    with psycopg.connect(url) as conn:
        gaps, gap_m2 = conn.execute(POSTGIS_GAPS).fetchone()
        overlaps, overlap_m2 = conn.execute(POSTGIS_OVERLAPS).fetchone()
    return {"gaps": gaps, "overlaps": overlaps, "gap_m2": gap_m2, "overlap_m2": overlap_m2}


# ---- harness -----------------------------------------------------------------------


def _child(conn, func, args):
    """Forked child: time ``func``, send (seconds, result, own peak RSS MB)."""
    t0 = time.perf_counter()
    result = func(*args)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send((seconds, result, peak_mb))
    conn.close()


def timed(func, *args, timeout=600, repeat=1):
    """Run ``func(*args)`` ``repeat`` times in forked children.

    Returns (median seconds, result, max peak RSS MB), or None on timeout.
    The machine is shared, so the median of a few runs is steadier than one.
    """
    runs = [_timed_once(func, args, timeout) for _ in range(repeat)]
    if any(r is None for r in runs):
        return None
    seconds = float(np.median([r[0] for r in runs]))
    return seconds, runs[0][1], max(r[2] for r in runs)


def _timed_once(func, args, timeout):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, func, args))
    proc.start()
    child.close()
    if parent.poll(timeout):
        out = parent.recv()
        proc.join()
        return out
    proc.kill()
    proc.join()
    return None


def _cpu_name():
    """Return the CPU model from /proc/cpuinfo, or the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def fmt(x, spec=".2f"):
    """Format a number for the table, ``-`` for missing."""
    return "-" if x is None else format(x, spec)


def bench_all_parks(n_parks, cells_per_park, workers, seed=0):
    """Time ``gridmap check --all`` over ``n_parks`` stored parks, serially and with workers.

    Parks are stored in a throwaway SpatiaLite file through the ORM (their
    injected overlaps would be refused by ``gridmap import``, which checks
    coverage).  Returns {workers: seconds}.
    """
    import geopandas as gpd

    from geodata import schema
    from geodata.models import Grid
    from geodata.models.base import to_element
    from geodata.services.parks import import_parks
    from geodata.storage import make_engine, session_scope

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/parks.sqlite"
        engine = make_engine(url, create=True)
        schema.upgrade(engine)
        for k in range(n_parks):
            cells, park = build_coverage(cells_per_park, seed=seed + k)
            frame = gpd.GeoDataFrame({"code": [f"P{k:02d}"], "name": [f"园区{k}"],
                                      "division_code": ["411621"]}, geometry=[park], crs=4326)
            with session_scope(engine, write=True) as session:
                (stored,), _ = import_parks(session, frame)
                multi = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g])
                         for g in cells]
                session.execute(sa.insert(Grid), [
                    {"park_id": stored.id, "code": f"P{k:02d}-{i:05d}", "name": str(i),
                     "level": 1, "kind": "area", "geom": to_element(g), "area_m2": 0.0,
                     "active_from": date.today(), "version": 1}
                    for i, g in enumerate(multi)])
        engine.dispose()
        seconds = {}
        for w in sorted({1, workers}):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "geodata.cli", "--db", url, "check", "--all",
                            "--workers", str(w)], capture_output=True, check=False)
            seconds[w] = time.perf_counter() - t0
        return seconds


def main(argv=None):
    """Build the coverages, time every method and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="comma-separated cell counts (default 1000,10000,100000)")
    parser.add_argument("--no-postgis", action="store_true", help="skip PostGIS")
    parser.add_argument("--postgis-url", help="use this database instead of a throwaway cluster")
    parser.add_argument("--naive-max", type=int, default=100000,
                        help="skip the naive method above this many cells (default 1e5)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="time cap per method and size, seconds (default 300)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per method and size; the median is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parks", type=int, default=4,
                        help="parks for the `check --all --workers` speed-up (0 to skip)")
    parser.add_argument("--park-cells", type=int, default=20000,
                        help="cells per park for the --all speed-up (default 20000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="workers for the --all speed-up (default: CPU count)")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]

    # A long-running service keeps its cached pyproj transformers; build them
    # before forking so no method pays the one-off PROJ database lookup.
    crs.transformer(crs.STORAGE_SRID, EPSG)
    crs.transformer(EPSG, crs.STORAGE_SRID)
    cluster = None
    url = args.postgis_url
    if not args.no_postgis and url is None:
        cluster = ThrowawayCluster(settings={"shared_buffers": "256MB", "work_mem": "256MB"})
        cluster.start()
        cluster.create_database("bench")
        url = cluster.url("bench", driver="")
    rows = []
    pg_versions = ""
    try:
        for n in sizes:
            t0 = time.perf_counter()
            cells, park = build_coverage(n, seed=args.seed)
            codes = [f"C{i}" for i in range(len(cells))]  # input data, like the cells
            print(f"# n={n}: {len(cells)} cells built in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            opts = {"timeout": args.timeout, "repeat": args.repeat}
            res = {"floor": timed(run_floor, cells, park, **opts),
                   "gridmap": timed(run_gridmap, cells, park, codes, **opts)}
            res["naive"] = (timed(run_naive, cells, park, **opts)
                            if n <= args.naive_max else None)
            res["postgis"] = None
            if url is not None:
                load_postgis(url, cells, park)
                pg_versions = "; " + postgis_versions(url)
                res["postgis"] = timed(run_postgis, url, **opts)
            for name, r in res.items():
                print(f"#   {name}: {'skipped/timeout' if r is None else r}", flush=True)
            rows.append((n, len(cells), res))
    finally:
        if cluster is not None:
            cluster.stop()

    def sec(r):
        return None if r is None else r[0]

    def ratio(a, b):
        return None if a is None or b is None else a / b

    def counts(r):
        return "-" if r is None else f"{r[1]['gaps']}/{r[1]['overlaps']}"

    print()
    print(f"median of {args.repeat} runs; machine: {_cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, shapely {shapely.__version__}, "
          f"GEOS {'.'.join(map(str, shapely.geos_version))}{pg_versions}")
    head = ("| cells | floor s | gridmap s | postgis s | naive s | gridmap/floor | "
            "postgis/gridmap | naive/gridmap | gaps/overlaps gridmap | postgis | naive | "
            "gridmap peak RSS MB |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for n, count, res in rows:
        g, f, p, nv = (sec(res[k]) for k in ("gridmap", "floor", "postgis", "naive"))
        print(f"| {count} | {fmt(f)} | {fmt(g)} | {fmt(p)} | {fmt(nv)} | {fmt(ratio(g, f))} | "
              f"{fmt(ratio(p, g))} | {fmt(ratio(nv, g))} | {counts(res['gridmap'])} | "
              f"{counts(res['postgis'])} | {counts(res['naive'])} | "
              f"{fmt(res['gridmap'][2] if res['gridmap'] else None, '.0f')} |")
    if args.parks:
        seconds = bench_all_parks(args.parks, args.park_cells, args.workers, seed=args.seed)
        serial, parallel = seconds[1], seconds[max(seconds)]
        print(f"\ngridmap check --all over {args.parks} parks x {args.park_cells} cells: "
              f"{serial:.1f} s with 1 worker, {parallel:.1f} s with {max(seconds)} workers "
              f"(speed-up {serial / parallel:.2f}x)")


if __name__ == "__main__":
    main()
