"""Coverage check of stored parks (database mode) and the park's 100% rates.

The geometry work is :func:`geodata.coverage.check_coverage`; this module
reads a park's active grids and enterprise sites and adds the three rates the
articles track: enterprises in a grid (企业有格), grids with a chief and
published contacts (格中有人), and enterprises with complete basic records
(一表在手、情况全有).
"""

import sqlalchemy as sa

from geodata.coverage import check_coverage
from geodata.creditcode import credit_code_problem
from geodata.models import Enterprise, Grid, GridStaff
from geodata.models.base import to_shapes
from geodata.services.parks import park_boundary
from geodata.storage import fetch_rows

#: Fields an enterprise record needs to count as complete.
RECORD_FIELDS = ("name", "credit_code", "industry", "employees", "contact_name", "contact_phone")


def grid_cells(session, park):
    """A park's active grids for the check: (geometries, codes, parent codes), by code.

    Geometries are a shapely array in EPSG:4326.  Only the three columns the
    check needs are read, and without pandas: at 10^5 grids a GeoDataFrame
    (:func:`geodata.services.grids.grid_layer`) and its imports cost as much
    as the reading itself.
    """
    parent = sa.orm.aliased(Grid)
    rows = fetch_rows(session, sa.select(Grid.code, parent.code, sa.func.ST_AsBinary(Grid.geom))
                      .outerjoin(parent, Grid.parent_id == parent.id)
                      .where(Grid.park_id == park.id, Grid.active_to.is_(None))
                      .order_by(Grid.code))
    return (to_shapes([r[2] for r in rows]), [r[0] for r in rows], [r[1] for r in rows])


def enterprise_sites(session, park):
    """A park's enterprises as dicts of :data:`RECORD_FIELDS`, ``grid_id`` and ``site``.

    ``site`` is a shapely Polygon or Point (EPSG:4326); ordered by id.
    """
    columns = [getattr(Enterprise, f) for f in RECORD_FIELDS] + [Enterprise.grid_id]
    rows = session.execute(
        sa.select(*columns, sa.func.ST_AsBinary(Enterprise.site))
        .where(Enterprise.park_id == park.id).order_by(Enterprise.id)).all()
    sites = to_shapes([r[-1] for r in rows])
    names = [*RECORD_FIELDS, "grid_id"]
    return [{**dict(zip(names, r[:-1])), "site": site} for r, site in zip(rows, sites)]


def record_complete(enterprise):
    """True when an enterprise (a dict of :func:`enterprise_sites`) has complete basic records.

    Complete means every field of :data:`RECORD_FIELDS` is filled and the
    credit code passes GB 32100.
    """
    return all(enterprise[f] is not None and str(enterprise[f]) != "" for f in RECORD_FIELDS) \
        and credit_code_problem(enterprise["credit_code"]) is None


def _rate(part, whole):
    return round(float(part) / whole, 6) if whole else None


def park_rates(session, park, enterprises=None, no_grid_codes=None):
    """Return the three 100% rates of a park (fractions 0–1, None when nothing to count).

    ``enterprises_in_grid``: enterprises whose site lies in a level-1 grid
    (those listed in ``no_grid_codes`` by the spatial check do not; without
    it, the stored assignment counts).  ``grids_staffed``: active level-1
    grids with a grid chief whose staff contacts are all published (公示).
    ``records_complete``: enterprises passing :func:`record_complete`.
    ``enterprises`` are the dicts of :func:`enterprise_sites` (read when None).
    """
    enterprises = enterprise_sites(session, park) if enterprises is None else enterprises
    # Two index probes per grid (grid_staff.grid_id is indexed).  A join with the staff
    # grouped per grid was planned as a nested loop over the aggregate on a freshly
    # loaded PostGIS database (no statistics yet): minutes at 10^5 grids.
    staff = sa.select(GridStaff.id).where(GridStaff.grid_id == Grid.id)
    staffed = sa.and_(staff.where(GridStaff.role == "grid_chief").exists(),
                      ~staff.where(GridStaff.published.is_(False)).exists())
    level1, staffed = session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(staffed))
        .where(Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None))).one()
    if no_grid_codes is not None:
        outside = set(no_grid_codes)
        in_grid = sum(e["credit_code"] not in outside for e in enterprises)
    else:
        in_grid = sum(e["grid_id"] is not None for e in enterprises)
    return {
        "enterprises_in_grid": _rate(in_grid, len(enterprises)),
        "grids_staffed": _rate(staffed, level1),
        "records_complete": _rate(sum(map(record_complete, enterprises)), len(enterprises)),
    }


def check_park(session, park, *, tolerance_m=0.01, client=None):
    """Check a stored park: its active grids against its boundary, and its sites.

    With a Dask ``client`` (``distributed.Client``) the level-1 stages run
    in spatial partitions on its workers (:func:`geodata.partition.check_partitioned`);
    the findings are the same.

    Returns
    -------
    dict
        :meth:`CoverageReport.to_dict` plus ``park`` (code) and ``rates``.
    CoverageReport
        The report itself (for text and GeoJSON output).
    """
    cells, codes, parent_codes = grid_cells(session, park)
    enterprises = enterprise_sites(session, park)
    if client is None:
        check, options = check_coverage, {}
    else:
        from geodata.partition import check_partitioned

        check, options = check_partitioned, {"client": client}
    sites = [(e["name"], e["credit_code"], e["site"]) for e in enterprises]
    report = check(cells, codes, parent_codes, park=park_boundary(park),
                   enterprises=sites or None, tolerance_m=tolerance_m,
                   metric_epsg=park.metric_epsg, **options)
    no_grid = [e["credit_code"] for e in report.enterprises["no_grid"]]
    result = {"park": park.code, **report.to_dict(),
              "rates": park_rates(session, park, enterprises, no_grid)}
    return result, report
