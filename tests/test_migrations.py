"""Migrations upgrade older databases with data, on both backends: 0001 → head, 0003 → head."""

import uuid
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geodata import schema
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.services.users import authenticate, end_sessions, hash_password, user_for_session
from geodata.storage import make_engine, session_scope

ROWS_0001 = [
    "INSERT INTO parks (id, code, name, division_code, boundary, metric_epsg, area_m2, "
    "created_at, version) VALUES (1, 'P', '老园区', '411621', ST_GeomFromText("
    "'MULTIPOLYGON(((114 34, 114.01 34, 114.01 34.01, 114 34.01, 114 34)))', 4326), 4547, "
    "1.0e6, '2025-01-01 00:00:00+00:00', 1)",
    "INSERT INTO grids (id, park_id, parent_id, code, name, level, kind, geom, area_m2, "
    "active_from, active_to, version) VALUES (1, 1, NULL, 'P-001', '一号网格', 1, 'area', "
    "ST_GeomFromText('MULTIPOLYGON(((114 34, 114.01 34, 114.01 34.01, 114 34.01, 114 34)))',"
    " 4326), 1.0e6, '2025-01-01', NULL, 1)",
    "INSERT INTO hazards (id, park_id, grid_id, enterprise_id, code, location, category, "
    "level, description, found_date, deadline, status, created_at, version) VALUES "
    "(1, 1, 1, NULL, 'YH2025-0001', ST_GeomFromText('POINT(114.005 34.005)', 4326), "
    "'消防安全', 'general', '灭火器过期', '2025-01-02', '2025-02-01', 'closed', "
    "'2025-01-02 00:00:00+00:00', 3)",
    "INSERT INTO hazard_events (hazard_id, at, actor, from_status, to_status, note) "
    "VALUES (1, '2025-01-02 09:00:00+00:00', '老王', NULL, 'found', '排查')",
    "INSERT INTO hazard_events (hazard_id, at, actor, from_status, to_status, note) "
    "VALUES (1, '2025-01-20 08:00:00+00:00', '老李', 'supervising', 'closed', '销号')",
]


@pytest.fixture
def fresh_url(backend, tmp_path, request):
    """An empty database (no schema) on ``backend``."""
    if backend == "spatialite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    base = make_url(request.getfixturevalue("postgis_url"))
    name = f"gridmap_mig_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def database_at_0001(url, *more_rows):
    """An engine on a new database at revision 0001 holding ``ROWS_0001`` and ``more_rows``."""
    engine = make_engine(url, create=True)
    schema.upgrade(engine, "0001")
    with engine.begin() as conn:
        for statement in (*ROWS_0001, *more_rows):
            conn.exec_driver_sql(statement)
    return engine


def test_0001_database_with_data_upgrades_to_head(fresh_url):
    engine = database_at_0001(fresh_url)
    try:
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as conn:
            hazard = conn.execute(sa.text(
                "SELECT code, status, version, escalation, closed_at FROM hazards")).one()
            events = conn.execute(sa.text(
                "SELECT actor, to_status, note, action FROM hazard_events ORDER BY id")).all()
            counts = [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("parks", "grids", "users", "supervisions")]
        assert tuple(hazard[:4]) == ("YH2025-0001", "closed", 3, "grid")
        assert str(hazard[4]).startswith("2025-01-20 08:00")
        assert [tuple(e) for e in events] == [("老王", "found", "排查", None),
                                              ("老李", "closed", "销号", None)]
        assert counts == [1, 1, 0, 0]
        # History stays append-only; escalation levels are checked by the database.
        for statement in ("UPDATE hazard_events SET note = 'x'", "DELETE FROM hazard_events",
                          "UPDATE hazards SET escalation = 'nation'"):
            with pytest.raises(sa.exc.DBAPIError):
                with engine.begin() as conn:
                    conn.exec_driver_sql(statement)
        # The old hazard goes on through the new workflow: a re-check reopens it.
        with session_scope(engine, write=True) as session:
            h = ledger.transition(session, 1, "rectifying", actor=ledger.Actor("admin", "admin"),
                                  expected_version=3, note="回头看",
                                  deadline=date.today() + timedelta(days=7))
            assert (h.status, h.version, h.closed_at) == ("rectifying", 4, None)
        with session_scope(engine) as session:
            d = ledger.dashboard(session, get_park(session, "P"))
            assert d["by_status"]["rectifying"] == 1
            assert [e.action for e in ledger.history(session, 1)] == [None, None, "reopen"]
        schema.upgrade(engine)  # again: nothing to do, nothing lost
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM hazard_events")).scalar() == 3
    finally:
        engine.dispose()


