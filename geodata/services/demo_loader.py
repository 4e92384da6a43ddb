"""Load the deterministic demo park (:mod:`geodata.demo`) through the import services."""


import geopandas as gpd
import sqlalchemy as sa

from geodata.crs import STORAGE_SRID
from geodata.demo import DEFAULT_SEED, PARK_CODE, build_demo_park, summary
from geodata.models import Park
from geodata.periods import local_today
from geodata.services.grids import import_grids
from geodata.services.hazards import import_hazards
from geodata.services.parks import import_parks
from geodata.services.requests import import_requests
from geodata.services.sites import import_enterprises
from geodata.services.staff import import_staff
from geodata.services.users import create_demo_accounts
from geodata.services.visits import load_demo_field_work
from geodata.storage import refresh_statistics, session_scope


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
    options = {"today": today or local_today()}
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
        import_requests(session, park, demo_requests(session, park, options["today"],
                                                     seed=options.get("seed")))
        # One account per role; passwords in docs/ledger.md (demo only).
        create_demo_accounts(session)
        # Cadre links, patrol rules and a month of visits (docs/field.md).
        # (in Asia/Shanghai days unless ``today`` is given: visits are counted there)
        field = load_demo_field_work(session, park, today=today or local_today(),
                                     seed=options.get("seed", DEFAULT_SEED))
    refresh_statistics(engine)
    counts = {**summary(demo), **field}
    return (f"loaded demo park {PARK_CODE} ({demo.park['name']}): "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int)))


def demo_requests(session, park, today, seed=None):
    """A month of requests for the demo park's stored enterprises (:mod:`geodata.demo_requests`).

    Built from what was imported (enterprises by credit code with their
    grids, each grid's chief and first full-time member), so it follows the
    demo park's seed.
    """
    from geodata.demo_requests import build_requests
    from geodata.models import Enterprise, Grid, GridStaff

    firms = session.execute(
        sa.select(Enterprise.credit_code, Grid.code, Enterprise.contact_name)
        .join(Grid, Grid.id == Enterprise.grid_id).where(Enterprise.park_id == park.id)
        .order_by(Enterprise.credit_code)).all()
    people = {}
    for grid, role, name in session.execute(
            sa.select(Grid.code, GridStaff.role, GridStaff.name).join(Grid)
            .where(Grid.park_id == park.id).order_by(GridStaff.id)):
        people.setdefault(grid, {}).setdefault(role, name)
    staff = {g: (p["grid_chief"], p.get("full_time", p["grid_chief"]))
             for g, p in people.items() if "grid_chief" in p}
    options = {} if seed is None else {"seed": seed}
    return build_requests([tuple(f) for f in firms], staff, today, **options)


def load_province(engine, parks, grids_per_park, seed=None, progress=None):
    """Load generated parks (:func:`geodata.province.build_province`), one transaction each.

    Each park goes through the same validating importers as ``gridmap
    import`` (park, grids with their coverage check, enterprises, staff,
    hazards) in one write transaction, so a failure leaves the parks loaded
    before it intact and a re-run loads only the missing ones.  A park whose
    code is already stored is skipped.  ``progress`` is called with a line
    per park.  Returns a one-line summary.
    """
    from geodata.province import DEFAULT_SEED, build_province, park_codes

    codes = park_codes(parks)
    with session_scope(engine) as session:
        stored = set(session.execute(sa.select(Park.code).where(Park.code.in_(codes))).scalars())
    loaded = skipped = 0
    for generated in build_province(parks, grids_per_park,
                                    seed=DEFAULT_SEED if seed is None else seed):
        code = generated.park["code"]
        if code in stored:
            skipped += 1
            continue
        park_frame = gpd.GeoDataFrame(
            [{k: v for k, v in generated.park.items() if k != "boundary"}],
            geometry=[generated.park["boundary"]], crs=STORAGE_SRID)
        with session_scope(engine, write=True) as session:
            (park,), _ = import_parks(session, park_frame, file="province")
            import_grids(session, park, generated.grids, file="province")
            import_enterprises(session, park, generated.enterprises, file="province")
            import_staff(session, park, generated.staff, file="province")
            import_hazards(session, park, generated.hazards, file="province")
        loaded += 1
        if progress:
            progress(f"loaded park {code}: {len(generated.grids)} grids, "
                     f"{len(generated.enterprises)} enterprises, {len(generated.hazards)} hazards")
    if loaded:
        refresh_statistics(engine)
    return (f"province: {loaded} parks loaded, {skipped} already stored, "
            f"{grids_per_park} grids each")
