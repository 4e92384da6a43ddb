"""Benchmark the hazard ledger.

1. Spatial assignment: 1,000,000 hazard points into the grids of a
   100,000-grid park with the vectorised STRtree join
   (``geodata.spatial.assign_to_cells``), beside naive per-point queries
   (one STRtree query per point, and a linear scan of every cell per
   point).  The naive ones are timed on a sample and extrapolated; the
   report says so.
2. The API: a real ``gridmap serve`` subprocess on loopback, driven by
   concurrent clients (threads with ``http.client``) that log hazards and
   move them through the workflow, plus a burst of clients all moving the
   same hazard from the same version.  Reports requests per second and
   checks that no write was lost (responses that said 201/200 equal rows
   and history events stored).

Usage::

    python scripts/bench_hazards.py [--points 1000000] [--grids 100000]
        [--clients 8] [--per-client 50] [--db URL] [--skip-spatial] [--skip-api]
"""

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

# This checkout, not whichever gridmap is installed (also for the server subprocess).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geodata import schema  # noqa: E402
from geodata.spatial import assign_to_cells  # noqa: E402
from geodata.storage import make_engine, session_scope  # noqa: E402


def bench_spatial(n_points, n_grids, seed=7):
    """Time the vectorised join against naive per-point queries; return a dict of figures."""
    rng = np.random.default_rng(seed)
    # The most square cols x rows = n_grids, so the cells tile a rectangle exactly.
    cols = max(d for d in range(1, int(np.sqrt(n_grids)) + 1) if n_grids % d == 0)
    rows = n_grids // cols
    size = 0.0005  # degrees, about 50 m: a 100,000-cell park is ~15 km x 15 km
    x0, y0 = 114.3, 34.0
    i = np.arange(n_grids)
    cx, cy = x0 + (i % cols) * size, y0 + (i // cols) * size
    cells = shapely.box(cx, cy, cx + size, cy + size)
    xs = rng.uniform(x0, x0 + cols * size, n_points)
    ys = rng.uniform(y0, y0 + rows * size, n_points)
    points = shapely.points(xs, ys)

    t = time.perf_counter()
    result = assign_to_cells(points, cells)
    vectorised = time.perf_counter() - t

    sample = 2000
    tree = shapely.STRtree(cells)
    t = time.perf_counter()
    per_point = []
    for p in points[:sample]:
        hits = tree.query(p, predicate="intersects")
        per_point.append(hits.min() if len(hits) else -1)  # lowest index wins, as above
    query_loop = (time.perf_counter() - t) / sample

    scan_sample = 200
    t = time.perf_counter()
    scanned = []
    for p in points[:scan_sample]:
        hits = np.flatnonzero(shapely.intersects(cells, p))
        scanned.append(hits.min() if len(hits) else -1)
    linear = (time.perf_counter() - t) / scan_sample

    assert np.array_equal(result[:sample], per_point), "per-point query disagrees"
    assert np.array_equal(result[:scan_sample], scanned), "linear scan disagrees"
    return {
        "points": n_points, "grids": n_grids, "unassigned": int((result < 0).sum()),
        "vectorised_s": vectorised, "vectorised_pps": n_points / vectorised,
        "query_loop_pps": 1 / query_loop, "query_loop_est_s": query_loop * n_points,
        "query_loop_sample": sample,
        "linear_pps": 1 / linear, "linear_est_s": linear * n_points,
        "linear_sample": scan_sample,
    }


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup_database(url):
    """A 2 km park with 4 x 4 grids and an inspector and a supervisor with API tokens."""
    from geodata.services.grids import import_grids
    from geodata.services.parks import import_parks
    from geodata.services.users import add_user, create_token

    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    park = gpd.GeoDataFrame([{"code": "BENCH", "name": "压测园区", "division_code": "411621"}],
                            geometry=[shapely.box(114.38, 34.05, 114.40, 34.07)], crs=4326)
    step = 0.005
    grids = gpd.GeoDataFrame(
        [{"code": f"BENCH-{r * 4 + c + 1:03d}", "name": f"网格{r * 4 + c + 1}"}
         for r in range(4) for c in range(4)],
        geometry=[shapely.box(114.38 + c * step, 34.07 - (r + 1) * step,
                              114.38 + (c + 1) * step, 34.07 - r * step)
                  for r in range(4) for c in range(4)], crs=4326)
    with session_scope(engine, write=True) as session:
        (p,), _ = import_parks(session, park)
        import_grids(session, p, grids)
        tokens = {}
        for role in ("inspector", "supervisor"):
            add_user(session, f"bench-{role}", "bench-password", role)
            tokens[role], _ = create_token(session, f"bench-{role}", "bench")
    return engine, tokens


class _Client:
    """One keep-alive HTTP connection; retries 503 ``database_busy`` after Retry-After."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.retries = 0

    def post(self, path, body):
        while True:
            self.conn.request("POST", path, json.dumps(body), {
                "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
            response = self.conn.getresponse()
            data = json.loads(response.read() or b"null")
            if response.status == 503:
                self.retries += 1
                time.sleep(float(response.getheader("Retry-After", "1")) / 10)
                continue
            return response.status, data


def bench_api(url, clients, per_client):
    """Drive ``gridmap serve`` with concurrent clients; return a dict of figures."""
    engine, tokens = _setup_database(url)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "geodata.cli", "--db", url, "serve",
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("gridmap serve did not start")
            time.sleep(0.2)
        rng = np.random.default_rng(1)
        spots = rng.uniform([114.3805, 34.0505], [114.3995, 34.0695], (clients * per_client, 2))
        created = [[] for _ in range(clients)]
        statuses = {"create": {}, "transition": {}, "race": {}}
        lock = threading.Lock()
        retries = []

        def count(kind, status):
            with lock:
                statuses[kind][status] = statuses[kind].get(status, 0) + 1

        def creator(k):
            client = _Client(port, tokens["inspector"])
            for j in range(per_client):
                lon, lat = spots[k * per_client + j]
                status, data = client.post("/api/parks/BENCH/hazards", {
                    "lon": float(lon), "lat": float(lat), "category": "消防安全",
                    "description": f"压测 {k}-{j}"})
                count("create", status)
                if status == 201:
                    created[k].append(data["id"])
            retries.append(client.retries)

        deadline_day = (date.today() + timedelta(days=30)).isoformat()

        def mover(k):
            client = _Client(port, tokens["inspector"])
            for hid in created[k]:
                status, _ = client.post(f"/api/hazards/{hid}/transitions", {
                    "to": "rectifying", "version": 1, "deadline": deadline_day})
                count("transition", status)
                status, _ = client.post(f"/api/hazards/{hid}/transitions", {
                    "to": "supervising", "version": 2})
                count("transition", status)
            retries.append(client.retries)

        def run(target):
            threads = [threading.Thread(target=target, args=(k,)) for k in range(clients)]
            t = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return time.perf_counter() - t

        create_s = run(creator)
        move_s = run(mover)
        # A race: every client closes the same hazard from the same version at once.
        target = created[0][0]
        barrier = threading.Barrier(clients)

        def racer(k):
            client = _Client(port, tokens["supervisor"])
            barrier.wait()
            status, _ = client.post(f"/api/hazards/{target}/transitions", {
                "to": "closed", "version": 3, "supervision": {"note": f"racer {k}"}})
            count("race", status)

        run(racer)
    finally:
        server.terminate()
        server.wait(timeout=10)
    import sqlalchemy as sa

    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM hazards")).scalar()
        events = conn.execute(sa.text("SELECT count(*) FROM hazard_events")).scalar()
        race_events = conn.execute(sa.text(
            "SELECT count(*) FROM hazard_events WHERE hazard_id = :h AND to_status = 'closed'"),
            {"h": target}).scalar()
    engine.dispose()
    ok_creates = statuses["create"].get(201, 0)
    ok_moves = statuses["transition"].get(200, 0)
    ok_race = statuses["race"].get(200, 0)
    return {
        "clients": clients, "creates": clients * per_client, "create_s": create_s,
        "create_rps": clients * per_client / create_s,
        "transitions": 2 * clients * per_client, "transition_s": move_s,
        "transition_rps": 2 * clients * per_client / move_s,
        "statuses": statuses, "retries_503": sum(retries),
        "stored_hazards": stored, "stored_events": events,
        "no_write_lost": stored == ok_creates and events == ok_creates + ok_moves + ok_race,
        "race_winners": ok_race, "race_close_events": race_events,
    }


def main(argv=None):
    """Run the benchmarks and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--db", help="Database URL for the API run (default: a temp SpatiaLite)")
    parser.add_argument("--postgis", action="store_true",
                        help="Run the API part on a throwaway PostGIS cluster")
    parser.add_argument("--skip-spatial", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_spatial:
        s = bench_spatial(args.points, args.grids)
        print(f"## Spatial assignment: {s['points']:,} points → {s['grids']:,} grids\n")
        print("| method | points/s | time for all points |\n|---|---:|---:|")
        print(f"| vectorised STRtree join (assign_to_cells) | {s['vectorised_pps']:,.0f} | "
              f"{s['vectorised_s']:.2f} s (measured) |")
        print(f"| naive: one STRtree query per point | {s['query_loop_pps']:,.0f} | "
              f"{s['query_loop_est_s']:.1f} s (extrapolated from {s['query_loop_sample']:,}) |")
        print(f"| naive: scan every grid per point | {s['linear_pps']:,.0f} | "
              f"{s['linear_est_s'] / 3600:.1f} h (extrapolated from {s['linear_sample']}) |")
        print(f"\nunassigned points: {s['unassigned']}; the samples agree with the join.\n")
    if not args.skip_api:
        cluster = None
        with tempfile.TemporaryDirectory() as tmp:
            url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
            if args.postgis:
                from geodata.pgcluster import ThrowawayCluster

                cluster = ThrowawayCluster().start()
                url = cluster.create_database("gridmap_bench")
            try:
                a = bench_api(url, args.clients, args.per_client)
            finally:
                if cluster is not None:
                    cluster.stop()
        backend = url.split(":", 1)[0].split("+")[0]
        print(f"## API on loopback ({backend}, {a['clients']} concurrent clients)\n")
        print("| operation | requests | seconds | requests/s |\n|---|---:|---:|---:|")
        print(f"| create (POST /api/parks/<code>/hazards) | {a['creates']} | "
              f"{a['create_s']:.2f} | {a['create_rps']:.0f} |")
        print(f"| transition (POST /api/hazards/<id>/transitions) | {a['transitions']} | "
              f"{a['transition_s']:.2f} | {a['transition_rps']:.0f} |")
        print(f"\nstatuses: {json.dumps(a['statuses'])}; 503 retries: {a['retries_503']}")
        print(f"stored hazards {a['stored_hazards']}, events {a['stored_events']}: "
              f"no write lost = {a['no_write_lost']}")
        print(f"race: {a['clients']} clients closed one hazard from the same version: "
              f"{a['race_winners']} succeeded, {a['race_close_events']} close event stored")
        if not a["no_write_lost"] or a["race_winners"] != 1:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
