#!/usr/bin/env bash
# Makes sure a Postgres server answers on 127.0.0.1:5432 with trust auth for local tests:
# uses the one running, else starts an installed cluster, else installs Debian's `postgresql`,
# lets loopback connections in without a password (tests only), and starts it.
#
#   deploy/postgres.sh ensure
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -h "$HOST" -p "$PORT" -q
    else
        (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
    fi
}

wait_ready() {
    for _ in $(seq 1 100); do
        ready && return 0
        sleep 0.2
    done
    return 1
}

start_cluster() {
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || return 1
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start
}

trust_loopback() {
    local version hba
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
}

ensure() {
    if ready; then
        echo "Postgres answers on $HOST:$PORT"
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "installing postgresql (Debian package) for the tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        trust_loopback
    fi
    start_cluster || true
    if ! wait_ready; then
        echo "postgres.sh: no Postgres on $HOST:$PORT; start one or set WINNERR_TEST_POSTGRES" >&2
        exit 1
    fi
    echo "Postgres started on $HOST:$PORT"
}

case "${1:-}" in
    ensure) ensure ;;
    *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
