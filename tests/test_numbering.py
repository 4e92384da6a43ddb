"""Ledger numbers from the per-park counters, on both backends.

Creates in one park run side by side (the park row is locked shared), so the
numbers rest on the counter row alone: these tests start writers at once, or
hold one open while another waits, and check the numbers have no gap and no
duplicate.  On PostgreSQL the test waits until the second writer is blocked
on a lock before the first one ends (``_wait_until_blocked``), so the
re-read after a lock wait is what is exercised; SQLite serialises whole write
transactions, so the outcome there is the same in any order.
"""

import threading
from datetime import date

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geodata import domains, schema
from geodata.creditcode import make_credit_code
from geodata.errors import ConflictError
from geodata.models import (Grid, Hazard, HazardEvent, LedgerCounter, RequestEvent,
                            ServiceRequest)
from geodata.models.base import to_element
from geodata.services import ledger
from geodata.services import requests as request_service
from geodata.services.hazards import import_hazards
from geodata.services.numbering import next_number, sql_ledger_number
from geodata.services.parks import get_park
from geodata.storage import make_engine, session_scope
from tests.conftest import stored_snapshot
from tests.ledger_helpers import ACTORS, build_park, lonlat
from tests.test_migrations import database_at_0001, fresh_url  # noqa: F401 -- the fixture

YEAR = 2025
FOUND = date(YEAR, 3, 1)
FIRM = make_credit_code("411621", 1)  # 甲公司 of tests.ledger_helpers.build_park


def _create(engine, grid="T-001", **kwargs):
    """Log one hazard the way the API does (a read transaction that becomes a writer)."""
    with session_scope(engine) as session:
        return ledger.create_hazard(session, get_park(session, "T"),
                                    point=ledger.parse_point(*lonlat(grid)), category="其他",
                                    actor=ACTORS["inspector"], found_date=FOUND, **kwargs).code


def _codes(engine, model=Hazard):
    with session_scope(engine) as session:
        return sorted(session.execute(sa.select(model.code)).scalars())


def _counters(engine):
    with session_scope(engine) as session:
        return [tuple(r) for r in session.execute(sa.select(
            LedgerCounter.ledger, LedgerCounter.year, LedgerCounter.last).order_by(
                LedgerCounter.ledger, LedgerCounter.year))]


def _wait_until_blocked(engine, count=1):
    """PostgreSQL: return once ``count`` other sessions wait for a lock (SQLite: at once).

    Gives up after a few thousand looks (a safety net: the test's assertions then fail).
    """
    if engine.dialect.name != "postgresql":
        return
    probe = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with probe.connect() as conn:
            for _ in range(6000):
                if conn.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()")).scalar() >= count:
                    return
                conn.rollback()
                threading.Event().wait(0.01)
    finally:
        probe.dispose()


