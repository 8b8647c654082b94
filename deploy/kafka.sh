#!/usr/bin/env bash
# A local Kafka-protocol broker for development and tests: noida-db from PyPI, pinned by version
# and SHA-256, unpacked once into a tools folder outside the repository.
#
#   deploy/kafka.sh install                  print the broker binary's path (installing it if needed)
#   deploy/kafka.sh start [PORT] [DATA_DIR]  run it in the background on 127.0.0.1:PORT (default 9092)
#   deploy/kafka.sh stop [DATA_DIR]          stop the one started with that data dir
#
# Tests start their own brokers (one per test, on free ports) from the path `install` prints;
# `make test` passes it to them as WINNERR_KAFKA_BROKER_BIN.
set -euo pipefail

VERSION=0.2.3
SHA256=40a2fb15567e3d344e7483df62bb439e7d64ac6fb232f4f223554aed58204f82
TOOLS="${WINNERR_TOOLS_DIR:-${HOME:-/root}/.cache/winnerr/tools}"
HOME_DIR="$TOOLS/noida-db-$VERSION"
BIN="$HOME_DIR/noida_db/noida-db"

install() {
    if [ -x "$BIN" ]; then
        echo "$BIN"
        return
    fi
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        echo "kafka.sh: python3 with pip is needed to fetch the broker (PyPI noida-db==$VERSION)" >&2
        exit 1
    fi
    local tmp
    tmp=$(mktemp -d)
    if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        "noida-db==$VERSION" -d "$tmp" >&2; then
        echo "kafka.sh: pip could not download noida-db==$VERSION" >&2
        exit 1
    fi
    local wheel
    wheel=$(ls "$tmp"/noida_db-"$VERSION"-*.whl)
    if ! echo "$SHA256  $wheel" | sha256sum --check --quiet - >&2; then
        echo "kafka.sh: $wheel does not have the pinned SHA-256 $SHA256; refusing it" >&2
        exit 1
    fi
    mkdir -p "$HOME_DIR"
    python3 -m zipfile -e "$wheel" "$HOME_DIR"
    chmod +x "$BIN"
    rm -rf "$tmp"
    echo "$BIN"
}

wait_for_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start() {
    local port=${1:-9092} data=${2:-.run/kafka}
    local bin
    bin=$(install)
    mkdir -p "$data"
    nohup "$bin" start --only kafka --host 127.0.0.1 --kafka-port "$port" --data-dir "$data" \
        >"$data/broker.log" 2>&1 &
    echo $! >"$data/broker.pid"
    if ! wait_for_port "$port"; then
        echo "kafka.sh: broker did not listen on 127.0.0.1:$port; see $data/broker.log" >&2
        exit 1
    fi
    echo "Kafka-protocol broker on 127.0.0.1:$port (data in $data, pid $(cat "$data/broker.pid"))"
}

stop() {
    local data=${1:-.run/kafka}
    if [ -f "$data/broker.pid" ]; then
        kill -INT "$(cat "$data/broker.pid")" 2>/dev/null || true
        rm -f "$data/broker.pid"
    fi
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 install | start [PORT] [DATA_DIR] | stop [DATA_DIR]" >&2; exit 2 ;;
esac
