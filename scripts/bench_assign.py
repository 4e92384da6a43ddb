"""Benchmark point-to-cell assignment side by side with ``geopandas.sjoin``.

In one run, on the same random points and the same cells (EPSG:4326): by
default the grids of one generated province-scale park
(:func:`geodata.province.build_province`, jittered ~100 m quadrilaterals
around a hole; points in the hole or off the park get no cell), or with
``--cells lattice`` a regular lattice of 50 m squares.

- ``geopandas.sjoin`` (predicate ``intersects``, deduplicated to one cell
  per point: the lowest cell index, as ``assign_to_cells`` does);
- the per-pair path ``assign_to_cells`` used before (an STRtree on the
  cells, one ``intersects`` test per point and candidate cell), still used
  for non-point geometries;
- ``assign_to_cells`` on one core (an STRtree on the points, queried with
  the prepared cells);
- ``assign_to_cells(..., workers=N)`` on a warm Dask ``LocalCluster`` of N
  single-threaded processes, and once with a cold cluster started by the
  call itself.

Every variant must give the same cell for every point; the script stops
if one does not.  It prints points per second and the ratio to sjoin.

Usage::

    python scripts/bench_assign.py [--points 1000000] [--grids 100000] [--workers 2]
        [--repeat 3] [--cells province|lattice]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

# This checkout, not whichever gridmap is installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodata.batch import local_cluster_options  # noqa: E402
from geodata.province import build_province  # noqa: E402
from geodata.spatial import _assign_general, assign_to_cells  # noqa: E402


def lattice(n_grids, size=0.0005, x0=114.3, y0=34.0):
    """The most square lattice of ``n_grids`` cells of ``size`` degrees, and its extent."""
    cols = max(d for d in range(1, int(np.sqrt(n_grids)) + 1) if n_grids % d == 0)
    rows = n_grids // cols
    i = np.arange(n_grids)
    cx, cy = x0 + (i % cols) * size, y0 + (i // cols) * size
    return shapely.box(cx, cy, cx + size, cy + size), (x0, y0, x0 + cols * size, y0 + rows * size)


def sjoin_assign(points, cells):
    """One cell per point with ``geopandas.sjoin``: the lowest intersecting cell index."""
    left = gpd.GeoDataFrame(geometry=points, crs=4326)
    right = gpd.GeoDataFrame(geometry=cells, crs=4326)
    joined = gpd.sjoin(left, right, how="left", predicate="intersects")
    first = joined["index_right"].groupby(level=0).min()
    return first.reindex(np.arange(len(points))).fillna(-1).to_numpy(np.int64)


def best_of(repeat, fn):
    """Run ``fn`` ``repeat`` times; return (its last result, the fastest time in s)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main(argv=None):
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cells", choices=("province", "lattice"), default="province")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    if args.cells == "lattice":
        cells, (x0, y0, x1, y1) = lattice(args.grids)
    else:
        (park,) = build_province(1, args.grids)
        cells = park.grids.geometry.to_numpy()
        x0, y0, x1, y1 = park.park["boundary"].bounds
    rng = np.random.default_rng(args.seed)
    points = shapely.points(rng.uniform(x0, x1, args.points), rng.uniform(y0, y1, args.points))
    n = args.points
    print(f"{n:,} points, {args.grids:,} cells ({args.cells}), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start; best of {args.repeat}")

    rows = []
    expected, t = best_of(args.repeat, lambda: sjoin_assign(points, cells))
    rows.append(("geopandas.sjoin (intersects, one cell per point)", t))

    def check(name, fn):
        got, t = best_of(args.repeat, fn)
        if not np.array_equal(got, expected):
            raise SystemExit(f"{name} disagrees with sjoin on {(got != expected).sum()} points")
        rows.append((name, t))

    check("per-pair path (tree on cells, intersects per pair)",
          lambda: _assign_general(points, cells, np.arange(len(cells))))
    check("assign_to_cells, 1 core", lambda: assign_to_cells(points, cells))
    with LocalCluster(**local_cluster_options(args.workers)) as cluster, Client(cluster):
        assign_to_cells(points[:1000], cells, workers=args.workers)  # workers import shapely
        check(f"assign_to_cells, workers={args.workers} (warm Dask LocalCluster)",
              lambda: assign_to_cells(points, cells, workers=args.workers))
    check(f"assign_to_cells, workers={args.workers} (cluster started by the call)",
          lambda: assign_to_cells(points, cells, workers=args.workers))

    sjoin_t = rows[0][1]
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    print("| method | s | points/s | vs sjoin |")
    print("|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {n / t:,.0f} | {sjoin_t / t:.2f}x |")


if __name__ == "__main__":
    main()