def test_0003_accounts_upgrade_to_server_side_sessions(fresh_url):
    engine = make_engine(fresh_url, create=True)
    try:
        schema.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO users (id, username, display_name, role, password_hash, active, "
                "created_at, version) VALUES (1, 'laowang', '老王', 'supervisor', :pw, :on, "
                "'2025-01-01 00:00:00+00:00', 3), (2, 'gone', '', 'viewer', :pw, :off, "
                "'2025-01-01 00:00:00+00:00', 1)"),
                {"pw": hash_password("old-password-1"), "on": True, "off": False})
            conn.execute(sa.text(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at, revoked) "
                "VALUES (1, 'script', :h, '2025-01-01 00:00:00+00:00', :off)"),
                {"h": "0" * 64, "off": False})
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT username, version, session_version, active FROM users ORDER BY id")).all()
            assert conn.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar() == 1
        assert [tuple(r) for r in rows] == [("laowang", 3, 1, True), ("gone", 1, 1, False)]
        with session_scope(engine, write=True) as session:
            user = authenticate(session, "laowang", "old-password-1")
            assert user_for_session(session, user.id, 1).username == "laowang"
            end_sessions(user)
        with session_scope(engine) as session:
            assert user_for_session(session, 1, 1) is None
            assert user_for_session(session, 1, 2).username == "laowang"
            assert user_for_session(session, 2, 1) is None  # disabled
    finally:
        engine.dispose()


def test_0004_photos_upgrade_with_tags_and_the_park_setting(fresh_url):
    engine = make_engine(fresh_url, create=True)
    try:
        schema.upgrade(engine, "0004")
        with engine.begin() as conn:
            for statement in ROWS_0001[:3]:
                conn.exec_driver_sql(statement)
            for i in (1, 2):
                conn.execute(sa.text(
                    "INSERT INTO hazard_photos (id, hazard_id, stored_name, original_name, "
                    "content_type, size, sha256, uploaded_by, uploaded_at) VALUES (:i, 1, :n, "
                    "'a.jpg', 'image/jpeg', 10, :h, '老王', '2025-01-02 00:00:00+00:00')"),
                    {"i": i, "n": f"{i:032x}.jpg", "h": "0" * 64})
            conn.execute(sa.text(
                "INSERT INTO supervisions (hazard_id, supervisor, checked_at, outcome, note, "
                "photo_id) VALUES (1, '老李', '2025-01-20 00:00:00+00:00', 'passed', '', 2)"))
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as conn:
            photos = conn.execute(sa.text(
                "SELECT id, tag, thumbnail_name, width FROM hazard_photos ORDER BY id")).all()
            park = conn.execute(sa.text("SELECT require_after_photo FROM parks")).scalar_one()
        # the photo cited as proof of closing is an after-photo; old photos have no thumbnail
        assert [tuple(p) for p in photos] == [(1, "before", None, None), (2, "after", None, None)]
        assert park in (False, 0)
    finally:
        engine.dispose()


def test_0004_photos_of_supervisions_survive_the_visits_migration(fresh_url):
    """0005 copies hazard_photos on SQLite; supervision records keep their photo."""
    engine = make_engine(fresh_url, create=True)
    try:
        schema.upgrade(engine, "0004")
        with engine.begin() as conn:
            for statement in ROWS_0001[:3]:
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql(
                "INSERT INTO hazard_photos (id, hazard_id, stored_name, original_name, "
                "content_type, size, sha256, uploaded_by, uploaded_at) VALUES (7, 1, "
                "'ab.jpg', '现场.jpg', 'image/jpeg', 10, 'ff', '老李', "
                "'2025-01-20 08:00:00+00:00')")
            conn.exec_driver_sql(
                "INSERT INTO supervisions (hazard_id, supervisor, checked_at, outcome, note, "
                "photo_id) VALUES (1, '老李', '2025-01-20 08:00:00+00:00', 'passed', '合格', 7)")
        schema.upgrade(engine)
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT photo_id FROM supervisions")).scalar() == 7
            photo = conn.execute(sa.text(
                "SELECT id, hazard_id, visit_id, original_name FROM hazard_photos")).one()
        assert tuple(photo) == (7, 1, None, "现场.jpg")
        # The photo is still referenced: deleting it is refused, as before.
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM hazard_photos")
        with pytest.raises(sa.exc.IntegrityError):  # a photo of nothing
            with engine.begin() as conn:
                conn.exec_driver_sql("UPDATE hazard_photos SET hazard_id = NULL")
    finally:
        engine.dispose()


