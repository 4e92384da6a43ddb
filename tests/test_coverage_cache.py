"""The coverage report is cached per state of the park's grids and boundary, on both backends.

``park_coverage_stamps`` is the key: database triggers (migration 0013) give
it a fresh value whenever a grid of the park is inserted or deleted or its
geometry, code, parent, level, retired state or park changes, and whenever
the park's boundary or metric CRS changes, whoever writes.  These tests
write through the edit services and through raw SQL (as QGIS does), and
check that the stamp changes exactly then, that the cached answer of
``/api/parks/<code>/coverage`` and of the editor's state equals a fresh
``check_park`` after each write, that the ETag follows the stamp, that a
raw writer beside a grid edit is a wait and not a deadlock, and that the
cache is bounded.
"""

import threading
from datetime import date

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geodata.coverage import CoverageReport
from geodata.services import coverage, edits
from geodata.services.parks import get_park, import_parks
from geodata.storage import session_scope
from tests.conftest import metric_box
from tests.ledger_helpers import build_park
from tests.test_hidden_cache import _blocked_or_done, _sql
from webmap import create_app


def _stamps(engine):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT code, s.stamp FROM parks LEFT JOIN park_coverage_stamps s "
            "ON s.park_id = parks.id")).all())


def _fresh(engine, code="T"):
    """``gridmap check``'s findings from scratch, as the route's FeatureCollection."""
    with session_scope(engine) as session:
        return coverage.check_park(session, get_park(session, code))[1].to_geojson()


def _geom(statement_box):
    return {"wkt": statement_box.wkt}


@pytest.fixture
def parks(engine):
    """Park T (grids T-001..T-004 tiling a 1 km square) and park U beside it, no grids."""
    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        import_parks(session, gpd.GeoDataFrame(
            [{"code": "U", "name": "邻园", "division_code": "411621"}],
            geometry=[metric_box(2000, 0, 3000, 1000)], crs=4326))
    coverage.clear_report_cache()
    return engine, tokens


#: Raw writes (QGIS, a script) and whether each renews park T's stamp; none touches U's.
RAW_WRITES = [
    ("geometry", "UPDATE grids SET geom = ST_Multi(ST_GeomFromText(:wkt, 4326)) "
     "WHERE code = 'T-001'", _geom(metric_box(0, 500, 480, 1000)), True),
    ("name and kind", "UPDATE grids SET name = '改名', kind = 'area' WHERE code = 'T-001'",
     {}, False),
    ("retire", "UPDATE grids SET active_to = :day WHERE code = 'T-002'",
     {"day": date(2026, 11, 1)}, True),
    ("restore", "UPDATE grids SET active_to = NULL WHERE code = 'T-002'", {}, True),
    ("code", "UPDATE grids SET code = 'T-009' WHERE code = 'T-004'", {}, True),
    ("insert", "INSERT INTO grids (park_id, parent_id, code, name, level, kind, geom, area_m2, "
     "active_from, version) SELECT id, NULL, 'T-010', '新格', 1, 'area', "
     "ST_Multi(ST_GeomFromText(:wkt, 4326)), 1.0, '2026-01-01', 1 FROM parks WHERE code = 'T'",
     _geom(metric_box(480, 500, 500, 1000)), True),
    ("parent", "UPDATE grids SET parent_id = (SELECT id FROM grids WHERE code = 'T-003') "
     "WHERE code = 'T-010'", {}, True),
    ("level", "UPDATE grids SET level = 2 WHERE code = 'T-010'", {}, True),
    ("delete", "DELETE FROM grids WHERE code = 'T-010'", {}, True),
    ("boundary", "UPDATE parks SET boundary = ST_Multi(ST_GeomFromText(:wkt, 4326)) "
     "WHERE code = 'T'", _geom(metric_box(0, 0, 1000, 1010)), True),
    ("metric CRS", "UPDATE parks SET metric_epsg = 32650 WHERE code = 'T'", {}, True),
    ("park name", "UPDATE parks SET name = '新名' WHERE code = 'T'", {}, False),
]


