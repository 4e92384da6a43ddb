"""OGC API – Features Part 1 (Core) collections over the gridmap tables.

A plain-Python provider: :mod:`webmap.ogcapi` parses the request into the
values taken here and serialises what comes back.  Four collections:

``parks``        park boundaries (MultiPolygon), id = park code
``grids``        active grids and sub-grids (MultiPolygon) with level, parent and park codes
``enterprises``  enterprise sites (Polygon or Point) with the hidden-unit (厂中厂) flag
``hazards``      hazards (Point); ``datetime`` filters on ``found_date``

Geometries are EPSG:4326 / CRS84 (lon, lat degrees), written with full
double precision, so a client reads back exactly the stored coordinates.
Areas are m² measured in the park's metric CRS.

What a :class:`Viewer` sees follows the anonymous park map: an anonymous
client gets the fields of the map's layers and only open hazards (the map
shows no closed ones); a logged-in user of any role (all may read) also
gets closed hazards, ``closed_at``/``version``, and enterprise contacts and
head counts (the grid page's table).  A grid member (``Viewer.grid_ids``)
gets those only in their grids, and elsewhere what an anonymous client
gets.  A hazard hidden from a viewer is a 404, as if it did not exist.

Every filter value is bound as a parameter; the filterable properties
(*queryables*) are allow-listed per collection.
"""

import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np
import shapely
import sqlalchemy as sa

from geodata import attributes as attr, domains
from geodata.crs import STORAGE_SRID
from geodata.errors import BadRequestError, FeatureError, NotFoundError
from geodata.hidden import hidden_ids, hidden_units_among
from geodata.models import (ESCALATION_LEVELS, GRID_KINDS, HAZARD_LEVELS, HAZARD_STATUSES,
                            Enterprise, Grid, Hazard, Park)
from geodata.models.base import to_shapes
from geodata.services.mapdata import OPEN
from geodata.storage import id_list

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
#: Page size when the client gives no ``limit``.
DEFAULT_LIMIT = 100
#: Largest page; a bigger ``limit`` is served as this (the standard allows it, see docs).
MAX_LIMIT = 10_000
#: Largest ``offset`` accepted (far beyond any table; keeps the number a 64-bit integer).
MAX_OFFSET = 10**9

#: minx > maxx: OGC API reads it as a box across the antimeridian; no park is there.
ANTIMERIDIAN = ("bbox minx exceeds maxx: a box across the antimeridian is not supported "
                "(give minx <= maxx; minx,miny,maxx,maxy)")


@dataclass(frozen=True)
class Viewer:
    """Who is asking: ``role`` None for an anonymous client.

    ``grid_ids`` (a frozenset) are a grid member's grids, None for no limit.
    """

    role: str = None
    grid_ids: frozenset = None

    @property
    def anonymous(self):
        """True for a client without a session or token."""
        return self.role is None


@dataclass(frozen=True)
class Queryable:
    """A property a client may filter on with ``?name=value`` (equality)."""

    name: str
    type: str = "string"
    enum: tuple = None
    description: str = ""


@dataclass(frozen=True)
class Collection:
    """One feature collection: its id, texts, geometry type and queryables."""

    id: str
    title: str
    description: str
    geometry: str
    queryables: tuple
    temporal: bool = False

    def queryable(self, name):
        """The :class:`Queryable` called ``name``, or None."""
        return next((q for q in self.queryables if q.name == name), None)


_PARK_Q = Queryable("park", description="park code")
COLLECTIONS = {c.id: c for c in (
    Collection("parks", "园区 Parks", "Park boundaries with their area (m²).", "MultiPolygon",
               (Queryable("code", description="park code"),)),
    Collection("grids", "网格 Grids", "Active grids (level 1) and sub-grids (level 2+) with "
               "their parent grid and park codes.", "MultiPolygon",
               (_PARK_Q, Queryable("code", description="grid code"),
                Queryable("level", "integer", description="1 grid, 2 sub-grid"),
                Queryable("parent", description="parent grid code"),
                Queryable("kind", enum=tuple(GRID_KINDS)))),
    Collection("enterprises", "企业 Enterprises", "Enterprise sites (parcel or gate point); "
               "hidden marks hidden sub-units (厂中厂/园中园).", "Geometry",
               (_PARK_Q, Queryable("grid", description="level-1 grid code"),
                Queryable("industry"), Queryable("credit_code"),
                Queryable("hidden", "boolean"))),
    Collection("hazards", "隐患 Hazards", "The hazard ledger (open hazards only for anonymous "
               "clients); datetime filters on found_date.", "Point",
               (_PARK_Q, Queryable("grid", description="deepest grid code holding the hazard"),
                Queryable("status", enum=HAZARD_STATUSES), Queryable("level", enum=HAZARD_LEVELS),
                Queryable("category"), Queryable("escalation", enum=ESCALATION_LEVELS)),
               temporal=True),
)}


