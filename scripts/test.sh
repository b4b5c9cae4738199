#!/usr/bin/env bash
# Run the whole test suite (SQLite and PostgreSQL, network-namespace cases included) plus lint and types.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
