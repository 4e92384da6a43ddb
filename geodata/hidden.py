"""Hidden sub-units (厂中厂/园中园): enterprises operating inside another's premises.

An enterprise is a hidden sub-unit candidate when

* its site lies mostly inside another enterprise's site: more than half of
  its area for a parcel, or the point itself for a gate-only site; or
* its registered host (``host_id``) differs from where it actually sits.

The rule is one function (:func:`classify`) over a set of sites, vectorised
(one STRtree query).  It runs over the whole park for the park's list
(``gridmap hidden-units``, the API's list, the ``hidden=`` filters, the park
overview's count), once per state of the park's sites: the result is cached
under the park's sites stamp (``park_sites_stamps``), which database
triggers renew on every change of an enterprise's site, host or park
(migrations 0010, 0011).  A few
enterprises are classified from the sites near them instead (a grid's
summary and page, one page of the enterprise layer, an enterprise's file):
:func:`hidden_units_among`.
Geometries are EPSG:4326; the area shares compared here are ratios, so
degrees² are fine and nothing is reported in them.
"""

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import shapely
import sqlalchemy as sa

from geodata.caches import StampedCache
from geodata.models import Enterprise, Grid, ParkSitesStamp
from geodata.models.base import to_shapes
from geodata.storage import boxes_filter, in_batches

#: Share of a parcel's area that must lie in another site for it to count as inside.
INSIDE_SHARE = 0.5

#: Reason codes, with the wording used by the CLI's text format.
REASONS = {
    "inside_host_site": "sits inside its registered host's site",
    "inside_other_site": "sits inside another enterprise's site; no host on record",
    "host_mismatch": "registered host differs from the site it sits in",
}


@dataclass
class HiddenUnit:
    """One hidden sub-unit candidate.

    ``host`` is the enterprise whose site holds the unit (else its registered
    host); ``grid`` is the code of the level-1 grid the unit is assigned to.
    """

    enterprise_id: int
    name: str
    credit_code: str
    host: Optional[str]
    host_credit_code: Optional[str]
    registered_host: Optional[str]
    grid: Optional[str]
    reason: str

    def to_dict(self):
        """Return the JSON object (``name, credit_code, host, grid, reason`` and extras)."""
        record = asdict(self)
        record.pop("enterprise_id")
        return record


def containers(sites, share=INSIDE_SHARE):
    """Return, per site, the index of the smallest other site holding it (-1 for none).

    A Point site is held by a polygonal site that covers it; a polygonal site
    is held by a larger polygonal site that has more than ``share`` of its
    area.  Vectorised: one STRtree query over all sites.

    Parameters
    ----------
    sites : array-like of shapely Polygon, MultiPolygon or Point (EPSG:4326)
    share : float
        Fraction of a parcel's area that must be inside (default 0.5).
    """
    sites = np.asarray(sites, dtype=object)
    result = np.full(len(sites), -1, dtype=np.int64)
    if len(sites) < 2:
        return result
    areas = shapely.area(sites)
    polygonal = shapely.get_dimensions(sites) == 2
    holders = np.flatnonzero(polygonal)
    if len(holders) == 0:
        return result
    inner, k = shapely.STRtree(sites[holders]).query(sites, predicate="intersects")
    outer = holders[k]
    keep = inner != outer
    inner, outer = inner[keep], outer[keep]
    # The holder must be the bigger of the two (ties: the lower index holds), so two
    # near-identical parcels are not each other's host.
    bigger = (areas[outer] > areas[inner]) | ((areas[outer] == areas[inner]) & (outer < inner))
    inner, outer = inner[bigger], outer[bigger]
    ok = np.zeros(len(inner), dtype=bool)
    areal = polygonal[inner]
    ok[~areal] = shapely.covers(sites[outer[~areal]], sites[inner[~areal]])
    if areal.any():
        shared = shapely.area(shapely.intersection(sites[inner[areal]], sites[outer[areal]]))
        ok[areal] = shared > share * areas[inner[areal]]
    inner, outer = inner[ok], outer[ok]
    # The innermost holder wins: sort by unit, then holder area, keep the first per unit.
    # Equal areas fall to the lower index, not to the tree's output order: a local
    # detection over a subset (same relative order) must pick the same holder.
    keys = np.lexsort((outer, areas[outer], inner))
    inner, outer = inner[keys], outer[keys]
    first = np.r_[True, inner[1:] != inner[:-1]] if len(inner) else np.array([], dtype=bool)
    result[inner[first]] = outer[first]
    return result


