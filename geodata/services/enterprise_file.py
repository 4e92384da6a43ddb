"""One file per enterprise (一企一档): everything gridmap knows about one enterprise.

The page ``/parks/<code>/enterprises/<credit code>`` and its JSON twin
``/api/parks/<code>/enterprises/<credit code>`` both show
:func:`enterprise_file`: the enterprise and its site (GeoJSON, EPSG:4326),
its grid and the grid's staff, the hidden units inside it or its host
(厂中厂, :func:`geodata.hidden.find_hidden_units`), its hazards with their
history, its requests (诉求) with their history, its visits (走访) and its
satisfaction history (the enterprise's answers at 回访).
"""

import json

import shapely
import sqlalchemy as sa

from geodata.creditcode import credit_code_problem
from geodata.errors import NotFoundError, ValidationError
from geodata.hidden import hidden_units_among
from geodata.models import STAFF_ROLES, Enterprise, Grid, GridStaff, Hazard, ServiceRequest
from geodata.models.base import to_shapes
from geodata.periods import local_today
from geodata.storage import bbox_filter
from geodata.services import ledger, requests, visits
from geodata.vocabulary import SATISFACTION_NAMES
from geodata.workflow import PermissionDeniedError

#: The most items of one kind a file lists (the newest first); the ledgers have the rest.
MAX_ITEMS = 200


def parse_credit_code(value):
    """Return ``value`` as a credit code (trimmed, upper case), or raise 422 saying why.

    Raises
    ------
    ValidationError
        ``invalid_credit_code`` with the GB 32100-2015 reason.
    """
    code = value.strip().upper() if isinstance(value, str) else value
    problem = credit_code_problem(code)
    if problem:
        raise ValidationError(f"{value!r} is not a unified social credit code: {problem}",
                              code="invalid_credit_code",
                              details={"field": "credit_code", "reason": problem})
    return code


def get_enterprise(session, park, credit_code, actor=None):
    """The park's enterprise with ``credit_code``; 422 ill-formed, 404 unknown, 403 other grid.

    ``actor.grid_ids`` (a grid-limited user) must hold the enterprise's grid.
    """
    code = parse_credit_code(credit_code)
    firm = session.execute(sa.select(Enterprise).where(
        Enterprise.park_id == park.id, Enterprise.credit_code == code)).scalar_one_or_none()
    if firm is None:
        raise NotFoundError(f"no enterprise with credit code {code} in park {park.code}",
                            details={"park": park.code, "credit_code": code})
    if actor is not None and actor.grid_ids is not None and firm.grid_id not in actor.grid_ids:
        raise PermissionDeniedError(f"{actor.name} does not serve the grid of enterprise {code}",
                                    code="outside_your_grids",
                                    details={"credit_code": code})
    return firm


def _site(firm):
    shape = to_shapes([firm.site])[0]
    return shape, json.loads(shapely.to_geojson(shapely.set_precision(
        shape, 1e-7, mode="pointwise")))


def _grid(session, firm):
    """The enterprise's level-1 grid with its staff (chief first), or None."""
    if firm.grid_id is None:
        return None
    grid = session.get(Grid, firm.grid_id)
    rank = {role: i for i, role in enumerate(STAFF_ROLES)}
    staff = session.execute(sa.select(GridStaff).where(GridStaff.grid_id == grid.id)
                            .order_by(GridStaff.id)).scalars().all()
    shape = to_shapes([grid.geom])[0]
    return {"code": grid.code, "name": grid.name, "level": grid.level,
            "geometry": json.loads(shapely.to_geojson(shapely.set_precision(
                shape, 1e-7, mode="pointwise"))),
            "staff": [{"name": s.name, "phone": s.phone, "role": s.role,
                       "title": STAFF_ROLES.get(s.role, s.role), "published": s.published}
                      for s in sorted(staff, key=lambda s: (rank.get(s.role, 9), s.id))]}


def _hidden(session, park, firm):
    """``(host, units)``: the enterprise holding this one, and the units inside this one.

    A unit of this enterprise either lies in its site (and meets its bounding
    box) or is registered to it: only those and the enterprise itself are
    classified, from the sites near them (:func:`hidden_units_among`).
    """
    box = to_shapes([firm.site])[0].bounds
    near = session.execute(sa.select(Enterprise.id).where(
        Enterprise.park_id == park.id, sa.or_(
            bbox_filter(session, Enterprise, Enterprise.site, box),
            Enterprise.host_id == firm.id))).scalars().all()
    found = hidden_units_among(session, park, {firm.id, *near}).values()
    sites = {}
    codes = {u.credit_code for u in found} | {u.host_credit_code for u in found}
    for code, site in session.execute(sa.select(Enterprise.credit_code, Enterprise.site).where(
            Enterprise.park_id == park.id, Enterprise.credit_code.in_(codes - {None}))).all():
        sites[code] = site
    geometries = dict(zip(sites, (json.loads(g) for g in shapely.to_geojson(
        shapely.set_precision(to_shapes(list(sites.values())), 1e-7, mode="pointwise")))))
    host = next(({"name": u.host, "credit_code": u.host_credit_code, "reason": u.reason,
                  "geometry": geometries.get(u.host_credit_code)}
                 for u in found if u.enterprise_id == firm.id), None)
    units = [{"name": u.name, "credit_code": u.credit_code, "reason": u.reason,
              "geometry": geometries.get(u.credit_code)}
             for u in found if u.host_credit_code == firm.credit_code
             and u.enterprise_id != firm.id]
    return host, sorted(units, key=lambda u: u["credit_code"])


