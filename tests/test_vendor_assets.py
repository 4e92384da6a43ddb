"""The browser assets committed under ``webmap/static/vendor/`` (issue 10).

They are what the wheel ships instead of an ``npm ci`` at install time, so
they must be exactly the versions ``package-lock.json`` pins, unedited, each
with its licence, complete (every file a stylesheet points to is there) and
served by the app.
"""

import hashlib
import json
import re
from pathlib import Path

import pytest

from scripts.vendor_assets import BUNDLERS, bundled
from webmap import create_app

STATIC = Path(__file__).resolve().parents[1] / "webmap" / "static"
VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "MANIFEST.json").read_text())
LOCK = json.loads((STATIC / "package-lock.json").read_text())
PINS = json.loads((STATIC / "package.json").read_text())["dependencies"]


def vendored_files():
    return [(folder, name) for folder, entry in MANIFEST.items() for name in entry["files"]]


def test_versions_are_the_lock_files():
    assert {e["package"] for e in MANIFEST.values()} == set(PINS)
    for folder, entry in MANIFEST.items():
        locked = LOCK["packages"][f"node_modules/{entry['package']}"]
        assert entry["version"] == locked["version"] == PINS[entry["package"]], folder
        assert entry["license"] == locked["license"], folder


def test_files_are_unedited_and_nothing_else_is_there():
    on_disk = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()}
    assert on_disk == {f"{folder}/{name}" for folder, name in vendored_files()} | {
        "MANIFEST.json"}
    for folder, name in vendored_files():
        digest = hashlib.sha256((VENDOR / folder / name).read_bytes()).hexdigest()
        assert digest == MANIFEST[folder]["files"][name], f"{folder}/{name} was edited"


@pytest.mark.parametrize("folder", sorted(MANIFEST))
def test_each_package_ships_its_licence(folder):
    licences = [n for n in MANIFEST[folder]["files"] if re.match(r"(?i)(mit-)?licen[cs]e", n)]
    assert licences, folder
    assert "Copyright" in (VENDOR / folder / licences[0]).read_text()


@pytest.mark.parametrize("folder", BUNDLERS)
def test_bundled_dependencies_licences(folder):
    """A bundle ships the licence of every package it depends on (read from the lock)."""
    text = (VENDOR / folder / "THIRD-PARTY-LICENSES.txt").read_text()
    keys = bundled(LOCK, MANIFEST[folder]["package"])
    assert keys
    for key in keys:
        name = key.rsplit("node_modules/", 1)[-1]
        assert f"\n{name} {LOCK['packages'][key]['version']} (" in text, name


def test_every_locked_package_is_served_or_bundled():
    served = {f"node_modules/{e['package']}" for e in MANIFEST.values()}
    inside = set().union(*(bundled(LOCK, MANIFEST[f]["package"]) for f in BUNDLERS))
    assert set(LOCK["packages"]) - {""} == served | inside


def test_stylesheet_references_are_vendored():
    for folder, name in vendored_files():
        if not name.endswith(".css"):
            continue
        css = (VENDOR / folder / name).read_text()
        # inline SVG (data: URIs) holds url(#id) references of its own
        css = re.sub(r"url\((['\"])data:.*?\1\)", "", css, flags=re.DOTALL)
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
            if ref.startswith(("data:", "#")):
                continue
            target = (VENDOR / folder / name).parent / ref
            assert target.is_file(), f"{folder}/{name} needs {ref}"


@pytest.fixture
def client(spatialite_template):
    # assets need no data: the session's migrated template is opened, never written
    app = create_app({"DATABASE_URL": f"sqlite:///{spatialite_template}", "TESTING": True})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


def test_every_vendored_file_is_served(client):
    for folder, name in vendored_files():
        with client.get(f"/assets/vendor/{folder}/{name}") as response:
            assert response.status_code == 200, name
            assert response.data == (VENDOR / folder / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/assets/vendor/leaflet/missing.js",
    "/assets/vendor/nopackage/leaflet.js",
    "/assets/vendor/leaflet/..%2F..%2Fgridmap.js",
    "/assets/vendor/leaflet/%2Fetc%2Fpasswd",
    "/assets/vendor/../static/gridmap.js",
])
def test_nothing_outside_the_vendor_folder(client, path):
    assert client.get(path, follow_redirects=True).status_code == 404
