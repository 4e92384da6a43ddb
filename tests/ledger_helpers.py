"""Small fixtures for the hazard ledger tests: a park of 2 x 2 grids and one account per role."""

import threading
from datetime import date, timedelta

import geopandas as gpd
import pandas as pd
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, HazardEvent, Supervision
from geodata.services.grids import import_grids
from geodata.services.ledger import Actor
from geodata.services.parks import import_parks
from geodata.services.sites import import_enterprises
from geodata.services.staff import import_staff
from geodata.services import users as user_service
from geodata.services.users import add_user, create_token
from geodata.storage import session_scope
from tests.conftest import metric_box, metric_point

CELL = 500  # metres
# Tests create many accounts: a cheaper scrypt cost keeps them fast.  The cost
# is stored in each hash, so verification is unaffected; test_auth checks the
# production default separately.
PRODUCTION_SCRYPT_N = user_service.SCRYPT_N
user_service.SCRYPT_N = 2**10
PASSWORDS = {role: f"{role}-pass-123" for role in
             ("viewer", "inspector", "supervisor", "planner", "admin")}
ACTORS = {role: Actor(role, role) for role in PASSWORDS}


def future(days=10):
    return date.today() + timedelta(days=days)


def build_park(engine, users=True):
    """Park T (1 km square) with grids T-001..T-004 (NW, NE, SW, SE), two enterprises, staff."""
    park_gdf = gpd.GeoDataFrame([{"code": "T", "name": "测试园区", "division_code": "411621"}],
                                geometry=[metric_box(0, 0, 2 * CELL, 2 * CELL)], crs=4326)
    rows, geoms = [], []
    for row in range(2):
        for col in range(2):
            y1 = (2 - row) * CELL
            rows.append({"code": f"T-{row * 2 + col + 1:03d}", "name": f"第{row * 2 + col + 1}网格"})
            geoms.append(metric_box(col * CELL, y1 - CELL, (col + 1) * CELL, y1))
    grids = gpd.GeoDataFrame(rows, geometry=geoms, crs=4326)
    sites = gpd.GeoDataFrame([
        {"name": "甲公司", "credit_code": make_credit_code("411621", 1), "industry": "纺织",
         "employees": 50, "contact_name": "张三", "contact_phone": "13800000000"},
        {"name": "乙公司", "credit_code": make_credit_code("411621", 2)}],
        geometry=[metric_box(100, 100, 200, 200), metric_box(600, 600, 700, 700)], crs=4326)
    staff = pd.DataFrame([
        {"grid_code": "T-001", "name": "王一", "phone": "13900000001", "role": "grid_chief",
         "published": True},
        {"grid_code": "T-002", "name": "王二", "phone": "13900000002", "role": "grid_chief",
         "published": False}])
    tokens = {}
    with session_scope(engine, write=True) as session:
        (park,), _ = import_parks(session, park_gdf)
        import_grids(session, park, grids)
        import_enterprises(session, park, sites)
        import_staff(session, park, staff)
        if users:
            for role, password in PASSWORDS.items():
                add_user(session, role, password, role)
                tokens[role], _ = create_token(session, role, "tests")
            add_user(session, "member", "member-pass-123", "inspector", grid_codes=["T-003"],
                     park=park)
            tokens["member"], _ = create_token(session, "member", "tests")
    return tokens


#: Points in metres from the origin: inside each grid, and outside the park.
IN_GRID = {"T-001": (250, 750), "T-002": (750, 750), "T-003": (250, 250), "T-004": (750, 250)}
OUTSIDE = (1500, 1500)


def lonlat(name_or_xy):
    xy = IN_GRID[name_or_xy] if isinstance(name_or_xy, str) else name_or_xy
    p = metric_point(*xy)
    return p.x, p.y


def ledger_state(engine):
    """Everything a refused request must leave unchanged."""
    with session_scope(engine) as session:
        hazards = session.execute(sa.select(
            Hazard.id, Hazard.status, Hazard.version, Hazard.deadline, Hazard.escalation)
            .order_by(Hazard.id)).all()
        events = session.execute(sa.select(sa.func.count()).select_from(HazardEvent)).scalar()
        records = session.execute(sa.select(sa.func.count()).select_from(Supervision)).scalar()
    return [tuple(h) for h in hazards], events, records


def image_bytes(fmt="PNG", size=(4, 3)):
    """A real image, as a phone would send it."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


def at_once(send, clients=2):
    """Call ``send(i)`` in ``clients`` threads released together; return the answers by ``i``.

    The threads meet at a barrier first, so the requests race as two users' would.
    """
    barrier = threading.Barrier(clients)
    results = [None] * clients

    def client(i):
        barrier.wait()
        results[i] = send(i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
