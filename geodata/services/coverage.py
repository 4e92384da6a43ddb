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
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import list_parks, park_boundary
from geodata.services.sites import enterprises_of, site_geometries

#: Fields an enterprise record needs to count as complete.
RECORD_FIELDS = ("name", "credit_code", "industry", "employees", "contact_name", "contact_phone")


def record_complete(enterprise):
    """True when every field of :data:`RECORD_FIELDS` is filled and the credit code is valid."""
    return all(getattr(enterprise, f) not in (None, "") for f in RECORD_FIELDS) and \
        credit_code_problem(enterprise.credit_code) is None


def _rate(part, whole):
    return round(part / whole, 6) if whole else None


def park_rates(session, park, enterprises=None, no_grid_codes=()):
    """Return the three 100% rates of a park (fractions 0–1, None when nothing to count).

    ``enterprises_in_grid``: enterprises whose site lies in a level-1 grid
    (those listed in ``no_grid_codes`` by the spatial check do not).
    ``grids_staffed``: active level-1 grids with a grid chief whose staff
    contacts are all published (公示).  ``records_complete``: enterprises
    passing :func:`record_complete`.
    """
    enterprises = enterprises_of(session, park) if enterprises is None else enterprises
    grids = active_grids(session, park, level=1)
    staff = session.execute(
        sa.select(GridStaff.grid_id, GridStaff.role, GridStaff.published)
        .join(Grid, GridStaff.grid_id == Grid.id).where(Grid.park_id == park.id)).all()
    chiefs = {g for g, role, _ in staff if role == "grid_chief"}
    unpublished = {g for g, _, published in staff if not published}
    staffed = sum(g.id in chiefs and g.id not in unpublished for g in grids)
    no_grid = set(no_grid_codes)
    return {
        "enterprises_in_grid": _rate(sum(e.credit_code not in no_grid for e in enterprises),
                                     len(enterprises)),
        "grids_staffed": _rate(staffed, len(grids)),
        "records_complete": _rate(sum(map(record_complete, enterprises)), len(enterprises)),
    }


def check_park(session, park, *, tolerance_m=0.01):
    """Check a stored park: its active grids against its boundary, and its sites.

    Returns
    -------
    dict
        :meth:`CoverageReport.to_dict` plus ``park`` (code) and ``rates``.
    CoverageReport
        The report itself (for text and GeoJSON output).
    """
    grids = active_grids(session, park)
    codes = {g.id: g.code for g in grids}
    enterprises = enterprises_of(session, park)
    sites = [(e.name, e.credit_code, geom)
             for e, geom in zip(enterprises, site_geometries(enterprises))]
    report = check_coverage(grid_geometries(grids), [g.code for g in grids],
                            [codes.get(g.parent_id) for g in grids], park=park_boundary(park),
                            enterprises=sites or None, tolerance_m=tolerance_m,
                            metric_epsg=park.metric_epsg)
    no_grid = [e["credit_code"] for e in report.enterprises["no_grid"]]
    result = {"park": park.code, **report.to_dict(),
              "rates": park_rates(session, park, enterprises, no_grid)}
    return result, report


def park_codes(session):
    """Codes of every stored park (for ``gridmap check --all``)."""
    return [p.code for p in list_parks(session)]
