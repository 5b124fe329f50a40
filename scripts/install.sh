#!/usr/bin/env bash
# The one install path (README, CI and the Dockerfile all call it):
#   bash scripts/install.sh
# Creates a Python 3.11 virtual environment (default: .venv in the repository root; VENV=... overrides;
# an existing one is reused), installs popnas-seg with its pinned stack in editable mode, then checks
# that TensorFlow, torch and AIHWKit import together.
#   INSTALL_EXTRAS=test (default) installs the test tools too; INSTALL_EXTRAS= (empty) drops them (Docker).
#   GPU=1 installs TensorFlow's CUDA build (`tensorflow`, the pinned version) instead of `tensorflow-cpu`, every
#   other pin the same. It needs an NVIDIA driver on the host, nothing else: the CUDA libraries are wheels.
#   Not `tensorflow[and-cuda]` itself: that extra asks for nvidia-nccl-cu12>=2.27.7, torch 2.10 pins 2.27.5
#   (pip: ResolutionImpossible). The extra's other CUDA wheels come with torch at versions inside TF's ranges,
#   plus nvidia-cuda-nvcc-cu12 (ptxas for XLA) from TF's range; NCCL only serves multi-GPU all-reduce, which a
#   run (one network per GPU) does not use. The default (GPU unset or 0) is the CPU build, the tested path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
INSTALL_EXTRAS="${INSTALL_EXTRAS-test}"
GPU="${GPU:-0}"
case "$GPU" in 0|1) ;; *) echo "install.sh: GPU must be 0 or 1, got '$GPU'" >&2; exit 1 ;; esac

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
if [ "$GPU" = 1 ]; then
    # pyproject.toml's dependencies with tensorflow-cpu==X swapped for tensorflow==X and nvcc (two TensorFlow
    # distributions in one environment would overwrite each other's files), then the project without deps.
    REQS="$(mktemp)"
    "$PY" - "$ROOT/pyproject.toml" "$INSTALL_EXTRAS" > "$REQS" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = list(project["dependencies"])
for extra in filter(None, sys.argv[2].split(",")):
    reqs += project.get("optional-dependencies", {}).get(extra, [])
cpu = [r for r in reqs if r.replace(" ", "").startswith("tensorflow-cpu==")]
if len(cpu) != 1:
    sys.exit("install.sh: pyproject.toml must pin tensorflow-cpu==VERSION exactly once")
version = cpu[0].split("==", 1)[1]
gpu = "tensorflow==" + version + "\nnvidia-cuda-nvcc-cu12>=12.5.82,<13.0"
print("\n".join(gpu if r == cpu[0] else r for r in reqs))
PYEOF
    echo "install.sh: GPU=1: pip install $(grep '^tensorflow==' "$REQS") (CUDA build) and the other pins"
    "$PY" -m pip uninstall -y -q tensorflow-cpu 2>/dev/null || true
    "$PY" -m pip install -r "$REQS"
    rm -f "$REQS"
    echo "install.sh: pip install --no-deps -e $ROOT"
    "$PY" -m pip install --no-deps -e "$ROOT"
else
    echo "install.sh: pip install -e $TARGET"
    "$PY" -m pip install -e "$TARGET"
fi

echo "install.sh: checking the stack"
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c 'import tensorflow as tf, torch, aihwkit, aihwkit.nn, popnas_seg; g = len(tf.config.list_physical_devices("GPU")); print(f"ok: tensorflow {tf.__version__}, torch {torch.__version__}, aihwkit {aihwkit.__version__}, popnas_seg {popnas_seg.__version__}; GPUs seen by TensorFlow: {g}, by torch: {torch.cuda.device_count()}")'
echo "install.sh: done. Smoke run (minutes): $PY run.py -j configs/quick.json --name quick; full run: $PY run.py"
