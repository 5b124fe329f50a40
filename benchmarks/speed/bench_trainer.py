"""Trainer overhead and analog-probe cost, measured in one run on synthetic nuclei.

1. The same network (the U-Net baseline, or a cell given with --cell) trained twice from the same initial
   weights on the same tf.data pipeline: once by a bare `keras.Model.fit` (same loss and metrics, no
   callbacks beyond epoch timing), once by `Trainer.train` (best-epoch weights, NaN check, CSV and event
   logs, per-epoch line, inference timing). The ratio says what the trainer's bookkeeping costs.
2. The analog probe of the trained network (ONNX export + worker process + repetitions), as a ratio of
   the network's training time: what the analog objective adds to every search step.

    python -m benchmarks.speed.bench_trainer            # 64x64, 192 images, 3 epochs (minutes on 2 cores)
    python -m benchmarks.speed.bench_trainer --quick    # tiny settings: checks that it runs
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras  # noqa: E402

from popnas_seg.config import RunConfig  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.models.builder import build_model, build_unet  # noqa: E402
from popnas_seg.training.losses import ForegroundDice, MeanIoU, SegmentationLoss  # noqa: E402
from popnas_seg.training.schedules import make_optimizer, make_schedule  # noqa: E402
from popnas_seg.training.trainer import Trainer  # noqa: E402


def _config(args: argparse.Namespace) -> RunConfig:
    size = args.size
    return RunConfig.model_validate(
        {
            "dataset": {
                "samples": args.samples,
                "generated_size": [size + size // 2] * 2,
                "crop": [size, size],
                "batch_size": args.batch_size,
            },
            "training_hyperparameters": {"epochs": args.epochs},
            "architecture_hyperparameters": {"filters": args.filters, "motifs": args.motifs},
            "analog": {"probe_repetitions": args.probe_repetitions, "probe_images": args.probe_images},
        }
    )


def _bare_fit(model: keras.Model, cfg: RunConfig, data: object, epochs: int) -> list[float]:
    """Plain compile + fit with the trainer's loss, metrics and optimizer; returns seconds per epoch."""
    hp = cfg.training_hyperparameters
    train_ds, val_ds = data.train_dataset(), data.val_dataset()
    steps = sum(1 for _ in train_ds)
    model.compile(
        optimizer=make_optimizer(hp, make_schedule(hp, steps, epochs)),
        loss=SegmentationLoss(
            data.classes_count, data.ignore_class, data.class_weights, hp.dice_loss_weight, hp.ce_loss_weight
        ),
        metrics=[ForegroundDice(data.classes_count, data.ignore_class), MeanIoU(data.classes_count, data.ignore_class)],
        jit_compile=bool(cfg.others.xla),
    )
    times: list[float] = []
    marks: dict[str, float] = {}
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: marks.__setitem__("t", time.perf_counter()),
        on_epoch_end=lambda e, logs: times.append(time.perf_counter() - marks["t"]),
    )
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
    return times


def _row(name: str, times: list[float]) -> tuple[str, float, float, float]:
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return name, sum(times), times[0], steady


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (32x32, 24 images, 2 epochs)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--motifs", type=int, default=2)
    parser.add_argument("--cell", default=None, help='a cell such as "[(-1,3x3 conv,-2,identity)]"; default: U-Net')
    parser.add_argument("--probe-repetitions", type=int, default=3)
    parser.add_argument("--probe-images", type=int, default=16)
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.samples, args.epochs, args.batch_size = 32, 24, 2, 8
        args.filters, args.probe_repetitions, args.probe_images = 4, 1, 4
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = _config(args)
    data = load_data(cfg.dataset, args.seed)
    trainer = Trainer(cfg, data, logging.getLogger("bench"))  # before building: sets the precision policy
    arch, shape, classes = cfg.architecture_hyperparameters, data.input_shape, data.classes_count
    if args.cell:
        from popnas_seg.search_space.encoding import Cell

        template = build_model(Cell.from_string(args.cell), arch, shape, classes)
    else:
        template = build_unet(arch, shape, classes)
    print(
        f"network: {template.name}, {template.count_params():,} params, input {shape}, "
        f"{args.samples} images, {args.epochs} epochs"
    )

    keras.utils.set_random_seed(args.seed)
    bare_times = _bare_fit(keras.models.clone_model(template), cfg, data, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        result, trained = trainer.train(
            template,
            network_id=0,
            encoding=args.cell or "unet",
            blocks=0,
            seed=args.seed,
            out_dir=Path(tmp) / "net",
            epochs=args.epochs,
        )
        trainer_times = list(result.epoch_times_s or [])
        if result.status != "ok":
            print(f"trainer status {result.status}: {result.error}")
            return 1
        rows = [_row("bare Model.fit", bare_times), _row("Trainer.train", trainer_times)]
        print()
        print("| run | total epochs s | first epoch s | steady epoch s (median) |")
        print("| --- | ---: | ---: | ---: |")
        for name, total, first, steady in rows:
            print(f"| {name} | {total:.2f} | {first:.2f} | {steady:.3f} |")
        print(
            f"| **ratio Trainer / bare** | {rows[1][1] / rows[0][1]:.2f} | {rows[1][2] / rows[0][2]:.2f} | "
            f"{rows[1][3] / rows[0][3]:.2f} |"
        )
        print(
            f"\ntrainer: fit wall time {result.train_time_s:.2f} s, val Dice {result.dice:.3f}, "
            f"inference {result.inference_time_ms:.2f} ms/image"
        )

        if not args.no_probe:
            from popnas_seg.analog.export import keras_to_onnx
            from popnas_seg.analog.probe import probe_analog
            from popnas_seg.training.losses import dice_score

            x, y = data.val_arrays(cfg.analog.probe_images)
            digital = dice_score(trained.predict(x, verbose=0).argmax(-1), y, classes, data.ignore_class)
            t = time.perf_counter()
            onnx_path = keras_to_onnx(trained, Path(tmp) / "net" / "model.onnx")
            export_s = time.perf_counter() - t
            probe = probe_analog(onnx_path, x, y, cfg.analog, classes, data.ignore_class, digital, args.seed)
            print()
            print("| analog step | seconds | ratio to training time |")
            print("| --- | ---: | ---: |")
            print(f"| ONNX export | {export_s:.2f} | {export_s / result.train_time_s:.2f} |")
            print(
                f"| probe ({cfg.analog.probe_repetitions} reps x {len(x)} images, worker incl.) | "
                f"{probe.time_s:.2f} | {probe.time_s / result.train_time_s:.2f} |"
            )
            print(
                f"\nanalog Dice {probe.analog_dice_mean:.3f} ± {probe.analog_dice_std:.3f} "
                f"(digital {digital:.3f}), weights on analog tiles "
                f"{probe.coverage['weights_analog_fraction']:.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
