"""Fixtures: every database test runs on SpatiaLite and on a real PostGIS.

PostGIS comes from ``GRIDMAP_TEST_POSTGIS_URL`` or from a throwaway cluster
started for the session (:mod:`geodata.pgcluster`; one per pytest-xdist worker).
Each test gets an empty, migrated database: a copied SpatiaLite template file,
or the session's PostGIS database truncated.  Under ``CI`` a skipped test
counts as a failure, so a missing PostGIS or browser can never pass silently.
"""

import os
import re
import shutil

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from click.testing import CliRunner

from geodata import schema
from geodata.cli import main
from geodata.crs import to_storage
from geodata.models import Base
from geodata.pgcluster import ThrowawayCluster
from geodata.storage import make_engine, session_scope

DEMO_LON, DEMO_LAT = 114.39, 34.06
METRIC_EPSG = 4547  # CGCS2000 / 3-degree Gauss-Kruger CM 114E
# Easting/northing of the demo location in EPSG:4547, the origin of metric test shapes.
ORIGIN = (535_000.0, 3_768_000.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, turn skips into failures (PostGIS and the browser are required there)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which counts as a failure: {report.longrepr}"


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
    """``GRIDMAP_DATA_DIR`` for the whole run (servers started in subprocesses too).

    No test reads or writes the real per-user data folder.
    """
    path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRIDMAP_DATA_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def postgis_url():
    """URL of a migrated PostGIS database for the session."""
    external = os.environ.get("GRIDMAP_TEST_POSTGIS_URL")
    if external and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        # Each test empties the database: parallel workers would empty each other's.
        pytest.fail("GRIDMAP_TEST_POSTGIS_URL is one database for one pytest process: "
                    "run with -n 0")
    if external:
        engine = make_engine(external)
        schema.upgrade(engine)
        engine.dispose()
        yield external
        return
    try:
        cluster = ThrowawayCluster().start()
    except Exception as exc:  # no binaries, or initdb failed: say why
        pytest.skip(f"no PostGIS available: {exc}")
    try:
        url = cluster.create_database("gridmap_test")
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def spatialite_template(tmp_path_factory):
    """A migrated SpatiaLite file copied for each test."""
    path = tmp_path_factory.mktemp("template") / "gridmap.sqlite"
    engine = make_engine(f"sqlite:///{path}", create=True)
    schema.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=["spatialite", "postgis"])
def backend(request):
    """The backend under test."""
    return request.param


@pytest.fixture
def db_url(request, backend, tmp_path):
    """URL of an empty, migrated database on ``backend``."""
    if backend == "spatialite":
        path = tmp_path / "gridmap.sqlite"
        shutil.copy(request.getfixturevalue("spatialite_template"), path)
        return f"sqlite:///{path}"
    empty_postgis_tables(request.getfixturevalue("postgis_cleaner"))
    return request.getfixturevalue("postgis_url")


@pytest.fixture(scope="session")
def demo_templates():
    """``{backend: URL}`` of a database holding the demo park, each loaded on first use."""
    return {}


