#!/usr/bin/env bash
# Run the demo estate on embedded defaults; installs its Python packages into .venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
exec .venv/bin/shelterwatch demo "$@"
