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
import sqlalchemy as sa
from distributed import Client, LocalCluster, get_task_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geodata
from geodata import crs
from geodata.coverage import check_coverage
from geodata.demo import PARK_CODE
from geodata.errors import ConflictError
from geodata.batch import StoredGrids, local_cluster_options
from geodata.models import Enterprise, Grid, Park
from geodata.models.base import to_element, to_shapes
from geodata.partition import StoredCells, check_partitioned, halo_strips
from geodata.services.coverage import (check_park, enterprise_sites, grid_cells,
                                       grid_geometries, grid_layout)
from geodata.services.demo_loader import load_demo
from geodata.services.parks import get_park, park_boundary
from geodata.storage import make_engine, session_scope
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
DEMO_REL_TOL = 1e-5  # see test_stored_park_read_by_the_workers_gives_the_single_process_report
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


def assert_same(single, merged, rel_tol=AREA_REL_TOL):
    """Assert two report dicts (``to_dict()``, JSON) hold the same findings.

    Geometries must be the same point sets (extra vertices do not count);
    gaps, which the merge lists in another order, are ordered by place.
    Areas, and the symmetric difference of polygons, agree to 0.01 m² +
    ``rel_tol`` of the area.
    """
    merged, single = dict(merged), dict(single)
    park_area = single["park_area_m2"]
    assert merged.pop("covered_area_m2") == pytest.approx(
        single.pop("covered_area_m2"), rel=rel_tol, abs=AREA_TOL_M2)
    assert merged.pop("coverage_ratio") == pytest.approx(
        single.pop("coverage_ratio"), rel=rel_tol, abs=AREA_TOL_M2 / park_area)
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
            tol = AREA_TOL_M2 + rel_tol * s.get("area_m2", 0.0)
            if "area_m2" in s:
                assert m["area_m2"] == pytest.approx(s["area_m2"], abs=tol), key
            assert same_place(shape(m["geometry"]), shape(s["geometry"]), area_m2=tol), key
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


def sub_grids(cells, codes, seed):
    """Children of some level-1 cells: each cut in two at its centre, one child sometimes grown."""
    rng = np.random.default_rng(seed)
    children, child_codes, parents = [], [], []
    for cell, code in zip(cells, codes):
        if rng.random() < 0.5 or not cell.is_valid:  # a bow-tie cannot be cut
            continue
        x0, y0, x1, y1 = cell.bounds
        cut = x0 + (x1 - x0) * rng.uniform(0.3, 0.7)
        halves = [shapely.intersection(cell, shapely.box(x0 - 1, y0 - 1, cut, y1 + 1)),
                  shapely.intersection(cell, shapely.box(cut, y0 - 1, x1 + 1, y1 + 1))]
        if rng.random() < 0.2:
            halves[1] = shapely.affinity.scale(halves[1], 1.2, 1.2)
        for k, half in enumerate(halves):
            children.append(half)
            child_codes.append(f"{code}-{k}")
            parents.append(code)
    return children, child_codes, parents


