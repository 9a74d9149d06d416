#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (real-model and server tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check genre_agent retrievers eval tests bench
"$VENV/bin/ruff" format --check genre_agent retrievers eval tests bench || echo "ruff format: differences above (not fatal)"
"$VENV/bin/mypy" genre_agent retrievers eval/genre_eval
"$VENV/bin/genre" models prepare
# The long real-model measurements (`-m slow`) are run by hand (README).
"$VENV/bin/pytest" -q -rs --durations=25 -m "not slow" "$@"
