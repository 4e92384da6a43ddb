"""Issue 10, done when: a plain ``pip install`` of the wheel gives a working map.

Once per session the package is built as a wheel (``pip wheel``, from a copy
of the package's files, so no stale ``build/`` of the checkout leaks in) and
installed into a fresh virtual environment, its dependencies from the package
index, with a PATH that holds every command of the test's PATH except Node.js
and npm.  On each backend the installed ``gridmap demo`` loads a new database
and the installed ``gridmap serve`` serves it, run outside the checkout; then
headless Chromium opens the inspectors' map and the planners' editor and
finds Leaflet (the pinned version), the clustered hazards, the grids drawn,
Leaflet-Geoman, and no JavaScript error.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import (ROOT, LiveServer, chrome, empty_postgis_database,  # noqa: F401
                           severe_console_errors, wait_ready)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Node.js's commands, kept off the PATH of the installed package.
NODE_COMMANDS = {"node", "nodejs", "npm", "npx", "corepack"}
#: What a wheel is built from.
PACKAGE_FILES = ("pyproject.toml", "setup.cfg", "README.md", "geodata", "webmap")
STATIC = ROOT / "webmap" / "static"
VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "MANIFEST.json").read_text())
WAIT = 60


def path_without_node(folder):
    """A PATH of one folder linking every command of the current PATH but Node.js's."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name in NODE_COMMANDS or link.exists() or link.is_symlink():
                continue  # the first one on the PATH wins, as in a shell
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


def run(args, env, cwd):
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """``(wheel, venv, env)``: the built wheel, the venv it is installed in, its environment.

    Everything is removed at the end of the session.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns(
                "__pycache__", "node_modules"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
         str(source)], os.environ, tmp)
    (wheel,) = (tmp / "dist").glob("gridmap-*.whl")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], os.environ, tmp)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{path_without_node(tmp / 'bin')}",
           "VIRTUAL_ENV": str(venv), "PYTHONPATH": ""}
    assert shutil.which("node", path=env["PATH"]) is None
    assert shutil.which("npm", path=env["PATH"]) is None
    run(["python", "-m", "pip", "install", "-q", str(wheel)], env, tmp)
    yield wheel, venv, env
    shutil.rmtree(tmp)  # half a gigabyte of virtual environment


def test_wheel_holds_the_vendored_assets_and_no_node_modules(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {n.removeprefix("webmap/static/") for n in names if n.startswith("webmap/static/")}
    # every file of the checkout's static folder but npm's pins (and a local node_modules)
    checkout = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()
                and "node_modules" not in p.parts and not p.name.startswith("package")}
    vendored = {f"vendor/{folder}/{name}" for folder, entry in MANIFEST.items()
                for name in entry["files"]}
    assert vendored < checkout
    assert static == checkout
    assert not any("node_modules" in n or n.endswith("package.json") for n in names)


def test_installed_package_is_imported_from_the_venv(installed, tmp_path):
    _, venv, env = installed
    out = run(["python", "-c", "import geodata, webmap; print(geodata.__file__); "
               "print(webmap.__file__)"], env, tmp_path)
    site = Path(run(["python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    env, tmp_path).strip())
    assert site.is_relative_to(venv)
    for line in out.split():
        assert Path(line).is_relative_to(site), line
    assert Path(shutil.which("gridmap", path=env["PATH"])).is_relative_to(venv)


@pytest.fixture(scope="session", params=["spatialite", "postgis"])
def installed_site(request, installed, tmp_path_factory):
    """The installed ``gridmap serve`` on a database its ``gridmap demo`` loaded."""
    _, venv, env = installed
    data = tmp_path_factory.mktemp("wheel-data")
    if request.param == "spatialite":
        url = f"sqlite:///{data / 'gridmap.sqlite'}"
    else:
        url = empty_postgis_database(request.getfixturevalue("postgis_url"), "gridmap_wheel")
    env = {**env, "GRIDMAP_DATABASE_URL": url}
    run([str(venv / "bin" / "gridmap"), "demo"], env, data)
    server = LiveServer(url, env=env, command=[str(venv / "bin" / "gridmap")], cwd=data)
    yield server
    server.stop()


def test_map_loads_from_the_wheel_install(installed_site, chrome):  # noqa: F811
    severe_console_errors(chrome)  # drop what earlier pages logged
    chrome.get(installed_site.url + "/parks/FGKFQ/map")
    # without the vendored files: "Uncaught ReferenceError: L is not defined"
    assert chrome.execute_script("return typeof L") == "object", severe_console_errors(chrome)
    wait_ready(chrome, WAIT)
    # a polygon is drawn once Leaflet has projected and clipped it into _parts
    loaded = chrome.execute_script(
        "return [typeof L === 'undefined' ? null : L.version, typeof L.markerClusterGroup, "
        "Object.values(gridmap.grids).filter(l => gridmap.map.hasLayer(l) && "
        "l._parts.length > 0).length]")
    assert loaded == [MANIFEST["leaflet"]["version"], "function", 60]  # the demo's 60 grids
    assert severe_console_errors(chrome) == []


def test_editor_loads_from_the_wheel_install(installed_site, chrome):  # noqa: F811
    base = installed_site.url
    chrome.delete_all_cookies()
    chrome.get(f"{base}/login?next=/parks/FGKFQ/edit")
    chrome.find_element(By.NAME, "username").send_keys("planner")
    chrome.find_element(By.NAME, "password").send_keys("planner-demo-2025")
    chrome.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(chrome, WAIT).until(lambda d: d.current_url.endswith("/parks/FGKFQ/edit"))
    WebDriverWait(chrome, WAIT).until(lambda d: d.execute_script(
        "return window.gridEditor && window.gridEditor.idle()"))
    assert chrome.execute_script("return typeof L.PM === 'object' && L.PM.version") == \
        MANIFEST["leaflet-geoman-free"]["version"]
    assert chrome.execute_script("return typeof gridEditor.map.pm.enableDraw") == "function"
    assert severe_console_errors(chrome) == []
