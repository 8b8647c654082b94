#!/usr/bin/env bash
# `deploy/browser.sh install`: what the dashboard's browser test needs: headless Chromium
# (Debian's `chromium`) and `playwright-core` (npm, pinned in tests/browser/package-lock.json)
# to drive it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$1 is needed for the browser test ($2); install it" >&2
        exit 1
    fi
    echo "installing $1 ($2)"
    apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
}

case "${1:-install}" in
    install)
        [ -x /usr/bin/chromium ] || apt_install chromium "headless browser"
        command -v npm >/dev/null 2>&1 || apt_install npm "fetches playwright-core"
        if [ ! -d tests/browser/node_modules/playwright-core ]; then
            (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
        fi
        echo "browser test: $(/usr/bin/chromium --version 2>/dev/null | head -1), playwright-core $(node -p 'require("./tests/browser/node_modules/playwright-core/package.json").version')"
        ;;
    *)
        echo "usage: $0 install" >&2
        exit 2
        ;;
esac