def _in_thread(work):
    """Run ``work()`` in a thread; return (thread, outcome dict with "value" or "error")."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except Exception as exc:  # handed to the test thread, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_creates_at_once_get_consecutive_numbers(engine):
    build_park(engine, users=False)
    clients = 6
    barrier = threading.Barrier(clients)

    def work(k):
        barrier.wait()
        return _create(engine, ["T-001", "T-002", "T-003", "T-004"][k % 4])

    runs = [_in_thread(lambda k=k: work(k)) for k in range(clients)]
    for thread, _ in runs:
        thread.join(120)
    assert [o.get("error") for _, o in runs] == [None] * clients
    expected = [f"YH{YEAR}-{n:04d}" for n in range(1, clients + 1)]
    assert sorted(o["value"] for _, o in runs) == expected == _codes(engine)
    assert _counters(engine) == [("YH", YEAR, clients)]


@pytest.mark.parametrize("first_ends", ["rollback", "commit"])
def test_a_create_waiting_for_the_number_gets_the_next_one(engine, first_ends):
    """The first create holds its number while a second waits; then it fails or commits."""
    build_park(engine, users=False)
    _create(engine)
    session = session_scope(engine)
    first = session.__enter__()
    try:
        code = ledger.create_hazard(first, get_park(first, "T"),
                                    point=ledger.parse_point(*lonlat("T-002")), category="其他",
                                    actor=ACTORS["inspector"], found_date=FOUND).code
        assert code == f"YH{YEAR}-0002"
        thread, outcome = _in_thread(lambda: _create(engine, "T-003"))
        _wait_until_blocked(engine)
        if first_ends == "rollback":
            session.__exit__(RuntimeError, RuntimeError("fails after its number"), None)
        else:
            session.__exit__(None, None, None)
    finally:
        first.close()
    thread.join(120)
    assert "error" not in outcome, outcome
    if first_ends == "rollback":
        # the failed create's number is given to the next one: no gap
        assert outcome["value"] == f"YH{YEAR}-0002"
        assert _codes(engine) == [f"YH{YEAR}-0001", f"YH{YEAR}-0002"]
    else:
        assert outcome["value"] == f"YH{YEAR}-0003"
        assert _codes(engine) == [f"YH{YEAR}-{n:04d}" for n in (1, 2, 3)]
    assert _counters(engine) == [("YH", YEAR, len(_codes(engine)))]


def test_the_same_given_number_at_once_is_stored_once(engine):
    """Two creates give the same ledger number: the second waits, then gets 409."""
    build_park(engine, users=False)
    given = f"YH{YEAR}-0007"
    with session_scope(engine) as first:
        ledger.create_hazard(first, get_park(first, "T"), point=ledger.parse_point(
            *lonlat("T-002")), category="其他", actor=ACTORS["inspector"], found_date=FOUND,
            code=given)
        thread, outcome = _in_thread(lambda: _create(engine, "T-003", code=given))
        _wait_until_blocked(engine)
    thread.join(120)
    assert isinstance(outcome.get("error"), ConflictError), outcome
    assert outcome["error"].code == "duplicate_hazard_code"
    assert _codes(engine) == [given]
    # the next generated number follows the given one
    assert _create(engine) == f"YH{YEAR}-0008"


def test_creates_share_the_park_and_an_edit_places_a_waiting_create_again(engine, monkeypatch):
    """A create placed its point; a grid edit splits that grid and commits; the create,
    locking the park next, sees the new version and places the point in a piece."""
    from geodata.services import edits

    build_park(engine, users=False)
    placed, go = threading.Event(), threading.Event()
    real = ledger.start_write

    def paused(session):
        if not placed.is_set():
            placed.set()
            go.wait(120)  # a safety net if the test failed before saying go
        real(session)

    monkeypatch.setattr(ledger, "start_write", paused)
    thread, outcome = _in_thread(lambda: _create(engine, "T-001"))
    try:
        assert placed.wait(120)
        with session_scope(engine) as session:
            split = edits.split_grid(session, get_park(session, "T"), "T-001", parts=2,
                                     actor="planner")
    finally:
        go.set()
        thread.join(120)
    assert "error" not in outcome, outcome
    with session_scope(engine) as session:
        hazard = session.execute(sa.select(Hazard)).scalar_one()
        grid = session.get(Grid, hazard.grid_id)
        assert grid.active_to is None and grid.code in split.added
    assert outcome["value"] == f"YH{YEAR}-0001"


def test_a_create_waits_for_an_edit_holding_the_park(engine):
    """The exclusive park lock of an edit keeps creates out until it ends (PostgreSQL);
    SQLite's one writer does the same."""
    build_park(engine, users=False)
    with session_scope(engine, write=True) as edit:
        park = get_park(edit, "T", lock=True)
        park.name = "改名的园区"  # an edit's write: the park's version steps
        edit.flush()
        thread, outcome = _in_thread(lambda: _create(engine, "T-004"))
        _wait_until_blocked(engine)
        assert "value" not in outcome
    thread.join(120)
    assert outcome.get("value") == f"YH{YEAR}-0001", outcome


