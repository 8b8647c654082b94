#!/usr/bin/env bash
# Makes sure Prometheus and promtool are installed (Debian's `prometheus` package) for the
# observability tests, which start their own Prometheus server against the engine.
#
#   deploy/prometheus.sh install
set -euo pipefail

install() {
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        echo "Prometheus: $(prometheus --version 2>&1 | head -n 1)"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "prometheus.sh: install Prometheus and promtool (/usr/bin) for the observability tests" >&2
        exit 1
    fi
    echo "installing prometheus (Debian package) for the observability tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a system server where it can; the tests run their own.
    if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
    echo "Prometheus: $(prometheus --version 2>&1 | head -n 1)"
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
