"""The park-wide hidden-unit detection is cached per state of the park's sites, on both backends.

``park_sites_stamps`` is the key: database triggers (migrations 0010, 0011) give it
a fresh value whenever an enterprise of the park is inserted or deleted or
its site, host or park changes, whoever writes.  These tests write through
every kind of path (the importer, raw SQL inserts, updates of each watched
column, deletes, a move between parks, a rolled-back write) and check that
the stamp changes exactly then, and that the cached answers (count, list,
``hidden=`` filters) equal a detection from scratch after each write.
"""

import threading
import time

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geodata import hidden
from geodata.creditcode import make_credit_code
from geodata.services.parks import get_park, import_parks
from geodata.services.sites import import_enterprises
from geodata.storage import session_scope
from tests.conftest import metric_box, metric_point
from tests.ledger_helpers import build_park
from webmap import create_app


def _stamps(engine):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT code, coalesce(s.stamp, 0) FROM parks LEFT JOIN park_sites_stamps s "
            "ON s.park_id = parks.id")).all())


def _sql(engine, statement, **params):
    with session_scope(engine, write=True) as session:
        session.execute(sa.text(statement), params)


def _point(x, y):
    return metric_point(x, y).wkt


INSERT = ("INSERT INTO enterprises (park_id, name, credit_code, registered, site, version) "
          "SELECT id, :name, :code, :yes, ST_GeomFromText(:wkt, 4326), 1 FROM parks "
          "WHERE code = 'T'")


def _fresh(engine):
    """The detection from scratch (cache emptied): ``{code: sorted hidden names}``."""
    hidden.clear_cache()
    with session_scope(engine) as session:
        return sorted(u.name for u in hidden.find_hidden_units(session, get_park(session, "T")))


@pytest.fixture
def parks(engine):
    """Park T (two parcels, 甲公司 and 乙公司) and an empty park U beside it."""
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        import_parks(session, gpd.GeoDataFrame(
            [{"code": "U", "name": "邻园", "division_code": "411621"}],
            geometry=[metric_box(2000, 0, 3000, 1000)], crs=4326))
    return engine


def test_every_write_to_sites_renews_the_stamp_and_nothing_else_does(parks, backend):
    engine = parks
    seen = [_stamps(engine)]

    def step(changes, *codes):
        before = seen[-1]
        after = _stamps(engine)
        for code in ("T", "U"):
            assert (after[code] != before[code]) == (code in codes), (changes, code)
            if code in codes:  # never a stamp the park or another had before
                assert all(after[code] not in old.values() for old in seen), (changes, code)
        seen.append(after)

    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": "丙公司", "credit_code": make_credit_code("411621", 3)}],
            geometry=[metric_box(300, 300, 320, 320)], crs=4326))
    step("import", "T")
    _sql(engine, INSERT, name="丁厂", code="X" * 18, yes=True, wkt=_point(150, 150))
    step("raw insert", "T")
    _sql(engine, "UPDATE enterprises SET site = ST_GeomFromText(:wkt, 4326) WHERE name = '丁厂'",
         wkt=_point(160, 160))
    step("site", "T")
    _sql(engine, "UPDATE enterprises SET host_id = (SELECT id FROM enterprises WHERE "
         "name = '乙公司') WHERE name = '丁厂'")
    step("host", "T")
    _sql(engine, "UPDATE enterprises SET name = '丁厂二', industry = '化工', employees = 3 "
         "WHERE name = '丁厂'")
    step("name, industry, employees")
    _sql(engine, "UPDATE enterprises SET grid_id = NULL WHERE name = '丁厂二'")
    step("grid")
    _sql(engine, "UPDATE enterprises SET park_id = (SELECT id FROM parks WHERE code = 'U'), "
         "host_id = NULL WHERE name = '丁厂二'")
    step("park", "T", "U")
    _sql(engine, "DELETE FROM enterprises WHERE name = '丁厂二'")
    step("delete", "U")
    # A rolled-back write leaves the stamp as it was.
    with pytest.raises(RuntimeError):
        with session_scope(engine, write=True) as session:
            session.execute(sa.text(INSERT), {"name": "戊厂", "code": "Y" * 18, "yes": True,
                                              "wkt": _point(170, 170)})
            raise RuntimeError("rolled back")
    step("rolled back")


def test_the_cached_answers_follow_every_write(parks, db_url, monkeypatch):
    """Count, list and filters after each write equal a detection from scratch."""
    engine = parks
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    runs = []
    sites = hidden._sites
    monkeypatch.setattr(hidden, "_sites", lambda session, park_id: (
        runs.append(park_id) or sites(session, park_id)))

    def answers():
        park = client.get("/api/parks/T").get_json()["properties"]["hidden_units"]
        listed = sorted(u["name"] for u in client.get("/api/parks/T/hidden-units").get_json())
        flagged = sorted(f["properties"]["name"] for f in client.get(
            "/api/parks/T/enterprises?hidden=true").get_json()["features"])
        ogc = sorted(f["properties"]["name"] for f in client.get(
            "/ogcapi/collections/enterprises/items?park=T&hidden=true").get_json()["features"])
        others = client.get("/api/parks/T/enterprises?hidden=false").get_json()
        total = client.get("/api/parks/T").get_json()["properties"]["enterprises"]
        assert park == len(listed) and listed == flagged == ogc
        assert others["numberMatched"] == total - park
        assert not {f["properties"]["name"] for f in others["features"]} & set(listed)
        return listed

    try:
        assert answers() == _fresh(engine) == []
        writes = [
            (INSERT, {"name": "门岗厂", "code": "A" * 18, "yes": True, "wkt": _point(150, 150)}),
            (INSERT, {"name": "小厂", "code": "B" * 18, "yes": True,
                      "wkt": metric_box(610, 610, 620, 620).wkt}),
            ("UPDATE enterprises SET site = ST_GeomFromText(:wkt, 4326) WHERE name = '门岗厂'",
             {"wkt": _point(450, 450)}),
            ("UPDATE enterprises SET host_id = (SELECT id FROM enterprises WHERE name = '甲公司') "
             "WHERE name = '门岗厂'", {}),
            ("DELETE FROM enterprises WHERE name = '小厂'", {}),
        ]
        for statement, params in writes:
            _sql(engine, statement, **params)
            runs.clear()
            got = answers()
            # The park's sites were read once after the write, then the cache answered.
            assert len(runs) == 1, (statement, runs)
            assert got == _fresh(engine), statement
        assert got == ["门岗厂"]
        runs.clear()
        answers()
        assert runs == []  # warm: no request read the park's sites
    finally:
        app.extensions["gridmap.engine"].dispose()