def _hazards(session, firm, today):
    rows = session.execute(sa.select(Hazard).where(Hazard.enterprise_id == firm.id)
                           .order_by(Hazard.found_date.desc(), Hazard.id.desc())
                           .limit(MAX_ITEMS)).scalars().all()
    items = ledger.hazard_dicts(session, rows, today=today)
    for item in items:
        item["history"] = [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                            "from": e.from_status, "to": e.to_status, "note": e.note}
                           for e in ledger.history(session, item["id"])]
    return items


def _requests(session, firm, today):
    rows = session.execute(sa.select(ServiceRequest).where(
        ServiceRequest.enterprise_id == firm.id).order_by(
        ServiceRequest.received_date.desc(), ServiceRequest.id.desc()).limit(MAX_ITEMS)
    ).scalars().all()
    items = requests.request_dicts(session, rows, today=today)
    for item in items:
        item["history"] = requests.event_dicts(requests.history(session, item["id"]))
    return items


def _satisfaction(items):
    """Every answer the enterprise gave at 回访, newest first, from the requests' history."""
    answers = [{"at": e["at"], "request": r["code"], "category": r["category"],
                "satisfaction": e["satisfaction"],
                "satisfaction_name": SATISFACTION_NAMES.get(e["satisfaction"]),
                "actor": e["actor"], "note": e["note"]}
               for r in items for e in r["history"] if e.get("satisfaction")]
    return sorted(answers, key=lambda a: a["at"], reverse=True)


def enterprise_file(session, park, credit_code, *, actor=None, today=None):
    """Everything about one enterprise of ``park``, as a JSON-ready dict.

    Parameters
    ----------
    credit_code : str
        Its unified social credit code (trimmed and upper-cased first).
    actor : geodata.services.ledger.Actor, optional
        Who asks; a grid-limited actor must serve the enterprise's grid.
    today : datetime.date, optional
        For "overdue" (default: today).

    Returns
    -------
    dict
        ``park, enterprise`` (with ``site`` GeoJSON and ``site_kind``
        parcel|gate), ``grid`` (with ``geometry`` and ``staff``) or None,
        ``host`` (the enterprise it sits in, or None), ``hidden_units``,
        ``hazards`` / ``requests`` (newest first, each with ``history``),
        ``visits`` (newest first), ``satisfaction`` (answers at 回访, newest
        first) and ``counts``.  Geometries are EPSG:4326.

    Raises
    ------
    ValidationError
        422 ``invalid_credit_code``.
    NotFoundError
        404: no such enterprise in the park.
    PermissionDeniedError
        403 ``outside_your_grids``.
    """
    today = today or local_today()
    firm = get_enterprise(session, park, credit_code, actor)
    shape, site = _site(firm)
    host, units = _hidden(session, park, firm)
    hazards = _hazards(session, firm, today)
    request_items = _requests(session, firm, today)
    visit_items = visits.visits_for_enterprise(session, firm, limit=MAX_ITEMS)
    answers = _satisfaction(request_items)
    return {
        "park": {"code": park.code, "name": park.name},
        "enterprise": {
            "name": firm.name, "credit_code": firm.credit_code, "industry": firm.industry,
            "employees": firm.employees, "contact_name": firm.contact_name,
            "contact_phone": firm.contact_phone, "registered": firm.registered,
            "site_kind": "gate" if shape.geom_type == "Point" else "parcel", "site": site},
        "grid": _grid(session, firm),
        "host": host,
        "hidden_units": units,
        "hazards": hazards,
        "requests": request_items,
        "visits": visit_items,
        "satisfaction": answers,
        "counts": {
            "hazards": len(hazards),
            "open_hazards": sum(h["status"] != "closed" for h in hazards),
            "overdue_hazards": sum(h["overdue"] for h in hazards),
            "requests": len(request_items),
            "overdue_requests": sum(r["overdue"] for r in request_items),
            "visits": len(visit_items),
            "satisfied": sum(a["satisfaction"] != "unsatisfied" for a in answers),
            "answers": len(answers),
        },
    }
