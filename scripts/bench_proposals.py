"""Benchmark ``propose_grids`` on the demo park and on a synthetic 5,000-enterprise park.

For each park, method and balance the script times :func:`geodata.proposals.propose_grids`,
checks the result with :func:`geodata.coverage.check_coverage` (exact tiling, every
enterprise in exactly one grid) and reports the spread of the level-1 cell areas
(min/median/max in m², coefficient of variation) and the CVs of enterprises and
employees per cell.

The synthetic park is generated here (the demo builder is tuned for ~600
enterprises): a wobbly 30 km² outline with two holes, parcels on a jittered
block lattice (80 % polygons, 12 % hidden units inside a host parcel, 8 % gate
points), employees log-normal.

Usage::

    python scripts/bench_proposals.py                 # demo + 5,000 enterprises
    python scripts/bench_proposals.py --sizes 5000 --target-count 400 --repeat 1
"""

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geodata.coverage import check_coverage  # noqa: E402
from geodata.crs import STORAGE_SRID, to_storage  # noqa: E402
from geodata.proposals import BALANCES, METHODS, propose_grids, proposal_stats  # noqa: E402

EPSG = 4547
ORIGIN = np.array([536000.0, 3769000.0])
PARCEL_AREA_M2 = 6000.0  # mean ground per enterprise, roads included


def synthetic_park(n_enterprises, seed=1):
    """Return (park boundary, enterprises GeoDataFrame), EPSG:4326."""
    rng = np.random.default_rng(seed)
    area = n_enterprises * PARCEL_AREA_M2
    radius = np.sqrt(area / np.pi) * 1.08
    angles = np.linspace(0, 2 * np.pi, 241)[:-1]
    wobble = radius * (1 + 0.1 * np.sin(3 * angles) + 0.03 * rng.standard_normal(len(angles)))
    shell = np.column_stack([np.cos(angles), np.sin(angles)]) * wobble[:, None] + ORIGIN
    holes = [shapely.Point(ORIGIN + radius * np.array(o)).buffer(radius * r, quad_segs=6)
             for o, r in (((0.35, 0.1), 0.07), ((-0.3, -0.35), 0.05))]
    park = shapely.make_valid(shapely.Polygon(shell)).difference(shapely.union_all(holes))
    park = max(shapely.get_parts(park), key=lambda p: p.area)

    n_hidden = int(0.12 * n_enterprises)
    n_gate = int(0.08 * n_enterprises)
    n_parcels = n_enterprises - n_hidden - n_gate
    step = np.sqrt(park.area / (n_parcels + n_gate) * 0.92)
    xmin, ymin, xmax, ymax = park.bounds
    xs, ys = np.meshgrid(np.arange(xmin, xmax, step), np.arange(ymin, ymax, step))
    centres = np.column_stack([xs.ravel(), ys.ravel()]) + step / 2
    centres = centres[shapely.contains_xy(park, centres[:, 0], centres[:, 1])]
    rng.shuffle(centres)
    centres = centres[:int((n_parcels + n_gate) * 1.06)]
    # A few large plants (2 x 2 blocks) so that some enterprises earn a grid of their own.
    w = step * rng.uniform(0.45, 0.8, len(centres))
    h = step * rng.uniform(0.45, 0.8, len(centres))
    big = rng.random(len(centres)) < 0.004
    w[big], h[big] = step * 3.0, step * 3.0
    parcels = shapely.box(centres[:, 0] - w / 2, centres[:, 1] - h / 2,
                          centres[:, 0] + w / 2, centres[:, 1] + h / 2)
    parcels = shapely.intersection(parcels, park)
    # Large plants swallow the parcels they cover, so parcels never overlap.
    big_idx = np.flatnonzero(big)
    covered = np.zeros(len(parcels), dtype=bool)
    if len(big_idx):
        tree = shapely.STRtree(parcels)
        for i in big_idx:
            for j in tree.query(parcels[i], predicate="intersects"):
                if j != i and not big[j]:
                    covered[j] = True
    keep = np.flatnonzero(~covered & (shapely.area(parcels) > 1))[:n_parcels + n_gate]
    parcels, centres, big = parcels[keep], centres[keep], big[keep]
    gate = np.zeros(len(parcels), dtype=bool)
    gate[-n_gate:] = True
    sites = list(np.where(gate, shapely.points(centres), parcels))
    hosts = rng.choice(np.flatnonzero(~gate & (shapely.area(parcels) > 400)), n_hidden)
    sites += list(shapely.point_on_surface(parcels[hosts]))
    employees = np.maximum(1, rng.lognormal(3.2, 1.0, len(sites))).astype(int)
    employees[:len(parcels)][big] *= 20
    frame = gpd.GeoDataFrame({
        "name": [f"企业{i:05d}" for i in range(len(sites))],
        "credit_code": [f"SYN{i:015d}" for i in range(len(sites))],
        "employees": employees,
    }, geometry=to_storage(np.array(sites, dtype=object), EPSG), crs=STORAGE_SRID)
    return to_storage(park, EPSG), frame


def run(label, boundary, enterprises, target, methods, balances, repeat, epsg):
    """Time each method and balance; print one Markdown row each."""
    sites = enterprises[["name", "credit_code", "geometry"]]
    for method in methods:
        for balance in balances:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                frame = propose_grids(boundary, enterprises, method, target, balance,
                                      metric_epsg=epsg)
                times.append(time.perf_counter() - t0)
            report = check_coverage(frame.geometry.to_numpy(), frame["code"],
                                    frame["parent_code"], park=boundary, enterprises=sites,
                                    metric_epsg=epsg)
            s = proposal_stats(frame)
            e = report.enterprises
            ok = report.valid and not e["no_grid"] and not e["multi_grid"]
            print(f"| {label} | {method} | {balance} | {np.median(times):.2f} | "
                  f"{'pass' if ok else 'FAIL'} | {s['cells']} + {s['sub_grids']} | "
                  f"{s['area_min_m2']:,.0f} / {s['area_median_m2']:,.0f} / "
                  f"{s['area_max_m2']:,.0f} | {s['cv_area']} | {s['cv_enterprises']} | "
                  f"{s['cv_employees']} |", flush=True)


def main(argv=None):
    """Parse options and print the results as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000", help="Synthetic park sizes (enterprises).")
    parser.add_argument("--target-count", type=int, default=None,
                        help="Grids for the synthetic parks (default: one per 12 enterprises).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--balances", default=",".join(BALANCES))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    balances = args.balances.split(",")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, shapely {shapely.__version__} "
          f"(GEOS {shapely.geos_version_string}); median of {args.repeat} run(s)\n")
    print("| park | method | balance | time (s) | check | grids + sub-grids | "
          "area min / median / max (m²) | CV area | CV enterprises | CV employees |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    if not args.no_demo:
        from geodata.demo import build_demo_park

        demo = build_demo_park(today=date(2025, 11, 30))
        run("demo (621 ent.)", demo.park["boundary"], demo.enterprises, 60, methods, balances,
            args.repeat, demo.metric_epsg)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        t0 = time.perf_counter()
        boundary, enterprises = synthetic_park(size)
        built = time.perf_counter() - t0
        target = args.target_count or max(10, size // 12)
        print(f"<!-- synthetic park: {len(enterprises)} enterprises, built in {built:.1f} s -->",
              flush=True)
        run(f"synthetic ({len(enterprises)} ent.)", boundary, enterprises, target, methods,
            balances, args.repeat, EPSG)


if __name__ == "__main__":
    main()
