#!/usr/bin/env bash
# The one-machine stack (docs/deploy.md): scripts/stack.sh up [--no-llm] | status | down.
# Uses the venv's python ($PYTHON, or .venv/bin/python, or python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-}"
[ -n "$py" ] || { [ -x "$here/../.venv/bin/python" ] && py="$here/../.venv/bin/python"; } || true
[ -n "$py" ] || py=python3
exec "$py" "$here/stack.py" "$@"
