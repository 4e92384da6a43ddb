"""Coverage check of stored parks (database mode) and the park's 100% rates.

The geometry work is :func:`geodata.coverage.check_coverage`; this module
reads a park's active grids and enterprise sites and adds the three rates the
articles track: enterprises in a grid (企业有格), grids with a chief and
published contacts (格中有人), and enterprises with complete basic records
(一表在手、情况全有).
"""

import gc
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa

from geodata.caches import StampedCache
from geodata.coverage import check_coverage
from geodata.creditcode import credit_code_problem
from geodata.models import Enterprise, Grid, GridStaff, Park, ParkCoverageStamp
from geodata.models.base import to_shapes
from geodata.services.parks import park_boundary
from geodata.storage import backend_name, bbox_filter, fetch_rows

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


def _envelope(session, column):
    """``minx, miny, maxx, maxy`` of a geometry column as SQL (NULL for an empty geometry).

    SpatiaLite reads them from the blob's header; both ends of a partitioned
    check use this one expression, so they agree on every number.
    """
    names = (("ST_XMin", "ST_YMin", "ST_XMax", "ST_YMax") if backend_name(session) == "postgresql"
             else ("MbrMinX", "MbrMinY", "MbrMaxX", "MbrMaxY"))
    return [getattr(sa.func, name)(column) for name in names]


def _float_rows(rows, width):
    """Rows of numbers (None for NULL) as an (n, width) float array, NaN for NULL."""
    return np.array(rows, dtype=float).reshape(-1, width)


def grid_layout(session, park):
    """A park's active grids without their geometry: (ids, codes, parent codes, envelopes), by code.

    ``envelopes`` is an (n, 4) array of ``minx, miny, maxx, maxy`` in
    EPSG:4326 degrees, NaN for an empty geometry: what the partitioned check
    (:func:`geodata.partition.check_partitioned`) cuts its tiles from.
    """
    parent = sa.orm.aliased(Grid)
    rows = fetch_rows(session, sa.select(Grid.id, Grid.code, parent.code,
                                         *_envelope(session, Grid.geom))
                      .outerjoin(parent, Grid.parent_id == parent.id)
                      .where(Grid.park_id == park.id, Grid.active_to.is_(None))
                      .order_by(Grid.code))
    ids, codes, parents, *box = zip(*rows) if rows else ([], [], [], [], [], [], [])
    return (np.array(ids, dtype=np.int64), list(codes), list(parents),
            _float_rows(list(zip(*box)), 4))


def grid_geometries(session, ids):
    """The stored geometries (shapely, EPSG:4326) of the grids ``ids``, in that order."""
    ids = [int(i) for i in ids]
    found = {}
    # Bounded IN lists: SQLite caps the number of bound parameters.
    for start in range(0, len(ids), 10_000):
        chunk = ids[start:start + 10_000]
        found.update(session.execute(sa.select(Grid.id, sa.func.ST_AsBinary(Grid.geom))
                                     .where(Grid.id.in_(chunk))).all())
    return to_shapes([found[i] for i in ids])


