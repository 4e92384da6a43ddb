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
* ``e2e-1``: the same command with ``--threads 1`` (one thread, the path
  before ``--threads``), alternating with ``e2e`` run by run;
* ``base``: with ``--baseline DIR``, the command of another source tree (e.g.
  ``git archive main | tar -x -C DIR``), alternating with the others;
* the stages inside one process (imports, read, check in one thread and
  with the default threads, rates) to say where the rest goes.

Each figure is the median of ``--repeat`` runs.  On a shared machine the
floor and the command run at different moments under different loads, so
the script also gives their CPU times (user + system seconds of the command's
process, ``process_time`` around the floor): both are single-threaded, so
their ratio is what the wall-time ratio is on an idle machine.  The generated databases are
kept in ``--workdir`` and reused.

Usage::

    python scripts/bench_check_e2e.py --grids 100000
    python scripts/bench_check_e2e.py --grids 100000 --backends spatialite --repeat 5
    python scripts/bench_check_e2e.py --backends spatialite --baseline /tmp/main-tree
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
from geodata.coverage import default_threads
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
    args = (cells, codes, parents)
    options = dict(park=park_boundary(park), metric_epsg=park.metric_epsg,
                   enterprises=[(e["name"], e["credit_code"], e["site"]) for e in sites] or None)
    t4, check_cpu0 = time.perf_counter(), time.process_time()
    report = coverage.check_coverage(*args, **options)
    t5, check_cpu = time.perf_counter(), time.process_time() - check_cpu0
    # Second, so it finds this thread's PROJ transformer built (0.04 s).
    threads0, threads_cpu0 = time.perf_counter(), time.process_time()
    coverage.check_coverage(*args, threads=default_threads(), **options)
    threaded = {"check_threads": time.perf_counter() - threads0,
                "check_threads_cpu": time.process_time() - threads_cpu0}
    t6 = time.perf_counter()
    rates = coverage.park_rates(session, park, sites,
                                [e["credit_code"] for e in report.enterprises["no_grid"]])
    t7 = time.perf_counter()
    text = json.dumps(report.to_dict())
    t8 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "connect": t2 - t1, "read": t3 - t2, "floor": floor,
                  "floor_cpu": floor_cpu,
                  "check": t5 - t4, "check_cpu": check_cpu, "rates": t7 - t6, "json": t8 - t7,
                  "cells": len(cells), "valid": report.valid, **threaded}))
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
    """Median wall and CPU time (s) of running ``args``; the last run's stdout."""
    (result,) = median_runs({"run": (args, env)}, repeat).values()
    return result


def median_runs(variants, repeat):
    """Median wall and CPU time (s) and the last stdout of each variant, run in turn.

    ``variants`` maps a name to ``(args, env)``; each round runs every
    variant once, so they share the load of the moment.  CPU time is the
    user + system time of the finished child processes (``RUSAGE_CHILDREN``),
    counted around each run.
    """
    times = {name: ([], [], "") for name in variants}
    for _ in range(repeat):
        for name, (args, env) in variants.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            result = subprocess.run(args, env=env, capture_output=True, text=True, cwd="/")
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if result.returncode not in (0, 1):
                raise SystemExit(f"{' '.join(args)} failed: {result.stderr[-2000:]}")
            walls, cpus, _ = times[name]
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            times[name] = (walls, cpus, result.stdout)
    return {name: (statistics.median(walls), statistics.median(cpus), out)
            for name, (walls, cpus, out) in times.items()}


def bench_backend(name, url, repeat, env, baseline=None):
    env = {**env, "GRIDMAP_DATABASE_URL": url}
    stage_runs = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-c", STAGES, url, PARK], env=env, cwd=ROOT,
                                capture_output=True, text=True, check=True)
        stage_runs.append(json.loads(result.stdout))
    stages = {k: statistics.median(r[k] for r in stage_runs)
              for k in stage_runs[0] if k not in ("cells", "valid")}
    startup, _, _ = median_run([sys.executable, "-c", "pass"], env, repeat)
    check = [*command(), "check", "--park", PARK, "--format", "json"]
    variants = {"e2e": (check, env), "e2e_1": ([*check, "--threads", "1"], env)}
    if baseline:
        variants["base"] = (check, {**env, "PYTHONPATH": str(baseline)})
    runs = median_runs(variants, repeat)
    outputs = {out for _, _, out in runs.values()}
    if len(outputs) != 1:
        raise SystemExit("the variants printed different reports")
    report = json.loads(outputs.pop())
    figures = {}
    for variant, (wall, cpu, _) in runs.items():
        figures[variant], figures[f"{variant}_cpu"] = wall, cpu
    return {"backend": name, "cells": stage_runs[0]["cells"], "valid": report["valid"],
            "startup": startup, **figures, **stages}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="spatialite,postgis")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "gridmap-bench-e2e"))
    parser.add_argument("--baseline", type=Path,
                        help="Also time the command of this source tree (alternating).")
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
            rows.append(bench_backend(backend, url, args.repeat, env, args.baseline))
    finally:
        if cluster is not None:
            cluster.stop()
    keys = [k for k in ("startup", "imports", "connect", "read", "check", "check_cpu",
                        "check_threads", "check_threads_cpu", "rates", "json", "floor",
                        "floor_cpu", "e2e", "e2e_cpu", "e2e_1", "e2e_1_cpu", "base", "base_cpu")
            if k in rows[0]]
    ratios = [k for k in ("e2e", "e2e_1", "base") if k in rows[0]]
    print("| backend | cells | valid | " + " | ".join(f"{k} s" for k in keys) + " | "
          + " | ".join(f"{k}/floor | {k}/floor (CPU)" for k in ratios) + " |")
    print("|---" * (len(keys) + 3 + 2 * len(ratios)) + "|")
    for r in rows:
        print(f"| {r['backend']} | {r['cells']} | {r['valid']} | "
              + " | ".join(f"{r[k]:.3f}" for k in keys) + " | "
              + " | ".join(f"**{r[k] / r['floor']:.2f}×** | "
                           f"**{r[k + '_cpu'] / r['floor_cpu']:.2f}×**" for k in ratios) + " |")
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