def random_sites(park, seed, n=12):
    """Points and small squares (EPSG:4326) around and inside the park, one of them empty."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = park.bounds
    xs, ys = rng.uniform(x0 - 1e-3, x1 + 1e-3, n), rng.uniform(y0 - 1e-3, y1 + 1e-3, n)
    sites = [shapely.Point(x, y) if k % 2 else shapely.box(x, y, x + 4e-4, y + 3e-4)
             for k, (x, y) in enumerate(zip(xs, ys))]
    return [(f"site {k}", f"CC{k:03d}", g) for k, g in enumerate(sites + [shapely.Polygon()])]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted, st.integers(2, 4), st.booleans(), st.booleans())
def test_threads_give_the_single_thread_report(spec, threads, with_park, with_children):
    """``threads`` (strips of the validation, the overlay beside it) changes nothing.

    Not the same point sets: the same JSON, byte for byte, and the same
    GeoJSON of the problems, with gaps, overlaps, invalid cells, outside
    parts, sub-grids and sites planted at random.
    """
    cells, codes, park = lattice(**spec)
    parents = [None] * len(codes)
    if with_children:
        children, child_codes, child_parents = sub_grids(cells, codes, spec["seed"])
        cells = np.concatenate([cells, np.array(children, dtype=object)])
        codes, parents = codes + child_codes, parents + child_parents
    options = {"park": park if with_park else None, "metric_epsg": EPSG,
               "enterprises": random_sites(park, spec["seed"]) if with_park else None,
               "gap_width_m": 0.0 if with_park else 5.0}
    single = check_coverage(cells, codes, parents, **options)
    threaded = check_coverage(cells, codes, parents, threads=threads, **options)
    assert json.dumps(threaded.to_dict()) == json.dumps(single.to_dict())
    assert json.dumps(threaded.to_geojson()) == json.dumps(single.to_geojson())


@pytest.mark.parametrize("threads", [0, -1])
def test_threads_below_one_are_refused(threads):
    cells, codes, park = lattice(3, 3, 0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        check_coverage(cells, codes, park=park, threads=threads)


def test_check_park_reads_without_cycle_collections_and_restores_the_collector(db_url, engine):
    """The collector sleeps while a stored park is read and checked, and wakes up after.

    Also after an error, and it stays off for a caller that had turned it off.
    """
    import gc

    load_demo(engine, today=date(2025, 11, 30))
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    with session_scope(engine) as session:
        park = get_park(session, PARK_CODE)
        check_park(session, park)  # warm: the mappers, the PROJ transformer
        gc.callbacks.append(count)
        try:
            result, _ = check_park(session, park, threads=2)
            assert runs == [] and gc.isenabled() and result["valid"]
            with pytest.raises(ValueError, match="threads must be at least 1"):
                check_park(session, park, threads=0)
            assert gc.isenabled()
            gc.disable()
            try:
                check_park(session, park)
                assert not gc.isenabled()
            finally:
                gc.enable()
        finally:
            gc.callbacks.remove(count)
    gc.collect()
    assert runs  # the callback itself was listening


def test_halo_strips_own_every_cell_once_and_hold_its_neighbours():
    """Each cell has one owner strip, whose halo holds every cell its envelope meets."""
    cells, _, _ = lattice(9, 7, 3, grown={4, 30})
    envelopes = shapely.bounds(cells)
    strips = list(halo_strips(envelopes, 4))
    assert len(strips) == 4
    owned = np.concatenate([o for o, _ in strips])
    assert sorted(owned.tolist()) == list(range(len(cells)))
    tree = shapely.STRtree(shapely.box(*envelopes.T))
    for own, halo in strips:
        near = np.unique(tree.query(shapely.box(*envelopes[own].T))[1])
        assert set(near.tolist()) <= set(halo.tolist())


def test_partitions_on_a_local_cluster_give_the_single_process_findings():
    """Two worker processes of a real LocalCluster, 8 partitions, every kind of problem."""
    cells, codes, park = lattice(14, 11, 3, removed={5, 40}, shrunk={70}, grown={90, 91},
                                 bowties={120}, row_gap=(6, 2, 9), park_offset=-7.0)
    single = check_coverage(cells, codes, park=park, metric_epsg=EPSG)
    assert single.gaps and single.overlaps and single.outside_park and single.invalid_grids
    with LocalCluster(**local_cluster_options(2)) as cluster, Client(cluster) as client:
        merged = check_partitioned(cells, codes, park=park, metric_epsg=EPSG, client=client)
        ran = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "check_partition" in ran
    assert_same(single.to_dict(), merged.to_dict())


def test_every_local_cluster_takes_the_shared_options():
    """A LocalCluster asks for port 8787 unless told otherwise, and warns (an error under
    this suite's settings) when another Dask holds it: every one gridmap starts, in the
    package, its scripts and its tests, takes ``local_cluster_options``."""
    sources = [p for folder in ("geodata", "scripts", "tests")
               for p in (ROOT / folder).rglob("*.py")]
    calls = [(p.name, line.strip()) for p in sources
             for line in p.read_text(encoding="utf-8").splitlines()
             if "LocalCluster(" in line and "def " not in line and '"' not in line]
    assert len(calls) >= 4
    assert [c for c in calls if "local_cluster_options(" not in c[1]] == []


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


def plant_problems(engine):
    """Store problems in the demo park, past the services' checks (as an old import might).

    A grown level-1 grid (overlaps), a level-1 grid with sub-grids retired
    (a gap, and its sub-grids' parent is gone), a bow-tie level-1 grid
    (invalid, repaired for the analysis), a grown sub-grid (outside its
    parent) and two sites: one across a shared grid edge (split), one out
    of the park (in no grid).
    """
    with session_scope(engine) as session:
        park = session.scalars(sa.select(Park).where(Park.code == PARK_CODE)).one()
        grids = session.scalars(sa.select(Grid).where(Grid.park_id == park.id)
                                .order_by(Grid.code)).all()
        top = [g for g in grids if g.parent_id is None]
        subs = [g for g in grids if g.parent_id is not None]
        shapes = dict(zip([g.id for g in grids], to_shapes([g.geom for g in grids])))
        parents = {g.parent_id for g in subs}

        def store(grid, geom):
            grid.geom = to_element(shapely.MultiPolygon([geom]))

        grown, bowtie = top[3], top[len(top) // 2]
        store(grown, shapely.affinity.scale(shapes[grown.id].geoms[0], 1.1, 1.1))
        x0, y0, x1, y1 = shapes[bowtie.id].bounds
        store(bowtie, shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]))
        next(g for g in top if g.id in parents).active_to = date(2026, 1, 10)
        sub = subs[-1]
        store(sub, shapely.affinity.scale(shapes[sub.id].geoms[0], 1.3, 1.3))
        a, b = next((a, b) for a in top[5:] for b in top[5:] if a.id < b.id and shapely.length(
            shapely.intersection(shapes[a.id], shapes[b.id])) > 0)
        edge = shapely.intersection(shapes[a.id], shapes[b.id])
        sites = session.scalars(sa.select(Enterprise).where(Enterprise.park_id == park.id)
                                .order_by(Enterprise.id)).all()
        sites[0].site = to_element(shapely.buffer(
            shapely.line_interpolate_point(edge, 0.5, normalized=True), 2e-4))
        sites[1].site = to_element(shapely.Point(shapes[a.id].bounds[0] - 0.05, 34.0))


def test_stored_park_read_by_the_workers_gives_the_single_process_report(db_url, engine):
    """The DB-reading path (workers read and validate their cells) matches ``check_coverage``.

    On the demo park with planted problems, through 1 to 9 partitions in
    this process, and the in-memory path on the same cells.  The demo's
    grids have straight edges of ~300 m: a tile edge that cuts the retired
    grid's gap adds a vertex, and in metres the two chords enclose up to
    ~4 ppm more or less than the one (a sagitta of ~2 mm); hence 1e-5.
    """
    load_demo(engine, seed=1, today=date(2026, 1, 15))
    plant_problems(engine)
    with session_scope(engine) as session:
        park = get_park(session, PARK_CODE)
        single, report = check_park(session, park)
        assert len(single["invalid_grids"]) >= 2 and single["gaps"] and single["overlaps"]
        assert single["outside_park"] and single["enterprises"]["no_grid"]
        assert single["enterprises"]["multi_grid"] and single["unmatched_edges"]
        ids, codes, parents, envelopes = grid_layout(session, park)
        sites = [(e["name"], e["credit_code"], e["site"]) for e in enterprise_sites(session, park)]
        options = {"park": park_boundary(park), "enterprises": sites,
                   "metric_epsg": park.metric_epsg}
        reads = []

        class Counting(StoredGrids):
            def read(self, box):
                found = super().read(box)
                reads.append(len(found[0]))
                return found

        for partitions in (1, 4, 9):
            stored = StoredCells(ids, envelopes, lambda ids: grid_geometries(session, ids),
                                 Counting(engine.url, park.id, park.version))
            merged = check_partitioned(None, codes, parents, stored=stored,
                                       partitions=partitions, **options)
            assert_same(single, {"park": park.code, **merged.to_dict(),
                                 "rates": single["rates"]}, rel_tol=DEMO_REL_TOL)
        # Each partition read its own cells, not the park's.
        assert len(reads) == 14 and max(reads[1:]) < reads[0]
        cells, codes, parents = grid_cells(session, park)
        merged = check_partitioned(cells, codes, parents, partitions=4, **options)
        assert_same(single, {"park": park.code, **merged.to_dict(), "rates": single["rates"]},
                    rel_tol=DEMO_REL_TOL)


def test_a_park_edited_during_the_check_is_refused(db_url, engine):
    """A worker that reads another version of the park raises ``park_changed``."""
    load_demo(engine, seed=1, today=date(2026, 1, 15))
    with session_scope(engine) as session:
        park = get_park(session, PARK_CODE)
        ids, codes, parents, envelopes = grid_layout(session, park)
        stored = StoredCells(ids, envelopes, lambda ids: grid_geometries(session, ids),
                             StoredGrids(engine.url, park.id, park.version - 1))
        with pytest.raises(ConflictError, match="changed during the check"):
            check_partitioned(None, codes, parents, park=park_boundary(park), stored=stored)


def test_workers_open_the_database_read_only(db_url, engine):
    """The engine the workers read with answers queries and refuses every write."""
    load_demo(engine, seed=1, today=date(2026, 1, 15))
    reader = make_engine(db_url, read_only=True)
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM grids")).scalar() > 80
        with pytest.raises(sa.exc.DBAPIError, match="read-only|readonly"):
            with reader.begin() as conn:
                conn.execute(sa.text("UPDATE parks SET name = 'x'"))
    finally:
        reader.dispose()
    with engine.connect() as conn:
        assert "x" not in conn.execute(sa.text("SELECT name FROM parks")).scalars().all()


def test_stored_grids_never_show_the_password():
    grids = StoredGrids("postgresql+psycopg://gridmap:s3cret@db.example:5432/gm", 7, 1)
    assert "s3cret" not in repr(grids) and "db.example" in repr(grids)


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
    """``gridmap check --park CODE --scheduler URL`` gives the single-process JSON.

    The workers read their grids from the database, on the demo park with
    planted problems.
    """
    load_demo(engine, seed=1, today=date(2026, 1, 15))
    plant_problems(engine)

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
    assert single["invalid_grids"] and single["gaps"] and single["enterprises"]["multi_grid"]
    assert_same(single, distributed, rel_tol=DEMO_REL_TOL)
    # On a LocalCluster (--workers) this process reads the grids and sends the cells.
    local_code, local = check("--workers", "2")
    assert local_code == code
    assert_same(single, local, rel_tol=DEMO_REL_TOL)
    with session_scope(engine) as session, Client(dask_cluster, timeout=60) as client, \
            get_task_stream(client) as tasks:
        sent, _ = check_park(session, park=get_park(session, PARK_CODE), client=client,
                             workers_read=False)
    assert any(str(t["key"]).startswith("check_partition") for t in tasks.data)
    assert_same(single, sent, rel_tol=DEMO_REL_TOL)

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


def test_unreachable_scheduler_is_exit_2(runner, engine, monkeypatch):
    # Dask retries a refused connection until the timeout: 15 s would be spent waiting here.
    monkeypatch.setattr(geodata.batch, "SCHEDULER_CONNECT_TIMEOUT_S", 1)
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
