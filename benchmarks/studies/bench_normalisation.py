"""Which per-image normalisation suits small real-like folders: percentile vs min-max vs standardisation.

A small folder is written by the synthetic generator with the artefacts of real camera tiles (hot pixels,
saturated debris, a few background-only tiles), read back like a user's folder, and the same networks (a
searched cell and the U-Net baseline) are trained with each normalisation under the Trainer's rules (the
configured steps_per_epoch, best validation epoch); test Dice is reported per network and normalisation.

    python -m benchmarks.studies.bench_normalisation                 # 64 images 64x64, 10 epochs x 12 steps, seed 1
    python -m benchmarks.studies.bench_normalisation --epochs 2      # a smoke run
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

from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.data.synthetic import generate_nuclei, write_folder  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402
from popnas_seg.training.trainer import Trainer  # noqa: E402

CELL = "[(-2,3x3 conv,-1,identity)]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="percentile,minmax,standard")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_norm_") as tmp:
        images, masks = generate_nuclei(
            args.images, size=(args.size, args.size), seed=args.seed, artefacts=True, empty_fraction=0.1
        )
        folder = write_folder(Path(tmp) / "folder", images, masks)
        print(
            f"folder: {args.images} images {args.size}x{args.size}, hot pixels + saturated debris, 10% "
            f"background-only; {args.epochs} epochs x {args.steps} steps, seed {args.seed}"
        )
        print("| network | normalisation | val Dice | test Dice | train s |")
        print("| --- | --- | --- | --- | --- |")
        for mode in args.modes.split(","):
            cfg = RunConfig.model_validate(
                {
                    "dataset": {
                        "name": None,
                        "path": str(folder),
                        "crop": [args.size, args.size],
                        "normalisation": mode,
                    },
                    "training_hyperparameters": {"epochs": args.epochs, "steps_per_epoch": args.steps},
                }
            )
            data = load_data(cfg.dataset, args.seed)
            trainer = Trainer(cfg, data)
            shape = data.input_shape
            arch = cfg.architecture_hyperparameters
            for name, model in (
                ("cell " + CELL, build_model(Cell.from_string(CELL), arch, shape, 2)),
                ("U-Net", build_unet(arch, shape, 2)),
            ):
                t0 = time.perf_counter()
                result, trained = trainer.train(
                    model, network_id=0, encoding=name, blocks=1, seed=args.seed, verbose=False
                )
                test = trainer.evaluate(trained, split="test")
                print(
                    f"| {name} | {mode} | {result.dice:.3f} | {test['dice']:.3f} | {time.perf_counter() - t0:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
