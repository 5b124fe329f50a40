"""Training, analog probe and drift scoring timed on whatever devices this process sees (one JSON line out).

`scripts/gpu_check.sh` runs it twice on a GPU machine, once as is and once with CUDA_VISIBLE_DEVICES=""
(TensorFlow and torch then see the CPU only), and prints the GPU/CPU ratios. Each part is what a run does:
Keras training of one cell (`--epochs` on the built-in data), the search-time analog probe (torch tiles,
`probe_repetitions` programmings on validation crops) and the finalists' drift scoring (whole test images,
`--times` x `--repetitions`), each timed after a warm-up so first-call compilation is not counted.

    python -m benchmarks.speed.bench_devices                     # devices as seen
    CUDA_VISIBLE_DEVICES= python -m benchmarks.speed.bench_devices   # CPU only
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

CELL = "[(-2,3x3 conv,-1,identity)]"  # the study cell of benchmarks/studies/bench_analog.py


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repetitions", type=int, default=2)
    p.add_argument("--times", type=float, nargs="+", default=[1.0, 2592000.0])
    p.add_argument("--samples", type=int, default=96, help="built-in images (96x96)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from popnas_seg.analog.export import keras_to_onnx, onnx_to_torch
    from popnas_seg.analog.rpu import analog_device, inference_rpu_config, to_analog
    from popnas_seg.analog.scoring import drift_curve, on_device, probe_in_process
    from popnas_seg.config import RunConfig
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.devices import device_plan, tensorflow_gpus, torch_gpus
    from popnas_seg.imaging.tiling import pack_images
    from popnas_seg.models.builder import build_model
    from popnas_seg.search_space.encoding import Cell
    from popnas_seg.training.trainer import Trainer

    plan = device_plan(tensorflow_gpus(), torch_gpus())
    cfg = RunConfig.model_validate(
        {"dataset": {"name": "synthetic_nuclei", "samples": args.samples}, "others": {"seed": args.seed}}
    )
    data = load_data(cfg.dataset, args.seed)
    timings: dict[str, float] = {}

    def train(epochs: int) -> tuple:
        model = build_model(
            Cell.from_string(CELL), cfg.architecture_hyperparameters, data.input_shape, data.classes_count
        )
        return Trainer(cfg, data).train(
            model,
            network_id=0,
            encoding=CELL,
            blocks=1,
            seed=args.seed,
            epochs=epochs,
            early_stopping_patience=epochs,
            verbose=False,
        )

    train(1)  # warm-up: graph building and device initialisation
    t0 = time.perf_counter()
    result, model = train(args.epochs)
    timings["train_s_per_epoch"] = (time.perf_counter() - t0) / args.epochs

    x, y = data.val_arrays(cfg.analog.probe_images)
    analog_cfg = cfg.analog.model_dump(mode="json")
    images, masks = data.test_images()
    tx, ty, sizes = pack_images(images, masks)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = str(keras_to_onnx(model, Path(tmp) / "cell.onnx"))
        probe_in_process(onnx, analog_cfg, data.classes_count, data.ignore_class, args.seed, x[:2], y[:2])
        t0 = time.perf_counter()
        probe = probe_in_process(onnx, analog_cfg, data.classes_count, data.ignore_class, args.seed, x, y)
        timings["probe_s"] = time.perf_counter() - t0
        torch.manual_seed(args.seed)
        analog = on_device(to_analog(onnx_to_torch(onnx), inference_rpu_config(cfg.analog)), analog_device())
        t0 = time.perf_counter()
        curve = drift_curve(
            analog,
            tx,
            ty,
            list(args.times),
            args.repetitions,
            args.seed,
            data.classes_count,
            data.ignore_class,
            cfg.dataset.batch_size,
            cfg.tiling().to_dict(),
            sizes,
        )
        timings["drift_s"] = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "keras": plan.keras,
                "analog": plan.analog,
                "devices": plan.lines,
                "timings": timings,
                "val_dice": result.dice,
                "probe_analog_dice": probe["analog_dice_mean"],
                "drift_dice": [float(m) for m in curve["mean"]],
                "test_images": len(images),
                "drift_evaluations": len(args.times) * args.repetitions,
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
