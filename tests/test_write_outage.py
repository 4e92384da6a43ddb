"""The database lost or busy when a write commits, on every write route the OpenAPI document lists.

For each POST operation (JSON and multipart) the app's own connection is
broken for real (:func:`_break`: ``pg_terminate_backend`` on PostGIS, the
SQLite connection closed underneath on SpatiaLite) at the commit of the
transaction that wrote.  The answer must be the JSON 503
``database_unavailable`` with ``Retry-After``, nothing may be stored (rows
and photo files), and the same request sent again must succeed.  On SpatiaLite, a write that
meets another writer's lock beyond the busy timeout is 503 ``database_busy``
with the same guarantees.
"""

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import stored_snapshot, writes_rows
from tests.ledger_helpers import image_bytes, lonlat
from tests.test_conditional import BODIES, _ids
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_visits_api import visit_body
from webmap.api import openapi_document


def _firm():
    from geodata.creditcode import make_credit_code

    return make_credit_code("411621", 1)


def _photo():
    return {"data": {"photo": (io.BytesIO(image_bytes()), "现场.png")},
            "content_type": "multipart/form-data"}


#: ``path: (role, body factory or None for a photo upload)`` of every write; None: not run.
WRITES = {
    **{path: (role, body) for path, (role, body) in BODIES.items() if body},
    "/api/parks/{code}/edits/draw": None,  # needs uncovered ground: see test_edit_api
    "/api/parks/{code}/hazards": ("inspector", lambda: {
        "lon": lonlat("T-004")[0], "lat": lonlat("T-004")[1], "category": "消防安全",
        "description": "灭火器过期"}),
    "/api/parks/{code}/requests": ("admin", lambda: {
        "enterprise": _firm(), "category": "用地", "description": "用地问题",
        "source": "phone"}),
    "/api/parks/{code}/visits": ("inspector", visit_body),
    "/api/hazards/{hazard_id}/photos": ("inspector", None),
    "/api/visits/{visit_id}/photos": ("inspector", None),
}


def _break(conn, engine):
    """Lose the app's connection ``conn`` for real, from outside (see tests/test_db.py)."""
    raw = conn.connection.dbapi_connection
    if engine.dialect.name == "postgresql":
        pid = raw.info.backend_pid if hasattr(raw, "info") else raw.get_backend_pid()
        with engine.connect() as admin:
            # The timeout makes it wait until the backend has really exited.
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"),
                                 {"pid": pid}).scalar()
    else:
        raw.close()


def _post_paths():
    return {path for path, operations in openapi_document()["paths"].items()
            if "post" in operations}


def test_every_write_route_is_listed():
    assert set(WRITES) == _post_paths(), "give the new write route a body in WRITES"