@pytest.fixture
def demo_db_url(request, backend, tmp_path, tmp_path_factory, demo_templates):
    """URL of a new database on ``backend`` holding the demo park as of 2025-11-30.

    A copy (the file, or ``CREATE DATABASE ... TEMPLATE``) of one loaded once per
    session and backend: loading the demo takes seconds, a copy a fraction of one.
    The test may change its copy.
    """
    from tests.browser import _load, empty_postgis_database

    if backend == "spatialite":
        if backend not in demo_templates:
            demo_templates[backend] = _load(
                f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite'}")
        path = tmp_path / "gridmap.sqlite"
        shutil.copy(demo_templates[backend].removeprefix("sqlite:///"), path)
        return f"sqlite:///{path}"
    base = request.getfixturevalue("postgis_url")
    if backend not in demo_templates:
        demo_templates[backend] = _load(empty_postgis_database(base, "gridmap_demo_template"))
    admin = sa.create_engine(sa.engine.make_url(base).set(database="postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql('DROP DATABASE IF EXISTS "gridmap_demo_copy" WITH (FORCE)')
        conn.exec_driver_sql('CREATE DATABASE "gridmap_demo_copy" TEMPLATE "gridmap_demo_template"')
    admin.dispose()
    return sa.engine.make_url(base).set(database="gridmap_demo_copy").render_as_string(
        hide_password=False)


@pytest.fixture(scope="session")
def postgis_cleaner(postgis_url):
    """One engine for the session that empties the PostGIS test database before each test."""
    engine = make_engine(postgis_url)
    yield engine
    engine.dispose()


#: ``SELECT`` of the gridmap tables that hold rows: a UNION of one ``EXISTS`` per table.
_USED_TABLES = " UNION ALL ".join(
    f"SELECT '{t.name}' WHERE EXISTS (SELECT FROM {t.name})" for t in Base.metadata.sorted_tables)


def empty_postgis_tables(engine):
    """Empty every gridmap table and restart every sequence, as ``TRUNCATE <all> RESTART
    IDENTITY`` would.

    Only the tables that hold rows are truncated: a TRUNCATE gives each table and
    index new files, which cost ~60 ms per test for all 25 tables, most of them
    empty.  Sequences go back to their start (a test may expect id 1) whether
    their table holds rows or a rolled-back insert only advanced them.
    """
    with engine.begin() as conn:
        used = conn.exec_driver_sql(_USED_TABLES).scalars().all()
        if used:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(used)} CASCADE")
        conn.exec_driver_sql(
            "SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), "
            "start_value, false) FROM pg_sequences "
            "WHERE schemaname = current_schema() AND last_value IS NOT NULL")


@pytest.fixture
def engine(db_url):
    """An engine on the test database, disposed afterwards."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def runner(db_url):
    """Invoke ``gridmap --db <test db> ...`` in-process; returns a click Result."""
    cli = CliRunner()

    def invoke(*args):
        return cli.invoke(main, ["--db", db_url, *map(str, args)], catch_exceptions=False)

    return invoke


def metric_box(x0, y0, x1, y1, vertex_spacing_m=50):
    """A rectangle given in metres from :data:`ORIGIN`, returned in EPSG:4326.

    Edges get a vertex every ``vertex_spacing_m`` metres before projecting:
    a straight metric edge is curved in degrees, so boxes that share an edge
    (or lie along a park edge) only match exactly where they share vertices.
    """
    box = shapely.box(ORIGIN[0] + x0, ORIGIN[1] + y0, ORIGIN[0] + x1, ORIGIN[1] + y1)
    return to_storage(shapely.segmentize(box, vertex_spacing_m), METRIC_EPSG)


def metric_point(x, y):
    """A point given in metres from :data:`ORIGIN`, returned in EPSG:4326."""
    return to_storage(shapely.Point(ORIGIN[0] + x, ORIGIN[1] + y), METRIC_EPSG)


_CHANGES_ROWS = re.compile(r"\b(INSERT|UPDATE|DELETE)\b")


def writes_rows(statement):
    """Whether the SQL ``statement`` changes rows: an INSERT, UPDATE or DELETE, or a ``WITH``
    that holds one (PostgreSQL's create and transition, see geodata.services.numbering)."""
    head = statement.lstrip().upper()
    return head.startswith(("INSERT", "UPDATE", "DELETE")) or (
        head.startswith("WITH") and _CHANGES_ROWS.search(head) is not None)


def table_counts(engine):
    """Row count of every gridmap table: compared before and after a refused write."""
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                for t in Base.metadata.sorted_tables}


def stored_snapshot(engine):
    """Counts, the WKB of every stored geometry and the ledger counters, to prove nothing changed.

    A refused create must not advance a ledger counter either: the next number would skip one.
    """
    from geodata.models import Enterprise, Grid, Hazard, LedgerCounter, Park

    snapshot = table_counts(engine)
    with session_scope(engine) as session:
        snapshot["ledger_counters_rows"] = session.execute(
            sa.select(LedgerCounter.park_id, LedgerCounter.ledger, LedgerCounter.year,
                      LedgerCounter.last).order_by(LedgerCounter.park_id, LedgerCounter.ledger,
                                                   LedgerCounter.year)).all()
        for model, column in ((Park, Park.boundary), (Grid, Grid.geom),
                              (Enterprise, Enterprise.site), (Hazard, Hazard.location)):
            rows = session.execute(sa.select(model.id, sa.func.ST_AsBinary(column))
                                   .order_by(model.id)).all()
            snapshot[model.__tablename__ + "_geom"] = [(i, bytes(g)) for i, g in rows]
    return snapshot


@pytest.fixture
def rng():
    """A seeded random generator."""
    return np.random.default_rng(7)
