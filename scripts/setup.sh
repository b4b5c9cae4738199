#!/usr/bin/env bash
# Create .venv with the locked dependencies and imagegate installed (editable). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.imagegate-lock
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
# The official Node SDK, for the tests that drive the gateway with it (skipped where Node.js is missing).
node_stamp=tests/sdk/node/node_modules/.imagegate-lock
if command -v npm >/dev/null 2>&1; then
  want=$(sha256sum tests/sdk/node/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$node_stamp" 2>/dev/null)" != "$want" ]; then
    if npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error; then
      echo "$want" > "$node_stamp"
    else
      echo "setup: could not install the Node SDK for its tests; they will be skipped (failed in CI)" >&2
    fi
  fi
fi
