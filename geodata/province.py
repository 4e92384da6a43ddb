"""A deterministic province-scale data set: many parks of many grids, for benchmarks.

Pure data like :mod:`geodata.demo` (nothing touches a database); the loader
is :func:`geodata.services.demo_loader.load_province`.  Geometries are built
directly in EPSG:4326 (degrees).

Each park is a lattice of quadrilateral cells whose vertices are jittered by
up to a fifth of a cell, so no two grids are rectangles, yet neighbouring
grids share the very same vertex coordinates: the grids tile the park
exactly (no gap, no overlap) and the coverage check passes.  The park
boundary is the union of its cells: a perturbed rectangle with a hole of
missing cells in the middle (once the park has at least 5 x 4 cells) and a
step where its northern row ends early, so exactly ``grids_per_park`` grids
remain.  Parks sit side by side in rows, around 110°E 30°N (Hubei), each in
its own place.

Every grid has a chief; about one grid in 50 holds an enterprise gate point
and one in 100 a hazard point, at least one of each per park.
"""

from dataclasses import dataclass
from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geodata.creditcode import make_credit_code
from geodata.crs import STORAGE_SRID
from geodata.demo import _People
from geodata.gridcodes import grid_code

DEFAULT_SEED = 20261129
DIVISION_CODE = "420100"  # 武汉市: the generated parks lie around 110-114°E, 30-33°N
_ORIGIN = (110.0, 30.0)  # lon, lat of the first park's south-west corner
_CELL = (0.001, 0.0009)  # degrees: about 96 m x 100 m at 30°N
_JITTER = 0.2  # of a cell: keeps every quadrilateral convex and valid
_PARKS_PER_ROW = 10
_INDUSTRIES = ["装备制造", "食品加工", "纺织服装", "新材料", "电子信息"]
_CATEGORIES = ["消防安全", "用电安全", "安全通道", "特种设备"]


@dataclass(eq=False)
class ProvincePark:
    """One generated park as plain data; geometries in EPSG:4326.

    Attributes
    ----------
    park : dict
        ``code``, ``name``, ``division_code`` and ``boundary`` (Polygon).
    grids : geopandas.GeoDataFrame
        ``code, name, level, kind, active_from, geometry`` (Polygon), in code order.
    enterprises : geopandas.GeoDataFrame
        ``name, credit_code, industry, employees, contact_name, contact_phone,
        geometry`` (gate Point inside a grid).
    staff : pandas.DataFrame
        ``name, phone, role, grid_code, published``: one ``grid_chief`` per grid.
    hazards : geopandas.GeoDataFrame
        ``category, level, description, found_date, deadline, status, geometry``
        (Point inside a grid).
    """

    park: dict
    grids: gpd.GeoDataFrame
    enterprises: gpd.GeoDataFrame
    staff: pd.DataFrame
    hazards: gpd.GeoDataFrame


def park_codes(parks):
    """Codes of the generated parks ``PV001`` ... (``PV`` + at least 3 digits)."""
    width = max(3, len(str(parks)))
    return [f"PV{i + 1:0{width}d}" for i in range(parks)]


