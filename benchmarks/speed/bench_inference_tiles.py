"""Analog drift scoring of whole images: tiles of the training crop vs whole-image tiles (`inference.tile_size`).

Why: the finalists' analog Dice is scored on whole test images. Tiled at the training crop (32x32 in the
quick config, 25 % overlap) a 256x256 image is 121 tiles, about 1.9x its pixels, pushed through the analog
layers a few tiles per call; the quick config spent ~15 of 27 minutes there (issue 36). The networks are fully
convolutional, so at inference a tile may be the whole image. This trains one cell briefly on the built-in
data (crop 32), converts it to analog tiles and scores its drift curve exactly as the finalists stage does
(`scoring.drift_curve`: `--repetitions` programmings per drift time) on 4 generated test images of 256x256 and on one of
2048x2048 (torch tiles only, `--large-times` x `--large-repetitions`), per tile class (AIHWKit's torch
`TorchInferenceRPUConfig`, which runs use, and its compiled `InferenceRPUConfig`, the equivalence check) and per
tiling (crop-sized tiles = `inference.tile_size` 0; whole-image tiles = the default 256). It prints seconds per
megapixel per drift time and programming (one scoring of every image), the mean analog Dice, and the speed-up of each
whole-image row over its crop-tiled twin. The same seeds program the same chips in every row, so Dice differences
are tiling, not luck.

    python -m benchmarks.speed.bench_inference_tiles                 # about 10 minutes on 2 busy cores
    python -m benchmarks.speed.bench_inference_tiles --skip-large    # 256x256 only
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import tempfile
import time
from pathlib import Path

CELL = "[(-2,3x3 conv,-1,identity)]"  # the study cell of benchmarks/studies/bench_analog.py
TARGET_SPEEDUP = 5.0
DICE_TOLERANCE = 0.005


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--repetitions", type=int, default=2, help="programmings per drift time (analog.repetitions)")
    p.add_argument("--times", type=float, nargs="+", default=[1.0, 2592000.0], help="drift times, s")
    p.add_argument("--tile-size", type=int, default=256, help="inference.tile_size of the whole-image rows")
    p.add_argument("--skip-large", action="store_true", help="skip the 2048x2048 image")
    p.add_argument("--large-times", type=int, default=1, help="drift times of the 2048x2048 rows (the first N)")
    p.add_argument("--large-repetitions", type=int, default=1, help="programmings of the 2048x2048 rows")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU seconds ~ work on a shared machine)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from popnas_seg.analog.export import keras_to_onnx, onnx_to_torch
    from popnas_seg.analog.rpu import inference_rpu_config, to_analog
    from popnas_seg.analog.scoring import drift_curve
    from popnas_seg.config import RunConfig
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.data.preprocess import preprocess_image
    from popnas_seg.data.synthetic import generate_nuclei
    from popnas_seg.imaging.tiling import Tiling, pack_images
    from popnas_seg.models.builder import build_model
    from popnas_seg.search_space.encoding import Cell
    from popnas_seg.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    cfg = RunConfig.model_validate(
        {"dataset": {"name": "synthetic_nuclei", "crop": [32, 32]}, "others": {"seed": args.seed}}
    )
    data = load_data(cfg.dataset, args.seed)
    model = build_model(Cell.from_string(CELL), cfg.architecture_hyperparameters, data.input_shape, data.classes_count)
    result, model = Trainer(cfg, data).train(
        model,
        network_id=0,
        encoding=CELL,
        blocks=1,
        seed=args.seed,
        epochs=args.epochs,
        early_stopping_patience=args.epochs,
        verbose=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        digital = onnx_to_torch(keras_to_onnx(model, Path(tmp) / "cell.onnx"))

    def images(count: int, side: int, seed: int) -> tuple:
        x, y = generate_nuclei(count, (side, side), seed=seed)
        return pack_images([preprocess_image(im, cfg.dataset) for im in x], [m.astype(np.int32) for m in y])

    sets = [("4 x 256x256", images(4, 256, 1000 + args.seed))]
    if not args.skip_large:
        sets.append(("1 x 2048x2048", images(1, 2048, 2000 + args.seed)))
    crop = cfg.tiling()
    tilings = [
        ("crop 32x32", Tiling(crop.crop, 0, crop.divisor, crop.overlap)),
        (f"tile_size {args.tile_size}", Tiling(crop.crop, args.tile_size, crop.divisor, crop.overlap)),
    ]
    kinds = ["torch", "compiled"]  # the run's tile class first; compiled for the equivalence check
    classes, ignore = data.classes_count, data.ignore_class
    batch = cfg.dataset.batch_size
    print(
        f"cell {CELL}: {result.params} params, validation Dice {result.dice:.4f}; drift times {args.times} s, "
        f"{args.repetitions} programmings each, torch threads {torch.get_num_threads()}"
    )

    rows = []
    for set_name, (x, y, sizes) in sets:
        megapixels = float(np.sum(sizes[:, 0] * sizes[:, 1])) / 1e6
        large = set_name.startswith("1 x 2048")
        for kind in kinds[:1] if large else kinds:  # the large image: the run's tiles only
            for tiling_name, tiling in tilings:
                times = list(args.times)[: max(1, args.large_times)] if large else list(args.times)
                reps = args.large_repetitions if large else args.repetitions
                torch.manual_seed(args.seed)
                analog = to_analog(digital, inference_rpu_config(cfg.analog, kind))
                t0, c0 = time.perf_counter(), time.process_time()
                curve = drift_curve(
                    analog, x, y, times, reps, args.seed, classes, ignore, batch, tiling.to_dict(), sizes
                )
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                rows.append(
                    {
                        "set": set_name,
                        "kind": kind,
                        "tiling": tiling_name,
                        "times": len(times),
                        "reps": reps,
                        "s_per_mp_time": seconds / megapixels / (len(times) * reps),
                        "seconds": seconds,
                        "cpu_per_mp_time": cpu / megapixels / (len(times) * reps),
                        "dice": [float(m) for m in curve["mean"]],
                        "std": [float(s) for s in curve["std"]],
                    }
                )
                print(
                    f"  {set_name}, {kind}, {tiling_name}: {seconds:.1f} s wall, {cpu:.1f} s CPU, Dice "
                    f"{', '.join(f'{m:.4f}' for m in curve['mean'])}",
                    flush=True,
                )

    print(
        "\n| images | tiles | tiling | drift times x programmings | CPU s per MP per drift time and "
        "programming | wall s (same) | analog Dice per drift time (mean ± std over programmings) | CPU speed-up | "
        "wall speed-up | largest Dice change |"
    )
    print("|---|---|---|---:|---:|---:|---|---:|---:|---:|")
    for row in rows:
        twin = next(
            r for r in rows if r["set"] == row["set"] and r["kind"] == row["kind"] and r["tiling"].startswith("crop")
        )
        speed, wall, change = "", "", ""
        if row is not twin:
            speed = f"{twin['cpu_per_mp_time'] / row['cpu_per_mp_time']:.1f}x"
            wall = f"{twin['s_per_mp_time'] / row['s_per_mp_time']:.1f}x"
            n = min(len(row["dice"]), len(twin["dice"]))
            change = f"{max(abs(a - b) for a, b in zip(row['dice'][:n], twin['dice'][:n])):.4f}"
        print(
            f"| {row['set']} | {row['kind']} | {row['tiling']} | {row['times']} x {row['reps']} | "
            f"{row['cpu_per_mp_time']:.1f} | {row['s_per_mp_time']:.1f} | "
            f"{', '.join(f'{d:.4f} ± {v:.4f}' for d, v in zip(row['dice'], row['std']))} | {speed} | {wall} | "
            f"{change} |"
        )
    print(f"\ntarget: >= {TARGET_SPEEDUP:g}x on 4 x 256x256 with every drift time's Dice within {DICE_TOLERANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
