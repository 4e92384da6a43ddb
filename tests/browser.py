"""Shared fixtures for the map tests: a loaded demo database per backend, a live
``gridmap serve`` subprocess and a headless Chromium driven by Selenium.

Import the fixtures into a test module with
``from browser import demo_url, live_server, chrome  # noqa: F401``.
The demo databases are built once per session and must be used read-only.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from geodata import schema
from geodata.storage import make_engine

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
DEMO_TODAY = date(2025, 11, 30)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", "--window-size=1400,1000"]


def _load(url):
    from geodata.services.demo_loader import load_demo

    engine = make_engine(url, create=True)
    schema.upgrade(engine)
    load_demo(engine, today=DEMO_TODAY)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return url


_DEMO_URLS = {}


def demo_database(request, tmp_path_factory, name):
    """Build (once per backend and name) a database holding the demo park; return its URL.

    pytest may set a parametrised session fixture up more than once when test
    order switches between its params; the database is built only the first
    time and reused after that.  ``request.param`` is the backend.
    """
    key = (request.param, name)
    if key in _DEMO_URLS:
        return _DEMO_URLS[key]
    if request.param == "spatialite":
        url = _load(f"sqlite:///{tmp_path_factory.mktemp(name) / (name + '.sqlite')}")
    else:
        url = _load(empty_postgis_database(request.getfixturevalue("postgis_url"), name))
    _DEMO_URLS[key] = url
    return url


def empty_postgis_database(base, name):
    """(Re)create the empty database ``name`` on the server of ``base``; return its URL."""
    admin = sa.create_engine(sa.engine.make_url(base).set(database="postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=["spatialite", "postgis"])
def demo_url(request, tmp_path_factory):
    """URL of a database holding the demo park (loaded once per backend; read-only)."""
    return demo_database(request, tmp_path_factory, "gridmap_map_demo")


def free_port():
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m geodata.cli --db URL serve --port P [ARGS]`` in a subprocess.

    ``command`` replaces ``python -m geodata.cli`` (an installed ``gridmap``),
    ``cwd`` the checkout as the working folder; ``port`` serves on a given
    port (the origin of an earlier server: a redeploy for the same browser).
    """

    def __init__(self, db_url, env=None, command=None, cwd=ROOT, args=(), port=None):
        self.db_url = db_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ARTIFACTS / f"serve-{self.port}.log"
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = open(self.log, "w")
        command = command or [sys.executable, "-m", "geodata.cli"]
        self.proc = subprocess.Popen(
            [*command, "--db", db_url, "serve", "--port", str(self.port), *args], cwd=cwd,
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gridmap serve exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gridmap serve did not answer within 60 s")

    def stop(self):
        """Terminate the server (by its own pid) and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def live_server(demo_url):
    """A running ``gridmap serve`` on the demo database of the current backend."""
    server = LiveServer(demo_url)
    yield server
    server.stop()


def make_driver():
    """A headless Chromium (Debian's binary and chromedriver) logging the JS console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="session")
def chrome():
    """A session-wide headless Chromium; skipped when the browser is not installed."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian chromium and chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("needs selenium")
    driver = make_driver()
    yield driver
    driver.quit()


def severe_console_errors(driver):
    """The SEVERE JS console messages logged since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def wait_ready(driver, timeout=30):
    """Wait until gridmap.js has filled the layers at least once."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return window.gridmap && window.gridmap.ready && window.gridmap.loads === 0 "
        "&& !window.gridmap.scheduled"))


def screenshot(driver, name):
    """Save a PNG screenshot under ``test-artifacts/`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


PAYLOAD_NAME = "<img src=x onerror=alert(1)>"
PAYLOAD_NOTE = "${alert(1)}"
PAYLOAD_STAFF = "<script>alert(2)</script>"
PAYLOAD_PARK = "测试{{7*7}}园区 <b>X</b>"  # folium once ran park names as templates (49)
PAYLOAD_USER = "<svg onload=alert(5)>{{7*7}}"  # a planner's display name
PAYLOAD_PLANNER = ("hostile.planner", "planner-pass-123")  # user names are a safe alphabet


def load_payload_park(engine):
    """Store a 2 x 2 grid park whose user text is hostile (stored verbatim).

    The park is named :data:`PAYLOAD_PARK`; the enterprise in grid ``X-001``
    is named :data:`PAYLOAD_NAME`, a hazard there has the note
    :data:`PAYLOAD_NOTE` and the grid chief is named :data:`PAYLOAD_STAFF`.
    A second enterprise sits inside the first one's site (a hidden unit named
    with a backtick payload).  A planner's display name is :data:`PAYLOAD_USER`.
    """
    from datetime import timedelta

    import geopandas as gpd
    import pandas as pd
    import shapely

    from geodata.creditcode import make_credit_code
    from geodata.services.grids import import_grids
    from geodata.services.hazards import import_hazards
    from geodata.services.parks import import_parks
    from geodata.services.sites import import_enterprises
    from geodata.services.staff import import_staff
    from geodata.services.users import add_user
    from geodata.storage import session_scope
    from tests.conftest import metric_box, metric_point

    cell = 400
    with session_scope(engine, write=True) as session:
        parks = gpd.GeoDataFrame([{"code": "X", "name": PAYLOAD_PARK,
                                   "division_code": "411621"}],
                                 geometry=[metric_box(0, 0, 2 * cell, 2 * cell)], crs=4326)
        (park,), _ = import_parks(session, parks)
        cells = [(c, r) for r in (1, 0) for c in (0, 1)]
        grids = gpd.GeoDataFrame(
            [{"code": f"X-{i + 1:03d}", "name": f"网格{i + 1}"} for i in range(4)],
            geometry=[shapely.MultiPolygon([metric_box(c * cell, r * cell, (c + 1) * cell,
                                                       (r + 1) * cell)]) for c, r in cells],
            crs=4326)
        import_grids(session, park, grids)
        host, unit = make_credit_code("411621", 1), make_credit_code("411621", 2)
        ents = gpd.GeoDataFrame([
            {"name": PAYLOAD_NAME, "credit_code": host, "host_credit_code": None},
            {"name": "`${alert(3)}` javascript:alert(4)", "credit_code": unit,
             "host_credit_code": None}],
            geometry=[metric_box(50, 450, 350, 750), metric_box(100, 500, 200, 600)], crs=4326)
        import_enterprises(session, park, ents)
        import_staff(session, park, pd.DataFrame([
            {"grid_code": "X-001", "name": PAYLOAD_STAFF, "phone": "13800000000",
             "role": "grid_chief", "published": True}]))
        today = date.today()
        found = today - timedelta(days=30)
        # a ledger number carries its found date's year
        hazards = gpd.GeoDataFrame([
            {"code": f"YH{found.year}-0001", "category": "消防", "level": "major",
             "status": "rectifying", "description": PAYLOAD_NOTE, "found_date": found,
             "deadline": today - timedelta(days=3)},
            {"code": f"YH{today.year}-0002", "category": PAYLOAD_NAME, "level": "general",
             "status": "found", "description": "ok", "found_date": today,
             "deadline": today + timedelta(days=9)}],
            geometry=[metric_point(300, 700), metric_point(600, 100)], crs=4326)
        import_hazards(session, park, hazards)
        add_user(session, *PAYLOAD_PLANNER, "planner", display_name=PAYLOAD_USER)
    return "X"


def submit_login(driver, base, username, password, next_path=None):
    """Fill in and send the real login form; the caller waits for where it lands."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login" + (f"?next={quote(next_path)}" if next_path else ""))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
