"""Two parks and a grid member, for the authorisation tests.

Park T comes from :func:`tests.ledger_helpers.build_park` (the grid member
``member`` serves T-003).  Each of T-001 (another grid of the same park) and
park U (another park) gets a hazard with history and a photo, an enterprise,
a service request and a visit, whose text holds a marker (``SECRET-…``)
that must reach the member no more than a visitor.  Park and grid names are
public (the map shows them to everyone): they carry no marker.  Park U's
grid chief is not published on the board (公示): their name is a marker too.
"""

import uuid

import geopandas as gpd
import pandas as pd
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import User, WeeklyAssignment
from geodata.periods import iso_week, local_today
from geodata.services import ledger, visits
from geodata.services import requests as request_service
from geodata.services.grids import import_grids
from geodata.services.parks import get_park, import_parks
from geodata.services.sites import import_enterprises
from geodata.services.staff import import_staff
from geodata.storage import session_scope
from tests.conftest import metric_box
from tests.ledger_helpers import build_park, future, image_bytes, lonlat

U_X = 3000  # park U lies 3 km east of park T
ADMIN = ledger.Actor("admin", "admin")


def _records(session, park, xy, credit, marker, photo_dir):
    """A hazard (started, with a photo), a request of ``credit`` and a visit at ``xy``."""
    hazard = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat(xy)),
                                  category="其他", description=f"{marker}-hazard", actor=ADMIN)
    ledger.transition(session, hazard.id, "rectifying", actor=ADMIN, expected_version=1,
                      note=f"{marker}-note", deadline=future())
    photo = ledger.save_photo(session, hazard.id, image_bytes("JPEG"), actor=ADMIN,
                              directory=photo_dir, original_name=f"{marker}.jpg")
    closed = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat(xy)),
                                  category="其他", description=f"{marker}-closed", actor=ADMIN)
    for version, to in enumerate(("supervising", "closed"), 1):
        ledger.transition(session, closed.id, to, actor=ADMIN, expected_version=version,
                          note=f"{marker}-note",
                          supervision={"note": f"{marker}-check"} if to == "closed" else None)
    item = request_service.create_request(
        session, park, enterprise=credit, category="其他",
        description=f"{marker}-request", source="visit", actor=ADMIN)
    visit, _ = visits.create_visit(
        session, park, actor=ADMIN, client_id_=str(uuid.uuid4()), kind="patrol",
        occurred_at_="2025-12-01T09:00:00+08:00", point=ledger.parse_point(*lonlat(xy)),
        note=f"{marker}-visit")
    session.add(WeeklyAssignment(
        park_id=park.id, week=iso_week(local_today()), hazard_id=hazard.id,
        owner_id=session.execute(sa.select(User.id).where(User.username == "admin")).scalar(),
        deadline=future(), note=f"{marker}-task", created_by="admin"))
    return {"hazard": hazard.id, "closed": closed.id, "hazard_code": hazard.code,
            "photo": photo.id,
            "request": item.id, "request_code": item.code, "visit": visit.id}


def build_scopes(engine, photo_dir):
    """Parks T and U; returns ``(tokens, ids)``.

    ``ids["own"]`` are records in the member's grid T-003, ``ids["grid"]`` in
    T-002 of the same park and ``ids["park"]`` in park U; each holds an open
    ``hazard`` (with a photo and a task of this week's 周交办) and a
    ``closed`` one, ``hazard_code``, ``photo``, ``request``,
    ``request_code``, ``visit``, ``enterprise`` (a credit code), ``grid`` and
    ``park`` codes.
    """
    tokens = build_park(engine)
    park_u = gpd.GeoDataFrame([{"code": "U", "name": "乙园区", "division_code": "411621"}],
                              geometry=[metric_box(U_X, 0, U_X + 1000, 1000)], crs=4326)
    with session_scope(engine, write=True) as session:
        (park,), _ = import_parks(session, park_u)
        import_grids(session, park, gpd.GeoDataFrame(
            [{"code": "U-001", "name": "乙园区网格"}],
            geometry=[metric_box(U_X, 0, U_X + 1000, 1000)], crs=4326))
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": "SECRET-firm-U", "credit_code": make_credit_code("411621", 7),
              "contact_name": "SECRET-contact-U", "contact_phone": "13700000007"}],
            geometry=[metric_box(U_X + 100, 100, U_X + 200, 200)], crs=4326))
        import_staff(session, park, pd.DataFrame([
            {"grid_code": "U-001", "name": "SECRET-staff-U", "phone": "13900000009",
             "role": "grid_chief", "published": False}]))
        park_t = get_park(session, "T")
        ids = {
            "own": _records(session, park_t, (150, 150), make_credit_code("411621", 1),
                            "OWN", photo_dir),
            "grid": _records(session, park_t, (650, 650), make_credit_code("411621", 2),
                             "SECRET-T2", photo_dir),
            "park": _records(session, get_park(session, "U"), (U_X + 150, 150),
                             make_credit_code("411621", 7), "SECRET-U", photo_dir)}
    ids["own"].update(park="T", grid="T-003", enterprise=make_credit_code("411621", 1))
    ids["grid"].update(park="T", grid="T-002", enterprise=make_credit_code("411621", 2))
    ids["park"].update(park="U", grid="U-001", enterprise=make_credit_code("411621", 7))
    return tokens, ids
