"""Cost of the search-time analog probe against the child's training, and how its objective ranks cells.

Trains `--networks` cells of the default config (configs/run.json: 3 epochs x 12 steps, batch 16, 64x64 crops,
filters 8; `--epochs` to change) one after the other in this process, as the search does, and probes every
trained network twice with the same seed:

- before issue 34: 1 day, 3 programmings, centre crops of the first 16 validation images, ranked on the mean;
- now (configs/run.json): `analog.t_inference` 30 days, `analog.probe_repetitions` programmings of
  `analog.probe_images` crops (whole images with `analog.probe_whole_images`), ranked on the risk-aware score
  mean - `analog.risk_k` x std.

A probe's time is the whole `NetworkEvaluator._probe` call the search pays: the Keras digital pass on the probe
images, the ONNX export and the worker round trip (conversion, programming, drift, scoring). The first probe
pays the worker start (torch + AIHWKit import); the summary leaves the first network out of the ratios.

It prints one row per network and then: probe / training time ratios, Spearman of each analog objective with
validation Dice, and the partial Spearman given params (ranks of both regressed on the rank of params).

    python -m benchmarks.speed.bench_probe                  # 10 cells, about 15 minutes on a loaded 2-core machine
    python -m benchmarks.speed.bench_probe --networks 4
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from popnas_seg.config import load_config  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.evaluation.evaluator import NetworkEvaluator, Trial  # noqa: E402

# Cells of the default search space across its size range (122 to ~25k params at filters 8).
CELLS = [
    "[(-2,2x2 maxpool,-2,2x2 maxpool)]",
    "[(-2,3x3 conv,-2,2x2 maxpool)]",
    "[(-2,3x3 conv,-2,3x3 conv)]",
    "[(-2,3x3 conv,-2,3x3 conv);(-2,identity,-2,identity);(1,3x3 conv,1,3x3 conv)]",
    "[(-2,3x3 conv,-1,2x2 maxpool)]",
    "[(-2,identity,-1,3x3 conv)]",
    "[(-1,3x3 conv,-1,1x5-5x1 conv)]",
    "[(-2,3x3 conv,-1,1x5-5x1 conv)]",
    "[(-1,3x3 conv,-1,3x3 conv)]",
    "[(-1,3x3:2dr conv,-1,3x3:2dr conv)]",
]
BEFORE = {
    "t_inference": 86400.0,
    "probe_repetitions": 3,
    "probe_images": 16,
    "probe_whole_images": False,
    "risk_k": 0.0,
}


def partial_spearman(a: np.ndarray, b: np.ndarray, given: np.ndarray) -> float:
    """Spearman of a and b with the rank of `given` regressed out of both ranks (a partial rank correlation)."""
    from scipy.stats import rankdata

    ra, rb, rg = (rankdata(v) for v in (a, b, given))
    design = np.column_stack([np.ones_like(rg), rg])
    res_a = ra - design @ np.linalg.lstsq(design, ra, rcond=None)[0]
    res_b = rb - design @ np.linalg.lstsq(design, rb, rcond=None)[0]
    return float(np.corrcoef(res_a, res_b)[0, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=len(CELLS), help=f"cells to train (default {len(CELLS)})")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    args = parser.parse_args()
    from scipy.stats import spearmanr

    config = load_config(None)
    if args.epochs is not None:
        config.training_hyperparameters.epochs = args.epochs
    before = config.model_copy(deep=True)
    before.analog = config.analog.model_copy(update=BEFORE)
    data = load_data(config.dataset, seed=config.data_seed)
    log = logging.getLogger("bench_probe")
    now_ev, before_ev = NetworkEvaluator(config, data, log), NetworkEvaluator(before, data, log)
    arch = config.architecture_hyperparameters.model_dump(mode="json")
    a = config.analog
    print(
        f"now: {a.t_inference / 86400:g} days, {a.probe_repetitions} programmings, "
        f"{'whole images' if a.probe_whole_images else 'centre crops'}, risk_k {a.risk_k}; before: 1 day, "
        f"3 programmings, centre crops, the mean; {config.training_hyperparameters.epochs} epochs x "
        f"{config.training_hyperparameters.steps_per_epoch} steps",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.networks):
            cell = CELLS[i % len(CELLS)]
            job = Trial(
                network_id=i,
                encoding=cell,
                architecture=arch,
                seed=config.others.seed + i,
                out_dir=str(Path(tmp) / str(i)),
                save=False,
                probe=False,
            )
            result, model = now_ev.evaluate_with_model(job)
            probes = {}
            for name, ev in (("before", before_ev), ("now", now_ev)):
                r = copy.deepcopy(result)
                t0 = time.perf_counter()
                ev._probe(model, r, Path(job.out_dir), seed=i)
                probes[name] = (time.perf_counter() - t0, r)
            (tb, rb), (tn, rn) = probes["before"], probes["now"]
            rows.append(
                {
                    "cell": cell,
                    "params": result.params,
                    "dice": result.dice,
                    "train": result.train_time_s,
                    "before_s": tb,
                    "now_s": tn,
                    "before_mean": rb.analog_dice,
                    "now_mean": rn.analog_dice,
                    "now_std": rn.analog_dice_std,
                    "now_score": rn.analog_score,
                    "now_digital": rn.probe_digital_dice,
                }
            )
            print(
                f"network {i} {cell}: {result.params} params, dice {result.dice:.3f}, train "
                f"{result.train_time_s:.1f} s | before {tb:.1f} s ({tb / result.train_time_s:.2f}x) mean "
                f"{rb.analog_dice} | now {tn:.1f} s ({tn / result.train_time_s:.2f}x) {rn.analog_dice} ± "
                f"{rn.analog_dice_std} score {rn.analog_score} errors {rb.probe_error} "
                f"{rn.probe_error}",
                flush=True,
            )
    print(
        "\n| cell | params | val Dice | train s | probe before s (x train) | probe now s (x train) | "
        "before: 1 d mean | now: 30 d mean ± std | now: score |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| `{r['cell']}` | {r['params']:,} | {r['dice']:.3f} | {r['train']:.1f} | {r['before_s']:.1f} "
            f"({r['before_s'] / r['train']:.2f}) | {r['now_s']:.1f} ({r['now_s'] / r['train']:.2f}) | "
            f"{r['before_mean']:.3f} | {r['now_mean']:.3f} ± {r['now_std']:.3f} | {r['now_score']:.3f} |"
        )
    later = rows[1:] or rows
    train = sum(r["train"] for r in later)
    before_s = sum(r["before_s"] for r in later)
    print(
        f"\nprobe / training time over networks 2..{len(rows)}: before {before_s / train:.3f}x,"
        f" now {sum(r['now_s'] for r in later) / train:.3f}x (largest single network "
        f"{max(r['now_s'] / r['train'] for r in later):.3f}x)"
    )
    if len(rows) >= 4:
        v = {
            k: np.array([float(r[k]) for r in rows])
            for k in ("dice", "params", "before_mean", "now_mean", "now_score", "now_std")
        }
        print(f"n = {len(rows)} cells")
        for k in ("before_mean", "now_mean", "now_score"):
            print(
                f"Spearman(val Dice, {k}) {spearmanr(v['dice'], v[k])[0]:+.2f}; partial given params "
                f"{partial_spearman(v['dice'], v[k], v['params']):+.2f}; Spearman(params, {k}) "
                f"{spearmanr(v['params'], v[k])[0]:+.2f}"
            )
        print(
            f"Spearman(before_mean, now_score) {spearmanr(v['before_mean'], v['now_score'])[0]:+.2f}; "
            f"Spearman(params, now_std) {spearmanr(v['params'], v['now_std'])[0]:+.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
