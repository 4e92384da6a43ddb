"""Benchmark the partitioned coverage check on Dask against the GEOS floor.

For each size the script builds one jittered lattice of ``n`` cells (shared
vertices, EPSG:4547 metres projected to EPSG:4326) inside a rectangular park,
with planted problems (removed cells: gaps; grown cells: overlaps), and times
side by side, on that same data:

* ``floor``     -- ``shapely.coverage_invalid_edges`` alone, one thread (the GEOS floor);
* ``single``    -- :func:`geodata.coverage.check_coverage`, one process;
* ``dask-1``    -- :func:`geodata.partition.check_partitioned` on a LocalCluster
  of one worker process (one thread);
* ``dask-2``    -- the same on two worker processes.

Cluster start-up is not timed (a running cluster is the normal case); the
partitioning, the transfer of WKB to the workers and the merge are.  Every
run checks that the partitioned findings have the same counts as the
single-process ones.

Usage::

    python scripts/bench_partition.py --sizes 100000,1000000
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geodata import crs  # noqa: E402
from geodata.coverage import check_coverage  # noqa: E402
from geodata.partition import check_partitioned  # noqa: E402

EPSG = 4547
X0, Y0 = 536000.0, 3769000.0  # ~114.39E 34.06N
SIDE = 50.0


def build(n, seed=0):
    """Return (cells, codes, park) in EPSG:4326: a jittered lattice of about ``n`` cells."""
    rng = np.random.default_rng(seed)
    side = int(round(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side + 1) * SIDE, np.arange(side + 1) * SIDE, indexing="ij")
    jitter = rng.uniform(-0.3, 0.3, (side + 1, side + 1, 2)) * SIDE
    jitter[[0, -1], :, 0] = 0
    jitter[:, [0, -1], 1] = 0
    vx, vy = gx + jitter[..., 0] + X0, gy + jitter[..., 1] + Y0
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    i, j = i.ravel(), j.ravel()
    corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1), (i, j)]
    coords = np.stack([np.column_stack([vx[a, b], vy[a, b]]) for a, b in corners], axis=1)
    cells = shapely.polygons(coords)
    keep = np.ones(len(cells), dtype=bool)
    keep[rng.choice(len(cells), 10, replace=False)] = False  # gaps
    grown = rng.choice(np.flatnonzero(keep), 10, replace=False)  # overlaps
    cells[grown] = [shapely.affinity.scale(c, 1.1, 1.1, origin="centroid") for c in cells[grown]]
    codes = np.char.add("G", np.arange(len(cells)).astype(str))[keep]
    # A vertex every SIDE metres, as on a surveyed boundary: an edge kilometres
    # long is straight in degrees but curved in metres (see docs/scaling.md).
    park = shapely.segmentize(shapely.box(X0, Y0, X0 + side * SIDE, Y0 + side * SIDE), SIDE)
    return crs.to_storage(cells[keep], EPSG), list(codes), crs.to_storage(park, EPSG)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def counts(report):
    return (len(report.gaps), len(report.overlaps), len(report.outside_park),
            len(report.unmatched_edges), len(report.invalid_grids))


def main():
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    print(f"# {platform.platform()}, {os.cpu_count()} cores, shapely {shapely.__version__} "
          f"(GEOS {shapely.geos_version_string})")
    print("| cells | floor s | single s | dask-1 s | dask-2 s | single/floor | dask-1/floor "
          "| dask-2/floor | 1->2 workers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",")]:
        cells, codes, park = build(n)
        floor, _ = timed(lambda: shapely.coverage_invalid_edges(cells))
        single_s, single = timed(lambda: check_coverage(cells, codes, park=park,
                                                        metric_epsg=EPSG))
        dask_s = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, memory_limit=0) as cluster, \
                    Client(cluster) as client:
                dask_s[workers], merged = timed(lambda: check_partitioned(
                    cells, codes, park=park, metric_epsg=EPSG, client=client))
            if counts(merged) != counts(single):
                raise SystemExit(f"{n} cells, {workers} workers: findings {counts(merged)} "
                                 f"!= single {counts(single)}")
        print(f"| {len(cells)} | {floor:.2f} | {single_s:.2f} | {dask_s[1]:.2f} | "
              f"{dask_s[2]:.2f} | {single_s / floor:.2f} | {dask_s[1] / floor:.2f} | "
              f"{dask_s[2] / floor:.2f} | {dask_s[1] / dask_s[2]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
