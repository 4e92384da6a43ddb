"""The partitioned coverage check (geodata.partition) gives the single-process findings.

Coverages are jittered lattices built in EPSG:4547 metres (vertices shared
by neighbours, so the lattice alone is a valid coverage), with planted
problems: removed cells and a removed run of a row (gaps, one crossing
tile edges), shrunk cells (gaps and unmatched edges), grown cells
(overlaps), bow-tie cells (invalid) and a park boundary moved off the
lattice's (outside parts or border gaps).
"""

from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geodata
from geodata import crs
from geodata.coverage import check_coverage
from geodata.partition import check_partitioned

EPSG = 4547
X0, Y0 = 536000.0, 3769000.0  # ~114.39E 34.06N
SIDE = 50.0
AREA_TOL_M2 = 1e-6
# Gaps crossing a tile edge gain a vertex there; projected, that vertex moves
# the measured area by ~1e-5 m² (a degree-straight edge is curved in metres).
GAP_REL_TOL = 1e-7
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
            if k in bowties:
                ring[1], ring[2] = ring[2], ring[1]
            cell = shapely.segmentize(shapely.Polygon(ring), SIDE / 2)
            if k in shrunk or k in grown:
                cell = shapely.affinity.scale(cell, *(2 * (0.9 if k in shrunk else 1.1,)),
                                              origin="centroid")
            cells.append(cell)
            codes.append(f"G{i:03d}-{j:03d}")
    park = shapely.segmentize(shapely.box(X0, Y0, X0 + nx * SIDE, Y0 + ny * SIDE)
                              .buffer(park_offset, join_style="mitre"), SIDE / 2)
    return crs.to_storage(np.array(cells), EPSG), codes, crs.to_storage(park, EPSG)


def assert_same(single, merged):
    """Assert two CoverageReports hold the same findings (geometries as point sets)."""
    assert merged.valid == single.valid
    assert merged.cell_count == single.cell_count
    assert merged.invalid_grids == single.invalid_grids
    assert merged.enterprises == single.enterprises
    assert merged.park_area_m2 == pytest.approx(single.park_area_m2, abs=AREA_TOL_M2)
    assert merged.covered_area_m2 == pytest.approx(single.covered_area_m2, rel=GAP_REL_TOL,
                                                   abs=AREA_TOL_M2)
    assert [u["code"] for u in merged.unmatched_edges] == [
        u["code"] for u in single.unmatched_edges]
    for m, s in zip(merged.unmatched_edges, single.unmatched_edges):
        assert shapely.equals(m["geometry"], s["geometry"]), m["code"]
    for key, name in (("overlaps", "codes"), ("outside_park", "code"), ("gaps", None)):
        ms, ss = getattr(merged, key), getattr(single, key)
        if name is None:  # gaps: no key, order them by place
            ms, ss = (sorted(items, key=lambda g: shapely.centroid(g["geometry"]).coords[0])
                      for items in (ms, ss))
        else:
            assert [m[name] for m in ms] == [s[name] for s in ss], key
        assert len(ms) == len(ss), key
        for m, s in zip(ms, ss):
            tol = AREA_TOL_M2 + (GAP_REL_TOL * s["area_m2"] if key == "gaps" else 0)
            assert m["area_m2"] == pytest.approx(s["area_m2"], abs=tol), key
            # The same point set, to ~0.1 mm (extra vertices do not count).
            assert shapely.hausdorff_distance(m["geometry"], s["geometry"]) < 1e-9, key


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
    assert_same(single, merged)
