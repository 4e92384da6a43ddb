"""The stateless web tier: gunicorn workers that share sessions and login limits; health checks.

Real processes only: ``gridmap serve --workers 2`` (gunicorn) as a subprocess,
a throwaway Debian ``redis-server`` on a free port, and both database
backends.  Each request goes over its own TCP connection to a worker chosen
by pid (the test asks the operating system which worker accepted the
connection), so "the other worker" is certain, not left to chance.
"""

import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from geodata import schema
from geodata.config import Settings
from geodata.errors import ConfigError
from geodata.services.users import DEMO_ACCOUNTS, create_demo_accounts
from geodata.storage import make_engine, session_scope
from tests.browser import ARTIFACTS, LiveServer, free_port
from webmap import create_app

SECRET = "webtier-test-secret-0123456789abcdef"
LIMIT = 3
STARTUP_S = 60  # how long a server may take to come up (as tests/browser.py)


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway ``redis-server`` on a free port (no persistence); its URL."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("needs Debian redis-server")  # a failure under CI (tests/conftest.py)
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / f"redis-{port}.log", "w") as log:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)],
                                stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait()


@pytest.fixture
def accounts_url(db_url):
    """``db_url`` holding the demo accounts (one per role)."""
    engine = make_engine(db_url)
    with session_scope(engine, write=True) as session:
        create_demo_accounts(session)
    engine.dispose()
    return db_url


@pytest.fixture
def serve_workers(accounts_url):
    """Start ``gridmap serve --workers 2 --threads 2`` with ``env``; stopped at the end."""
    servers = []

    def start(**env):
        server = LiveServer(accounts_url, args=("--workers", "2", "--threads", "2"), env={
            "GRIDMAP_LOGIN_RATE_LIMIT": f"{LIMIT} per hour", **env})
        servers.append(server)
        return Workers(server)

    yield start
    for server in servers:
        server.stop()


