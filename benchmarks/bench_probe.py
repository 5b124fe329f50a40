"""Cost of the search-time analog probe against the child's training time, on the default config.

Trains `--networks` children of the default config (configs/run.json: 3 epochs x 12 steps, batch 16,
64x64 crops, filters 8) one after the other in this process, each with the analog probe (16 validation
images, 3 programmings at one day), as the search does. Prints, per network: training time, ONNX export time,
probe time (the `run_job` round trip: worker start on the first job, conversion, scoring) and probe /
training. The first probe pays the worker start (torch + AIHWKit import); later ones reuse the worker
when analog/worker.py keeps one per process.

    python benchmarks/bench_probe.py               # 4 networks, a few minutes on 2 cores
    python benchmarks/bench_probe.py --networks 2
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from popnas_seg.config import load_config  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.evaluation.evaluator import NetworkEvaluator, NetworkJob  # noqa: E402

CELLS = [
    "[(-1,3x3 conv,-1,3x3 conv)]",
    "[(-1,1x5-5x1 conv,-2,identity)]",
    "[(-1,3x3:2dr conv,-1,2x2 maxpool)]",
    "[(-1,3x3 conv,-2,3x3 conv)]",
    "[(-1,identity,-1,3x3 conv)]",
    "[(-2,3x3 conv,-1,1x5-5x1 conv)]",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=4, help="children to train and probe (default 4)")
    args = parser.parse_args()
    config = load_config(None)
    data = load_data(config.dataset, seed=config.data_seed)
    evaluator = NetworkEvaluator(config, data, logging.getLogger("bench_probe"))
    arch = config.architecture_hyperparameters.model_dump(mode="json")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.networks):
            cell = CELLS[i % len(CELLS)]
            job = NetworkJob(network_id=i, encoding=cell, architecture=arch, seed=config.others.seed + i,
                             out_dir=str(Path(tmp) / str(i)), save=False, probe=True, probe_seed=i)
            t0 = time.perf_counter()
            result = evaluator.evaluate(job)
            wall = time.perf_counter() - t0
            probe = float(result.extra.get("probe_time_s", float("nan")))
            rows.append((i, cell, result.train_time_s, probe, wall, result.analog_dice))
            print(f"network {i} {cell}: train {result.train_time_s:.1f} s, probe {probe:.1f} s "
                  f"({probe / result.train_time_s:.2f}x), evaluate wall {wall:.1f} s, analog Dice "
                  f"{result.analog_dice}, error {result.extra.get('probe_error')}", flush=True)
    later = rows[1:]
    if later:
        ratio = sum(r[3] for r in later) / sum(r[2] for r in later)
        print(f"first probe {rows[0][3]:.1f} s ({rows[0][3] / rows[0][2]:.2f}x of its training); later probes "
              f"mean {sum(r[3] for r in later) / len(later):.1f} s, {ratio:.2f}x of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
