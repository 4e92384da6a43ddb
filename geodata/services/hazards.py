"""Hazards (隐患): spatial resolution, import with history, export."""

import functools
import re
from collections import Counter

import geopandas as gpd
import numpy as np
import shapely
import sqlalchemy as sa

from geodata import attributes as attr
from geodata import domains
from geodata.crs import STORAGE_SRID
from geodata.errors import ConflictError, FeatureError
from geodata.geometry import validate_geometries
from geodata.models import (HAZARD_LEVELS, HAZARD_STATUSES, Enterprise, Grid, Hazard,
                            HazardEvent)
from geodata.models.base import to_element, to_shapes
from geodata.periods import local_today
from geodata.services.numbering import reserve
from geodata.services.parks import park_boundary
from geodata.spatial import assign_to_cells
from geodata.storage import backend_name, bbox_filter

STATUS_NAMES = {**{s: s for s in HAZARD_STATUSES},
                "排查": "found", "整改": "rectifying", "督导": "supervising", "销号": "closed"}
LEVEL_NAMES = {**{v: v for v in HAZARD_LEVELS}, "一般": "general", "重大": "major"}
_YEAR_CODE = re.compile(r"^YH(\d{4})-\d+$")


#: Up to this many points, :func:`locate` reads only the grids and sites whose bounding
#: box meets the points' (through the spatial index) instead of the park's whole layers.
FEW_POINTS = 16


def locate(session, park, points, *, names=False):
    """Resolve grids and enterprises for hazard points (EPSG:4326), vectorised.

    The grid is the deepest active grid containing the point; a point on a
    shared boundary goes to the grid with the lowest code among the deepest
    candidates.  The enterprise is the site containing the point, hidden
    units (those with a host) before their hosts, then the smaller site.
    For up to :data:`FEW_POINTS` points (a hazard logged through the API)
    only the grids and sites near them are read; the ranking among those is
    the same as among all, so the answer is too.

    Returns
    -------
    (list of int or None, list of int or None)
        Grid ids and enterprise ids, aligned with ``points``; with ``names``,
        ``(id, code, name)`` of the grid and ``(id, name, credit_code)`` of
        the enterprise instead of the ids (read in the same statement).
    """
    points = np.asarray(points, dtype=object)
    box = None
    if 0 < len(points) <= FEW_POINTS and not shapely.is_empty(points).any():
        # The points' bounds, as shapely.total_bounds gives them for non-empty points, without
        # its NaN handling: 3 µs instead of 13 on every hazard logged.
        bounds = shapely.bounds(points)
        box = (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))
    grids, sites = _layers_near(session, park, box)
    geoms = to_shapes([r[3] for r in grids])
    order = np.empty(len(grids), dtype=np.int64)
    order[np.lexsort(([r[1] for r in grids], [-r[2] for r in grids]))] = np.arange(len(grids))
    gk = assign_to_cells(points, geoms, order=order)
    geoms = to_shapes([r[2] for r in sites])
    order = np.empty(len(sites), dtype=np.int64)
    order[np.lexsort((shapely.area(geoms), [r[1] is None for r in sites]))] = np.arange(
        len(sites))
    ek = assign_to_cells(points, geoms, order=order)
    if names:
        return ([(grids[k][0], grids[k][1], grids[k][4]) if k >= 0 else None for k in gk],
                [(sites[k][0], sites[k][3], sites[k][4]) if k >= 0 else None for k in ek])
    return ([grids[k][0] if k >= 0 else None for k in gk],
            [sites[k][0] if k >= 0 else None for k in ek])


def _layers_near(session, park, box):
    """The park's active grids ``(id, code, level, wkb, name)`` by code and its sites
    ``(id, host_id, wkb, name, credit_code)`` by id, only those whose bounding box
    meets ``box`` if given.

    One statement (``UNION ALL``) reads both layers: one round trip per hazard logged.
    """
    backend = backend_name(session)
    params = {"park_id": park.id}
    if box is not None:
        params.update(zip(_BOX, (float(v) for v in box)))
    rows = session.execute(_layers_statement(backend, box is not None), params).all()
    return ([(r[1], r[2], r[3], r[4], r[5]) for r in rows if r[0] == 0],
            [(r[1], r[3], r[4], r[5], r[6]) for r in rows if r[0] == 1])


_BOX = ("minx", "miny", "maxx", "maxy")


