"""The partitioned coverage check (geodata.partition) gives the single-process findings.

Coverages are jittered lattices built in EPSG:4547 metres (vertices shared
by neighbours, so the lattice alone is a valid coverage), with planted
problems: removed cells and a removed run of a row (gaps, one crossing
tile edges), shrunk cells (gaps and unmatched edges), grown cells
(overlaps), bow-tie cells (invalid) and a park boundary moved off the
lattice's (outside parts or border gaps).
"""

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import shapely
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geodata
from geodata import crs
from geodata.coverage import check_coverage
from geodata.demo import PARK_CODE
from geodata.partition import check_partitioned
from geodata.services.demo_loader import load_demo
from tests.browser import free_port

EPSG = 4547
X0, Y0 = 536000.0, 3769000.0  # ~114.39E 34.06N
SIDE = 50.0
# Areas agree to 0.01 m² + 1 ppm.  Gaps crossing a tile edge gain a vertex
# there, and outside parts may be noded differently: projected, such a vertex
# moves the measured area by ~1e-5 m² (an edge straight in degrees is curved
# in metres).  Around a repaired (bow-tie) cell the two unions may keep or
# drop a zero-width sliver (< 1 mm) inside a gap: ~1e-3 m².
AREA_TOL_M2 = 1e-2
AREA_REL_TOL = 1e-6
M2_PER_DEG2 = 1.03e10  # at 34°N
ROOT = Path(geodata.__file__).resolve().parents[1]


