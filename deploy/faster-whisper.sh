#!/usr/bin/env bash
# The reference a user would pick instead of our Whisper: faster-whisper (CTranslate2) on the very
# same CTranslate2 tiny.en files. `deploy/faster-whisper.sh install` makes a virtualenv with pinned
# versions under ~/.cache/winnerr/tools and prints its python; `benches/asr.rs` runs
# `benches/run_faster_whisper.py` with it when WINNERR_FASTER_WHISPER_PYTHON names it.
set -euo pipefail
tools="${WINNERR_TOOLS_DIR:-$HOME/.cache/winnerr/tools}"
venv="$tools/faster-whisper-1.2.0"
case "${1:-install}" in
install)
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import faster_whisper" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        # faster-whisper 1.2.0 imports requests to reach a model hub; it is never used offline.
        "$venv/bin/pip" install --quiet --disable-pip-version-check faster-whisper==1.2.0 requests >&2
    fi
    echo "$venv/bin/python"
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
