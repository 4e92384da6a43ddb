"""A database lost mid-request gives a JSON 503, never a plain-text 500, and the app recovers.

On PostGIS the app's own backend is terminated with ``pg_terminate_backend``
from a second connection: after the request's last query (so ending its
transaction in ``session.close()`` fails), and between the INSERT and the
COMMIT of a real hazard create.  On SpatiaLite, which has no server to lose,
the request's SQLite connection is closed underneath the session, so ending
the transaction fails in the driver the same way.
"""

import pytest
import sqlalchemy as sa
from flask import jsonify

from tests.conftest import table_counts
from tests.ledger_helpers import build_park
from webmap import create_app
from webmap.db import get_session


def _lose_connection(session, engine):
    """Break the connection under ``session`` for real, from outside the session."""
    if engine.dialect.name == "postgresql":
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as admin:
            # The timeout makes it wait until the backend has really exited.
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"),
                                 {"pid": pid}).scalar()
    else:
        session.connection().connection.dbapi_connection.close()


@pytest.fixture
def app(db_url, engine):
    tokens = build_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})

    @app.get("/lose-db")
    def lose_db():
        # A route that read something, so a transaction is open, then loses its connection.
        session = get_session()
        session.execute(sa.text("SELECT 1"))
        _lose_connection(session, engine)
        return jsonify({"read": True})

    app.tokens = tokens
    yield app
    app.extensions["gridmap.engine"].dispose()


def _is_json_503(response):
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_connection_lost_before_close_gives_json_503_then_recovers(app, engine):
    before = table_counts(engine)
    _is_json_503(app.test_client().get("/lose-db"))
    assert app.test_client().get("/api/parks/T").status_code == 200
    assert app.test_client().get("/healthz").status_code == 200
    assert table_counts(engine) == before


def test_connection_lost_between_insert_and_commit_stores_nothing(app, engine):
    before = table_counts(engine)
    lost = []

    # Before the commit that follows the inserts (the ORM's flush on SQLite, one
    # ``WITH ... INSERT`` statement on PostgreSQL), seen by the new row in the transaction;
    # an earlier commit (SQLite ends the read transaction before writing) is let through.
    @sa.event.listens_for(app.extensions["gridmap.sessions"], "before_commit")
    def _kill(session):
        events = session.execute(sa.text("SELECT count(*) FROM hazard_events")).scalar()
        if not lost and events > before["hazard_events"]:
            lost.append(events)
            _lose_connection(session, engine)

    from tests.ledger_helpers import lonlat

    lon, lat = lonlat("T-001")
    response = app.test_client().post(
        "/api/parks/T/hazards", json={"lon": lon, "lat": lat, "category": "消防安全"},
        headers={"Authorization": f"Bearer {app.tokens['inspector']}"})
    assert lost == [before["hazard_events"] + 1], "the create never inserted"
    _is_json_503(response)
    assert table_counts(engine) == before
    sa.event.remove(app.extensions["gridmap.sessions"], "before_commit", _kill)
    retry = app.test_client().post(
        "/api/parks/T/hazards", json={"lon": lon, "lat": lat, "category": "消防安全"},
        headers={"Authorization": f"Bearer {app.tokens['inspector']}"})
    assert retry.status_code == 201, retry.json
