"""Benchmark the hazard API against the framework's floor, on SpatiaLite and on PostGIS.

In one run, per backend, two servers (running side by side) are driven by
the same concurrent clients (threads with keep-alive ``http.client``
connections), in three phases that take turns ``--rounds`` times:

* **floor**: a bare Flask + SQLAlchemy app (in this file) whose one endpoint
  inserts one row into the same database, through the same engine setup
  (:func:`geodata.storage.make_engine`) and the same WSGI server;
* **create**: ``POST /api/parks/<code>/hazards`` on ``gridmap serve``;
* **transition**: ``POST /api/hazards/<id>/transitions`` on the hazards
  just created (found → rectifying → supervising).

Both apps are served the way users run ``gridmap serve``: with
``--workers 1`` waitress in one process, with ``--workers N`` gunicorn
(``gthread``) with N processes; ``--threads`` threads each.  The script
prints requests/s, p50/p95 latency and the ratio of each operation's time
per request to the floor's, and checks that no write was lost: the rows
and history events stored equal the 2xx answers.

``--lock-hold`` also times, on each backend, how long a split of a grid with
``--vertices`` vertices holds the write lock: a second connection commits
one-row writes in a loop while the split runs, and the longest wait of those
writes is the lock's hold time (see docs/scaling.md, "Write locks").

Usage::

    python scripts/bench_api.py [--clients 8] [--per-client 40] [--rounds 1] [--workers 2]
        [--threads 4] [--backends spatialite,postgis] [--lock-hold] [--vertices 20000]
"""

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench_hazards import _Client, _free_port, _setup_database  # noqa: E402

FLOOR_TABLE = "bench_floor"


def floor_app(url):
    """The floor: Flask + SQLAlchemy, one endpoint that inserts one row and answers JSON."""
    from flask import Flask, jsonify, request

    from geodata.storage import make_engine

    app = Flask("floor")
    engine = make_engine(url)
    table = sa.Table(FLOOR_TABLE, sa.MetaData(), autoload_with=engine)

    @app.post("/rows")
    def insert():
        note = request.get_json()["note"]
        with engine.begin() as conn:
            row_id = conn.execute(table.insert().values(note=note)
                                  .returning(table.c.id)).scalar_one()
        response = jsonify({"id": row_id, "note": note})
        response.status_code = 201
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


def _serve_floor(url, port, workers, threads):
    """Serve :func:`floor_app` exactly as ``gridmap serve`` serves gridmap."""
    if workers == 1:
        from waitress import serve

        serve(floor_app(url), host="127.0.0.1", port=port, threads=threads, ident="floor")
        return
    from geodata.cli.serve import _gunicorn

    _gunicorn(lambda: floor_app(url), {
        "bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "control_socket_disable": True}).run()


def _start(command):
    """Start a server subprocess and wait until ``/healthz`` answers; return (process, port)."""
    port = _free_port()
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=ROOT,
                               env={**os.environ, "GRIDMAP_SECRET_KEY": "bench-key"})
    deadline = time.time() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"server did not start: {command}")
        time.sleep(0.2)


def _stop(process):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _drive(clients, jobs):
    """Run ``jobs[k]`` (a list of ``(client, path, body)``) on client thread k, all at once.

    Returns (seconds, latencies in s, {status: count}, answers per client).
    """
    latencies, statuses, answers = [], {}, [[] for _ in range(clients)]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def work(k):
        barrier.wait()
        mine = []
        for client, path, body in jobs[k]:
            t = time.perf_counter()
            status, data = client.post(path, body(answers[k]) if callable(body) else body)
            mine.append(time.perf_counter() - t)
            answers[k].append((status, data))
        with lock:
            latencies.extend(mine)
            for status, _ in answers[k]:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    t = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t, latencies, statuses, answers


