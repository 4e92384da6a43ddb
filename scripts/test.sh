#!/usr/bin/env bash
# The test command (README and CI): install everything into .venv, then run flake8
# and the whole suite on SpatiaLite and on a throwaway PostGIS (or
# GRIDMAP_TEST_POSTGIS_URL), browsers and the wheel install included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/python -m flake8 geodata webmap scripts tests
exec .venv/bin/python -m pytest "$@"
