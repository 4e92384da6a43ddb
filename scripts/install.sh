#!/usr/bin/env bash
# Install gridmap and what it needs on a Debian machine: the system packages
# (SpatiaLite, venv, PostgreSQL + PostGIS and Chromium for browser tests) and the
# Python package, editable, into the virtual environment .venv of this checkout
# (created with $PYTHON, default python3, if it is not there yet).  Safe to run
# again; skips what is already there.  Needs neither npm nor Node.js: the
# browser assets are committed under webmap/static/vendor/.
#   bash scripts/install.sh          # to run the service
#   bash scripts/install.sh --test   # plus the test tools
#   PYTHON=/usr/bin/python3 bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: Debian's python3 cannot create a virtual environment without it.
# fonts-noto-cjk: the Chinese font embedded in PDFs (grid boards, geodata/pdf.py).
packages=(libsqlite3-mod-spatialite python3-venv fonts-noto-cjk)
extras=""
if [[ "${1:-}" == "--test" ]]; then
  # redis-server: shared rate limits (fonts-noto-cjk, above, also serves browser screenshots)
  packages+=(postgresql-15 postgresql-15-postgis-3 chromium chromium-driver redis-server)
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
# A virtual environment, not the first Python on the PATH: Debian's own python3
# refuses `pip install` (PEP 668), and other Pythons' packages stay untouched.
if [[ ! -x .venv/bin/python ]]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