def _tree_cpu(root):
    """CPU seconds (user + system) of process ``root`` and its descendants, reaped ones too.

    On a shared machine the wall time per request moves with the other jobs'
    load; the CPU the server and the database spend per request moves far
    less, and on a saturated machine it is what bounds the throughput.
    """
    parents, spent = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry)] = int(fields[1])
        # utime, stime, and cutime, cstime: the children it waited for (backends that ended)
        spent[int(entry)] = sum(int(x) for x in fields[11:15])
    total = 0
    for pid, ticks in spent.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        total += ticks if ancestor == root else 0
    return total / os.sysconf("SC_CLK_TCK")


def _database_root(url):
    """The PostgreSQL postmaster's pid (the parent of a backend), or None for SQLite."""
    if not url.startswith("postgresql"):
        return None
    from geodata.storage import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:  # read while the backend lives
            backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with open(f"/proc/{backend}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
    finally:
        engine.dispose()


def _figures(name, seconds, latencies, statuses):
    lat = np.array(latencies) * 1000
    return {"name": name, "requests": len(latencies), "seconds": seconds,
            "rps": len(latencies) / seconds, "per_request_ms": seconds / len(latencies) * 1000,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "statuses": statuses}


def _pooled(name, parts):
    """One row of figures from a phase's rounds: pooled counts and latencies, per-round times."""
    seconds = sum(p[0] for p in parts)
    latencies = [x for p in parts for x in p[1]]
    statuses = {}
    for p in parts:
        for status, count in p[2].items():
            statuses[status] = statuses.get(status, 0) + count
    row = _figures(name, seconds, latencies, statuses)
    row["round_ms"] = [p[0] / len(p[1]) * 1000 for p in parts]
    row["cpu_ms"] = sum(p[3] for p in parts) / len(latencies) * 1000
    return row


def bench_backend(url, clients, per_client, workers, threads, rounds=1):
    """Floor, creates and transitions on one database; return (rows of figures, checks).

    Both servers run at once and the three phases take turns, ``rounds`` times
    (floor, create, transition, floor, ...), so a change in the machine's load
    hits all three alike; each round's ratios are kept (``round_ms``).
    """
    engine, tokens = _setup_database(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {FLOOR_TABLE} (id INTEGER PRIMARY KEY "
                             "{} , note VARCHAR(200) NOT NULL)".format(
                                 "GENERATED ALWAYS AS IDENTITY"
                                 if engine.dialect.name == "postgresql" else "")))
    serve = [sys.executable, "-m", "geodata.cli", "--db", url, "serve", "--workers",
             str(workers), "--threads", str(threads)]
    floor = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", url,
             "--workers", str(workers), "--threads", str(threads)]
    retries, phases = 0, {"floor": [], "create": [], "transition": []}
    rng = np.random.default_rng(1)
    spots = rng.uniform([114.3805, 34.0505], [114.3995, 34.0695],
                        (rounds, clients, per_client + 1, 2))
    deadline = (date.today() + timedelta(days=30)).isoformat()
    floor_process, floor_port = _start(floor)
    process, database = None, _database_root(url)
    try:
        process, port = _start(serve)

        def driven(server, jobs):
            # (seconds, latencies, statuses, CPU s of the server and the database), answers
            before = _tree_cpu(server.pid) + (_tree_cpu(database) if database else 0)
            seconds, lat, statuses, answers = _drive(clients, jobs)
            spent = _tree_cpu(server.pid) + (_tree_cpu(database) if database else 0) - before
            return (seconds, lat, statuses, spent), answers

        def clients_of(server_port, token):
            # New connections per phase: servers close idle keep-alive ones (gunicorn: 2 s).
            return [_Client(server_port, token) for _ in range(clients)]

        def create(conn, r, k, j):
            lon, lat = spots[r, k, j]
            return (conn, "/api/parks/BENCH/hazards", {
                "lon": float(lon), "lat": float(lat), "category": "消防安全",
                "description": f"压测 {r}-{k}-{j}"})

        for r in range(rounds):
            conns = clients_of(floor_port, "")
            if r == 0:  # warm-up: one request per connection
                _drive(clients, [[(c, "/rows", {"note": "warm-up"})] for c in conns])
            phase, _ = driven(floor_process, [
                [(conns[k], "/rows", {"note": f"floor {r}-{k}-{j}"}) for j in range(per_client)]
                for k in range(clients)])
            phases["floor"].append(phase)
            retries += sum(c.retries for c in conns)

            conns = clients_of(port, tokens["inspector"])
            if r == 0:
                _drive(clients, [[create(conns[k], r, k, per_client)] for k in range(clients)])
            phase, answers = driven(process, [
                [create(conns[k], r, k, j) for j in range(per_client)] for k in range(clients)])
            phases["create"].append(phase)
            ids = [[data["id"] for status, data in mine if status == 201] for mine in answers]
            retries += sum(c.retries for c in conns)

            conns = clients_of(port, tokens["inspector"])
            phase, _ = driven(process, [[step for hid in ids[k] for step in (
                (conns[k], f"/api/hazards/{hid}/transitions",
                 {"to": "rectifying", "version": 1, "deadline": deadline}),
                (conns[k], f"/api/hazards/{hid}/transitions",
                 {"to": "supervising", "version": 2}))]
                for k in range(clients)])
            phases["transition"].append(phase)
            retries += sum(c.retries for c in conns)
    finally:
        if process is not None:
            _stop(process)
        _stop(floor_process)
    rows = [_pooled("floor: Flask + SQLAlchemy, insert one row", phases["floor"]),
            _pooled("gridmap: create a hazard", phases["create"]),
            _pooled("gridmap: transition a hazard", phases["transition"])]
    with engine.connect() as conn:
        floor_rows = conn.execute(sa.text(f"SELECT count(*) FROM {FLOOR_TABLE}")).scalar()
        hazards = conn.execute(sa.text("SELECT count(*) FROM hazards")).scalar()
        events = conn.execute(sa.text("SELECT count(*) FROM hazard_events")).scalar()
    engine.dispose()
    ok_floor = rows[0]["statuses"].get(201, 0) + clients  # + the warm-up rows
    ok_creates = rows[1]["statuses"].get(201, 0) + clients  # + the warm-up creates
    ok_moves = rows[2]["statuses"].get(200, 0)
    checks = {
        "floor rows": (floor_rows, ok_floor), "hazards": (hazards, ok_creates),
        "history events": (events, ok_creates + ok_moves),
        "all 2xx": (sum(r["statuses"].get(s, 0) for r in rows for s in (200, 201)),
                    sum(r["requests"] for r in rows)),
        "503 retries": (retries, retries),
    }
    return rows, checks