@pytest.mark.parametrize("path", sorted(p for p, entry in WRITES.items() if entry))
def test_database_lost_at_the_commit_is_503_stores_nothing_and_the_retry_works(
        api, engine, tmp_path, path):  # noqa: F811
    ids = _ids(api)
    visit = api.call("POST", "/api/parks/T/visits", "inspector", visit_body()).json
    ids["visit_id"] = visit["id"]
    role, body = WRITES[path]
    url = path.format(**ids)

    def send():
        if body is None:
            return api.call("POST", url, role, **_photo())
        # a versioned write names the version of its resource (tests.test_conditional)
        headers = {"If-Match": api.call("GET", url.rsplit("/", 1)[0], "admin").headers[
            "ETag"]} if path in BODIES else None
        return api.call("POST", url, role, body(), headers=headers)

    photos = Path(api.app.config["GRIDMAP"].data_dir)
    files_before = sorted(p.name for p in photos.rglob("*") if p.is_file())
    before = stored_snapshot(engine)
    lost = []
    app_engine = api.app.extensions["gridmap.engine"]

    @sa.event.listens_for(app_engine, "before_cursor_execute")
    def _mark(conn, cursor, statement, *args):
        if writes_rows(statement):
            conn.info["wrote"] = True

    @sa.event.listens_for(app_engine, "rollback")
    def _forget(conn):
        conn.info.pop("wrote", None)

    @sa.event.listens_for(app_engine, "commit")
    def _kill(conn):
        # The commit of the transaction that wrote (SQLite first ends a read transaction).
        if conn.info.pop("wrote", False) and not lost:
            lost.append(True)
            _break(conn, engine)

    try:
        response = send()
    finally:
        for name, listener in (("before_cursor_execute", _mark), ("rollback", _forget),
                               ("commit", _kill)):
            sa.event.remove(app_engine, name, listener)
    assert lost, f"{path}: the write never reached its commit ({response.status_code})"
    assert response.status_code == 503, (path, response.get_data(as_text=True)[:300])
    assert response.json["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert stored_snapshot(engine) == before, path
    assert sorted(p.name for p in photos.rglob("*") if p.is_file()) == files_before, path
    retry = send()
    assert retry.status_code in (200, 201), (path, retry.json)


@pytest.fixture
def busy_api(api, db_url):  # noqa: F811
    """The API on a second app whose SQLite writers give up after 0.2 s."""
    from webmap import create_app

    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SQLITE_BUSY_TIMEOUT_S": 0.2,
                      "DATA_DIR": api.app.config["GRIDMAP"].data_dir})
    yield app
    app.extensions["gridmap.engine"].dispose()


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
@pytest.mark.parametrize("path", sorted(p for p, entry in WRITES.items() if entry))
def test_every_write_meeting_a_held_sqlite_lock_is_503_busy_and_stores_nothing(
        api, busy_api, engine, db_url, path):  # noqa: F811
    from geodata.storage import _sqlite_dbapi

    ids = _ids(api)
    ids["visit_id"] = api.call("POST", "/api/parks/T/visits", "inspector", visit_body()).json["id"]
    role, body = WRITES[path]
    url = path.format(**ids)
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    if path in BODIES:
        headers["If-Match"] = api.call("GET", url.rsplit("/", 1)[0], "admin").headers["ETag"]

    def send():
        client = busy_api.test_client()
        if body is None:
            return client.post(url, headers=headers, **_photo())
        return client.post(url, headers=headers, json=body())

    photos = Path(api.app.config["GRIDMAP"].data_dir)
    files_before = sorted(p.name for p in photos.rglob("*") if p.is_file())
    before = stored_snapshot(engine)
    holder = _sqlite_dbapi().connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer, holding SQLite's one write lock
        response = send()
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert response.status_code == 503, (path, response.get_data(as_text=True)[:300])
    assert response.json["error"]["code"] == "database_busy"
    assert response.headers["Retry-After"] == "5"
    assert stored_snapshot(engine) == before, path
    assert sorted(p.name for p in photos.rglob("*") if p.is_file()) == files_before, path
    retry = send()
    assert retry.status_code in (200, 201), (path, retry.json)


def test_every_read_losing_its_connection_is_503_and_the_next_works(api, engine):  # noqa: F811
    """Every GET of ``app.url_map``, its connection broken at its first, middle and last query."""
    from tests.test_http_surface import _rules, _samples, _url

    samples = _samples(api, engine)
    app_engine = api.app.extensions["gridmap.engine"]
    counted, plan = [], {}

    @sa.event.listens_for(app_engine, "before_cursor_execute")
    def _count(conn, cursor, statement, *args):
        counted.append(statement)
        if len(counted) == plan.get("at"):
            _break(conn, engine)

    try:
        for rule in _rules(api.app):
            if "GET" not in rule.methods or rule.endpoint in ("static", "maps.vendor",
                                                              "field.static"):
                continue
            url = _url(rule, samples)
            plan.clear()
            api.call("GET", url, "admin").close()  # warm: some answers cache what they read
            counted.clear()
            first = api.call("GET", url, "admin")
            first.close()
            total = len(counted)
            for at in sorted({1, (total + 1) // 2, total} - {0}):
                counted.clear()
                plan["at"] = at
                lost = api.call("GET", url, "admin")
                plan.clear()
                assert lost.status_code == 503, (url, at, total, lost.status_code,
                                                 lost.get_data(as_text=True)[:200])
                assert lost.json["error"]["code"] == "database_unavailable", (url, at)
                assert lost.headers["Retry-After"] == "5"
                again = api.call("GET", url, "admin")
                again.close()
                assert again.status_code == first.status_code, (url, at)
    finally:
        sa.event.remove(app_engine, "before_cursor_execute", _count)
