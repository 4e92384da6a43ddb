"""Schema, geometry columns and history rules on both backends."""

from datetime import date, datetime, timezone

import pytest
import shapely
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from geodata import schema
from geodata.models import Base, Hazard, HazardEvent, Park
from geodata.models.base import to_element, to_shapes
from geodata.storage import insert_row, session_scope, update_row
from tests.conftest import metric_box, metric_point


def _park(session, code="P1"):
    park = Park(code=code, name="测试园区", division_code="411621",
                boundary=to_element(shapely.MultiPolygon([metric_box(0, 0, 1000, 1000)])),
                metric_epsg=4547, area_m2=1e6)
    session.add(park)
    session.flush()
    return park


def test_schema_is_at_head_and_matches_models(engine):
    assert schema.current_revision(engine) == schema.head_revision()

    def ours(name, type_, parent):
        # SpatiaLite/PostGIS metadata tables and GeoAlchemy2's spatial indexes (idx_*)
        # live beside our tables; they are not drift.
        if type_ == "table":
            return name in Base.metadata.tables
        return not (type_ == "index" and name.startswith("idx_"))

    def not_spatial_index(obj, name, type_, reflected, compare_to):
        return ours(name, type_, None)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "include_name": ours, "include_object": not_spatial_index})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_twice_keeps_data(engine):
    with session_scope(engine, write=True) as session:
        _park(session)
    schema.upgrade(engine)
    with session_scope(engine) as session:
        assert session.execute(sa.select(Park.code)).scalars().all() == ["P1"]


def test_geometry_round_trips_exactly_and_cjk_text_survives(engine):
    name = "扶沟县先进制造业开发区 🏭"
    with session_scope(engine, write=True) as session:
        park = _park(session)
        park.name = name
        original = to_shapes([park.boundary])[0]
    with session_scope(engine) as session:
        stored = session.execute(sa.select(Park)).scalar_one()
        assert stored.name == name
        assert to_shapes([stored.boundary])[0].equals_exact(original, 0)


def test_geometry_column_refuses_null(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine, write=True) as session:
            session.add(Park(code="P2", name="x", division_code="411621", boundary=None,
                             metric_epsg=4547, area_m2=0))
    with session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count(Park.id))).scalar() == 0