def lock_hold(url, vertices):
    """Longest wait of one-row writes while a split of a ``vertices``-vertex grid runs.

    Returns (split seconds, longest write wait in s, writes done during the split).
    """
    import geopandas as gpd
    import shapely

    from geodata import schema
    from geodata.services import edits
    from geodata.services.grids import import_grids
    from geodata.services.parks import get_park, import_parks
    from geodata.storage import make_engine, session_scope

    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    # A 2 km square park of two grids sharing a wavy edge: each has ``vertices`` vertices.
    n = max(vertices - 3, 4)
    ys = np.linspace(34.07, 34.05, n)
    xs = 114.39 + 0.0005 * np.sin(np.linspace(0, 40 * np.pi, n))
    edge = list(zip(xs, ys))
    west = shapely.Polygon([(114.38, 34.07), *edge, (114.38, 34.05)])
    east = shapely.Polygon([*edge, (114.40, 34.05), (114.40, 34.07)])
    park = gpd.GeoDataFrame([{"code": "LOCK", "name": "锁", "division_code": "411621"}],
                            geometry=[shapely.box(114.38, 34.05, 114.40, 34.07)], crs=4326)
    grids = gpd.GeoDataFrame([{"code": "LOCK-001", "name": "西"},
                              {"code": "LOCK-002", "name": "东"}], geometry=[west, east],
                             crs=4326)
    with session_scope(engine, write=True) as session:
        (p,), _ = import_parks(session, park, max_vertices=vertices * 2)
        import_grids(session, p, grids, max_vertices=vertices * 2)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench_probe (id INTEGER PRIMARY KEY, at FLOAT)"))
    done, waits = threading.Event(), []
    writer = make_engine(url, busy_timeout_s=600)
    # What a hazard create waits for: the park's row lock, shared (PostgreSQL), which an
    # edit's FOR UPDATE excludes, or the write lock (SQLite).
    lock = "SELECT id FROM parks WHERE code = 'LOCK'" + (
        " FOR SHARE" if writer.dialect.name == "postgresql" else "")

    def probe():
        i = 0
        while not done.is_set():
            i += 1
            t = time.perf_counter()
            with writer.begin() as conn:
                conn.execute(sa.text("INSERT INTO bench_probe (id, at) VALUES (:i, :t)"),
                             {"i": i, "t": t})
                conn.execute(sa.text(lock))
            waits.append(time.perf_counter() - t)
            time.sleep(0.005)

    thread = threading.Thread(target=probe)
    thread.start()
    t = time.perf_counter()
    try:
        with session_scope(engine) as session:
            edits.split_grid(session, get_park(session, "LOCK"), "LOCK-001",
                             line=shapely.LineString([(114.379, 34.06), (114.395, 34.06)]),
                             actor="bench")
    finally:
        split_s = time.perf_counter() - t
        done.set()
        thread.join()
    writer.dispose()
    engine.dispose()
    return split_s, max(waits), len(waits)