def _blocked_or_done(engine, thread):
    """Wait until ``thread`` has finished or (PostgreSQL) waits on a lock (bounded)."""
    for _ in range(4000):
        if not thread.is_alive():
            return
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                if conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                        "wait_event_type = 'Lock' AND datname = "
                                        "current_database()").scalar():
                    return
        else:  # SQLite: the other writer waits for the database's write lock, never a row
            return
        time.sleep(0.005)


@pytest.mark.parametrize("lock", [True, "share"], ids=["grid_edit", "ledger_create"])
def test_a_site_moved_beside_a_park_lock_is_a_wait_not_a_deadlock(parks, lock):
    """The park row lock (a grid edit's ``FOR UPDATE``, a ledger create's ``FOR SHARE``) and an
    enterprise written outside the service (QGIS, raw SQL) in the same park.

    The edit holds the park, the outside writer moves a site (its row lock, then the
    trigger's stamp), the edit then re-points that enterprise's grid.  With the stamp
    on the park row the trigger waited on the park while holding the enterprise, and
    PostgreSQL aborted one of them (``deadlock detected``); both must succeed, and the
    move renews the stamp.
    """
    engine = parks
    before = _stamps(engine)
    errors = []
    moved = threading.Event()

    def move_site():
        try:
            _sql(engine, "UPDATE enterprises SET site = ST_GeomFromText(:wkt, 4326) "
                 "WHERE name = '甲公司'", wkt=metric_box(110, 110, 210, 210).wkt)
            moved.set()
        except Exception as exc:  # reported below: the assertion names it
            errors.append(exc)

    with session_scope(engine, write=True) as session:
        get_park(session, "T", lock=lock)
        mover = threading.Thread(target=move_site)
        mover.start()
        _blocked_or_done(engine, mover)
        try:
            session.execute(sa.text("UPDATE enterprises SET grid_id = grid_id "
                                    "WHERE name = '甲公司'"))
        except Exception as exc:
            errors.append(exc)
            raise
        finally:
            if errors:
                mover.join()
    mover.join()
    assert errors == [] and moved.is_set()
    assert _stamps(engine)["T"] != before["T"] and _stamps(engine)["U"] == before["U"]


def test_conflict_clauses_of_the_writer_neither_fail_nor_skip_the_stamp(parks, backend):
    """Upserts and SQLite's ``INSERT OR IGNORE/REPLACE`` into enterprises: SQLite runs the
    trigger's own statements under the firing statement's conflict policy, so a trigger that
    relied on a conflict clause failed an upsert (UNIQUE constraint failed) or skipped the
    stamp under ``OR IGNORE``.  Each write that changes a site renews the stamp; one that
    changes nothing leaves it."""
    engine = parks
    upsert = INSERT + " ON CONFLICT (park_id, credit_code) DO {}"
    with engine.connect() as conn:
        taken = conn.exec_driver_sql("SELECT credit_code FROM enterprises "
                                     "WHERE name = '甲公司'").scalar()
    writes = [
        ("upsert, existing row updated", upsert.format("UPDATE SET site = excluded.site"),
         taken, True),
        ("upsert, new row inserted", upsert.format("UPDATE SET site = excluded.site"),
         "C" * 18, True),
        ("upsert, existing row left", upsert.format("NOTHING"), taken, False),
        ("upsert, new row inserted, do nothing", upsert.format("NOTHING"), "D" * 18, True),
    ]
    if backend == "spatialite":
        writes += [(f"INSERT OR {how}, {what}", INSERT.replace("INSERT", f"INSERT OR {how}"),
                    code, renews)
                   for how, what, code, renews in (
                       ("IGNORE", "new row", "E" * 18, True),
                       ("IGNORE", "existing row", taken, False),
                       ("REPLACE", "existing row", taken, True))]

    def cached():
        with session_scope(engine) as session:
            return sorted(u.name for u in hidden.find_hidden_units(session, get_park(session, "T")))

    for n, (what, statement, code, renews) in enumerate(writes):
        before = _stamps(engine)
        cached()  # warm
        # Inside 甲公司's parcel: each new site is a hidden unit, so a stale answer shows.
        _sql(engine, statement, name=f"厂{n}", code=code, yes=True, wkt=_point(150 + n, 150))
        after = _stamps(engine)
        assert (after["T"] != before["T"]) == renews, what
        assert after["U"] == before["U"], what
        assert cached() == _fresh(engine), what
