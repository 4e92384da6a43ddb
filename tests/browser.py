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

    engine = make_engine(url)
    schema.upgrade(engine)
    load_demo(engine, today=DEMO_TODAY)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return url


@pytest.fixture(scope="session", params=["spatialite", "postgis"])
def demo_url(request, tmp_path_factory):
    """URL of a database holding the demo park (loaded once per backend; read-only)."""
    if request.param == "spatialite":
        path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
        return _load(f"sqlite:///{path}")
    base = request.getfixturevalue("postgis_url")
    admin = sa.create_engine(sa.engine.make_url(base).set(database="postgres"),
                             isolation_level="AUTOCOMMIT")
    name = "gridmap_map_demo"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    return _load(url)


def free_port():
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m geodata.cli --db URL serve --port P`` in a subprocess."""

    def __init__(self, db_url, env=None):
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ARTIFACTS / f"serve-{self.port}.log"
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geodata.cli", "--db", db_url, "serve", "--port",
             str(self.port)], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
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
        "return window.gridmap && window.gridmap.ready && window.gridmap.loads === 0"))


def screenshot(driver, name):
    """Save a PNG screenshot under ``test-artifacts/`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