def test_0010_stamps_parks_with_enterprises_and_its_triggers_go_with_a_downgrade(fresh_url):
    """0009 → 0010: a park holding enterprises gets a stamp, an empty one keeps 0; 0010 → 0009
    drops the column and the triggers (an enterprise insert works again), and back up."""
    firm = ("INSERT INTO enterprises (park_id, name, credit_code, registered, site, version) "
            "VALUES (1, '老厂', '91411621MA00000000', {yes}, "
            "ST_GeomFromText('POINT(114.005 34.005)', 4326), 1)")
    engine = database_at_0001(fresh_url, ROWS_0001[0].replace("(1, 'P', '老园区'", "(2, 'Q', '空园区'"))
    try:
        schema.upgrade(engine, "0009")
        yes = "1" if engine.dialect.name == "sqlite" else "true"
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(yes=yes))
        schema.upgrade(engine, "0010")

        def stamps():
            with engine.connect() as conn:
                return dict(conn.execute(sa.text("SELECT code, sites_stamp FROM parks")).all())
        first = stamps()
        assert first["P"] != 0 and first["Q"] == 0
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(yes=yes).replace("00000000'", "00000001'"))
        assert stamps()["P"] not in (0, first["P"]) and stamps()["Q"] == 0
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(schema._alembic_config(conn), "0009")
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(yes=yes).replace("00000000'", "00000002'"))
            assert "sites_stamp" not in {c["name"] for c in sa.inspect(conn).get_columns("parks")}
        schema.upgrade(engine, "0010")
        assert stamps()["P"] != 0
    finally:
        engine.dispose()


def test_0011_moves_the_stamps_to_their_table_and_back(fresh_url):
    """0010 → 0011: each park's stamp moves to ``park_sites_stamps`` (a park without one gets
    no row), the triggers write the table and no longer the park row; 0011 → 0010 puts the
    stamps and 0010's triggers back."""
    firm = ("INSERT INTO enterprises (park_id, name, credit_code, registered, site, version) "
            "VALUES (1, '老厂', '91411621MA0000000{n}', {yes}, "
            "ST_GeomFromText('POINT(114.005 34.005)', 4326), 1)")
    engine = database_at_0001(fresh_url, ROWS_0001[0].replace("(1, 'P', '老园区'", "(2, 'Q', '空园区'"))
    yes = "1" if engine.dialect.name == "sqlite" else "true"

    def read(sql):
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(sql)).all())
    try:
        schema.upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(n=0, yes=yes))
        schema.upgrade(engine, "0010")
        old = read("SELECT id, sites_stamp FROM parks")
        schema.upgrade(engine)
        assert read("SELECT park_id, stamp FROM park_sites_stamps") == {1: old[1]}
        with engine.connect() as conn:
            assert "sites_stamp" not in {c["name"] for c in sa.inspect(conn).get_columns("parks")}
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(n=1, yes=yes))
        new = read("SELECT park_id, stamp FROM park_sites_stamps")
        assert set(new) == {1} and new[1] not in (0, old[1])
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(schema._alembic_config(conn), "0010")
        assert read("SELECT id, sites_stamp FROM parks") == {1: new[1], 2: 0}
        with engine.begin() as conn:
            conn.exec_driver_sql(firm.format(n=2, yes=yes))
            assert not sa.inspect(conn).has_table("park_sites_stamps")
        assert read("SELECT id, sites_stamp FROM parks")[1] not in (0, new[1])
        schema.upgrade(engine)
        assert set(read("SELECT park_id, stamp FROM park_sites_stamps")) == {1}
    finally:
        engine.dispose()


def test_0013_stamps_every_park_and_its_triggers_go_with_a_downgrade(fresh_url):
    """0012 → 0013: every park gets a coverage stamp, a grid write renews its park's; 0013 →
    0012 drops the table and the triggers (a grid write works again), and back up."""
    grid = ("INSERT INTO grids (id, park_id, parent_id, code, name, level, kind, geom, area_m2, "
            "active_from, active_to, version) SELECT {n}, 1, NULL, 'P-00{n}', '格', 1, 'area', "
            "geom, 1.0, '2025-01-01', NULL, 1 FROM grids WHERE id = 1")
    engine = database_at_0001(fresh_url, ROWS_0001[0].replace("(1, 'P', '老园区'", "(2, 'Q', '空园区'"))

    def stamps():
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT park_id, stamp FROM park_coverage_stamps"))
                        .all())
    try:
        schema.upgrade(engine, "0012")
        schema.upgrade(engine, "0013")
        first = stamps()
        assert set(first) == {1, 2} and first[1] != first[2]
        with engine.begin() as conn:
            conn.exec_driver_sql(grid.format(n=2))
        assert stamps()[1] not in first.values() and stamps()[2] == first[2]
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(schema._alembic_config(conn), "0012")
        with engine.begin() as conn:
            conn.exec_driver_sql(grid.format(n=3))
            assert not sa.inspect(conn).has_table("park_coverage_stamps")
        schema.upgrade(engine)
        assert set(stamps()) == {1, 2}
    finally:
        engine.dispose()