@dataclass
class ItemQuery:
    """Validated item filters (build it with the ``parse_*`` functions).

    ``bbox`` is ``(minx, miny, maxx, maxy)`` in CRS84 degrees; ``dates`` is
    ``(first, last)`` calendar days, inclusive, either None for open.
    """

    bbox: tuple = None
    dates: tuple = None
    filters: dict = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def get_collection(collection_id):
    """Return the :class:`Collection` ``collection_id`` or raise :class:`NotFoundError`."""
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFoundError(f"no collection {collection_id!r}; collections: "
                            f"{', '.join(COLLECTIONS)}", details={"collection": collection_id}
                            ) from None


# --------------------------------------------------------------------------
# parameters (OGC API – Features: an invalid value is a 400)
# --------------------------------------------------------------------------

def _bad(parameter, message, code=None):
    return BadRequestError(message, code=code or f"invalid_{parameter}",
                           details={"parameter": parameter})


def parse_bbox(text):
    """Parse ``minx,miny,maxx,maxy`` (or 6 numbers with z, which is ignored) in CRS84.

    Raises
    ------
    BadRequestError
        ``invalid_bbox`` (400): not 4 or 6 finite numbers, out of lon/lat
        range, or a minimum above its maximum (no antimeridian crossing).
    """
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise _bad("bbox", f"bbox must be 4 (or 6) comma-separated numbers "
                           f"minx,miny,maxx,maxy; got {len(parts)}")
    values = [domains.plain_number(p, float) for p in parts]
    if None in values:
        raise _bad("bbox", "bbox values must be numbers")
    if not all(math.isfinite(v) for v in values):
        raise _bad("bbox", "bbox values must be finite")
    if len(values) == 6:
        if values[2] > values[5]:
            raise _bad("bbox", "bbox minimum height exceeds maximum "
                               "(minx,miny,minz,maxx,maxy,maxz)")
        values = [values[0], values[1], values[3], values[4]]
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90
            and -90 <= maxy <= 90):
        raise _bad("bbox", "bbox is out of range (longitude -180..180, latitude -90..90; "
                           "lon/lat order, CRS84)")
    if minx > maxx:
        raise _bad("bbox", ANTIMERIDIAN)
    if miny > maxy:
        raise _bad("bbox", "bbox minimum exceeds maximum (minx,miny,maxx,maxy)")
    return tuple(values)


def parse_limit(text):
    """Parse ``limit``: default :data:`DEFAULT_LIMIT`, above :data:`MAX_LIMIT` served as it.

    Raises
    ------
    BadRequestError
        ``invalid_limit`` (400): not an integer, or below 1.
    """
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"\+?[0-9]{1,30}", text):
        raise _bad("limit", "limit must be a positive integer")
    value = int(text)
    if value < 1:
        raise _bad("limit", "limit must be at least 1")
    return min(value, MAX_LIMIT)


