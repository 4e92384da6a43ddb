"""Load the deterministic demo park (:mod:`geodata.demo`) through the import services."""

from datetime import date

import geopandas as gpd
import sqlalchemy as sa

from geodata.crs import STORAGE_SRID
from geodata.demo import PARK_CODE, build_demo_park, summary
from geodata.models import Park
from geodata.services.grids import import_grids
from geodata.services.hazards import import_hazards
from geodata.services.parks import import_parks
from geodata.services.sites import import_enterprises
from geodata.services.staff import import_staff
from geodata.services.users import create_demo_accounts
from geodata.storage import session_scope


def load_demo(engine, seed=None, today=None):
    """Load the demo park in one transaction; return a one-line summary.

    Runs the same validating importers as ``gridmap import`` does, so the demo
    proves them on 600+ enterprises and 900+ hazards.  ``today`` anchors the
    hazard dates (default: the real date, so "overdue" means something when
    the demo is shown).  Loading again when the park exists changes nothing.
    """
    with session_scope(engine) as session:
        if session.execute(sa.select(Park.id).where(Park.code == PARK_CODE)).first():
            return f"demo park {PARK_CODE} is already loaded; nothing changed"
    options = {"today": today or date.today()}
    if seed is not None:
        options["seed"] = seed
    demo = build_demo_park(**options)
    park_frame = gpd.GeoDataFrame([{k: v for k, v in demo.park.items() if k != "boundary"}],
                                  geometry=[demo.park["boundary"]], crs=STORAGE_SRID)
    with session_scope(engine, write=True) as session:
        (park,), _ = import_parks(session, park_frame, file="demo")
        import_grids(session, park, demo.grids, file="demo")
        import_enterprises(session, park, demo.enterprises.drop(columns=["location"]),
                           file="demo")
        import_staff(session, park, demo.staff, file="demo")
        import_hazards(session, park, demo.hazards, file="demo")
        # One account per role; passwords in docs/ledger.md (demo only).
        create_demo_accounts(session)
    counts = summary(demo)
    return (f"loaded demo park {PARK_CODE} ({demo.park['name']}): "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int)))
