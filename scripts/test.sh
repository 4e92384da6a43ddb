#!/usr/bin/env bash
# The test command (README and CI): install everything, then run the whole suite on
# SpatiaLite and on a throwaway PostGIS (or GRIDMAP_TEST_POSTGIS_URL), browsers included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
python -m flake8 geodata webmap scripts tests
exec python -m pytest "$@"