def build_province(parks, grids_per_park, seed=DEFAULT_SEED):
    """Yield ``parks`` generated parks of ``grids_per_park`` grids each, one at a time.

    Park ``i`` depends only on ``seed`` and ``i`` (and the sizes), so a
    re-run, or a run with more parks, gives the same first parks.  A
    generator, so a province of 10^5 grids is never all in memory at once.

    Raises
    ------
    ValueError
        If ``parks`` or ``grids_per_park`` is not a positive integer.
    """
    for name, value in (("parks", parks), ("grids_per_park", grids_per_park)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    codes = park_codes(parks)
    cols, rows, hole = _lattice_shape(grids_per_park)
    # Park slots wide enough for the largest park plus a 1 km margin.
    step_x, step_y = (cols + 12) * _CELL[0], (rows + 12) * _CELL[1]
    for i, code in enumerate(codes):
        rng = np.random.default_rng([seed, i])
        x0 = _ORIGIN[0] + (i % _PARKS_PER_ROW) * step_x + float(rng.uniform(0, 5)) * _CELL[0]
        y0 = _ORIGIN[1] + (i // _PARKS_PER_ROW) * step_y + float(rng.uniform(0, 5)) * _CELL[1]
        yield _park(rng, i, code, grids_per_park, (x0, y0), cols, rows, hole)


def _lattice_shape(n):
    """Columns, rows and hole side (cells) of a near-square lattice holding ``n`` grids."""
    cols = int(np.ceil(np.sqrt(n)))
    hole = cols // 5 if cols >= 5 else 0
    rows = int(np.ceil((n + hole * hole) / cols))
    # The hole keeps one full row of cells south and two north (the top row may be short).
    while hole and rows < hole + 3:
        hole -= 1
        rows = int(np.ceil((n + hole * hole) / cols))
    return cols, rows, hole


def _park(rng, index, code, n, origin, cols, rows, hole):
    """One park: jittered lattice, hole, short top row, then the tables."""
    x0, y0 = origin
    jx = rng.uniform(-_JITTER, _JITTER, (rows + 1, cols + 1)) * _CELL[0]
    jy = rng.uniform(-_JITTER, _JITTER, (rows + 1, cols + 1)) * _CELL[1]
    # Round once, so shared vertices are the same floats in every cell.
    vx = np.round(x0 + np.arange(cols + 1)[None, :] * _CELL[0] + jx, 9)
    vy = np.round(y0 + np.arange(rows + 1)[:, None] * _CELL[1] + jy, 9)
    r, c = np.divmod(np.arange(rows * cols), cols)
    keep = np.ones(rows * cols, dtype=bool)
    if hole:
        r0, c0 = (rows - hole) // 2, (cols - hole) // 2
        keep &= ~((r >= r0) & (r < r0 + hole) & (c >= c0) & (c < c0 + hole))
    # The surplus leaves the east end of the northern row.
    surplus = int(keep.sum()) - n
    keep &= ~((r == rows - 1) & (c >= cols - surplus))
    r, c = r[keep], c[keep]
    ring = [(r, c), (r, c + 1), (r + 1, c + 1), (r + 1, c), (r, c)]
    coords = np.stack([np.stack([vx[a, b], vy[a, b]], axis=-1) for a, b in ring], axis=1)
    cells = shapely.polygons(coords)
    # North to south, west to east: the reading order that numbers grids.
    seq = np.lexsort((c, -r))
    cells = cells[seq]
    width = max(3, len(str(n)))
    codes = [grid_code(code, k + 1, width=width) for k in range(n)]
    boundary = shapely.coverage_union_all(cells)
    name = f"第{index + 1}号省级产业园"
    grids = gpd.GeoDataFrame(
        {"code": codes, "name": [f"第{k + 1}网格" for k in range(n)], "level": 1,
         "kind": "area", "active_from": date(2026, 1, 1)},
        geometry=cells, crs=STORAGE_SRID)
    people = _People(rng)
    staff = pd.DataFrame({"name": [people.name() for _ in range(n)],
                          "phone": [people.phone() for _ in range(n)],
                          "role": "grid_chief", "grid_code": codes, "published": True})
    inner = shapely.get_coordinates(shapely.centroid(cells))
    n_ent = max(1, n // 50)
    at = np.sort(rng.choice(n, size=n_ent, replace=False))
    enterprises = gpd.GeoDataFrame(
        {"name": [f"{name}第{k + 1}号企业" for k in range(n_ent)],
         "credit_code": [make_credit_code(DIVISION_CODE, 10**7 + index * 10**5 + k)
                         for k in range(n_ent)],
         "industry": [_INDUSTRIES[k % len(_INDUSTRIES)] for k in range(n_ent)],
         "employees": rng.integers(5, 500, n_ent),
         "contact_name": [people.name() for _ in range(n_ent)],
         "contact_phone": [people.phone() for _ in range(n_ent)]},
        geometry=shapely.points(inner[at]), crs=STORAGE_SRID)
    n_haz = max(1, n // 100)
    at = np.sort(rng.choice(n, size=n_haz, replace=False))
    # A twentieth of a cell off the centroid: inside the convex cell, not on a site.
    offset = np.array(_CELL) * 0.05 * rng.uniform(-1, 1, (n_haz, 2))
    found = [date(2026, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 300, n_haz)]
    hazards = gpd.GeoDataFrame(
        {"category": [_CATEGORIES[k % len(_CATEGORIES)] for k in range(n_haz)],
         "level": "general", "description": "巡查发现", "found_date": found,
         "deadline": [d + timedelta(days=30) for d in found], "status": "found"},
        geometry=shapely.points(inner[at] + offset), crs=STORAGE_SRID)
    park = {"code": code, "name": name, "division_code": DIVISION_CODE, "boundary": boundary}
    return ProvincePark(park, grids, enterprises, staff, hazards)
