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
from geodata.models import Grid, GridStaff
from geodata.partition import check_partitioned
from geodata.services.grids import grid_layer
from geodata.services.parks import list_parks, park_boundary
from geodata.services.sites import site_layer

#: Fields an enterprise record needs to count as complete.
RECORD_FIELDS = ("name", "credit_code", "industry", "employees", "contact_name", "contact_phone")


def record_complete(enterprises):
    """Mask of enterprises (a frame from :func:`site_layer`) with complete basic records.

    Complete means every field of :data:`RECORD_FIELDS` is filled and the
    credit code passes GB 32100.
    """
    filled = enterprises[list(RECORD_FIELDS)].notna().all(axis=1) & (
        enterprises[list(RECORD_FIELDS)].astype(str) != "").all(axis=1)
    valid = enterprises["credit_code"].map(lambda c: credit_code_problem(c) is None)
    return filled & valid


def _rate(part, whole):
    return round(float(part) / whole, 6) if whole else None


def park_rates(session, park, enterprises=None, no_grid_codes=None):
    """Return the three 100% rates of a park (fractions 0–1, None when nothing to count).

    ``enterprises_in_grid``: enterprises whose site lies in a level-1 grid
    (those listed in ``no_grid_codes`` by the spatial check do not; without
    it, the stored assignment counts).  ``grids_staffed``: active level-1
    grids with a grid chief whose staff contacts are all published (公示).
    ``records_complete``: enterprises passing :func:`record_complete`.
    """
    enterprises = site_layer(session, park) if enterprises is None else enterprises
    level1 = set(session.execute(sa.select(Grid.id).where(
        Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None))).scalars())
    staff = session.execute(
        sa.select(GridStaff.grid_id, GridStaff.role, GridStaff.published)
        .join(Grid, GridStaff.grid_id == Grid.id).where(Grid.park_id == park.id)).all()
    chiefs = {g for g, role, _ in staff if role == "grid_chief"}
    unpublished = {g for g, _, published in staff if not published}
    staffed = len(level1 & chiefs - unpublished)
    if no_grid_codes is not None:
        in_grid = (~enterprises["credit_code"].isin(set(no_grid_codes))).sum()
    else:
        in_grid = enterprises["grid_id"].notna().sum()
    return {
        "enterprises_in_grid": _rate(in_grid, len(enterprises)),
        "grids_staffed": _rate(staffed, len(level1)),
        "records_complete": _rate(record_complete(enterprises).sum(), len(enterprises)),
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
    grids = grid_layer(session, park)
    enterprises = site_layer(session, park)
    check, options = (check_coverage, {}) if client is None else (
        check_partitioned, {"client": client})
    report = check(grids.geometry.to_numpy(), grids["code"].tolist(),
                   grids["parent_code"].tolist(), park=park_boundary(park),
                   enterprises=enterprises if len(enterprises) else None,
                   tolerance_m=tolerance_m, metric_epsg=park.metric_epsg, **options)
    no_grid = [e["credit_code"] for e in report.enterprises["no_grid"]]
    result = {"park": park.code, **report.to_dict(),
              "rates": park_rates(session, park, enterprises, no_grid)}
    return result, report


def park_codes(session):
    """Codes of every stored park (for ``gridmap check --all``)."""
    return [p.code for p in list_parks(session)]