def lattice(nx, ny, seed, *, removed=(), shrunk=(), grown=(), bowties=(), row_gap=None,
            park_offset=0.0):
    """Return (cells EPSG:4326, codes, park EPSG:4326) of a jittered nx x ny lattice."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(nx + 1) * SIDE, np.arange(ny + 1) * SIDE, indexing="ij")
    jitter = rng.uniform(-0.3, 0.3, (nx + 1, ny + 1, 2)) * SIDE
    jitter[[0, -1], :, 0] = 0  # the outer edges stay straight
    jitter[:, [0, -1], 1] = 0
    vx, vy = gx + jitter[..., 0] + X0, gy + jitter[..., 1] + Y0
    cells, codes = [], []
    row_gap_cells = set()
    if row_gap is not None:
        row, start, length = row_gap
        row_gap_cells = {(i, row % ny) for i in range(start % nx, min(nx, start % nx + length))}
    for i in range(nx):
        for j in range(ny):
            k = i * ny + j
            if k in removed or (i, j) in row_gap_cells:
                continue
            corners = ((i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1))
            ring = [(vx[a, b], vy[a, b]) for a, b in corners]
            cell = shapely.segmentize(shapely.Polygon(ring), SIDE / 2)
            if k in bowties:  # not densified: GEOS densify would repair it
                cell = shapely.Polygon([ring[0], ring[2], ring[1], ring[3]])
            if k in shrunk or k in grown:
                cell = shapely.affinity.scale(cell, *(2 * (0.9 if k in shrunk else 1.1,)),
                                              origin="centroid")
            cells.append(cell)
            codes.append(f"G{i:03d}-{j:03d}")
    park = shapely.segmentize(shapely.box(X0, Y0, X0 + nx * SIDE, Y0 + ny * SIDE)
                              .buffer(park_offset, join_style="mitre"), SIDE / 2)
    return crs.to_storage(np.array(cells), EPSG), codes, crs.to_storage(park, EPSG)


def assert_same(single, merged):
    """Assert two report dicts (``to_dict()``, JSON) hold the same findings.

    Geometries must be the same point sets (extra vertices do not count);
    gaps, which the merge lists in another order, are ordered by place.
    """
    merged, single = dict(merged), dict(single)
    park_area = single["park_area_m2"]
    assert merged.pop("covered_area_m2") == pytest.approx(
        single.pop("covered_area_m2"), rel=AREA_REL_TOL, abs=AREA_TOL_M2)
    assert merged.pop("coverage_ratio") == pytest.approx(
        single.pop("coverage_ratio"), rel=AREA_REL_TOL, abs=AREA_TOL_M2 / park_area)
    for key, name in (("unmatched_edges", "code"), ("overlaps", "codes"),
                      ("outside_park", "code"), ("gaps", None)):
        ms, ss = merged.pop(key), single.pop(key)
        assert len(ms) == len(ss), key
        if name is None:
            ms, ss = (sorted(items, key=lambda g: shapely.centroid(shape(g["geometry"])).coords[0])
                      for items in (ms, ss))
        for m, s in zip(ms, ss):
            assert {k: v for k, v in m.items() if k not in ("area_m2", "geometry")} == {
                k: v for k, v in s.items() if k not in ("area_m2", "geometry")}, key
            if "area_m2" in s:
                tol = AREA_TOL_M2 + AREA_REL_TOL * s["area_m2"]
                assert m["area_m2"] == pytest.approx(s["area_m2"], abs=tol), key
            assert same_place(shape(m["geometry"]), shape(s["geometry"])), key
    assert merged == single  # everything else: validity, invalid grids, sites, counts


def same_place(a, b, eps=2e-9, area_m2=1e-2):
    """True when two geometries are the same place, up to rounding and zero-width noise.

    Lines: each one's vertices lie within ``eps`` degrees (~0.2 mm) of the
    other.  Polygons: their symmetric difference is under ``area_m2``.  The
    GeoJSON reports keep 9 decimals (a rounded narrow gap may need
    ``make_valid``); a gap that a tile edge cut keeps extra vertices there,
    and zero-width spikes of noise where near-collinear edges meet may end
    a few millimetres apart.
    """
    if a.area == 0 and b.area == 0:
        def near(p, q):
            return shapely.distance(shapely.points(shapely.get_coordinates(p)), q).max() <= eps

        return bool(near(a, b) and near(b, a))
    diff = shapely.symmetric_difference(shapely.make_valid(a), shapely.make_valid(b))
    # Measured in degrees: projected, a long sliver's chords alone add ~1e-4 m².
    return bool(shapely.area(diff) * M2_PER_DEG2 < area_m2)


def shape(geojson):
    """A shapely geometry from a GeoJSON dict."""
    return shapely.from_geojson(json.dumps(geojson))


planted = st.fixed_dictionaries({
    "nx": st.integers(3, 12), "ny": st.integers(3, 12), "seed": st.integers(0, 2**16),
    "removed": st.sets(st.integers(0, 143), max_size=3),
    "shrunk": st.sets(st.integers(0, 143), max_size=2),
    "grown": st.sets(st.integers(0, 143), max_size=2),
    "bowties": st.sets(st.integers(0, 143), max_size=1),
    "row_gap": st.none() | st.tuples(st.integers(0, 11), st.integers(0, 11),
                                     st.integers(1, 8)),
    "park_offset": st.sampled_from([0.0, -7.0, 3.0]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted, st.integers(1, 9))
def test_partitioned_merge_equals_single_process(spec, partitions):
    cells, codes, park = lattice(**spec)
    single = check_coverage(cells, codes, park=park, metric_epsg=EPSG)
    merged = check_partitioned(cells, codes, park=park, metric_epsg=EPSG,
                               partitions=partitions)
    assert_same(single.to_dict(), merged.to_dict())


def test_partitions_on_a_local_cluster_give_the_single_process_findings():
    """Two worker processes of a real LocalCluster, 8 partitions, every kind of problem."""
    cells, codes, park = lattice(14, 11, 3, removed={5, 40}, shrunk={70}, grown={90, 91},
                                 bowties={120}, row_gap=(6, 2, 9), park_offset=-7.0)
    single = check_coverage(cells, codes, park=park, metric_epsg=EPSG)
    assert single.gaps and single.overlaps and single.outside_park and single.invalid_grids
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        merged = check_partitioned(cells, codes, park=park, metric_epsg=EPSG, client=client)
        ran = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "check_partition" in ran
    assert_same(single.to_dict(), merged.to_dict())


def test_partitioned_check_needs_a_park():
    cells, codes, _ = lattice(3, 3, 0)
    with pytest.raises(ValueError, match="needs a park boundary"):
        check_partitioned(cells, codes)


@pytest.mark.parametrize("partitions", [1, 4])
def test_a_multipolygon_cell_with_a_detached_part_outside_the_park(partitions):
    """One part tiles the park, the other lies outside; neither meets the boundary.

    Both checks report the outside part of that cell (the partitions once
    kept only cells meeting the park's boundary or missing it altogether).
    """
    cells, codes, park = lattice(4, 4, 5)
    inner = codes.index("G001-001")
    away = crs.to_storage(shapely.box(X0 + 6 * SIDE, Y0, X0 + 7 * SIDE, Y0 + SIDE), EPSG)
    cells[inner] = shapely.MultiPolygon([cells[inner], away])
    single = check_coverage(cells, codes, park=park, metric_epsg=EPSG)
    merged = check_partitioned(cells, codes, park=park, metric_epsg=EPSG,
                               partitions=partitions)
    assert [o["code"] for o in single.outside_park] == ["G001-001"]
    assert single.outside_park[0]["area_m2"] == pytest.approx(SIDE * SIDE, rel=1e-3)
    assert_same(single.to_dict(), merged.to_dict())


@pytest.fixture
def dask_cluster(tmp_path):
    """A real ``dask scheduler`` and two ``dask worker`` processes; yields the address."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # The workers import this checkout's geodata, as the CLI does from its folder.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dask = [sys.executable, "-m", "dask"]  # the ``dask`` command of this interpreter
    logs, procs = [], []
    try:
        for name, args in [("scheduler", ["--host", "127.0.0.1", "--port", str(port),
                                          "--no-dashboard"]),
                           *[("worker", [address, "--nworkers", "1", "--nthreads", "1",
                                         "--no-dashboard"])] * 2]:
            logs.append(open(tmp_path / f"dask-{name}-{len(logs)}.log", "w"))
            procs.append(subprocess.Popen([*dask, name, *args],
                                          env=env, cwd=tmp_path, stdout=logs[-1],
                                          stderr=subprocess.STDOUT))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        for log in logs:
            log.close()


def test_check_park_on_a_dask_scheduler_and_two_workers(db_url, engine, dask_cluster):
    """``gridmap check --park CODE --scheduler URL`` gives the single-process JSON."""
    load_demo(engine, seed=1, today=date(2026, 1, 15))

    def check(*extra):
        result = subprocess.run(
            [sys.executable, "-m", "geodata.cli", "--db", db_url, "check", "--park", PARK_CODE,
             "--format", "json", *extra], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
        assert result.returncode in (0, 1), result.stderr[-3000:]
        return result.returncode, json.loads(result.stdout)

    code, single = check()
    dist_code, distributed = check("--scheduler", dask_cluster)
    assert dist_code == code
    assert single["cell_count"] > 80
    with Client(dask_cluster, timeout=60) as client:
        ran = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        workers = client.scheduler_info()["workers"]
    assert "check_partition" in ran and len(workers) == 2
    assert_same(single, distributed)

    # --all: one task per park, each checked whole on a worker: the same lines.
    def check_all(*extra):
        result = subprocess.run(
            [sys.executable, "-m", "geodata.cli", "--db", db_url, "check", "--all",
             "--format", "json", *extra], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
        assert result.returncode in (0, 1), result.stderr[-3000:]
        return result.returncode, result.stdout

    assert check_all("--scheduler", dask_cluster) == check_all()
    with Client(dask_cluster, timeout=60) as client:
        ran = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "check_park_task" in ran


@pytest.mark.parametrize("args, message", [
    (("--park", "P1", "--scheduler", "http://127.0.0.1:8786"), "expected tcp://HOST:PORT"),
    (("--park", "P1", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"), "not both"),
    (("--grids-file", "g.geojson", "--workers", "2"), "work with --park or --all"),
])
@pytest.mark.parametrize("command", [("check",), ("hidden-units",), ("hazards", "relocate")])
def test_dask_options_refused(runner, command, args, message):
    if "--grids-file" in args and command != ("check",):
        args, message = ("--park", "P1", "--all"), "exactly one of --park CODE or --all"
    result = runner(*command, *args)
    assert result.exit_code == 2 and message in result.output


def test_unreachable_scheduler_is_exit_2(runner, engine):
    load_demo(engine, seed=1, today=date(2026, 1, 15))
    result = runner("check", "--park", PARK_CODE, "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "cannot connect to the Dask scheduler" in result.output


def _cli(db_url, *args):
    result = subprocess.run([sys.executable, "-m", "geodata.cli", "--db", db_url, *args],
                            capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_hidden_units_and_relocation_of_every_park_on_a_dask_cluster(
        db_url, engine, dask_cluster):
    """``hidden-units --all`` and ``hazards relocate --all`` give on Dask what they give here."""
    import sqlalchemy as sa

    load_demo(engine, seed=1, today=date(2026, 1, 15))
    _cli(db_url, "demo", "--parks", "2", "--grids-per-park", "30")
    here = json.loads(_cli(db_url, "hidden-units", "--all", "--format", "json"))
    assert {u["park"] for u in here} == {PARK_CODE} and len(here) == 117
    assert json.loads(_cli(db_url, "hidden-units", "--all", "--format", "json",
                           "--scheduler", dask_cluster)) == here

    # Forget where some hazards are, open and closed, in two parks.
    with engine.begin() as conn:
        stored = dict(conn.execute(sa.text("SELECT id, grid_id FROM hazards")).all())
        open_ids = conn.execute(sa.text(
            "SELECT h.id FROM hazards h WHERE h.status <> 'closed' AND h.grid_id IS NOT NULL "
            "ORDER BY h.id")).scalars().all()
        closed = conn.execute(sa.text(
            "SELECT min(id) FROM hazards WHERE status = 'closed'")).scalar()
        lost = open_ids[:5] + open_ids[-1:] + [closed]
        conn.execute(sa.text("UPDATE hazards SET grid_id = NULL WHERE id IN ("
                             + ",".join(map(str, lost)) + ")"))
    with engine.connect() as conn:
        parks = dict(conn.execute(sa.text(
            "SELECT h.id, p.code FROM hazards h JOIN parks p ON p.id = h.park_id")).all())
    dry = json.loads(_cli(db_url, "hazards", "relocate", "--all", "--dry-run", "--format",
                          "json", "--scheduler", dask_cluster))
    expected = {code: sum(parks[i] == code for i in lost if i != closed)
                for code in {p["park"] for p in dry}}
    assert {p["park"]: p["moved"] for p in dry} == expected and sum(expected.values()) == 6
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hazards WHERE grid_id IS NULL")
                            ).scalar() == 7  # the dry run wrote nothing
    done = json.loads(_cli(db_url, "hazards", "relocate", "--all", "--format", "json",
                           "--scheduler", dask_cluster))
    assert done == dry
    with engine.connect() as conn:
        now = dict(conn.execute(sa.text("SELECT id, grid_id FROM hazards")).all())
    assert {i: g for i, g in now.items() if i != closed} == {
        i: g for i, g in stored.items() if i != closed}
    assert now[closed] is None  # a closed hazard keeps the grid it was closed in
    with Client(dask_cluster, timeout=60) as client:
        ran = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert {"hidden_units_task", "relocation_task"} <= set(ran)
