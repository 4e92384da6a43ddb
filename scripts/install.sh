#!/usr/bin/env bash
# Install gridmap and what it needs on a Debian machine: the system packages
# (SpatiaLite, PostgreSQL + PostGIS, Chromium for browser tests) and the Python
# package in editable mode.  Safe to run again; skips what is already there.
#   bash scripts/install.sh          # to run the service
#   bash scripts/install.sh --test   # plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libsqlite3-mod-spatialite)
extras=""
if [[ "${1:-}" == "--test" ]]; then
  # fonts-noto-cjk: Chinese text in browser screenshots; redis-server: shared rate limits
  packages+=(postgresql-15 postgresql-15-postgis-3 chromium chromium-driver fonts-noto-cjk
             redis-server)
  extras="[test]"
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python -m pip install -q --disable-pip-version-check -e ".${extras}"
# Browser assets of the web map (Leaflet, Leaflet.markercluster, Leaflet-Geoman) from npm, pinned by
# webmap/static/package-lock.json and served by the app itself: no CDN at run time.
if command -v npm >/dev/null; then
  npm ci --prefix webmap/static --no-audit --no-fund --ignore-scripts --loglevel=error
else
  echo "warning: npm not found: install Node.js and run 'npm ci --prefix webmap/static'" \
       "or the map page has no Leaflet" >&2
fi
