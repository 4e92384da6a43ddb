"""Hidden sub-units (厂中厂/园中园): enterprises operating inside another's premises.

An enterprise is a hidden sub-unit candidate when

* its site lies mostly inside another enterprise's site: more than half of
  its area for a parcel, or the point itself for a gate-only site; or
* its registered host (``host_id``) differs from where it actually sits.

The detection is vectorised over the whole park (one STRtree query) and is
the one function behind ``gridmap hidden-units``, the map and the API.
Geometries are EPSG:4326; the area shares compared here are ratios, so
degrees² are fine and nothing is reported in them.
"""

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import shapely
import sqlalchemy as sa

from geodata.models import Grid
from geodata.services.sites import enterprises_of, site_geometries

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
    keys = np.lexsort((areas[outer], inner))
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


def find_hidden_units(session, park):
    """Return the park's hidden sub-unit candidates, ordered by grid code then name.

    Returns
    -------
    list of HiddenUnit
    """
    enterprises = enterprises_of(session, park)
    if not enterprises:
        return []
    index = {e.id: i for i, e in enumerate(enterprises)}
    registered = np.array([index.get(e.host_id, -1) if e.host_id else -1 for e in enterprises])
    holder, reason = classify(site_geometries(enterprises), registered)
    found = np.flatnonzero(reason != None)  # noqa: E711 - numpy elementwise test
    # The codes of the units' grids only, not of the park's (up to 10^5) grids.
    unit_grids = list({enterprises[i].grid_id for i in found} - {None})
    grid_codes = dict(session.execute(sa.select(Grid.id, Grid.code).where(
        Grid.id.in_(unit_grids))).all()) if unit_grids else {}
    units = []
    for i in found:
        e = enterprises[i]
        host_i = holder[i] if holder[i] >= 0 else registered[i]
        host = enterprises[host_i] if host_i >= 0 else None
        reg = enterprises[registered[i]] if registered[i] >= 0 else None
        units.append(HiddenUnit(
            enterprise_id=e.id, name=e.name, credit_code=e.credit_code,
            host=host.name if host else None, host_credit_code=host.credit_code if host else None,
            registered_host=reg.name if reg else None, grid=grid_codes.get(e.grid_id),
            reason=str(reason[i])))
    units.sort(key=lambda u: (u.grid or "", u.name, u.credit_code))
    return units
