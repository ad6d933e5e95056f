#!/bin/sh
# Installs what vitamin needs to build and test on Debian (run as root, or
# with sudo available). Safe to run again. chromium: the browser test of
# vitamin serve's chat page (tests/test_page.c, via playwright-core).
# libsqlite3-dev: the memory store; libpq-dev + postgresql: its PostgreSQL
# backend and the server its tests start on loopback.
set -eu
pkgs="build-essential libjansson-dev libmicrohttpd-dev libsqlite3-dev libpq-dev postgresql clang python3 chromium curl"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "installing:$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
