"""Refresh the browser assets committed under ``webmap/static/vendor/`` (maintainers only).

    python scripts/vendor_assets.py                    # npm ci in a temporary folder, then copy
    python scripts/vendor_assets.py --node-modules DIR # copy from an existing node_modules

The versions are pinned by ``webmap/static/package.json`` and ``package-lock.json``:
edit those (``npm install --package-lock-only leaflet@X`` in ``webmap/static``), run
this script, check the pages, commit the lock file and ``webmap/static/vendor/``
together.  ``tests/test_vendor_assets.py`` fails when the two disagree.

Only the files the pages load are copied, with each package's licence, and
``vendor/MANIFEST.json`` records the version, licence and SHA-256 of every
file.  The Leaflet-Geoman and protomaps-leaflet bundles contain their npm
dependencies (Turf, lodash, polyclip-ts, ...; pbf, @mapbox/vector-tile, rbush,
...), so the licences of each bundle's dependencies (read from the lock file)
go into ``THIRD-PARTY-LICENSES.txt`` beside it.  Installing or running
gridmap never needs npm or the network: the wheel carries these files.
"""

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "webmap" / "static"
VENDOR = STATIC / "vendor"

#: vendor folder → (npm package, {file in the package: file in the folder}).
ASSETS = {
    "leaflet": ("leaflet", {
        "dist/leaflet.js": "leaflet.js",
        "dist/leaflet.css": "leaflet.css",
        **{f"dist/images/{n}": f"images/{n}" for n in (
            "layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png",
            "marker-shadow.png")},
        "LICENSE": "LICENSE"}),
    "leaflet.markercluster": ("leaflet.markercluster", {
        "dist/leaflet.markercluster.js": "leaflet.markercluster.js",
        "dist/MarkerCluster.css": "MarkerCluster.css",
        "dist/MarkerCluster.Default.css": "MarkerCluster.Default.css",
        "MIT-LICENCE.txt": "MIT-LICENCE.txt"}),
    "leaflet-geoman-free": ("@geoman-io/leaflet-geoman-free", {
        "dist/leaflet-geoman.min.js": "leaflet-geoman.min.js",
        "dist/leaflet-geoman.css": "leaflet-geoman.css",
        "LICENSE": "LICENSE"}),
    # the vector-tile layer of big parks' maps (webmap/static/gridmap-tiles.js)
    "protomaps-leaflet": ("protomaps-leaflet", {
        "dist/protomaps-leaflet.js": "protomaps-leaflet.js",
        "LICENSE": "LICENSE"}),
}

#: Folders whose file bundles the package's npm dependencies.
BUNDLERS = ("leaflet-geoman-free", "protomaps-leaflet")
THIRD_PARTY = "THIRD-PARTY-LICENSES.txt"
_LICENCE = re.compile(r"^(licen[cs]e|copying)", re.IGNORECASE)


def sha256(path):
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _npm_ci(workdir):
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(STATIC / name, workdir / name)
    subprocess.run(["npm", "ci", "--prefix", str(workdir), "--no-audit", "--no-fund",
                    "--ignore-scripts", "--loglevel=error"], check=True)
    return workdir / "node_modules"


def bundled(lock, package):
    """Lock-file keys of every package ``package`` depends on, transitively (npm's lookup)."""
    packages = lock["packages"]
    found, todo = set(), [f"node_modules/{package}"]
    while todo:
        key = todo.pop()
        for dep in packages[key].get("dependencies", {}):
            # node resolves a dependency in the nearest node_modules up the tree
            base = key
            while True:
                candidate = f"{base}/node_modules/{dep}" if base else f"node_modules/{dep}"
                if candidate in packages or not base:
                    break
                base = base.rpartition("/node_modules/")[0]
            if candidate not in found:
                found.add(candidate)
                todo.append(candidate)
    return sorted(found)


def _third_party(node_modules, lock, package):
    """The licence texts of the packages bundled into ``package``'s file."""
    parts = []
    for key in bundled(lock, package):
        meta = lock["packages"][key]
        name = key.rsplit("node_modules/", 1)[-1]
        folder = node_modules.parent / key
        licences = sorted(p for p in folder.iterdir() if _LICENCE.match(p.name))
        if licences:
            text = licences[0].read_text().strip()
        elif meta.get("license"):
            # e.g. @protomaps/basemaps: its npm package holds no licence file
            declared = json.loads((folder / "package.json").read_text())
            repo = declared.get("repository", {})
            text = (f"The npm package ships no licence file; its package.json declares "
                    f"{meta['license']} (SPDX). Source: "
                    f"{repo.get('url', repo) if repo else declared.get('homepage', '?')}")
        else:
            raise SystemExit(f"{key}: no licence file or declared licence to ship with the bundle")
        parts.append(f"{'=' * 72}\n{name} {meta['version']} ({meta.get('license')})\n"
                     f"{'=' * 72}\n\n{text}\n")
    return (f"Packages bundled into {package}'s file by its authors, as pinned in\n"
            "webmap/static/package-lock.json, and their licences.\n\n" + "\n".join(parts))


def vendor(node_modules):
    """Copy the served files out of ``node_modules`` and write ``MANIFEST.json``."""
    lock = json.loads((STATIC / "package-lock.json").read_text())
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    manifest = {}
    for folder, (package, files) in ASSETS.items():
        meta = lock["packages"][f"node_modules/{package}"]
        installed = json.loads((node_modules / package / "package.json").read_text())
        if installed["version"] != meta["version"]:
            raise SystemExit(f"{package}: node_modules has {installed['version']}, "
                             f"the lock file pins {meta['version']}")
        for source, target in files.items():
            (VENDOR / folder / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node_modules / package / source, VENDOR / folder / target)
        if folder in BUNDLERS:
            (VENDOR / folder / THIRD_PARTY).write_text(_third_party(node_modules, lock, package))
        manifest[folder] = {
            "package": package, "version": meta["version"], "license": meta.get("license"),
            "files": {p.relative_to(VENDOR / folder).as_posix(): sha256(p)
                      for p in sorted((VENDOR / folder).rglob("*")) if p.is_file()}}
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path,
                        help="copy from this node_modules instead of running npm ci")
    args = parser.parse_args(argv)
    if args.node_modules:
        manifest = vendor(args.node_modules.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = vendor(_npm_ci(Path(tmp)))
    for folder, entry in manifest.items():
        print(f"{folder}: {entry['package']} {entry['version']}, {len(entry['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
