"""Why a small folder's networks lose Dice on analog tiles: input outliers (hot pixels, saturated specks).

Issue 10's study found that on the 48-image artefact folder a searched cell loses 0.15 Dice one day after
programming (no HWA), against 0.01 on the built-in data. The suspect: after per-image standardisation the
folder's hot pixels sit 10-55 standard deviations out, and AIHWKit scales every input vector of an analog
tile by its absolute maximum before the DAC (noise management ABS_MAX), so every patch that holds an outlier
is read with a coarse input step and an output noise scaled up by the same factor.

This script trains the study's cell with the finalists' rules on three versions of the same folder and runs
the finalists' analog job (no HWA, digital control, HWA; drift at 1 day / 1 month / 1 year, whole test images):

- ``artefacts``: the study's folder (hot pixels, saturated debris, 10 % empty tiles), standardised;
- ``artefacts, clip c``: the same with ``dataset.normalisation_clip = c``;
- ``clean``: the same images without the artefacts (the generator draws them last, so nothing else changes).

plus, without retraining, the ``artefacts`` network scored on test inputs clipped at c (no HWA only): if its
analog Dice recovers while its digital Dice stays, the outliers are the cause. Each result is a JSON file
under OUT (resumable); the table is printed from whatever is there.

    python -m benchmarks.studies.bench_input_outliers --out /work/bench_runs/outliers --seeds 1 --clip 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.studies import bench_analog  # noqa: E402

IMAGES = bench_analog.FOLDER_IMAGES
TIMES = bench_analog.STUDY_TIMES


def folder(out: Path, artefacts: bool) -> Path:
    """The study's folder (same generator call), with or without its artefacts."""
    from popnas_seg.data.synthetic import generate_nuclei, write_folder

    path = out / ("folder_artefacts" if artefacts else "folder_clean")
    if not (path / "masks").exists():
        images, masks = generate_nuclei(IMAGES, size=(64, 64), seed=0, artefacts=artefacts, empty_fraction=0.1)
        write_folder(out / (path.name + ".tmp"), images, masks).replace(path)
    return path


def config(path: Path, seed: int, clip: float | None, overrides: dict[str, Any]) -> Any:
    from popnas_seg.config import RunConfig

    return RunConfig.model_validate(
        {
            "dataset": {"name": None, "path": str(path), "crop": [64, 64], "normalisation_clip": clip},
            "analog": {"eval_times": TIMES, "repetitions": 5, **overrides},
            "others": {"seed": seed},
        }
    )


def analog_job(
    model: Any, cfg: Any, data: Any, seed: int, test_clip: float | None = None, hwa: bool = True
) -> dict[str, Any]:
    """The finalists' analog job on whole test images (optionally clipped at `test_clip`), as bench_analog."""
    import numpy as np

    from popnas_seg.analog.drift import hwa_and_drift
    from popnas_seg.analog.export import keras_to_onnx
    from popnas_seg.imaging.tiling import pack_images

    a = cfg.analog if hwa else cfg.analog.model_copy(update={"hwa_epochs": 0})
    hp = cfg.training_hyperparameters
    images, masks = data.test_images()
    if test_clip is not None:
        images = [np.clip(im, -test_clip, test_clip) for im in images]
    test_x, test_y, sizes = pack_images(images, masks)
    (train_x, train_y), (val_x, val_y) = data.train_arrays(), data.val_arrays()
    with tempfile.TemporaryDirectory(prefix="bench_outliers_") as scratch:
        onnx = keras_to_onnx(model, Path(scratch) / "model.onnx")
        t0 = time.perf_counter()
        report = hwa_and_drift(
            onnx,
            train_x,
            train_y,
            test_x,
            test_y,
            a,
            data.classes_count,
            data.ignore_class,
            Path(scratch),
            seed + 1000,
            cfg.dataset.batch_size,
            class_weights=getattr(data, "class_weights", None),
            dice_weight=hp.dice_loss_weight,
            ce_weight=hp.ce_loss_weight,
            tile=tuple(data.input_shape[:2]),
            test_sizes=sizes,
            val_x=val_x,
            val_y=val_y,
            steps_per_epoch=hp.steps_per_epoch,
        ).to_dict()
    out = {"torch_digital_dice": report["digital_dice"], "analog_s": time.perf_counter() - t0}
    for label, key in bench_analog.VARIANTS:
        curve = report.get(key)
        out[label] = None if not curve else {"mean": curve["mean"], "std": curve["std"]}
    return out