def level1_grids_in_box(session, park_id, version, box):
    """A park's active level-1 grids whose envelope meets ``box``: (ids, envelopes, geometries).

    In code order; ``box`` is (minx, miny, maxx, maxy) in EPSG:4326 and the
    spatial index answers it (:func:`geodata.storage.bbox_filter`), so the
    rows may include a few whose envelope misses it.  ``envelopes`` are those
    of :func:`grid_layout`.  Read in one transaction, which also reads the
    park's version: every grid edit bumps it.

    Raises
    ------
    ConflictError
        ``park_changed`` when the park's version is not ``version``.
    """
    from geodata.errors import ConflictError
    from geodata.models import Park

    now = session.execute(sa.select(Park.version).where(Park.id == park_id)).scalar()
    if now != version:
        raise ConflictError("the park's grids changed during the check; run it again",
                            code="park_changed")
    rows = fetch_rows(session, sa.select(Grid.id, *_envelope(session, Grid.geom),
                                         sa.func.ST_AsBinary(Grid.geom))
                      .where(Grid.park_id == park_id, Grid.parent_id.is_(None),
                             Grid.active_to.is_(None), bbox_filter(session, Grid, Grid.geom, box))
                      .order_by(Grid.code))
    ids, *box, wkb = zip(*rows) if rows else ([], [], [], [], [], [])
    return (np.array(ids, dtype=np.int64), _float_rows(list(zip(*box)), 4),
            to_shapes(list(wkb)))


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
    The dashboard and the weekly report show these same figures.
    """
    return rates_of(rate_counts(session, park, enterprises, no_grid_codes))


def rates_of(counts):
    """The rates of :func:`park_rates` from the counts of :func:`rate_counts`."""
    return {"enterprises_in_grid": _rate(counts["in_grid"], counts["enterprises"]),
            "grids_staffed": _rate(counts["staffed"], counts["grids"]),
            "records_complete": _rate(counts["complete"], counts["enterprises"])}


def rate_counts(session, park, enterprises=None, no_grid_codes=None):
    """What :func:`park_rates` divides, as a dict of counts.

    ``enterprises``, ``in_grid``, ``complete``, ``grids`` (active level 1)
    and ``staffed``.  Without ``enterprises`` (the dashboard, the weekly
    report) the enterprise counts come from SQL (:func:`_stored_counts`).
    """
    # Two index probes per grid (grid_staff.grid_id is indexed).  A join with the staff
    # grouped per grid was planned as a nested loop over the aggregate on a freshly
    # loaded PostGIS database (no statistics yet): minutes at 10^5 grids.
    staff = sa.select(GridStaff.id).where(GridStaff.grid_id == Grid.id)
    staffed = sa.and_(staff.where(GridStaff.role == "grid_chief").exists(),
                      ~staff.where(GridStaff.published.is_(False)).exists())
    level1, staffed = session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(staffed))
        .where(Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None))).one()
    if enterprises is None and no_grid_codes is None:
        return {**_stored_counts(session, park), "grids": int(level1), "staffed": int(staffed)}
    enterprises = enterprise_sites(session, park) if enterprises is None else enterprises
    if no_grid_codes is not None:
        outside = set(no_grid_codes)
        in_grid = sum(e["credit_code"] not in outside for e in enterprises)
    else:
        in_grid = sum(e["grid_id"] is not None for e in enterprises)
    return {"enterprises": len(enterprises), "in_grid": in_grid,
            "complete": sum(map(record_complete, enterprises)),
            "grids": int(level1), "staffed": int(staffed)}


def _stored_counts(session, park):
    """``{enterprises, in_grid, complete}`` of :func:`rate_counts` by the stored assignment.

    Counted in SQL, without reading any site: a city's park holds 10^5
    enterprises, and decoding their sites for three counts was most of the
    dashboard's and the weekly page's time.  :func:`record_complete` is
    applied to the records SQL finds filled (its checksum is not SQL).
    """
    where = Enterprise.park_id == park.id
    total, in_grid = session.execute(sa.select(
        sa.func.count(), sa.func.count(Enterprise.grid_id)).where(where)).one()
    fields = [getattr(Enterprise, f) for f in RECORD_FIELDS]
    # record_complete's "filled": not NULL, and not empty text (a number is never empty).
    filled = [c.is_not(None) if isinstance(c.type, sa.Integer) else sa.and_(
        c.is_not(None), c != "") for c in fields]
    complete = sum(record_complete(dict(zip(RECORD_FIELDS, row))) for row in session.execute(
        sa.select(*fields).where(where, *filled)))
    return {"enterprises": int(total), "in_grid": int(in_grid), "complete": complete}


@contextmanager
def _without_cycle_collection():
    """Pause the garbage collector's cycle search; resume it after (if it was on).

    Reading 10^5 grids allocates 10^5 row tuples, and each full collection
    they trigger walks every object of the imported modules again: 0.18 s of
    CPU in ``gridmap check --park`` at 10^5 grids, more than the rates and
    the JSON together.  Rows, arrays and findings hold no reference cycles;
    what else does is collected once the collector resumes.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def check_park(session, park, *, tolerance_m=0.01, client=None, workers_read=True, threads=1):
    """Check a stored park: its active grids against its boundary, and its sites.

    With a Dask ``client`` (``distributed.Client``) the level-1 stages run
    in spatial partitions on its workers (:func:`geodata.partition.check_partitioned`);
    the findings are the same.  With ``workers_read`` the workers read
    their partitions' grids from this session's database themselves
    (:class:`geodata.batch.StoredGrids`) and nothing but envelopes passes
    through this process; without it this process reads the grids and sends
    each partition its cells.  Without a client, ``threads`` threads of this
    process share the geometry work (:func:`geodata.coverage.check_coverage`).

    Returns
    -------
    dict
        :meth:`CoverageReport.to_dict` plus ``park`` (code) and ``rates``.
    CoverageReport
        The report itself (for text and GeoJSON output).
    """
    if client is not None:  # Dask's comms run for long and do make cycles
        return _check_park(session, park, tolerance_m, client, workers_read, threads)
    with _without_cycle_collection():
        return _check_park(session, park, tolerance_m, client, workers_read, threads)


