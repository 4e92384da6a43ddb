#!/usr/bin/env bash
# The test command (README and CI): install everything into .venv, then run flake8
# and the whole suite on SpatiaLite and on a throwaway PostGIS (or
# GRIDMAP_TEST_POSTGIS_URL), browsers and the wheel install included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/python -m flake8 geodata webmap scripts tests
# Two pytest-xdist workers (CI has two cores), each running whole files so a
# module's fixtures are built once; each worker starts its own PostGIS cluster.
# An external GRIDMAP_TEST_POSTGIS_URL is one database: one process then.
workers=(-n 2 --dist loadfile)
if [[ -n "${GRIDMAP_TEST_POSTGIS_URL:-}" ]]; then
  workers=(-n 0)
fi
exec .venv/bin/python -m pytest "${workers[@]}" "$@"