def test_every_change_the_check_reads_renews_the_stamp_and_nothing_else_does(parks):
    engine, _ = parks
    seen = [_stamps(engine)]
    assert all(isinstance(v, int) for v in seen[0].values())  # every park has one
    for what, statement, params, renews in RAW_WRITES:
        _sql(engine, statement, **params)
        after = _stamps(engine)
        assert (after["T"] != seen[-1]["T"]) == renews, what
        assert after["U"] == seen[-1]["U"], what
        if renews:  # never a stamp seen before
            assert all(after["T"] not in old.values() for old in seen), what
        seen.append(after)
    with session_scope(engine, write=True) as session:
        edits.split_grid(session, get_park(session, "T"), "T-003", parts=2, actor="planner",
                         reason="test")
    assert _stamps(engine)["T"] != seen[-1]["T"]
    seen.append(_stamps(engine))
    with pytest.raises(RuntimeError):  # a rolled-back write leaves the stamp as it was
        with session_scope(engine, write=True) as session:
            session.execute(sa.text("UPDATE grids SET active_to = '2026-11-02' "
                                    "WHERE code = 'T-001'"))
            raise RuntimeError("rolled back")
    assert _stamps(engine) == seen[-1]
    with session_scope(engine, write=True) as session:  # a new park has its own stamp
        import_parks(session, gpd.GeoDataFrame(
            [{"code": "V", "name": "新园", "division_code": "411621"}],
            geometry=[metric_box(4000, 0, 5000, 1000)], crs=4326))
    assert _stamps(engine)["V"] not in (None, *(s for old in seen for s in old.values()))


