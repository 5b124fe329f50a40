#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: is the GPU used, and what does it buy? (README.md, "GPU")
#   GPU=1 bash scripts/install.sh      # first: TensorFlow's CUDA build
#   bash scripts/gpu_check.sh          # about 10-30 minutes
# 1. the devices a run reports at start (Keras training, analog simulation);
# 2. benchmarks/speed/bench_devices.py (Keras training per epoch, analog probe, drift scoring) on the GPU, then on the
#    CPU only (CUDA_VISIBLE_DEVICES= hides the GPU from TensorFlow and torch), and the CPU/GPU ratios;
# 3. the quick config end to end, GPU then CPU only, wall seconds and their ratio.
# Stops with one line, exit 2, where TensorFlow or torch sees no GPU: the numbers would be CPU vs CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d -t popnas_gpu_check_XXXX)}"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

echo "gpu_check: devices"
"$PY" - <<'PYEOF' || exit 2
import sys
from popnas_seg.devices import device_plan, tensorflow_gpus, torch_gpus
plan = device_plan(tensorflow_gpus(), torch_gpus())
print("\n".join("  " + line for line in plan.lines))
if plan.keras != "gpu" or plan.analog != "cuda":
    sys.exit("gpu_check: Keras and the analog simulation do not both see a GPU (above); nothing to compare. "
             "Install with GPU=1 bash scripts/install.sh on a host with an NVIDIA driver.")
PYEOF

echo "gpu_check: micro-benchmark on the GPU, then on the CPU only"
"$PY" -m benchmarks.speed.bench_devices | tail -1 > "$OUT/gpu.json"
CUDA_VISIBLE_DEVICES= "$PY" -m benchmarks.speed.bench_devices | tail -1 > "$OUT/cpu.json"

quick() {  # $1: label; the quick config end to end, wall seconds
    local start end
    start=$(date +%s)
    "$PY" run.py -j configs/quick.json --name "gpu_check_$1" --logs-dir "$OUT/logs" > "$OUT/quick_$1.log" 2>&1 \
        || { echo "gpu_check: the quick config failed on $1, see $OUT/quick_$1.log" >&2; exit 1; }
    end=$(date +%s)
    echo $((end - start)) > "$OUT/quick_$1.s"
}
echo "gpu_check: the quick config on the GPU, then on the CPU only"
quick gpu
CUDA_VISIBLE_DEVICES= quick cpu

"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
gpu, cpu = (json.loads((out / f"{k}.json").read_text()) for k in ("gpu", "cpu"))
print(f"\n| part | GPU s | CPU-only s | CPU / GPU |")
print("|---|---:|---:|---:|")
for key, label in (("train_s_per_epoch", "Keras training, per epoch"), ("probe_s", "analog probe"),
                   ("drift_s", "drift scoring (whole test images)")):
    g, c = gpu["timings"][key], cpu["timings"][key]
    print(f"| {label} | {g:.2f} | {c:.2f} | {c / g:.1f}x |")
qg, qc = (float((out / f"quick_{k}.s").read_text()) for k in ("gpu", "cpu"))
print(f"| quick config end to end | {qg:.0f} | {qc:.0f} | {qc / qg:.1f}x |")
print(f"\nGPU run devices: {gpu['devices']}\nCPU-only run devices: {cpu['devices']}")
print(f"Dice (GPU / CPU): validation {gpu['val_dice']:.4f} / {cpu['val_dice']:.4f}, probe "
      f"{gpu['probe_analog_dice']:.4f} / {cpu['probe_analog_dice']:.4f}, drift {gpu['drift_dice']} / {cpu['drift_dice']}")
print(f"raw results and logs: {out}")
PYEOF