@functools.cache
def _layers_statement(backend, near):
    """The statement of :func:`_layers_near` on ``backend``, with or without the box.

    Built once with bound parameters (``park_id`` and the box's): building it
    cost more CPU than the database spends running it, on every hazard logged.
    Of the tables, not the mapped classes: a statement with no ORM entity
    skips the ORM's execution steps.
    """
    park_id = sa.bindparam("park_id", type_=sa.Integer)
    g, e = Grid.__table__, Enterprise.__table__
    grids = sa.select(sa.literal(0).label("layer"), g.c.id, g.c.code.label("code"),
                      g.c.level.label("number"), sa.func.ST_AsBinary(g.c.geom).label("wkb"),
                      g.c.name.label("name"), sa.null().label("credit_code")
                      ).where(g.c.park_id == park_id, g.c.active_to.is_(None))
    sites = sa.select(sa.literal(1), e.c.id, sa.null(), e.c.host_id,
                      sa.func.ST_AsBinary(e.c.site), e.c.name,
                      e.c.credit_code).where(e.c.park_id == park_id)
    if near:
        box = [sa.bindparam(name, type_=sa.Float) for name in _BOX]
        grids = grids.where(bbox_filter(backend, g, g.c.geom, box))
        sites = sites.where(bbox_filter(backend, e, e.c.site, box))
    both = sa.union_all(grids, sites).subquery()
    return sa.select(both).order_by(both.c.layer, both.c.code, both.c.id)


def import_hazards(session, park, gdf, *, file=None, actor="import", max_vertices=20_000,
                   checked=False):
    """Insert hazards from a GeoDataFrame of Points (EPSG:4326) into ``park``.

    Columns: ``code`` (ledger number; generated as ``YH<year>-<seq>`` when
    blank), ``category``, ``level`` (general/major or 一般/重大),
    ``description``, ``found_date``, ``deadline``, ``status``
    (found/rectifying/supervising/closed or 排查/整改/督导/销号).  Grid and
    enterprise are resolved spatially (:func:`locate`).  Each hazard's history
    starts with one event recording the import, unless a ``history`` column
    (lists of ``at, actor, from_status, to_status, note`` dicts) carries it.

    ``checked``: the geometries already passed :func:`validate_geometries` for
    this layer (:func:`geodata.services.transfer.import_file` validates them
    before its write transaction).

    Raises
    ------
    FeatureError
        ``outside_park`` for a point outside the park, or a bad field.
    """
    geoms, warnings = (gdf.geometry.to_numpy(), []) if checked else validate_geometries(
        gdf.geometry.to_numpy(), "hazards", file=file, max_vertices=max_vertices)
    outside = np.flatnonzero(~shapely.covered_by(geoms, park_boundary(park)))
    if len(outside):
        raise FeatureError(f"hazard point lies outside park {park.code}", code="outside_park",
                           index=int(outside[0]), field="geometry", file=file)
    grid_ids, enterprise_ids = locate(session, park, geoms)
    histories = gdf["history"].tolist() if "history" in gdf else [None] * len(gdf)
    rows = list(attr.records(gdf.drop(columns=["history"], errors="ignore")))
    found = [attr.day(row.get("found_date"), field="found_date", index=i, file=file)
             or local_today() for i, row in rows]
    codes = ledger_codes(session, park, gdf.get("code", [None] * len(gdf)), file=file,
                         years=[d.year for d in found])
    new = []
    for i, row in rows:
        where = {"index": i, "file": file}
        status = STATUS_NAMES.get(attr.text(row.get("status"), field="status", required=False,
                                            **where) or "found")
        if status is None:
            raise FeatureError(f"unknown status {row.get('status')!r}", code="invalid_value",
                               field="status", **where)
        level = LEVEL_NAMES.get(attr.text(row.get("level"), field="level", required=False,
                                          **where) or "general")
        if level is None:
            raise FeatureError(f"unknown level {row.get('level')!r}", code="invalid_value",
                               field="level", **where)
        hazard = Hazard(
            park_id=park.id, code=codes[i], grid_id=grid_ids[i], enterprise_id=enterprise_ids[i],
            location=to_element(geoms[i]),
            category=attr.text(row.get("category"), field="category", kind="category", **where),
            level=level,
            description=attr.text(row.get("description"), field="description", required=False,
                                  kind="note", **where) or "",
            found_date=found[i],
            deadline=attr.day(row.get("deadline"), field="deadline", **where),
            status=status)
        if histories[i]:
            # A ledger carried over with its history keeps it, step by step.
            hazard.events.extend(HazardEvent(**_event(e, i, file)) for e in histories[i])
        else:
            hazard.events.append(HazardEvent(
                actor=actor, from_status=None, to_status=status,
                note=f"imported from {file}" if file else "imported"))
        new.append(hazard)
    session.add_all(new)
    session.flush()
    return new, warnings