def _backends(names):
    """Yield (name, url) for each backend, a throwaway database each."""
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            if name == "spatialite":
                yield name, f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
                continue
            from geodata.pgcluster import ThrowawayCluster

            with ThrowawayCluster() as cluster:
                yield name, cluster.create_database("gridmap_bench")


def main(argv=None):
    """Run the benchmark and print a Markdown report; exit 1 if a write was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1,
                        help="Floor, create and transition take turns this many times")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--backends", default="spatialite,postgis")
    parser.add_argument("--lock-hold", action="store_true",
                        help="Also time how long a split of a large grid holds the write lock")
    parser.add_argument("--only-lock-hold", action="store_true")
    parser.add_argument("--vertices", type=int, default=20_000)
    parser.add_argument("--serve-floor", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_floor:
        _serve_floor(args.serve_floor, args.port, args.workers, args.threads)
        return 0
    server = (f"waitress, 1 process x {args.threads} threads" if args.workers == 1 else
              f"gunicorn gthread, {args.workers} processes x {args.threads} threads")
    ok = True
    for name, url in _backends(args.backends.split(",")):
        if not args.only_lock_hold:
            load = os.getloadavg()[0]
            rows, checks = bench_backend(url, args.clients, args.per_client, args.workers,
                                         args.threads, args.rounds)
            floor = rows[0]["per_request_ms"]
            print(f"\n## {name}: {args.clients} clients, {server}, {args.rounds} round(s), "
                  f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after\n")
            print("| endpoint | requests | requests/s | p50 ms | p95 ms | time per request "
                  "vs floor | each round vs its floor | CPU ms per request (server + "
                  "database) | CPU vs floor |\n|---|---:|---:|---:|---:|---:|---|---:|---:|")
            for r in rows:
                each = " ".join(f"{ms / f:.2f}" for ms, f in zip(r["round_ms"],
                                                                 rows[0]["round_ms"]))
                print(f"| {r['name']} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                      f"{r['p95_ms']:.1f} | {r['per_request_ms'] / floor:.2f}x | {each} | "
                      f"{r['cpu_ms']:.2f} | {r['cpu_ms'] / rows[0]['cpu_ms']:.2f}x |")
            print()
            for what, (got, want) in checks.items():
                print(f"- {what}: {got} (expected {want})")
                ok &= got == want
        if args.lock_hold or args.only_lock_hold:
            split_s, longest, writes = lock_hold(url, args.vertices)
            print(f"\n{name}: split of a {args.vertices}-vertex grid took {split_s:.2f} s; "
                  f"{writes} one-row writes committed meanwhile, the longest waited "
                  f"{longest:.3f} s (the write lock's hold time)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