def test_imports_and_given_numbers_keep_the_counter_ahead(engine):
    build_park(engine, users=False)
    points = [ledger.parse_point(*lonlat(g)) for g in ("T-001", "T-002", "T-003")]
    rows = gpd.GeoDataFrame({"code": [f"YH{YEAR}-0050", None, f"YH{YEAR - 1}-0003"],
                             "category": ["其他"] * 3,
                             "found_date": [FOUND.isoformat(), FOUND.isoformat(),
                                            f"{YEAR - 1}-05-01"]}, geometry=points, crs=4326)
    with session_scope(engine, write=True) as session:
        new, _ = import_hazards(session, get_park(session, "T"), rows, file="old.geojson")
        assert [h.code for h in new] == [f"YH{YEAR}-0050", f"YH{YEAR}-0051",
                                         f"YH{YEAR - 1}-0003"]
    assert _counters(engine) == [("YH", YEAR - 1, 3), ("YH", YEAR, 51)]
    assert _create(engine) == f"YH{YEAR}-0052"
    assert _create(engine, code=f"YH{YEAR}-0060") == f"YH{YEAR}-0060"
    assert _create(engine) == f"YH{YEAR}-0061"
    # a refused import (a duplicate number) leaves the counters as they were
    before = stored_snapshot(engine)
    with pytest.raises(ConflictError):
        with session_scope(engine, write=True) as session:
            import_hazards(session, get_park(session, "T"), rows.iloc[[1, 0]], file="again")
    assert stored_snapshot(engine) == before


def test_a_missing_counter_starts_after_the_stored_numbers(engine):
    """Rows written past the services (a bulk load) are counted when a year's counter starts."""
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        firm = request_service.get_enterprise(session, park, FIRM)
        session.execute(sa.insert(Hazard), [{
            "park_id": park.id, "code": code, "location": to_element(
                ledger.parse_point(*lonlat("T-001"))), "category": "其他", "level": "general",
            "description": "", "found_date": FOUND, "status": "found", "version": 1}
            for code in (f"YH{YEAR}-0041", f"YH{YEAR}-7", f"YH{YEAR + 1}-0099")])
        session.execute(sa.insert(ServiceRequest), [{
            "park_id": park.id, "enterprise_id": firm.id, "code": "SQ2024-0012",
            "category": "融资", "description": "d", "received_date": date(2024, 1, 2),
            "source": "phone", "status": "accepted", "resolution": "", "version": 1}])
    assert _counters(engine) == []
    assert _create(engine) == f"YH{YEAR}-0042"
    with session_scope(engine) as session:
        item = request_service.create_request(
            session, get_park(session, "T"), enterprise=FIRM, category="融资",
            description="贷款", source="phone", actor=ACTORS["inspector"],
            received_date=date(2024, 3, 1), today=date(2024, 3, 2))
        assert item.code == "SQ2024-0013"
    assert _counters(engine) == [("SQ", 2024, 13), ("YH", YEAR, 42)]


def test_the_counters_migration_continues_the_stored_numbers(fresh_url):  # noqa: F811
    engine = database_at_0001(
        fresh_url,
        "INSERT INTO hazards (id, park_id, grid_id, enterprise_id, code, location, "
        "category, level, description, found_date, status, created_at, version) VALUES "
        "(2, 1, 1, NULL, 'YH2025-0009', ST_GeomFromText('POINT(114.005 34.005)', 4326), "
        "'消防安全', 'general', '', '2025-02-02', 'found', '2025-02-02 00:00:00+00:00', 1)")
    try:
        schema.upgrade(engine)
        assert _counters(engine) == [("YH", 2025, 9)]
        with session_scope(engine, write=True) as session:
            park = get_park(session, "P")
            assert next_number(session, park, "YH", 2025) == "YH2025-0010"
            assert next_number(session, park, "SQ", 2025) == "SQ2025-0001"
    finally:
        engine.dispose()


def test_a_create_that_read_the_park_locked_keeps_an_edit_waiting(engine):
    """A create that read the park ``lock="share"`` (as the API does) needs no second
    look at its version: on PostgreSQL a grid edit waits for the create to commit, then
    moves the new hazard into the piece that holds it; SQLite's one writer orders them
    either way, and the outcome is the same."""
    from geodata.services import edits

    build_park(engine, users=False)
    with session_scope(engine) as create:
        park = get_park(create, "T", lock="share")

        def edit():
            with session_scope(engine) as session:
                return edits.split_grid(session, get_park(session, "T"), "T-001", parts=2,
                                        actor="planner")

        thread, outcome = _in_thread(edit)
        _wait_until_blocked(engine)
        if engine.dialect.name == "postgresql":
            assert thread.is_alive() and not outcome  # the edit waits for the shared lock
        code = ledger.create_hazard(create, park, point=ledger.parse_point(*lonlat("T-001")),
                                    category="其他", actor=ACTORS["inspector"],
                                    found_date=FOUND, park_locked=True).code
    thread.join(120)
    assert "error" not in outcome, outcome
    with session_scope(engine) as session:
        hazard = session.execute(sa.select(Hazard)).scalar_one()
        grid = session.get(Grid, hazard.grid_id)
        assert grid.active_to is None and grid.code in outcome["value"].added
    assert code == f"YH{YEAR}-0001"