def ledger_codes(session, park, given, *, file=None, years=None):
    """Validate given ledger numbers and fill blanks with the next ``YH<year>-<seq>``.

    ``years`` holds each hazard's found-date year (default: this year for
    all): a blank gets the next number of its own year, and a given
    ``YH<year>-...`` code must carry that year, so a ledger number never
    contradicts its found date.  Given numbers must be in the ledger-number
    domain (:func:`geodata.domains.ledger_code`).

    The park's counters of those years (:mod:`geodata.services.numbering`)
    are raised past the given numbers and advanced by the blanks first: their
    row locks make a concurrent create with the same number wait, so the
    duplicate check that follows sees it.

    Raises
    ------
    FeatureError
        ``invalid_value`` for a number outside the domain; ``code_year_mismatch``
        when a ``YH<year>-`` code's year is not the found year.
    ConflictError
        ``duplicate_hazard_code`` in the input or against the park's ledger;
        ``ledger_numbers_exhausted`` when ``YH<year>-999999`` is taken.
    """
    years = list(years) if years is not None else [local_today().year] * len(given)
    codes = [domains.ledger_code(None if attr.is_blank(c) else c, "code", index=i, file=file)
             for i, c in enumerate(given)]
    highest, blanks = {}, Counter()  # year -> highest given number; year -> blanks to fill
    for i, c in enumerate(codes):
        match = _YEAR_CODE.match(c or "")
        if match:
            year = int(match.group(1))
            highest[year] = max(highest.get(year, 0), domains.ledger_sequence(c, year))
        elif c is None:
            blanks[years[i]] += 1
    # Years in order, so two writers never wait for each other's counters crosswise.
    last = {year: reserve(session, park, "YH", year, count=blanks[year],
                          at_least=highest.get(year, 0))
            for year in sorted(set(highest) | set(blanks))}
    stored = _stored_codes(session, park, [c for c in codes if c is not None])
    seen = set()
    for i, c in enumerate(codes):
        if c is not None and (c in seen or c in stored):
            raise ConflictError(f"{file or 'input'}: feature {i}: hazard code {c} is already "
                                "in the ledger", code="duplicate_hazard_code",
                                details={"file": file, "feature": i, "field": "code"})
        match = _YEAR_CODE.match(c or "")
        if match and int(match.group(1)) != years[i]:
            raise FeatureError(f"ledger number {c} is from {match.group(1)} but the hazard was "
                               f"found in {years[i]}", code="code_year_mismatch", index=i,
                               field="code", file=file)
        seen.add(c)
    taken = Counter()
    for i, c in enumerate(codes):
        if c is None:
            year = years[i]
            taken[year] += 1
            codes[i] = domains.ledger_number("YH", year, last[year] - blanks[year] + taken[year],
                                             park.code)
    return codes


def _stored_codes(session, park, given):
    """The park's stored ledger numbers among ``given``.

    For a few codes (the API logs one hazard) only those are looked up,
    through the ``(park_id, code)`` index; an import reads the park's whole
    ledger once.
    """
    if not given:
        return set()
    query = sa.select(Hazard.code).where(Hazard.park_id == park.id)
    if len(given) <= FEW_POINTS:
        query = query.where(Hazard.code.in_(given))
    return set(session.execute(query).scalars())


def _event(event, index, file):
    """Check one carried-over history event (``at, actor, from_status, to_status, note``)."""
    where = {"index": index, "file": file}
    statuses = set(HAZARD_STATUSES)
    if not isinstance(event, dict) or event.get("to_status") not in statuses or event.get(
            "from_status") not in statuses | {None}:
        raise FeatureError("history events need to_status (and from_status) of "
                           f"{', '.join(HAZARD_STATUSES)}", code="invalid_value",
                           field="history", **where)
    return {**event, "at": domains.moment(event.get("at"), "history.at", **where),
            "actor": domains.text(event.get("actor"), "history.actor", kind="person",
                                  required=True, **where),
            "note": domains.text(event.get("note"), "history.note", kind="note", **where) or ""}


def is_overdue(hazard, today=None):
    """True when an open hazard's deadline has passed (derived, never stored)."""
    today = today or local_today()
    return hazard.status != "closed" and hazard.deadline is not None and hazard.deadline < today


def hazards_frame(session, park):
    """Return a park's hazards as a GeoDataFrame of Points (EPSG:4326) for export."""
    rows = session.execute(
        sa.select(Hazard, Grid.code, Enterprise.credit_code)
        .outerjoin(Grid, Hazard.grid_id == Grid.id)
        .outerjoin(Enterprise, Hazard.enterprise_id == Enterprise.id)
        .where(Hazard.park_id == park.id).order_by(Hazard.id)).all()
    hazards = [r[0] for r in rows]
    today = local_today()
    return gpd.GeoDataFrame({
        "code": [h.code for h in hazards],
        "category": [h.category for h in hazards],
        "level": [h.level for h in hazards],
        "description": [h.description for h in hazards],
        "found_date": [h.found_date.isoformat() for h in hazards],
        "deadline": [h.deadline.isoformat() if h.deadline else None for h in hazards],
        "status": [h.status for h in hazards],
        "overdue": [is_overdue(h, today) for h in hazards],
        "grid_code": [r[1] for r in rows],
        "credit_code": [r[2] for r in rows],
    }, geometry=to_shapes([h.location for h in hazards]), crs=STORAGE_SRID)
