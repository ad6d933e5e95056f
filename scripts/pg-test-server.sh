#!/bin/sh
# A throwaway PostgreSQL server for tests, on 127.0.0.1 and a free port:
#   sh scripts/pg-test-server.sh start DIR   # prints its URI (postgresql://vt@127.0.0.1:PORT/postgres)
#   sh scripts/pg-test-server.sh stop DIR    # stops it and removes DIR
# initdb and pg_ctl from the newest /usr/lib/postgresql/*/bin (Debian's
# postgresql package), run as the postgres user when run as root (the server
# refuses root; DIR must be one it can reach, e.g. under /tmp). Trust
# authentication, loopback only.
set -eu
cmd=${1:?start or stop}
dir=${2:?a folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "pg-test-server: no PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
as_pg=""
[ "$(id -u)" = 0 ] && as_pg="runuser -u postgres --"
case $cmd in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $as_pg "$bin/initdb" -D "$dir/data" -A trust -U vt -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    $as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://vt@127.0.0.1:$port/postgres"
    ;;
stop)
    [ -d "$dir/data" ] && $as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "pg-test-server: start or stop" >&2
    exit 2
    ;;
esac