def classify(sites, registered_host):
    """Return ``(holder index, reason)`` arrays; reason is ``None`` for ordinary enterprises.

    Parameters
    ----------
    sites : array-like of shapely geometries (EPSG:4326)
    registered_host : array-like of int
        Index of each enterprise's registered host in ``sites`` (-1 for none).
    """
    sites = np.asarray(sites, dtype=object)
    registered = np.asarray(registered_host, dtype=np.int64)
    holder = containers(sites)
    reason = np.full(len(sites), None, dtype=object)
    has_host = registered >= 0
    inside = holder >= 0
    reason[inside & ~has_host] = "inside_other_site"
    reason[inside & has_host & (holder == registered)] = "inside_host_site"
    reason[inside & has_host & (holder != registered)] = "host_mismatch"
    # Not inside any site but registered under a host: only a host parcel can show the
    # mismatch; a host known only by its gate point cannot, so the record stands.
    outside = ~inside & has_host
    host_polygonal = np.zeros(len(sites), dtype=bool)
    if outside.any():
        host_polygonal[outside] = shapely.get_dimensions(sites[registered[outside]]) == 2
    reason[outside & host_polygonal] = "host_mismatch"
    reason[outside & ~host_polygonal] = "inside_host_site"
    return holder, reason


def _sites(session, park_id):
    """``(ids, host ids, sites)`` of the park's enterprises, in id order.

    Plain columns and the sites decoded in one vectorised call, not ORM
    objects: at 10^5 enterprises building the objects cost twenty times the
    classification.
    """
    rows = session.execute(sa.select(
        Enterprise.id, Enterprise.host_id, sa.func.ST_AsBinary(Enterprise.site))
        .where(Enterprise.park_id == park_id).order_by(Enterprise.id)).all()
    return [r[0] for r in rows], [r[1] for r in rows], to_shapes([r[2] for r in rows])


def _rows(session, park, *where):
    """``{id: (host id, WKB site)}`` of the park's enterprises matching ``where``."""
    return {eid: (host_id, site) for eid, host_id, site in session.execute(sa.select(
        Enterprise.id, Enterprise.host_id, sa.func.ST_AsBinary(Enterprise.site))
        .where(Enterprise.park_id == park.id, *where))}


@dataclass(frozen=True)
class _Found:
    """The hidden units of a set of enterprises, in id order, as enterprise ids.

    ``host``: the id of the site holding each unit, else of its registered
    host (-1: none); ``registered``: its registered host's id (-1: none).
    """

    ids: np.ndarray
    host: np.ndarray
    registered: np.ndarray
    reason: np.ndarray

    def where(self, keep):
        """The units where the boolean array ``keep`` is true."""
        return _Found(self.ids[keep], self.host[keep], self.registered[keep], self.reason[keep])


def _found(ids, host_ids, sites):
    """:func:`classify` one set of enterprises (in id order) into :class:`_Found`."""
    ids = np.asarray(ids, dtype=np.int64)
    index = {eid: i for i, eid in enumerate(ids.tolist())}
    registered = np.array([index.get(h, -1) if h else -1 for h in host_ids], dtype=np.int64)
    holder, reason = classify(sites, registered)
    found = np.flatnonzero(reason != None)  # noqa: E711 - numpy elementwise test
    host = np.where(holder >= 0, holder, registered)[found]

    def as_ids(positions):
        return np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
    return _Found(ids[found], as_ids(host), as_ids(registered[found]), reason[found])


# The park-wide detection, once per park state: {(database URL, park id): _Found}.  Parks
# kept: a province's park list (about 100 parks) fits; an entry is a few arrays of the
# park's hidden units only.
_cache = StampedCache(512)
clear_cache = _cache.clear


def _parks_found(session, park_ids):
    """``{park id: _Found}``: each park's hidden units, detected once per state of its sites.

    The key is the park's :class:`~geodata.models.ParkSitesStamp`, which
    database triggers set afresh whenever one of its enterprises is inserted
    or deleted or changes site, host or park (migrations 0010, 0011),
    whoever writes.  It is read before the
    sites, so a detection is never filed under a newer stamp than its data.
    Parks whose stamp changed are classified one after the other, each from
    one read of its sites.
    """
    park_ids = sorted(set(park_ids))
    stamps = dict.fromkeys(park_ids, 0)  # no row: no enterprise was ever written
    for batch in in_batches(park_ids):
        stamps.update(session.execute(sa.select(ParkSitesStamp.park_id, ParkSitesStamp.stamp)
                                      .where(ParkSitesStamp.park_id.in_(batch))).all())
    url = str(session.get_bind().url)
    out = {pid: _cache.get((url, pid), stamp) for pid, stamp in stamps.items()}
    for pid in [pid for pid, found in out.items() if found is None]:
        # park by park: a province's sites are never in memory at once
        out[pid] = _found(*_sites(session, pid))
        _cache.put((url, pid), stamps[pid], out[pid])
    return out