def parse_offset(text):
    """Parse ``offset`` (0 when absent); 400 ``invalid_offset`` unless 0..:data:`MAX_OFFSET`."""
    if text is None:
        return 0
    if not re.fullmatch(r"\+?[0-9]{1,30}", text) or int(text) > MAX_OFFSET:
        raise _bad("offset", f"offset must be an integer from 0 to {MAX_OFFSET}")
    return int(text)


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _day(text):
    if _DATE.fullmatch(text):
        value = text
    elif _DATE_TIME.fullmatch(text):
        value = _DATE_TIME.fullmatch(text).group(1)
    else:
        raise _bad("datetime", f"datetime {text[:40]!r} is not an RFC 3339 date or date-time "
                               "(2026-01-31 or 2026-01-31T08:00:00Z)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _bad("datetime", f"datetime {text[:40]!r} is not a calendar date") from None


def parse_datetime(text):
    """Parse ``datetime``: an instant or an interval (``a/b``, ``../b``, ``a/..``).

    Hazards carry a calendar day (``found_date``), so a date-time is taken
    at its own calendar date, and an interval includes both end days.

    Returns
    -------
    tuple or None
        ``(first, last)`` dates, either None when open.

    Raises
    ------
    BadRequestError
        ``invalid_datetime`` (400): not RFC 3339, both ends open, or start after end.
    """
    if text is None:
        return None
    if "/" not in text:
        day = _day(text)
        return day, day
    start, _, end = text.partition("/")
    first = None if start in ("", "..") else _day(start)
    last = None if end in ("", "..") else _day(end)
    if first is None and last is None:
        raise _bad("datetime", "a datetime interval needs at least one end")
    if first is not None and last is not None and first > last:
        raise _bad("datetime", "datetime interval starts after it ends")
    return first, last


#: Codes are stored normalised (NFKC, trimmed, upper case): filter values are too.
CODE_QUERYABLES = {"park", "code", "parent", "grid", "credit_code"}


def parse_filters(collection, args):
    """Turn ``{queryable: text}`` into typed values for :attr:`ItemQuery.filters`.

    Raises
    ------
    BadRequestError
        ``invalid_filter`` (400): a value that is blank, holds control
        characters, is longer than 200 characters, or is not of the
        queryable's type or one of its allowed values.
    """
    out = {}
    for name, raw in args.items():
        q = collection.queryable(name)
        try:
            # the import rules: NFC, no control characters (PostgreSQL refuses NUL), <= 200
            text = (attr.code(raw, field=name) if name in CODE_QUERYABLES
                    else attr.text(raw, field=name))
        except FeatureError as exc:
            raise _bad(name, f"{name}: {exc.reason}", "invalid_filter") from None
        if q.type == "integer":
            if not re.fullmatch(r"[0-9]{1,9}", text):
                raise _bad(name, f"{name} must be an integer", "invalid_filter")
            value = int(text)
        elif q.type == "boolean":
            value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
            if value is None:
                raise _bad(name, f"{name} must be true or false", "invalid_filter")
        else:
            value = text
        if q.enum is not None and value not in q.enum:
            raise _bad(name, f"unknown {name} {text[:40]!r}; allowed: {', '.join(q.enum)}",
                       "invalid_filter")
        out[name] = value
    return out


# --------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------

def _wkb(column):
    return sa.func.ST_AsBinary(column).label("wkb")


def _parks(viewer):
    cols = {"code": Park.code, "name": Park.name, "division_code": Park.division_code,
            "area_m2": Park.area_m2}
    return Park.code, Park.boundary, cols, sa.select(*cols.values(), _wkb(Park.boundary)), []


def _grids(viewer):
    parent = sa.orm.aliased(Grid)
    cols = {"code": Grid.code, "name": Grid.name, "level": Grid.level, "parent": parent.code,
            "park": Park.code, "kind": Grid.kind, "area_m2": Grid.area_m2}
    query = (sa.select(Grid.id, *cols.values(), _wkb(Grid.geom))
             .join(Park, Grid.park_id == Park.id)
             .outerjoin(parent, Grid.parent_id == parent.id))
    return Grid.id, Grid.geom, cols, query, [Grid.active_to.is_(None)]


def _enterprises(viewer):
    cols = {"name": Enterprise.name, "credit_code": Enterprise.credit_code,
            "industry": Enterprise.industry, "park": Park.code, "grid": Grid.code}
    if not viewer.anonymous:
        cols |= {name: _in_grids(viewer, Enterprise.grid_id, column) for name, column in (
            ("employees", Enterprise.employees), ("contact_name", Enterprise.contact_name),
            ("contact_phone", Enterprise.contact_phone), ("registered", Enterprise.registered))}
    query = (sa.select(Enterprise.id, *cols.values(), _wkb(Enterprise.site))
             .join(Park, Enterprise.park_id == Park.id)
             .outerjoin(Grid, Enterprise.grid_id == Grid.id))
    return Enterprise.id, Enterprise.site, cols, query, []


def _in_grids(viewer, grid_id, column):
    """``column`` for a viewer without grid limits, else its value only in their grids."""
    if viewer.grid_ids is None:
        return column
    return sa.case((grid_id.in_(sorted(viewer.grid_ids)), column), else_=sa.null())


def _hazards(viewer):
    cols = {"code": Hazard.code, "park": Park.code, "category": Hazard.category,
            "level": Hazard.level, "status": Hazard.status, "description": Hazard.description,
            "found_date": Hazard.found_date, "deadline": Hazard.deadline,
            "escalation": Hazard.escalation, "grid": Grid.code, "enterprise": Enterprise.name}
    where = []
    if viewer.anonymous:
        where.append(Hazard.status.in_(OPEN))  # the anonymous map shows open hazards only
    else:
        if viewer.grid_ids is not None:
            where.append(sa.or_(Hazard.status.in_(OPEN),
                                Hazard.grid_id.in_(sorted(viewer.grid_ids))))
        cols |= {"closed_at": Hazard.closed_at, "version": Hazard.version}
    query = (sa.select(Hazard.id, *cols.values(), _wkb(Hazard.location))
             .join(Park, Hazard.park_id == Park.id)
             .outerjoin(Grid, Hazard.grid_id == Grid.id)
             .outerjoin(Enterprise, Hazard.enterprise_id == Enterprise.id))
    return Hazard.id, Hazard.location, cols, query, where


_SOURCES = {"parks": _parks, "grids": _grids, "enterprises": _enterprises, "hazards": _hazards}


def _hidden_ids(session, park_codes=None):
    """The hidden units' ids of the parks with these codes (all parks: None), cached per park."""
    query = sa.select(Park)
    if park_codes is not None:
        query = query.where(Park.code.in_(sorted(park_codes)))
    return hidden_ids(session, session.execute(query).scalars().all())


def _hidden_among(session, rows, park_column):
    """``{enterprise id: HiddenUnit}`` of the hidden units among ``rows`` (a page).

    Found per park from the sites near the page's enterprises
    (:func:`hidden_units_among`), not by classifying the whole park.
    """
    by_park = {}
    for row in rows:
        by_park.setdefault(row[park_column], []).append(row[0])
    parks = session.execute(sa.select(Park).where(Park.code.in_(sorted(by_park)))).scalars()
    return {eid: unit for p in parks
            for eid, unit in hidden_units_among(session, p, by_park[p.code]).items()}


def _where(session, cols, query):
    """SQL conditions for the bbox, datetime and property filters of ``query``."""
    where = []
    for name, value in query.filters.items():
        if name == "hidden":
            park = query.filters.get("park")
            member = Enterprise.id.in_(id_list(
                _hidden_ids(session, None if park is None else {park})))
            where.append(member if value else sa.not_(member))
        else:
            where.append(cols[name] == value)
    if query.dates is not None:
        first, last = query.dates
        if first is not None:
            where.append(Hazard.found_date >= first)
        if last is not None:
            where.append(Hazard.found_date <= last)
    return where


def _bbox_conditions(session, geometry, bbox):
    """``ST_Intersects`` with the box, behind an index lookup on SpatiaLite.

    PostGIS answers ``ST_Intersects`` from the GiST index by itself; SpatiaLite
    never consults its R*Tree (``idx_<table>_<column>``, kept by triggers) unless
    asked, so the rows whose bounds meet the box are picked there first.  The
    R*Tree rounds bounds outwards, so the lookup never drops a candidate.
    """
    minx, miny, maxx, maxy = bbox
    exact = sa.func.ST_Intersects(geometry, sa.func.ST_GeomFromText(
        shapely.box(*bbox).wkt, STORAGE_SRID))
    if session.get_bind().dialect.name != "sqlite":
        return [exact]
    rtree = sa.table(f"idx_{geometry.table.name}_{geometry.name}", sa.column("pkid"),
                     *(sa.column(c) for c in ("xmin", "xmax", "ymin", "ymax")))
    near = sa.select(rtree.c.pkid).where(rtree.c.xmin <= maxx, rtree.c.xmax >= minx,
                                         rtree.c.ymin <= maxy, rtree.c.ymax >= miny)
    # the parks collection is keyed by code; the R*Tree by the integer primary key
    return [geometry.table.c.id.in_(near), exact]


def _value(value):
    if isinstance(value, datetime):
        # stored in UTC; SQLite hands it back without the offset, PostgreSQL with it
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _features(session, collection, rows, names, today):
    """Build GeoJSON features from result rows ``(id, *properties, wkb)``."""
    geoms = to_shapes([r[-1] for r in rows])
    texts = shapely.to_geojson(np.asarray(geoms, dtype=object)) if len(rows) else []
    units = {}
    if collection.id == "enterprises" and rows:
        units = _hidden_among(session, rows, names.index("park") + 1)
    features = []
    for row, text in zip(rows, texts):
        props = {n: _value(v) for n, v in zip(names, row[1:-1])}
        if "area_m2" in props:
            props["area_m2"] = round(props["area_m2"], 1)
        if collection.id == "enterprises":
            unit = units.get(row[0])
            props |= {"hidden": unit is not None, "host": unit.host if unit else None,
                      "reason": unit.reason if unit else None}
        if collection.id == "hazards":
            props["overdue"] = (props["status"] in OPEN and props["deadline"] is not None
                                and props["deadline"] < today.isoformat())
        features.append({"type": "Feature", "id": row[0], "geometry": json.loads(text),
                         "properties": props})
    return features


def items(session, collection, viewer, query, today):
    """One page of a collection's features, ordered by id, and how many match in all.

    Parameters
    ----------
    collection : Collection
    viewer : Viewer
    query : ItemQuery
    today : datetime.date
        The reference day for a hazard's ``overdue`` flag.

    Returns
    -------
    (list of dict, int)
        GeoJSON features (EPSG:4326) and ``numberMatched``.
    """
    key, geometry, cols, select, where = _SOURCES[collection.id](viewer)
    where = where + _where(session, cols, query)
    if query.bbox is not None:
        where += _bbox_conditions(session, geometry, query.bbox)
    # count over a subquery: a select without joins would lose its FROM with the columns
    matched = session.execute(sa.select(sa.func.count()).select_from(
        select.with_only_columns(key).where(*where).subquery())).scalar()
    rows = session.execute(select.where(*where).order_by(key).limit(query.limit)
                           .offset(query.offset)).all()
    if collection.id == "parks":  # the park code is both the id and a property
        rows = [(r[0], *r) for r in rows]
    return _features(session, collection, rows, list(cols), today), int(matched)


def item(session, collection, viewer, feature_id, today):
    """One feature by id, or :class:`NotFoundError` if absent or hidden from ``viewer``.

    Ids are park codes for ``parks`` and integers for the other collections,
    written as the features give them: ``01`` is not feature 1 (one URL per
    feature, as the ``<int:>`` routes of the JSON API have).
    """
    key, _, cols, select, where = _SOURCES[collection.id](viewer)
    missing = NotFoundError(f"no feature {feature_id[:40]!r} in collection {collection.id}",
                            details={"collection": collection.id, "feature": feature_id[:40]})
    if collection.id == "parks":
        try:
            wanted = attr.code(feature_id)
        except FeatureError:
            raise missing from None
    elif re.fullmatch(r"[1-9][0-9]{0,17}", feature_id):
        wanted = int(feature_id)
    else:
        raise missing
    rows = session.execute(select.where(*where, key == wanted)).all()
    if not rows:
        raise missing
    if collection.id == "parks":
        rows = [(r[0], *r) for r in rows]
    return _features(session, collection, rows, list(cols), today)[0]


def extent(session, collection, viewer):
    """The collection's extent: bbox (CRS84) of the parks, and found dates for hazards.

    Every grid, site and hazard lies inside its park (the importers refuse
    anything outside), so the parks' bbox bounds every collection.
    """
    boundaries = to_shapes(session.execute(sa.select(Park.boundary)).scalars().all())
    bbox = ([float(v) for v in shapely.total_bounds(boundaries)] if len(boundaries)
            else [-180.0, -90.0, 180.0, 90.0])
    out = {"spatial": {"bbox": [bbox], "crs": CRS84}}
    if collection.temporal:
        _, _, _, _, where = _hazards(viewer)
        first, last = session.execute(sa.select(
            sa.func.min(Hazard.found_date), sa.func.max(Hazard.found_date)).where(*where)).one()
        out["temporal"] = {"interval": [[_instant(first), _instant(last)]],
                           "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return out


def _instant(day):
    if day is None:
        return None
    if isinstance(day, str):  # SQLite returns MIN()/MAX() of a date column as text
        day = date.fromisoformat(day)
    return f"{day.isoformat()}T00:00:00Z"
