"""Benchmark ``gridmap check --park`` end to end against the single-thread GEOS floor.

A user checks a stored park by running ``gridmap check --park CODE --format
json``: process start, imports, reading the grids from the database, the
check, the three rates and the JSON.  This script stores one park of ``N``
grids from the province generator (``gridmap demo --parks 1
--grids-per-park N``) in a SpatiaLite file and in a throwaway PostGIS
cluster, then times, side by side in one run:

* ``floor``: ``shapely.coverage_invalid_edges`` on the same cells, already in
  memory, in a fresh process (the GEOS coverage validator alone);
* ``e2e``: the command, wall time from process start to JSON out;
* the stages inside one process (imports, read, check, rates) to say where
  the rest goes.

Each figure is the median of ``--repeat`` runs.  On a shared machine the
floor and the command run at different moments under different loads, so
the script also gives their CPU times (user + system seconds of the command's
process, ``process_time`` around the floor): both are single-threaded, so
their ratio is what the wall-time ratio is on an idle machine.  The generated databases are
kept in ``--workdir`` and reused.

Usage::

    python scripts/bench_check_e2e.py --grids 100000
    python scripts/bench_check_e2e.py --grids 100000 --backends spatialite --repeat 5
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARK = "PV001"

STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
from geodata.services import coverage
from geodata.services.parks import get_park, park_boundary
from geodata.storage import make_engine, session_scope
import shapely
t1 = time.perf_counter()
engine = make_engine(sys.argv[1])
with session_scope(engine) as session:
    park = get_park(session, sys.argv[2])
    t2 = time.perf_counter()
    cells, codes, parents = coverage.grid_cells(session, park)
    sites = coverage.enterprise_sites(session, park)
    t3 = time.perf_counter()
    floor0, floor_cpu0 = time.perf_counter(), time.process_time()
    shapely.coverage_invalid_edges(cells)
    floor, floor_cpu = time.perf_counter() - floor0, time.process_time() - floor_cpu0
    t4 = time.perf_counter()
    report = coverage.check_coverage(
        cells, codes, parents, park=park_boundary(park),
        enterprises=[(e["name"], e["credit_code"], e["site"]) for e in sites] or None,
        metric_epsg=park.metric_epsg)
    t5 = time.perf_counter()
    rates = coverage.park_rates(session, park, sites,
                                [e["credit_code"] for e in report.enterprises["no_grid"]])
    t6 = time.perf_counter()
    text = json.dumps(report.to_dict())
    t7 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "connect": t2 - t1, "read": t3 - t2, "floor": floor,
                  "floor_cpu": floor_cpu,
                  "check": t5 - t4, "rates": t6 - t5, "json": t7 - t6, "cells": len(cells),
                  "valid": report.valid}))
"""


def store_park(url, grids, env, *, stored=False):
    """Store one generated park of ``grids`` grids at ``url``; upgrade the schema if ``stored``."""
    env = {**env, "GRIDMAP_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "geodata.cli", "init-db"], check=True, env=env,
                   cwd=ROOT, capture_output=True)
    if stored:
        return
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geodata.cli", "demo", "--parks", "1",
                    "--grids-per-park", str(grids)], check=True, env=env, cwd=ROOT,
                   capture_output=True)
    print(f"  stored {grids} grids in {time.perf_counter() - started:.1f} s", flush=True)


def command():
    """How a user runs gridmap: the installed console script, else ``python -m``."""
    script = shutil.which("gridmap")
    return [script] if script else [sys.executable, "-m", "geodata.cli"]


def median_run(args, env, repeat):
    """Median wall and CPU time (s) of running ``args``; the last run's stdout.

    CPU time is the user + system time of the finished child processes
    (``RUSAGE_CHILDREN``), counted around each run.
    """
    times, cpu, out = [], [], ""
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(args, env=env, capture_output=True, text=True, cwd="/")
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr[-2000:]}")
        out = result.stdout
    return statistics.median(times), statistics.median(cpu), out


def bench_backend(name, url, repeat, env):
    env = {**env, "GRIDMAP_DATABASE_URL": url}
    stage_runs = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-c", STAGES, url, PARK], env=env, cwd=ROOT,
                                capture_output=True, text=True, check=True)
        stage_runs.append(json.loads(result.stdout))
    stages = {k: statistics.median(r[k] for r in stage_runs)
              for k in stage_runs[0] if k not in ("cells", "valid")}
    startup, _, _ = median_run([sys.executable, "-c", "pass"], env, repeat)
    e2e, e2e_cpu, out = median_run([*command(), "check", "--park", PARK, "--format", "json"],
                                   env, repeat)
    report = json.loads(out)
    return {"backend": name, "cells": stage_runs[0]["cells"], "valid": report["valid"],
            "startup": startup, "e2e": e2e, "e2e_cpu": e2e_cpu, **stages}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="spatialite,postgis")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "gridmap-bench-e2e"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GRIDMAP_DATA_DIR": str(workdir), "PYTHONPATH": str(ROOT)}
    print(f"# gridmap check --park, end to end, {args.grids} grids; {platform.processor() or ''}"
          f" {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; median of {args.repeat}")
    rows, cluster = [], None
    try:
        for backend in args.backends.split(","):
            if backend == "spatialite":
                path = workdir / f"park-{args.grids}.sqlite"
                url = f"sqlite:///{path}"
                store_park(url, args.grids, env, stored=path.exists())
            else:
                from geodata.pgcluster import ThrowawayCluster

                print("  starting a throwaway PostGIS cluster", flush=True)
                cluster = ThrowawayCluster().start()
                url = cluster.create_database("gridmap_bench")
                store_park(url, args.grids, env)
            rows.append(bench_backend(backend, url, args.repeat, env))
    finally:
        if cluster is not None:
            cluster.stop()
    keys = ("startup", "imports", "connect", "read", "check", "rates", "json", "e2e", "floor",
            "e2e_cpu", "floor_cpu")
    print("| backend | cells | valid | " + " | ".join(f"{k} s" for k in keys)
          + " | check/floor | e2e/floor | e2e/floor (CPU) |")
    print("|---" * (len(keys) + 6) + "|")
    for r in rows:
        print(f"| {r['backend']} | {r['cells']} | {r['valid']} | "
              + " | ".join(f"{r[k]:.3f}" for k in keys)
              + f" | {r['check'] / r['floor']:.2f}× | **{r['e2e'] / r['floor']:.2f}×**"
              + f" | **{r['e2e_cpu'] / r['floor_cpu']:.2f}×** |")


if __name__ == "__main__":
    main()
