#!/usr/bin/env bash
# Quick start: set up, create a funded demo key, and serve on 127.0.0.1:8000 with the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
key=$(.venv/bin/imagegate keys create --account demo --credit 10)
cat <<MSG

imagegate is starting on http://127.0.0.1:8000 (embedded defaults: SQLite ./imagegate.db,
blobs in ./imagegate-data, models local-edit and local-draw).

  API key: $key

Try it:
  curl -s http://127.0.0.1:8000/v1/images/generations -H "Authorization: Bearer $key" \\
    -H "Content-Type: application/json" -d '{"model": "local-draw", "prompt": "a red kite"}'
  curl -s http://127.0.0.1:8000/v1/images/edits -H "Authorization: Bearer $key" \\
    -F model=local-edit -F prompt="pencil sketch" -F image=@your-photo.png

MSG
exec .venv/bin/imagegate serve "$@"
