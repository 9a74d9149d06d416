#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (real-model and server tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check genre_agent retrievers eval tests bench
"$VENV/bin/ruff" format --check genre_agent retrievers eval tests bench || echo "ruff format: differences above (not fatal)"
"$VENV/bin/mypy" genre_agent retrievers eval/genre_eval
"$VENV/bin/genre" models prepare
# The fast suite on both cores (pytest-xdist); then the real-model and real-server tests one
# at a time (two vLLM engines at once would not fit beside each other). The long real-model
# measurements (`-m slow`) are run by hand (README).
run() {  # exit code 5 is "no test selected" (arguments that name only one kind of test)
    "$VENV/bin/pytest" -q -rs "$@" || { rc=$?; [ "$rc" -eq 5 ] || return "$rc"; }
}
# Both parts run even when the first fails, so one run reports every failure.
fast=0
run --durations=15 -n 2 -m "not real and not server and not slow" "$@" || fast=$?
run --durations=25 -m "(real or server) and not slow" "$@"
exit "$fast"
