#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine, and says so when something is missing.
# Today the tests need only the Rust toolchain: every test starts the engine itself, on
# loopback ports, with its embedded defaults. Broker and database helpers join this script as
# the stages that need them land.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
echo "test prerequisites: $(cargo --version)"