def test_the_cached_answer_follows_every_write(parks, db_url, monkeypatch):
    """After each kind of write the route's answer equals a fresh check, computed once per
    write; the ETag is the stamp: 304 while it holds, 200 once the grids changed."""
    engine, tokens = parks
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    runs, built = [], []
    check = coverage.check_coverage
    monkeypatch.setattr(coverage, "check_coverage",
                        lambda *a, **k: runs.append(1) or check(*a, **k))
    to_geojson = CoverageReport.to_geojson
    monkeypatch.setattr(CoverageReport, "to_geojson",
                        lambda self: built.append(1) or to_geojson(self))

    def answer(**headers):
        response = client.get("/api/parks/T/coverage", headers={**auth, **headers})
        assert response.status_code == 200, response.data
        body = response.get_json()
        return {"type": body["type"], "features": body["features"]}, response.headers["ETag"]

    def service_edit():
        with session_scope(engine, write=True) as session:
            edits.split_grid(session, get_park(session, "T"), "T-001", parts=2,
                             actor="planner", reason="test")

    try:
        first, etag = answer()
        assert first == _fresh(engine) and first["features"] == []
        writes = [(what, lambda s=statement, p=params: _sql(engine, s, **p))
                  for what, statement, params, renews in RAW_WRITES if renews]
        writes.insert(1, ("split through the service", service_edit))
        for what, write in writes:
            write()
            runs.clear()
            built.clear()
            got, new_etag = answer(**{"If-None-Match": etag})  # stale ETag: the new answer
            # The park was checked and its features built once after the write ...
            assert len(runs) == len(built) == 1, what
            assert got == _fresh(engine), what
            assert new_etag != etag, what
            etag = new_etag
            runs.clear()
            built.clear()
            assert answer()[0] == got and runs == built == [], what  # ... then kept
            again = client.get("/api/parks/T/coverage",
                               headers={**auth, "If-None-Match": etag})
            assert again.status_code == 304 and again.headers["ETag"] == etag, what
        assert any(f["properties"]["problem"] == "gap" for f in got["features"])
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_the_editor_state_uses_the_cached_report(parks, db_url, monkeypatch):
    """The editor's park-wide status (``/edits/state`` without bbox) is the cached report's,
    and follows a raw geometry change."""
    engine, tokens = parks
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tokens['planner']}"}
    runs = []
    check = coverage.check_coverage
    monkeypatch.setattr(coverage, "check_coverage",
                        lambda *a, **k: runs.append(1) or check(*a, **k))
    try:
        def state():
            response = client.get("/api/parks/T/edits/state", headers=auth)
            assert response.status_code == 200, response.data
            return response.get_json()
        assert state()["coverage"]["valid"] is True
        what, statement, params, _ = RAW_WRITES[0]
        _sql(engine, statement, **params)
        runs.clear()
        body = state()
        assert body["coverage"]["valid"] is False and body["coverage"]["gaps"] == 1
        assert len(runs) == 1
        assert [f["properties"]["problem"] for f in body["problems"]["features"]] == ["gap"]
        listed = client.get("/api/parks/T/coverage", headers=auth).get_json()["features"]
        assert len(runs) == 1  # the route answered from the editor's check
        assert listed == _fresh(engine)["features"]
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_a_raw_grid_writer_beside_a_grid_edit_is_a_wait_not_a_deadlock(parks, backend):
    """A grid edit (park row ``FOR UPDATE``, then its grids) and a writer outside the service
    (QGIS: one transaction, one UPDATE per feature) in the same park.

    The outside writer updates T-002, the edit updates T-001, the outside writer then
    updates T-001 and waits for the edit.  A stamp taken at each statement would make the
    edit wait on the outside writer's stamp while that one waits on the edit's grid:
    ``deadlock detected``.  Written at commit, it is a wait: both commit, in turn, and the
    stamp is renewed.  (SQLite has one writer at a time: the edit waits for the other.)
    """
    engine, _ = parks
    before = _stamps(engine)
    started, go, errors = threading.Event(), threading.Event(), []
    move = "UPDATE grids SET geom = ST_Multi(ST_GeomFromText(:wkt, 4326)) WHERE code = :code"

    def outside_writer():
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(move), {"code": "T-002",
                                             "wkt": metric_box(500, 500, 1000, 1000).wkt})
                started.set()
                if backend == "postgis":
                    go.wait()
                conn.execute(sa.text(move), {"code": "T-001",
                                             "wkt": metric_box(0, 500, 500, 1000).wkt})
        except Exception as exc:  # reported below: the assertion names it
            errors.append(exc)
        finally:
            started.set()

    writer = threading.Thread(target=outside_writer)
    writer.start()
    started.wait()
    try:
        with session_scope(engine, write=True) as session:
            if backend == "postgis":  # fail, not hang, if the edit had to wait for the stamp
                session.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
            get_park(session, "T", lock=True)
            session.execute(sa.text(move), {"code": "T-001",
                                            "wkt": metric_box(0, 500, 500, 1000).wkt})
            go.set()
            _blocked_or_done(engine, writer)
    finally:
        go.set()
        writer.join()
    assert errors == []
    after = _stamps(engine)
    assert after["T"] != before["T"] and after["U"] == before["U"]


def test_the_cache_is_bounded(parks, monkeypatch):
    """At most ``_reports.size`` reports are kept (one per park and tolerance); the newest
    answer from the cache."""
    engine, _ = parks
    monkeypatch.setattr(coverage._reports, "size", 2)
    with session_scope(engine) as session:
        park = get_park(session, "T")
        for tolerance in (0.01, 0.02, 0.03, 0.04):
            coverage.coverage_report(session, park, tolerance)
            assert len(coverage._reports) <= 2
        runs = []
        check = coverage.check_coverage
        monkeypatch.setattr(coverage, "check_coverage",
                            lambda *a, **k: runs.append(1) or check(*a, **k))
        coverage.coverage_report(session, park, 0.04)
        assert runs == []
        coverage.coverage_report(session, park, 0.01)
        assert runs == [1] and len(coverage._reports) == 2
