"""AIHWKit's compiled tiles vs its torch tiles for the search-time analog probe: repeatability and cost.

Why: `InferenceRPUConfig` tiles draw their forward (DAC/ADC, output) noise in C++ from a clock-seeded generator, so
two probes of one network under one seed differ a little, and so do two repeats of a whole search
(docs/benchmarks_log.md, issue 12). `TorchInferenceRPUConfig` draws every noise from torch's generator; this
measurement moved the probe to it; issue 36 then moved HWA and drift scoring too (`rpu.inference_rpu_config(cfg,
tiles)`, "torch" by default, "compiled" for this comparison).
This trains one cell briefly on the built-in data, exports it to ONNX, and probes it `--repeats` times per tile
kind exactly as the search does (same seed each time, `--repetitions` programmings at one day, on
`--images` validation crops), in this process. It prints, per kind, the analog Dice of every repeat, the largest
difference between repeats, and the seconds per probe.

    python -m benchmarks.speed.bench_probe_tiles            # about 3 minutes on 2 cores
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="probes per tile kind, same seed")
    p.add_argument("--repetitions", type=int, default=2, help="programmings per probe (as analog.probe_repetitions)")
    p.add_argument("--images", type=int, default=8, help="validation crops (as analog.probe_images)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from popnas_seg.analog.export import keras_to_onnx, onnx_to_torch
    from popnas_seg.analog.rpu import inference_rpu_config, to_analog
    from popnas_seg.analog.scoring import analog_dice, score_repetitions
    from popnas_seg.config import RunConfig
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.models.builder import build_model
    from popnas_seg.search_space.encoding import Cell
    from popnas_seg.training.trainer import Trainer

    cfg = RunConfig.model_validate({"dataset": {"name": "synthetic_nuclei"}, "others": {"seed": args.seed}})
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
    x, y = data.val_arrays(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = keras_to_onnx(model, Path(tmp) / "cell.onnx")
        digital = onnx_to_torch(onnx)
    classes, ignore = data.classes_count, data.ignore_class
    print(
        f"cell {CELL}: {result.params} params, validation Dice {result.dice:.4f}, torch digital Dice "
        f"{analog_dice(digital, x, y, classes, ignore):.4f} on {len(x)} crops of {x.shape[1]}x{x.shape[2]}"
    )

    rows = []
    for kind, make in (
        ("compiled (InferenceRPUConfig)", lambda c: inference_rpu_config(c, "compiled")),
        ("torch (TorchInferenceRPUConfig)", inference_rpu_config),
    ):
        means, seconds = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            torch.manual_seed(args.seed)
            analog = to_analog(digital, make(cfg.analog))
            scores = score_repetitions(
                analog, x, y, cfg.analog.t_inference, args.repetitions, args.seed, classes, ignore
            )
            seconds.append(time.perf_counter() - t0)
            means.append(float(np.mean(scores)))
        rows.append((kind, means, max(means) - min(means), float(np.median(seconds))))

    print(
        f"\n| tiles | analog Dice of each probe (1 day, {args.repetitions} programmings) | largest difference "
        "| s per probe (median) |"
    )
    print("|---|---|---:|---:|")
    for kind, means, spread, sec in rows:
        print(f"| {kind} | {', '.join(f'{m:.5f}' for m in means)} | {spread:.2e} | {sec:.2f} |")
    print(f"\ntorch / compiled seconds per probe: {rows[1][3] / rows[0][3]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