def count_hidden_units(session, parks):
    """``{park id: number of hidden sub-unit candidates}`` for ``parks``.

    The count of :func:`find_hidden_units` for many parks at once: the park
    list shows it for every park.  From the cached detection: one query for
    the stamps while no park's sites changed.
    """
    return {pid: len(found.ids) for pid, found in _parks_found(
        session, [p.id for p in parks]).items()}


def hidden_ids(session, parks):
    """The ids of the hidden sub-unit candidates of ``parks`` (a sorted int64 array).

    What the ``hidden=`` filters of the enterprise layers ask about every
    site, from the cached detection.
    """
    found = _parks_found(session, [p.id for p in parks]).values()
    return np.sort(np.concatenate([f.ids for f in found])) if found else np.empty(0, np.int64)


def find_hidden_units(session, park):
    """Return the park's hidden sub-unit candidates, ordered by grid code then name.

    Returns
    -------
    list of HiddenUnit
    """
    return hidden_units_page(session, park)[0]


def hidden_units_page(session, park, limit=None, offset=0):
    """Return ``(units, total)``: one page of :func:`find_hidden_units` and the count of all.

    Whether a site is hidden depends on every other site, so the
    classification reads the whole park (three columns, vectorised) once
    per state of its sites (:func:`_parks_found`); the names and grid codes
    are read for the units (to order them), and the :class:`HiddenUnit`
    records built for the page only.

    Parameters
    ----------
    limit : int, optional
        Units on the page (default: all).
    offset : int
        Units to skip, in the order of :func:`find_hidden_units`.
    """
    found = _parks_found(session, [park.id])[park.id]
    order, unit = _ordered(session, found)
    return [unit(i) for i in order[offset:None if limit is None else offset + limit]], len(order)


def hidden_units_among(session, park, enterprise_ids):
    """``{enterprise id: HiddenUnit}`` for the hidden ones among ``enterprise_ids``.

    The same answer as :func:`find_hidden_units` restricted to these
    enterprises, from the sites near them only: what holds a unit (a site
    covering it or having most of its area) intersects it, so every site
    whose bounding box meets the bounding box of one of the enterprises'
    sites is read (spatial-index queries), with their registered hosts, and
    that set is classified by the same rule.  A grid's few enterprises are thus
    classified without reading the park's 10^5 sites.
    """
    wanted = {}
    for batch in in_batches(set(enterprise_ids)):
        wanted.update(_rows(session, park, Enterprise.id.in_(batch)))
    if not wanted:
        return {}
    # One box per enterprise, not their union: a page's enterprises may lie far apart.
    boxes = shapely.bounds(to_shapes([site for _, site in wanted.values()]))
    near = {}
    for batch in in_batches(boxes.tolist(), 2000):
        near.update(_rows(session, park, boxes_filter(session, Enterprise, Enterprise.site,
                                                      batch)))
    near.update(wanted)
    for batch in in_batches({h for h, _ in wanted.values() if h} - set(near)):
        near.update(_rows(session, park, Enterprise.id.in_(batch)))
    ids = sorted(near)
    found = _found(ids, [near[i][0] for i in ids], to_shapes([near[i][1] for i in ids]))
    found = found.where(np.isin(found.ids, list(wanted)))
    order, unit = _ordered(session, found)
    return {u.enterprise_id: u for u in map(unit, order)}


def _ordered(session, found):
    """``(order, unit)`` of a :class:`_Found`: positions in :func:`find_hidden_units` order.

    ``unit(i)`` builds the :class:`HiddenUnit` at position ``i``.  Names,
    credit codes and grid codes are read for the units and their hosts only,
    fresh (they are not part of the cached detection).
    """
    wanted = set(found.ids.tolist()) | set(found.host.tolist()) | set(
        found.registered.tolist())
    wanted.discard(-1)
    info = {}
    for batch in in_batches(wanted):
        for row in session.execute(sa.select(
                Enterprise.id, Enterprise.name, Enterprise.credit_code, Grid.code)
                .outerjoin(Grid, Enterprise.grid_id == Grid.id).where(Enterprise.id.in_(batch))):
            info[row[0]] = row

    def unit(i):
        e = info[int(found.ids[i])]
        h = info.get(int(found.host[i]))
        reg = info.get(int(found.registered[i]))
        return HiddenUnit(
            enterprise_id=e[0], name=e[1], credit_code=e[2], host=h[1] if h else None,
            host_credit_code=h[2] if h else None, registered_host=reg[1] if reg else None,
            grid=e[3], reason=str(found.reason[i]))
    rows = [info[i] for i in found.ids.tolist()]
    return sorted(range(len(rows)), key=lambda i: (rows[i][3] or "", rows[i][1],
                                                   rows[i][2])), unit
