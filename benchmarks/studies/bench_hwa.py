"""HWA vs its digital control vs no HWA on one converged network: what `analog.hwa_epochs` should be.

Trains one network with the Trainer to convergence (the finalists' rules: `analog.final_epochs` maximum,
`early_stopping_patience`, best weights), exports it, and runs the finalists' analog job in this process
(analog/hwa.py: HWA with the schedule and checkpoint selection, the digital control, drift curves).
Prints the analog validation Dice at `t_inference` after every HWA / control epoch (the checkpoint rule) and
the test Dice at each drift time for the three variants (mean +- std over programmings).

    python -m benchmarks.studies.bench_hwa --samples 96 --hwa-epochs 6      # built-in data, minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import tempfile
import time
from pathlib import Path

from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402
from popnas_seg.training.trainer import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--cell", default="[(-2,3x3 conv,-1,identity)]", help='a cell encoding, or "unet"')
    parser.add_argument("--hwa-epochs", type=int, default=6)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = RunConfig.model_validate(
        {
            "dataset": {"samples": args.samples},
            "analog": {
                "hwa_epochs": args.hwa_epochs,
                "repetitions": args.repetitions,
                "eval_times": [1.0, 86400.0, 2592000.0, 31536000.0],
            },
        }
    )
    data = load_data(cfg.dataset, args.seed)
    trainer = Trainer(cfg, data)
    arch, shape = cfg.architecture_hyperparameters, data.input_shape
    model = (
        build_unet(arch, shape, 2) if args.cell == "unet" else build_model(Cell.from_string(args.cell), arch, shape, 2)
    )
    t0 = time.perf_counter()
    result, model = trainer.train(
        model,
        network_id=0,
        encoding=args.cell,
        blocks=1,
        seed=args.seed,
        epochs=cfg.analog.final_epochs,
        early_stopping_patience=cfg.analog.early_stopping_patience,
        verbose=False,
    )
    train_s = time.perf_counter() - t0
    test = trainer.evaluate(model, split="test")
    print(
        f"{args.cell}: {result.params} params, {result.epochs} epochs (best {result.best_epoch}), "
        f"val Dice {result.dice:.3f}, test Dice {test['dice']:.3f}, {train_s:.0f} s"
    )
    from popnas_seg.analog.export import keras_to_onnx
    from popnas_seg.analog.hwa import hwa_and_drift_in_process

    with tempfile.TemporaryDirectory(prefix="bench_hwa_") as tmp:
        onnx = keras_to_onnx(model, Path(tmp) / "model.onnx")
        train_x, train_y = data.train_arrays()
        val_x, val_y = data.val_arrays()
        test_x, test_y = data.test_arrays()
        hp = cfg.training_hyperparameters
        t0 = time.perf_counter()
        rep = hwa_and_drift_in_process(
            str(onnx),
            cfg.analog.model_dump(mode="json"),
            2,
            None,
            tmp,
            args.seed,
            cfg.dataset.batch_size,
            None,
            hp.dice_loss_weight,
            hp.ce_loss_weight,
            train_x,
            train_y,
            test_x,
            test_y,
            val_x=val_x,
            val_y=val_y,
            steps_per_epoch=hp.steps_per_epoch,
        )
        print(
            f"analog job {time.perf_counter() - t0:.0f} s; timings "
            + ", ".join(f"{k} {v:.0f}" for k, v in rep["timings"].items())
        )
    print("epoch | HWA val Dice @t_inference | control val Dice")
    for i, (h, c) in enumerate(zip(rep["hwa_val_dice"], rep["control_val_dice"] or [None] * 99), start=1):
        print(f"{i} | {h:.4f} | {'' if c is None else f'{c:.4f}'}")
    print(f"best epochs: HWA {rep['hwa_best_epoch']}, control {rep['control_best_epoch']}")
    print("| variant | " + " | ".join(f"t={t:g}s" for t in rep["times"]) + " |")
    for name, key in (("no HWA", "before_hwa"), ("digital control", "digital_control"), ("HWA", "after_hwa")):
        curve = rep.get(key)
        if curve:
            print(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(curve["mean"], curve["std"])) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
