#!/usr/bin/env bash
# Install into .venv, create the embedded SpatiaLite database with the demo park,
# and serve it.
#   bash scripts/serve-demo.sh [--host 0.0.0.0] [--port 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/gridmap demo
exec .venv/bin/gridmap serve "$@"