def outlier_stats(data: Any) -> dict[str, float]:
    """How far out the normalised test inputs reach: max |x| and the share of pixels beyond 5."""
    import numpy as np

    images, _ = data.test_images()
    z = np.concatenate([im.ravel() for im in images])
    return {"max_abs": float(np.abs(z).max()), "share_beyond_5": float(np.mean(np.abs(z) > 5.0))}


def unit(out: Path, seed: int, variant: str, clip: float, overrides: dict[str, Any]) -> dict[str, Any]:
    path = out / f"seed{seed}" / f"{variant.replace(' ', '_').replace(',', '')}.json"
    if path.exists():
        return json.loads(path.read_text())
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.training.trainer import Trainer

    artefacts = variant != "clean"
    train_clip = clip if variant.startswith("artefacts, clip") else None
    cfg = config(folder(out, artefacts), seed, train_clip, overrides)
    data = load_data(cfg.dataset, seed)
    print(f"[{time.strftime('%H:%M:%S')}] seed {seed} {variant}: training ...", flush=True)
    model, digital = bench_analog._train(Trainer(cfg, data), cfg, data, "cell", bench_analog.STUDY_CELL, seed, 1)
    result: dict[str, Any] = {
        "seed": seed,
        "variant": variant,
        "clip": train_clip,
        "digital": digital,
        "inputs": outlier_stats(data),
        "analog": analog_job(model, cfg, data, seed),
    }
    if variant == "artefacts":  # the mechanism check: the same network, test inputs clipped, no HWA
        result["test_clipped"] = {"clip": clip, **analog_job(model, cfg, data, seed, test_clip=clip, hwa=False)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    print(
        f"  test Dice {digital['test_dice']:.3f}, 1 day no HWA {result['analog']['no HWA']['mean'][0]:.3f}", flush=True
    )
    return result


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(out: Path) -> None:
    import numpy as np

    rows = [json.loads(p.read_text()) for p in sorted(out.glob("seed*/*.json"))]
    if not rows:
        print(f"no results under {out} yet")
        return
    print(
        "| training data | seeds | max abs input (test) | digital test Dice | no HWA 1 d / 1 mo / 1 y | "
        "digital control 1 d / 1 mo / 1 y | HWA 1 d / 1 mo / 1 y |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"], []).append(r)

    def three(rs: list[dict], key: str, src: str = "analog") -> str:
        vals = [r[src][key]["mean"] for r in rs if r.get(src) and r[src].get(key)]
        return " / ".join(_f(float(np.mean([v[i] for v in vals]))) for i in range(3)) if vals else "-"

    for variant, rs in groups.items():
        print(
            f"| {variant} | {','.join(str(r['seed']) for r in rs)} | "
            f"{np.mean([r['inputs']['max_abs'] for r in rs]):.1f} | "
            f"{np.mean([r['digital']['test_dice'] for r in rs]):.3f} (torch "
            f"{np.mean([r['analog']['torch_digital_dice'] for r in rs]):.3f}) | {three(rs, 'no HWA')} | "
            f"{three(rs, 'digital control')} | {three(rs, 'HWA')} |"
        )
        checked = [r for r in rs if "test_clipped" in r]
        if checked:
            c = checked[0]["test_clipped"]["clip"]
            print(
                f"| {variant}, test inputs clipped at {c:g} (same network) | "
                f"{','.join(str(r['seed']) for r in checked)} | {c:.1f} | torch "
                f"{np.mean([r['test_clipped']['torch_digital_dice'] for r in checked]):.3f} | "
                f"{three(checked, 'no HWA', 'test_clipped')} | - | - |"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results folder (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--clip", type=float, default=5.0, help="normalisation_clip of the clipped variant")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TF and torch (0: all)")
    p.add_argument("--final-epochs", type=int, default=None, help="maximum epochs (default: config)")
    p.add_argument("--report", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    overrides = {} if args.final_epochs is None else {"final_epochs": args.final_epochs}
    if not args.report:
        bench_analog._pin_threads(args.threads)
        for seed in args.seeds:
            for variant in ("artefacts", f"artefacts, clip {args.clip:g}", "clean"):
                unit(args.out, seed, variant, args.clip, overrides)
    report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
