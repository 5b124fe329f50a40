#!/usr/bin/env bash
# The one install path (README, CI and the Dockerfile all call it):
#   bash scripts/install.sh
# Creates a Python 3.11 virtual environment (default: .venv in the repository root; VENV=... overrides;
# an existing one is reused), installs popnas-seg with its pinned stack in editable mode, then checks
# that TensorFlow, torch and AIHWKit import together.
#   INSTALL_EXTRAS=test (default) installs the test tools too; INSTALL_EXTRAS= (empty) drops them (Docker).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
INSTALL_EXTRAS="${INSTALL_EXTRAS-test}"

die() { echo "install.sh: $*" >&2; exit 1; }

is_py311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; }

if [ -x "$VENV/bin/python" ]; then
    echo "install.sh: reusing the virtual environment $VENV"
    is_py311 "$VENV/bin/python" || die "$VENV holds $("$VENV/bin/python" -V 2>&1 || true), not Python 3.11; remove it or set VENV"
else
    if command -v python3.11 >/dev/null 2>&1; then
        PYTHON=python3.11
    elif command -v python3 >/dev/null 2>&1; then
        PYTHON=python3
    else
        die "no python3.11 or python3 on PATH; install Python 3.11"
    fi
    is_py311 "$PYTHON" || die "$PYTHON is $("$PYTHON" -V 2>&1); popnas-seg needs Python 3.11 (aihwkit 1.1.0 ships cp311 wheels only)"
    echo "install.sh: creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3.11-venv)"
fi

PY="$VENV/bin/python"
"$PY" -m pip install --upgrade pip
if [ -n "$INSTALL_EXTRAS" ]; then
    TARGET="$ROOT[$INSTALL_EXTRAS]"
else
    TARGET="$ROOT"
fi
echo "install.sh: pip install -e $TARGET"
"$PY" -m pip install -e "$TARGET"

echo "install.sh: checking the stack"
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c 'import tensorflow as tf, torch, aihwkit, aihwkit.nn, popnas_seg; print(f"ok: tensorflow {tf.__version__}, torch {torch.__version__}, aihwkit {aihwkit.__version__}, popnas_seg {popnas_seg.__version__}")'
echo "install.sh: done. Smoke run (minutes): $PY run.py -j configs/quick.json --name quick; full run: $PY run.py"
