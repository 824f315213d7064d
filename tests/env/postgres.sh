#!/usr/bin/env bash
# Test environment for the PostgreSQL state backend: Debian's postgresql, and private throwaway clusters.
#
#   tests/env/postgres.sh install        apt-get postgresql when missing (idempotent)
#   tests/env/postgres.sh start DIR PORT initdb (as the `postgres` user: initdb refuses root) in DIR/data, then
#                                        start on a unix socket in DIR and 127.0.0.1:PORT, trust auth;
#                                        prints HOST=DIR PORT=PORT
#   tests/env/postgres.sh stop DIR       stop that cluster (immediate: its data is throwaway)
# tests/pg.py calls start/stop for one cluster per test session; each test gets a database of its own.
set -euo pipefail

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install() {
    if bindir >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "postgres.sh: need root to apt-get install postgresql" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 || {
        apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null
    }
    bindir >/dev/null
}

as_owner() {  # run as the postgres user when root (initdb and postgres refuse root), else as ourselves
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local dir="$1" port="$2" bin
    bin=$(bindir) || { echo "postgres.sh: PostgreSQL is not installed (run: $0 install)" >&2; return 1; }
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; chmod 700 "$dir"; fi
    [ -f "$dir/data/PG_VERSION" ] || as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2; return 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null || {
        tail -20 "$dir/log" >&2; return 1; }
    echo "HOST=$dir PORT=$port"
}

stop() {
    local dir="$1" bin
    bin=$(bindir) || return 0
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    install) install ;;
    start) start "$2" "$3" ;;
    stop) stop "$2" ;;
    *) echo "usage: $0 install | start DIR PORT | stop DIR" >&2; exit 64 ;;
esac