@pytest.mark.parametrize("backend", ["postgis"], indirect=True)
def test_numbers_formatted_in_sql_are_the_python_ones(engine):
    """PostgreSQL numbers a create in its INSERT (``insert_numbered``): the same text as
    :func:`geodata.domains.ledger_number`, past 4 digits too."""
    seqs = [1, 9, 10, 999, 1000, 9999, 10000, 99999, 123456, domains.LEDGER_SEQ_MAX]
    with engine.connect() as conn:
        got = [conn.execute(sa.select(sql_ledger_number(sa.literal("YH2025-"), sa.literal(n))))
               .scalar() for n in seqs]
    assert got == [domains.ledger_number("YH", 2025, n, "T") for n in seqs]


def _stored(engine, code):
    """The hazard ``code``'s row and its events, without the values every row has its own of."""
    own = {"id", "code", "created_at", "hazard_id", "at"}
    with session_scope(engine) as session:
        hazard = session.execute(sa.select(Hazard.__table__).where(Hazard.code == code)).one()
        events = session.execute(sa.select(HazardEvent.__table__).where(
            HazardEvent.hazard_id == hazard.id)).all()
    return ({k: v for k, v in hazard._mapping.items() if k not in own},
            [{k: v for k, v in e._mapping.items() if k not in own} for e in events])


def test_a_create_numbered_in_its_insert_stores_what_the_general_path_stores(engine):
    """The first create of a year makes the counter row (the general path); on PostgreSQL
    the next one is numbered, inserted and given its first event in one statement.  Both
    store the same hazard and event, and the object in the session reads as stored."""
    build_park(engine, users=False)
    first = _create(engine, "T-002", description="灭火器过期")
    with session_scope(engine) as session:
        hazard = ledger.create_hazard(session, get_park(session, "T"),
                                      point=ledger.parse_point(*lonlat("T-002")),
                                      category="其他", actor=ACTORS["inspector"],
                                      found_date=FOUND, description="灭火器过期")
        held = {k: getattr(hazard, k) for k in ("id", "code", "version", "created_at", "status")}
    assert (first, held["code"]) == (f"YH{YEAR}-0001", f"YH{YEAR}-0002")
    assert _stored(engine, first) == _stored(engine, held["code"])
    with session_scope(engine) as session:
        stored = session.get(Hazard, held["id"])
        assert {k: getattr(stored, k) for k in held} == held
    assert _counters(engine) == [("YH", YEAR, 2)]


def test_a_request_numbered_in_its_insert_stores_what_the_general_path_stores(engine):
    """The request ledger takes its numbers the same way (one statement on PostgreSQL
    once the year's counter exists)."""
    build_park(engine, users=False)
    codes = []
    for _ in range(2):
        with session_scope(engine) as session:
            item = request_service.create_request(
                session, get_park(session, "T"), enterprise=FIRM, category="融资",
                description="贷款", source="phone", actor=ACTORS["inspector"],
                received_date=date(2024, 3, 1), today=date(2024, 3, 2))
            codes.append((item.code, item.version, item.status))
    assert codes == [("SQ2024-0001", 1, "accepted"), ("SQ2024-0002", 1, "accepted")]
    own = {"id", "code", "created_at", "request_id", "at"}
    with session_scope(engine) as session:
        rows = session.execute(sa.select(ServiceRequest.__table__).order_by(
            ServiceRequest.id)).all()
        events = session.execute(sa.select(RequestEvent.__table__).order_by(
            RequestEvent.id)).all()
        history = [len(session.get(ServiceRequest, r.id).events) for r in rows]
    first, second = ({k: v for k, v in r._mapping.items() if k not in own} for r in rows)
    assert first == second and history == [1, 1]
    assert [{k: v for k, v in e._mapping.items() if k not in own} for e in events] == [
        {"actor": "inspector", "from_status": None, "to_status": "accepted", "action": "accept",
         "note": "贷款", "satisfaction": None}] * 2
    assert _counters(engine) == [("SQ", 2024, 2)]
