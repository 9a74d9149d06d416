#!/usr/bin/env bash
# The servers some tests start on 127.0.0.1 (and `genre consume` / `genre serve` may use):
# redis-server, PostgreSQL 15, nginx (scripts/stack.sh's load balancer), and chromium with
# its chromedriver (tests/test_web_browser.py drives the web page headless), from the Debian
# packages. Skips what is already installed;
# needs root (or sudo) otherwise.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
    # The packages' own services are not needed: tests start their own servers on free ports.
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
echo "redis-server: $(redis-server --version | cut -d' ' -f3)"
pg="$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)"
echo "postgres: $("$pg" --version | cut -d" " -f3)"
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
echo "nginx: $("$nginx" -v 2>&1 | cut -d/ -f2)"
echo "chromium: $(chromium --version 2>/dev/null | cut -d" " -f2)"
echo "chromedriver: $(chromedriver --version | cut -d" " -f2)"