def _check_park(session, park, tolerance_m, client, workers_read, threads):
    """The body of :func:`check_park`."""
    enterprises = enterprise_sites(session, park)
    if client is None or not workers_read:
        cells, codes, parent_codes = grid_cells(session, park)
        check, options = check_coverage, {"threads": threads}
        if client is not None:
            from geodata.partition import check_partitioned

            check, options = check_partitioned, {"client": client}
    else:
        from geodata.batch import StoredGrids
        from geodata.partition import StoredCells, check_partitioned

        ids, codes, parent_codes, envelopes = grid_layout(session, park)
        cells, check = None, check_partitioned
        url = session.get_bind().url
        options = {"client": client, "stored": StoredCells(
            ids, envelopes, lambda ids: grid_geometries(session, ids),
            StoredGrids(url, park.id, park.version))}
    sites = [(e["name"], e["credit_code"], e["site"]) for e in enterprises]
    report = check(cells, codes, parent_codes, park=park_boundary(park),
                   enterprises=sites or None, tolerance_m=tolerance_m,
                   metric_epsg=park.metric_epsg, **options)
    no_grid = [e["credit_code"] for e in report.enterprises["no_grid"]]
    result = {"park": park.code, **report.to_dict(),
              "rates": park_rates(session, park, enterprises, no_grid)}
    return result, report


# The park's coverage report, once per state of what it reads: {(database URL, park id,
# tolerance): (report, its GeoJSON features or None)}.  Parks kept: an entry is the
# report, its findings with their geometries (nothing for a park that tiles), not the grids.
_reports = StampedCache(64)
clear_report_cache = _reports.clear


def coverage_stamp(session, park):
    """The park's coverage stamp (:class:`~geodata.models.ParkCoverageStamp`), None without one.

    Database triggers renew it whenever the report of :func:`coverage_report`
    can change (migration 0013), so it is that report's version: the
    coverage route's ETag.
    """
    return session.execute(sa.select(ParkCoverageStamp.stamp).where(
        ParkCoverageStamp.park_id == park.id)).scalar()


def coverage_report(session, park, tolerance_m=0.01):
    """Return ``(stamp, report)``: the coverage check of the park's grids against its boundary.

    The same findings as :func:`check_park` (gaps, overlaps, parts outside
    the park or parent, invalid grids, unmatched edges) without its site
    checks and rates.  The check is O(park), seconds at 10^5 grids, so the
    report is computed once per state of what it reads and cached in this
    process under the park's coverage stamp, which database triggers renew
    on every change of a grid's geometry, code, parent, level, retired state
    or park and of the park's boundary or metric CRS, whoever writes
    (migration 0013).  The stamp is read first and the boundary read again
    after it, so a report is never filed under a stamp older than its data.
    ``stamp`` is None (and nothing is cached) for a park without a stamp row.

    Returns
    -------
    int or None
        The stamp the report is valid for.
    CoverageReport
        Shared by the callers: read it, never change it.
    """
    return _cached_report(session, park, tolerance_m)[:2]


def coverage_features(session, park, tolerance_m=0.01):
    """Return ``(stamp, features)``: the GeoJSON features of :func:`coverage_report`'s findings.

    ``CoverageReport.to_geojson()["features"]`` as a tuple, built once per
    report: a page of a park's problems costs the page, not every problem.
    Shared by the callers: never change a feature.
    """
    stamp, report, features = _cached_report(session, park, tolerance_m)
    if features is None:
        features = tuple(report.to_geojson()["features"])
        key = _report_key(session, park, tolerance_m)
        kept = _reports.get(key, stamp)
        if kept is not None and kept[0] is report:
            _reports.put(key, stamp, (report, features), replacing=kept)
    return stamp, features


def _report_key(session, park, tolerance_m):
    return str(session.get_bind().url), park.id, float(tolerance_m)


def _cached_report(session, park, tolerance_m):
    """``(stamp, report, features or None)`` from the cache, or computed and cached."""
    stamp = coverage_stamp(session, park)
    key = _report_key(session, park, tolerance_m)
    hit = _reports.get(key, stamp)
    if hit is not None:
        return (stamp, *hit)
    boundary, epsg = session.execute(sa.select(sa.func.ST_AsBinary(Park.boundary),
                                               Park.metric_epsg).where(Park.id == park.id)).one()
    with _without_cycle_collection():
        cells, codes, parent_codes = grid_cells(session, park)
        report = check_coverage(cells, codes, parent_codes, park=to_shapes([boundary])[0],
                                tolerance_m=tolerance_m, metric_epsg=epsg)
    _reports.put(key, stamp, (report, None))
    return stamp, report, None