def test_hazard_history_is_append_only(engine):
    with session_scope(engine, write=True) as session:
        park = _park(session)
        hazard = Hazard(park_id=park.id, code="YH2025-0001",
                        location=to_element(metric_point(10, 10)),
                        category="消防安全", found_date=sa.func.current_date(), status="found")
        hazard.events.append(HazardEvent(actor="tester", to_status="found", note="排查"))
        session.add(hazard)
    for statement in ("UPDATE hazard_events SET note = 'rewritten'",
                      "DELETE FROM hazard_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
    with session_scope(engine) as session:
        assert session.execute(sa.select(HazardEvent.note)).scalars().all() == ["排查"]


def test_stale_write_never_overwrites(engine):
    """The later writer of a stale copy fails; the first write stays (no last-writer-wins).

    PostGIS raises StaleDataError from the version check; SQLite refuses even
    earlier, because a WAL reader's snapshot cannot be upgraded to a writer.
    """
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm.exc import StaleDataError

    with session_scope(engine, write=True) as session:
        _park(session)
    with session_scope(engine) as first, session_scope(engine) as second:
        a = first.execute(sa.select(Park)).scalar_one()
        b = second.execute(sa.select(Park)).scalar_one()
        a.name = "A"
        first.commit()
        b.name = "B"
        with pytest.raises((StaleDataError, OperationalError)):
            second.commit()
        second.rollback()
    with session_scope(engine) as session:
        assert session.execute(sa.select(Park.name)).scalar() == "A"


def test_a_lost_write_race_is_a_409_not_a_500(engine):
    """What a write that lost a race raises maps to a 409 with the service's code.

    The services check versions and unique keys under the park's lock; if one
    slips through anyway, :func:`translate_db_error` (the API's and the CLI's
    one table) answers 409, not 500 ``internal_error``.
    """
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm.exc import StaleDataError

    from geodata.models import Grid
    from geodata.storage import translate_db_error

    with session_scope(engine, write=True) as session:
        park_id = _park(session).id
    with session_scope(engine) as first, session_scope(engine) as second:
        first.execute(sa.select(Park)).scalar_one().name = "A"
        b = second.execute(sa.select(Park)).scalar_one()
        first.commit()
        b.name = "B"
        with pytest.raises((StaleDataError, OperationalError)) as raised:
            second.commit()
        second.rollback()
    error = translate_db_error(raised.value)
    # SQLite refuses the stale snapshot's upgrade: busy, retry (503); PostGIS: stale (409).
    assert (error.http_status, error.code) in ((409, "stale_version"), (503, "database_busy"))

    def grid(session):
        session.add(Grid(park_id=park_id, code="P1-001", name="x", level=1, kind="area",
                         geom=to_element(shapely.MultiPolygon([metric_box(0, 0, 10, 10)])),
                         area_m2=100.0, active_from=sa.func.current_date()))
        session.flush()

    with session_scope(engine, write=True) as session:
        grid(session)
    with pytest.raises(IntegrityError) as raised:
        with session_scope(engine, write=True) as session:
            grid(session)
    error = translate_db_error(raised.value)
    assert (error.http_status, error.code, error.details["table"]) == (
        409, "duplicate_grid_code", "grids")
    with pytest.raises(IntegrityError) as raised:
        with session_scope(engine, write=True) as session:
            session.execute(sa.delete(Park))
    error = translate_db_error(raised.value)
    # PostgreSQL says which side broke the key; SQLite only that one did.
    assert (error.http_status, error.code) == (409, "has_dependents" if (
        engine.dialect.name == "postgresql") else "conflict")


def _new_hazard(park, code):
    return Hazard(park_id=park.id, code=code, category="消防安全",
                  location=to_element(metric_point(500, 500)),
                  found_date=date(2026, 11, 2), description="配电箱未接地")


def test_insert_row_stores_what_a_flush_stores(engine):
    with session_scope(engine) as session:
        park = _park(session)
        flushed = _new_hazard(park, "YH2026-0001")
        session.add(flushed)
        session.flush()
        inserted = insert_row(session, _new_hazard(park, "YH2026-0002"))
        # Persistent and clean, with the table's defaults read back: nothing left to flush.
        assert inserted in session and not session.dirty and not session.new
        assert sa.inspect(inserted).persistent and inserted.id > flushed.id
        columns = [c.key for c in sa.inspect(Hazard).columns if c.key not in ("id", "code")]
        assert [getattr(inserted, key) for key in columns if key != "created_at"] == [
            getattr(flushed, key) for key in columns if key != "created_at"]
        assert inserted.version == 1 and inserted.status == "found"
        assert inserted.created_at.tzinfo is not None
    with session_scope(engine) as session:
        stored = session.execute(sa.select(Hazard).order_by(Hazard.id)).scalars().all()
        assert [h.code for h in stored] == ["YH2026-0001", "YH2026-0002"]
        assert [(h.status, h.level, h.escalation, h.version) for h in stored] == [
            ("found", "general", "grid", 1)] * 2


def test_update_row_bumps_the_version_and_refuses_a_row_changed_meanwhile(engine):
    with session_scope(engine) as session:
        hazard = insert_row(session, _new_hazard(_park(session), "YH2026-0001"))
        update_row(session, hazard, {"status": "rectifying", "deadline": date(2026, 12, 1)})
        assert (hazard.status, hazard.deadline, hazard.version) == (
            "rectifying", date(2026, 12, 1), 2)
        assert not session.dirty
        hazard_id = hazard.id
    with session_scope(engine) as session:
        hazard = session.get(Hazard, hazard_id)
        assert (hazard.status, hazard.deadline, hazard.version) == (
            "rectifying", date(2026, 12, 1), 2)
        # Another writer moves it on meanwhile (a table UPDATE: the object still says 2).
        session.execute(sa.update(Hazard.__table__).where(Hazard.__table__.c.id == hazard_id)
                        .values(version=3))
        with pytest.raises(StaleDataError):
            update_row(session, hazard, {"status": "supervising"})
        session.commit()
    with session_scope(engine) as session:
        hazard = session.get(Hazard, hazard_id)
        assert (hazard.status, hazard.version) == ("rectifying", 3)


def test_update_row_with_a_child_row_writes_both_or_neither(engine):
    """The history event given as ``child`` is stored with the update (on PostgreSQL in
    its statement), and not at all when the row changed meanwhile."""
    def event(note):
        return (HazardEvent.__table__, "hazard_id", {
            "at": datetime(2026, 11, 3, tzinfo=timezone.utc), "actor": "inspector",
            "from_status": "found", "to_status": "rectifying", "action": "rectify", "note": note,
            "escalation": None})

    with session_scope(engine) as session:
        hazard = insert_row(session, _new_hazard(_park(session), "YH2026-0001"))
        update_row(session, hazard, {"status": "rectifying"}, child=event("限期整改"))
        assert hazard.version == 2 and not session.dirty
        hazard_id = hazard.id
        session.execute(sa.update(Hazard.__table__).where(Hazard.__table__.c.id == hazard_id)
                        .values(version=3))
        with pytest.raises(StaleDataError):
            update_row(session, hazard, {"status": "supervising"}, child=event("不该写入"))
    with session_scope(engine) as session:
        stored = session.execute(sa.select(HazardEvent.hazard_id, HazardEvent.note,
                                           HazardEvent.at)).all()
    assert [tuple(r) for r in stored] == [
        (hazard_id, "限期整改", datetime(2026, 11, 3, tzinfo=timezone.utc))]