class Workers:
    """Requests to one chosen gunicorn worker each, over a new TCP connection, with a cookie."""

    def __init__(self, server):
        import psutil

        self.server, self.cookie = server, None
        master = psutil.Process(server.proc.pid)
        deadline = time.monotonic() + STARTUP_S
        while len(master.children()) < 2:
            assert time.monotonic() < deadline, "gunicorn did not fork 2 workers"
            time.sleep(0.1)
        self.processes = master.children()
        self.pids = [p.pid for p in self.processes]

    def _owner(self, conn):
        """The pid of the worker that accepted ``conn`` (waits until one has)."""
        client = conn.sock.getsockname()
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            for process in self.processes:
                if any(c.raddr and tuple(c.raddr) == client
                       for c in process.net_connections(kind="tcp")):
                    return process.pid
            time.sleep(0.02)
        raise AssertionError("no worker accepted the connection")

    def connect(self, worker):
        """A new connection that worker number ``worker`` (0 or 1) has accepted."""
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port)
            conn.connect()
            if self._owner(conn) == self.pids[worker]:
                return conn
            conn.close()
        raise AssertionError(f"worker {self.pids[worker]} accepted no connection")

    def request(self, worker, method, path, form=None):
        """Send one request to ``worker``; keep the session cookie; return (status, text)."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for _ in range(5):
            conn = self.connect(worker)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read().decode()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gthread drops a connection that sends nothing for its keepalive time (2 s),
                # which a slow machine can exceed between connect and send.  Nothing was
                # processed then, so sending again is safe.
                continue
            finally:
                conn.close()
        else:
            raise AssertionError(f"worker {self.pids[worker]} dropped 5 connections unanswered")
        for header in response.headers.get_all("Set-Cookie") or []:
            morsel = SimpleCookie(header).get("session")
            if morsel is not None:
                self.cookie = f"session={morsel.value}"
        return response.status, text

    def login(self, worker, user, password, form_worker=None):
        """Get the login form (CSRF token) from ``form_worker`` and post it to ``worker``."""
        _, page = self.request(worker if form_worker is None else form_worker, "GET", "/login")
        return self.request(worker, "POST", "/login", form={
            "username": user, "password": password, "next": "", "csrf_token": _csrf_token(page)})


def _csrf_token(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _failed_logins(workers, attempts):
    """Post wrong passwords alternately to worker 0 and 1; return [(worker, status)]."""
    return [(i % 2, workers.login(i % 2, "viewer", "wrong-password", form_worker=0)[0])
            for i in range(attempts)]


def test_login_limit_is_shared_by_workers_through_redis(serve_workers, redis_url):
    workers = serve_workers(GRIDMAP_RATELIMIT_STORAGE_URI=redis_url, GRIDMAP_SECRET_KEY=SECRET)
    for worker, pid in enumerate(workers.pids):
        status, text = workers.request(worker, "GET", "/readyz")
        assert status == 200 and f'"pid":{pid}' in text.replace(" ", "")
    # Alternating workers 0, 1, 0, ...: LIMIT attempts in all are checked (401), then
    # both refuse (429).  With per-process counters each would accept LIMIT (see below).
    outcomes = _failed_logins(workers, 2 * LIMIT + 2)
    assert outcomes == [(i % 2, 401 if i < LIMIT else 429) for i in range(2 * LIMIT + 2)]


def test_memory_storage_limits_each_worker_on_its_own(serve_workers):
    """The control for the test above: the same requests with per-process counters."""
    workers = serve_workers(GRIDMAP_RATELIMIT_STORAGE_URI="memory://", GRIDMAP_SECRET_KEY=SECRET)
    outcomes = _failed_logins(workers, 2 * LIMIT + 2)
    assert outcomes == [(i % 2, 401 if i < 2 * LIMIT else 429) for i in range(2 * LIMIT + 2)]
    assert "counts login attempts on its own" in workers.server.log.read_text()


@pytest.mark.parametrize("secret", [SECRET, ""], ids=["secret-set", "secret-unset"])
def test_session_from_one_worker_is_accepted_by_the_other(serve_workers, redis_url, secret):
    # Unset, the serve process makes one key and its forked workers all use it.
    workers = serve_workers(GRIDMAP_RATELIMIT_STORAGE_URI=redis_url, GRIDMAP_SECRET_KEY=secret)
    assert workers.request(1, "GET", "/api/hazards")[0] == 401
    # The form (and its CSRF token) comes from worker 1, the login is posted to worker 0.
    status, _ = workers.login(0, "inspector", DEMO_ACCOUNTS["inspector"][1], form_worker=1)
    assert status == 302
    for worker in (1, 0):
        assert workers.request(worker, "GET", "/api/hazards")[0] == 200
    assert ("GRIDMAP_SECRET_KEY is not set" in workers.server.log.read_text()) == (not secret)


# --- /healthz and /readyz, in process, on both backends ------------------------------------

@pytest.fixture
def empty_url(backend, request, tmp_path):
    """A reachable database without the gridmap schema."""
    if backend == "spatialite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
        engine = make_engine(url, create=True)
        with engine.connect():  # the file exists, without the schema
            pass
        engine.dispose()
        return url
    base = sa.engine.make_url(request.getfixturevalue("postgis_url"))
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql('DROP DATABASE IF EXISTS "gridmap_webtier_empty" WITH (FORCE)')
        conn.exec_driver_sql('CREATE DATABASE "gridmap_webtier_empty"')
    admin.dispose()
    return base.set(database="gridmap_webtier_empty").render_as_string(hide_password=False)


def _probe(url):
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    client = app.test_client()
    try:
        return client.get("/healthz"), client.get("/readyz")
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_ready_when_schema_is_at_head(db_url):
    health, ready = _probe(db_url)
    assert health.status_code == 200 and health.json == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json["status"] == "ready" and ready.json["revision"] == schema.head_revision()


def test_not_ready_without_schema(empty_url):
    health, ready = _probe(empty_url)
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    error = ready.json["error"]
    assert error["code"] == "schema_missing" and "gridmap init-db" in error["message"]


def test_not_ready_with_an_older_schema(empty_url):
    engine = make_engine(empty_url)
    schema.upgrade(engine, "0001")
    engine.dispose()
    health, ready = _probe(empty_url)
    assert health.status_code == 200 and ready.status_code == 503
    error = ready.json["error"]
    assert error["code"] == "schema_outdated" and "gridmap init-db" in error["message"]
    assert error["details"] == {"revision": "0001", "head": schema.head_revision()}


def test_routes_answer_503_on_a_schema_a_migration_behind(empty_url):
    """Every route that reads the database answers 503 ``schema_outdated`` (with
    ``Retry-After``) on a schema one migration behind, never a 500 from a missing
    column; once ``init-db`` has upgraded it, the same running app answers."""
    engine = make_engine(empty_url)
    behind = schema.shipped_revisions()[schema.head_revision()]
    schema.upgrade(engine, behind)
    app = create_app({"DATABASE_URL": empty_url, "TESTING": True})
    client = app.test_client()
    try:
        for path in ("/api/parks", "/api/hazards", "/", "/parks/FGKFQ/map", "/ogcapi/collections"):
            answer = client.get(path, headers={"Accept": "application/json"})
            assert answer.status_code == 503 and answer.headers["Retry-After"], path
            if answer.is_json:
                error = answer.json["error"]
                assert error["code"] == "schema_outdated", path
                assert "gridmap init-db" in error["message"]
        assert schema.current_revision(engine) == behind  # nothing upgraded it meanwhile
        schema.upgrade(engine)
        assert client.get("/api/parks").status_code == 200
    finally:
        app.extensions["gridmap.engine"].dispose()
        engine.dispose()


def test_not_ready_when_database_is_unreachable(backend, tmp_path):
    if backend == "spatialite":
        (tmp_path / "broken.sqlite").write_bytes(b"not a database" * 100)
        url = f"sqlite:///{tmp_path / 'broken.sqlite'}"
    else:
        url = f"postgresql+psycopg://gm:s3cret@127.0.0.1:{free_port()}/gridmap"
    health, ready = _probe(url)
    assert health.status_code == 200 and health.json == {"status": "ok"}
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    error = ready.json["error"]
    assert error["code"] == "database_unavailable" and "s3cret" not in ready.get_data(as_text=True)


# --- GRIDMAP_RATELIMIT_STORAGE_URI -------------------------------------------------------

def test_login_stays_limited_in_memory_while_redis_is_down(accounts_url):
    app = create_app({"DATABASE_URL": accounts_url, "TESTING": True,
                      "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0",
                      "LOGIN_RATE_LIMIT": f"{LIMIT} per hour"})
    client = app.test_client()
    statuses = []
    for _ in range(LIMIT + 2):
        token = _csrf_token(client.get("/login").get_data(as_text=True))
        statuses.append(client.post("/login", data={
            "username": "viewer", "password": "wrong-password", "csrf_token": token}).status_code)
    app.extensions["gridmap.engine"].dispose()
    assert statuses == [401] * LIMIT + [429] * 2


@pytest.mark.parametrize("uri", ["mongodb://db/0", "redis://", "127.0.0.1:6379", "memcached://m",
                                 "redis:/localhost"])
def test_bad_rate_limit_storage_is_refused(uri):
    with pytest.raises(ConfigError, match="GRIDMAP_RATELIMIT_STORAGE_URI") as caught:
        Settings.from_env({"GRIDMAP_RATELIMIT_STORAGE_URI": uri})
    assert caught.value.details == {"setting": "GRIDMAP_RATELIMIT_STORAGE_URI"}


def test_bad_rate_limit_storage_stops_serve_with_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "geodata.cli", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}",
         "serve", "--workers", "2"], capture_output=True, text=True,
        env={**os.environ, "GRIDMAP_RATELIMIT_STORAGE_URI": "mongodb://admin:hunter2@db/0"})
    assert result.returncode == 2
    assert "GRIDMAP_RATELIMIT_STORAGE_URI" in result.stderr and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
