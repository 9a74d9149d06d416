#!/usr/bin/env bash
# The servers some tests start on 127.0.0.1 (and `genre consume` reads from): redis-server,
# from the Debian package. Skips what is already installed; needs root (or sudo) otherwise.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server: $(redis-server --version | cut -d' ' -f3)"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server
# The package's own service is not needed: tests start their own server on a free port.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
echo "redis-server: $(redis-server --version | cut -d' ' -f3)"
