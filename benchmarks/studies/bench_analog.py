"""Analog benchmark of a finished run: Dice drop from digital to 1 month, with and without HWA, and its cost.

For every exported network of `RUN/final/` (the finalists and the U-Net baseline) it re-runs hardware-aware
training and drift scoring (analog/drift.py) into a scratch folder, on the run's own data and analog settings
(optionally fewer programmings / HWA epochs), and prints a markdown table:

    network | digital test Dice | 1 month: no HWA / digital control / HWA (drop) | s per drift evaluation

A "drift evaluation" is one (programming, time) scoring of the test images. `--from-results` skips the re-run
and summarises the drift_report.json files the finalists stage already wrote (its timings included).

    python -m benchmarks.studies.bench_analog logs/exp1 [--repetitions 3] [--hwa-epochs 1] [--from-results]

Run it on a small run: the analog simulation runs on the CPU (several seconds per evaluation at 64x64).

`--study OUT` is the multi-seed study of issue 10 instead: for a searched cell (the finalist) and the U-Net,
on the built-in data and on a small folder (48 training images written by the generator with camera
artefacts, like a user's folder), for every seed it trains each network with the finalists' rules
(`analog.final_epochs`, `early_stopping_patience`, best weights), the finalist once more 4x longer on the
folder (is the budget the bottleneck?), then runs the finalists' analog job (HWA, digital control, drift
at 1 day / 1 month / 1 year over 5 programmings, whole test images tiled). Every (data, seed, network)
result is a JSON file under OUT, so an interrupted study resumes where it stopped; the table and the
targets are printed from whatever is there (`--report` prints without training).

    python -m benchmarks.studies.bench_analog --study bench_out/analog --seeds 1 2 3 --data folder builtin
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MONTH_S = 2592000.0
DAY_S, YEAR_S = 86400.0, 31536000.0
STUDY_TIMES = [DAY_S, MONTH_S, YEAR_S]
STUDY_CELL = "[(-2,3x3 conv,-1,identity)]"  # the best searched cell on the real nuclei tiles (issue 10)
# data name -> dataset config (the folder is written under OUT on first use)
STUDY_DATA = {
    "builtin": {"name": "synthetic_nuclei"},
    "folder": {"name": None, "crop": [64, 64]},
}
FOLDER_IMAGES = 68  # 48 train + 10 validation + 10 test with the default 0.15 / 0.15 splits
LONG_FACTOR = 4
VARIANTS = (("no HWA", "before_hwa"), ("digital control", "digital_control"), ("HWA", "after_hwa"))


def _pin_threads(threads: int) -> None:
    """One process per core when two studies share a machine; the analog worker inherits OMP_NUM_THREADS."""
    if threads <= 0:
        return
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    import popnas_seg  # noqa: F401  (first: its root sets TF_ENABLE_ONEDNN_OPTS=0; oneDNN SIGSEGVs in TF 2.21)

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _study_config(name: str, out: Path, seed: int, overrides: dict[str, Any]) -> Any:
    from popnas_seg.config import RunConfig

    dataset = dict(STUDY_DATA[name])
    if name == "folder":
        folder = out / "folder48"
        if not (folder / "masks").exists():
            from popnas_seg.data.synthetic import generate_nuclei, write_folder

            images, masks = generate_nuclei(FOLDER_IMAGES, size=(64, 64), seed=0, artefacts=True, empty_fraction=0.1)
            write_folder(out / "folder48.tmp", images, masks).replace(folder)
        dataset["path"] = str(folder)
    return RunConfig.model_validate(
        {
            "dataset": dataset,
            "analog": {"eval_times": STUDY_TIMES, "repetitions": 5, **overrides},
            "others": {"seed": seed},
        }
    )


def _train(trainer: Any, cfg: Any, data: Any, net: str, cell: str, seed: int, factor: int) -> tuple[Any, dict]:
    """The finalists' final training (stage.final_training) of `net`, `factor` times the epochs and patience."""
    from popnas_seg.models.builder import build_model, build_unet
    from popnas_seg.search_space.encoding import Cell

    a, arch, shape = cfg.analog, cfg.architecture_hyperparameters, data.input_shape
    model = (
        build_unet(arch, shape, data.classes_count)
        if net == "unet"
        else build_model(Cell.from_string(cell), arch, shape, data.classes_count)
    )
    t0 = time.perf_counter()
    result, model = trainer.train(
        model,
        network_id=0,
        encoding=net if net == "unet" else cell,
        blocks=1,
        seed=seed,
        epochs=a.final_epochs * factor,
        early_stopping_patience=a.early_stopping_patience * factor,
        verbose=False,
    )
    train_s = time.perf_counter() - t0
    test = trainer.evaluate(model, split="test")
    return model, {
        "params": result.params,
        "val_dice": result.dice,
        "test_dice": float(test["dice"]),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_s": train_s,
        "status": result.status,
    }


def _study_unit(
    out: Path,
    name: str,
    seed: int,
    net: str,
    cell: str,
    overrides: dict[str, Any],
    long_factor: int = LONG_FACTOR,
    hwa_one_pass: bool = False,
) -> dict[str, Any]:
    """One (data, seed, network): digital training (+ 4x control on the folder), then the analog job."""
    from popnas_seg.analog.drift import hwa_and_drift
    from popnas_seg.analog.export import keras_to_onnx
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.imaging.tiling import pack_images
    from popnas_seg.training.trainer import Trainer

    cfg = _study_config(name, out, seed, overrides)
    data = load_data(cfg.dataset, seed)
    trainer = Trainer(cfg, data)
    unit: dict[str, Any] = {
        "data": name,
        "seed": seed,
        "network": net,
        "encoding": net if net == "unet" else cell,
        "train_images": int(data.split_sizes()["train"]),
        "analog": overrides,
    }
    model, unit["digital"] = _train(trainer, cfg, data, net, cell, seed, 1)
    if name == "folder" and net != "unet" and long_factor > 1:
        _, unit["digital_long"] = _train(trainer, cfg, data, net, cell, seed, long_factor)
    unit["hwa_steps_per_epoch"] = None if hwa_one_pass else cfg.training_hyperparameters.steps_per_epoch
    a, hp = cfg.analog, cfg.training_hyperparameters
    train_x, train_y = data.train_arrays()
    val_x, val_y = data.val_arrays()
    images, masks = data.test_images()
    test_x, test_y, sizes = pack_images(images, masks)
    with tempfile.TemporaryDirectory(prefix="bench_analog_study_") as scratch:
        t0 = time.perf_counter()
        onnx = keras_to_onnx(model, Path(scratch) / "model.onnx")
        unit["export_s"] = time.perf_counter() - t0
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
            steps_per_epoch=None if hwa_one_pass else hp.steps_per_epoch,
        )
        unit["analog_s"] = time.perf_counter() - t0
    unit["times"] = report.times
    unit["timings"] = report.timings
    unit["hwa_best_epoch"], unit["control_best_epoch"] = report.hwa_best_epoch, report.control_best_epoch
    unit["torch_digital_dice"] = report.digital_dice
    for label, key in VARIANTS:
        curve = getattr(report, key)
        unit[label] = None if curve is None else {"mean": curve.mean, "std": curve.std}
    path = out / name / f"seed{seed}" / f"{net}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, unit)
    return unit


def _ms(values: list[float]) -> str:
    import numpy as np

    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "-"
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _mean(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def study_report(out: Path, names: list[str]) -> None:
    """Tables (mean ± std over seeds) and the issue-10 targets, from the unit files under `out`."""
    units = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed*/*.json"))]
    units = [u for u in units if u["data"] in names]
    if not units:
        print(f"no results under {out} yet")
        return
    print(
        f"Analog study in {out}: mean ± std over seeds (each seed's analog value is the mean of "
        f"{units[0].get('analog', {}).get('repetitions', 5)} programmings); drift times 1 day / 1 month / 1 year\n"
    )
    headers = ["data", "network", "params", "seeds", "digital test Dice", "4x longer"]
    headers += [f"{label}, {t}" for label, _ in VARIANTS for t in ("1 d", "1 mo", "1 y")]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(" --- " for _ in headers) + "|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for u in units:
        groups.setdefault((u["data"], u["network"]), []).append(u)
    for (name, net), us in sorted(groups.items()):
        row = [
            name,
            net,
            f"{us[0]['digital']['params']:,}",
            ",".join(str(u["seed"]) for u in us),
            _ms([u["digital"]["test_dice"] for u in us]),
            _ms([u["digital_long"]["test_dice"] for u in us if "digital_long" in u]),
        ]
        for label, _ in VARIANTS:
            for i in range(3):
                row.append(_ms([u[label]["mean"][i] for u in us if u.get(label)]))
        print("| " + " | ".join(row) + " |")
    print(
        "\nWall time per stage, mean over seeds (s): digital training | 4x training | export | analog job "
        "(HWA train, control train, drift scoring)\n"
    )
    print("| data | network | train | 4x train | export | analog | HWA | control | epochs (best) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, net), us in sorted(groups.items()):
        t = [u["timings"] for u in us]
        print(
            f"| {name} | {net} | {_fmt(_mean([u['digital']['train_s'] for u in us]), 0)} | "
            f"{_fmt(_mean([u['digital_long']['train_s'] for u in us if 'digital_long' in u]), 0)} | "
            f"{_fmt(_mean([u['export_s'] for u in us]), 1)} | {_fmt(_mean([u['analog_s'] for u in us]), 0)} | "
            f"{_fmt(_mean([x.get('hwa_train_s') for x in t]), 0)} | "
            f"{_fmt(_mean([x.get('control_train_s') for x in t]), 0)} | "
            + ", ".join(f"{u['digital']['epochs']} ({u['digital']['best_epoch']})" for u in us)
            + " |"
        )
    print("\nTargets (issue 10):")
    folder = {net: us for (name, net), us in groups.items() if name == "folder"}
    cells = [net for net in folder if net != "unet"]
    for net in cells:
        d = _mean([u["digital"]["test_dice"] for u in folder[net]])
        long = _mean([u["digital_long"]["test_dice"] for u in folder[net] if "digital_long" in u])
        unet = _mean([u["digital"]["test_dice"] for u in folder.get("unet", [])])
        if d is not None and long is not None:
            print(
                f"- (a) folder finalist {d:.3f} vs 4x longer {long:.3f}: gap {long - d:+.3f} "
                f"({'met' if long - d <= 0.01 else 'MISSED'}, target <= 0.01)"
            )
        if d is not None and unet is not None:
            print(
                f"- (a) folder finalist {d:.3f} vs U-Net {unet:.3f}: gap {unet - d:+.3f} "
                f"({'met' if unet - d <= 0.01 else 'MISSED'}, target <= 0.01)"
            )
    for (name, net), us in sorted(groups.items()):
        m = {label: _mean([u[label]["mean"][1] for u in us if u.get(label)]) for label, _ in VARIANTS}
        if None not in m.values():
            ok = m["HWA"] > m["no HWA"] and m["HWA"] > m["digital control"]
            print(
                f"- (b) {name}/{net} 1 month: HWA {m['HWA']:.3f}, no HWA {m['no HWA']:.3f}, control "
                f"{m['digital control']:.3f} ({'met' if ok else 'MISSED'})"
            )
        if net != "unet":
            d = _mean([u["digital"]["test_dice"] for u in us])
            y = _mean([u["HWA"]["mean"][2] for u in us if u.get("HWA")])
            if d is not None and y is not None:
                print(
                    f"- (b) {name}/{net} digital {d:.3f} -> 1 year after HWA {y:.3f}: loss {d - y:.3f} "
                    f"({'met' if d - y <= 0.015 else 'MISSED'}, target <= 0.015)"
                )


def study(args: argparse.Namespace) -> int:
    """The multi-seed study (module docstring); resumable, one JSON file per finished unit."""
    out: Path = args.study
    out.mkdir(parents=True, exist_ok=True)
    overrides = {
        k: v
        for k, v in (
            ("repetitions", args.repetitions),
            ("hwa_epochs", args.hwa_epochs),
            ("hwa_learning_rate", args.hwa_lr),
            ("final_epochs", args.final_epochs),
            ("hwa_noise_std", args.hwa_noise),
            ("clip_sigma", args.clip_sigma),
            ("drift_compensation", args.drift_compensation),
        )
        if v is not None
    }
    if not args.report:
        _pin_threads(args.threads)
        for name in args.data:
            for seed in args.seeds:
                for net in args.networks:
                    path = out / name / f"seed{seed}" / f"{net}.json"
                    if path.exists():
                        continue
                    t0 = time.perf_counter()
                    print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed} {net} ...", flush=True)
                    unit = _study_unit(out, name, seed, net, args.cell, overrides, args.long_factor, args.hwa_one_pass)
                    print(
                        f"  test Dice {unit['digital']['test_dice']:.3f}"
                        + (f", 4x {unit['digital_long']['test_dice']:.3f}" if "digital_long" in unit else "")
                        + f", 1 month HWA {unit['HWA']['mean'][1]:.3f} / no HWA {unit['no HWA']['mean'][1]:.3f}"
                        f" ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    study_report(out, args.data)
    return 0


def _at(report: Any, key: str, t: float) -> tuple[float | None, float | None]:
    """(mean, std) of the report's `key` curve at `t` seconds, (None, None) where it was not scored."""
    curve = getattr(report, key)
    point = None if curve is None else curve.at(t)
    return (None, None) if point is None else point


def _seed(base: int, encoding: str) -> int:
    """The seed the finalists stage used for this network's analog scoring (same chips, comparable numbers)."""
    from popnas_seg.search.seeds import network_seed

    return network_seed(base, encoding + "analog")


def _seconds(report: Any) -> tuple[float | None, float | None]:
    """(seconds per drift evaluation, HWA training seconds) from the report's timings."""
    hwa_s = report.timings.get("hwa_train_s")
    return report.seconds_per_eval(), (None if hwa_s is None else float(hwa_s))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _cell(mean: float | None, std: float | None, digital: float | None) -> str:
    if mean is None:
        return "-"
    drop = "" if digital is None else f" ({mean - digital:+.3f})"
    return f"{mean:.3f} ± {_fmt(std)}{drop}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, nargs="?", help="run folder (logs/<name>) whose finalists stage has run")
    parser.add_argument("--study", type=Path, default=None, help="multi-seed study into this folder (see above)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data", nargs="+", choices=sorted(STUDY_DATA), default=["folder", "builtin"])
    parser.add_argument("--cell", default=STUDY_CELL, help="the finalist's cell encoding")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for TF and torch (0: all)")
    parser.add_argument("--report", action="store_true", help="with --study: print the table only")
    parser.add_argument("--final-epochs", type=int, default=None, help="with --study: maximum epochs (smoke runs)")
    parser.add_argument(
        "--long-factor",
        type=int,
        default=LONG_FACTOR,
        help="with --study: the folder finalist's longer control (x epochs; <= 1: none)",
    )
    parser.add_argument(
        "--hwa-one-pass",
        action="store_true",
        help="with --study: HWA epochs = one pass over the train images (before 2026-12-02)",
    )
    parser.add_argument("--repetitions", type=int, default=None, help="programmings per time (default: config)")
    parser.add_argument("--hwa-epochs", type=int, default=None, help="HWA epochs (default: config)")
    parser.add_argument("--hwa-lr", type=float, default=None, help="HWA learning rate (default: config)")
    parser.add_argument(
        "--hwa-noise",
        type=float,
        default=None,
        help="HWA weight-noise std, relative to the layer's max weight (default: config)",
    )
    parser.add_argument(
        "--clip-sigma",
        type=float,
        default=None,
        help="weight clipping of the analog tiles, in layer standard deviations (default: config)",
    )
    parser.add_argument(
        "--drift-compensation",
        choices=["global", "none"],
        default=None,
        help="with --study: read-out drift compensation of the analog tiles (default: config)",
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=["cell", "unet"],
        default=["cell", "unet"],
        help="with --study: which networks to run (the table reports whatever is there)",
    )
    parser.add_argument("--from-results", action="store_true", help="summarise final/*/drift.json, no re-run")
    args = parser.parse_args(argv)
    if args.study is not None:
        return study(args)
    if args.run is None:
        parser.error("give a run folder, or --study OUT")

    from popnas_seg.analog.drift import DriftReport
    from popnas_seg.config import load_config
    from popnas_seg.errors import UserError

    final = args.run / "final"
    try:
        config = load_config(args.run / "restore" / "config.json")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [p.parent.name for p in sorted(final.glob("*/model.onnx"))]
    if not names:
        print(f"error: no exported network under {final} (run the finalists stage first)", file=sys.stderr)
        return 2
    digital: dict[str, float] = {}
    encodings: dict[str, str] = {}
    if (final / "finalists.csv").exists():
        with open(final / "finalists.csv", newline="") as fh:
            table_rows = list(csv.DictReader(fh))
        digital = {r["network"]: float(r["test_dice"]) for r in table_rows if r.get("test_dice")}
        encodings = {r["network"]: r.get("encoding", "") for r in table_rows}

    analog = config.analog
    if args.repetitions is not None:
        analog = analog.model_copy(update={"repetitions": args.repetitions})
    if args.hwa_epochs is not None:
        analog = analog.model_copy(update={"hwa_epochs": args.hwa_epochs})
    if args.hwa_lr is not None:
        analog = analog.model_copy(update={"hwa_learning_rate": args.hwa_lr})
    times = sorted(set(analog.eval_times) | {MONTH_S})
    analog = analog.model_copy(update={"eval_times": times})

    data = None
    table = []
    for name in names:
        wall: float | None = None
        if args.from_results:
            path = final / name / "drift_report.json"
            if not path.exists():
                print(f"warning: {path} missing; skipped", file=sys.stderr)
                continue
            report = DriftReport.load(path)
        else:
            from popnas_seg.analog.drift import hwa_and_drift
            from popnas_seg.data.pipeline import load_data

            if data is None:
                data = load_data(config.dataset, config.data_seed)
                train_x, train_y = data.train_arrays()
                val_x, val_y = data.val_arrays()  # HWA / control checkpoint selection, as in the finalists stage
                test_x, test_y = data.test_arrays()
                if len(test_x) == 0:
                    test_x, test_y = val_x, val_y
            with tempfile.TemporaryDirectory(prefix=f"bench_analog_{name}_") as scratch:
                t0 = time.perf_counter()
                report = hwa_and_drift(
                    final / name / "model.onnx",
                    train_x,
                    train_y,
                    test_x,
                    test_y,
                    analog,
                    data.classes_count,
                    data.ignore_class,
                    Path(scratch),
                    _seed(config.others.seed, encodings.get(name, name)),
                    config.dataset.batch_size,
                    val_x=val_x,
                    val_y=val_y,
                )
                wall = time.perf_counter() - t0
        before = _at(report, "before_hwa", MONTH_S)
        control = _at(report, "digital_control", MONTH_S)
        after = _at(report, "after_hwa", MONTH_S)
        per_eval, hwa_s = _seconds(report)
        d = digital.get(name)
        table.append(
            [
                name,
                _fmt(d),
                _cell(*before, d),
                _cell(*control, d),
                _cell(*after, d),
                _fmt(per_eval, 2),
                _fmt(hwa_s, 1),
                _fmt(wall, 1),
            ]
        )

    print(
        f"Analog benchmark of {args.run} ({'stored results' if args.from_results else 're-run'}, "
        f"{analog.repetitions} programmings, {analog.hwa_epochs} HWA epoch(s) at lr {analog.hwa_learning_rate:g}; "
        f"Dice at 1 month = 30 days, "
        f"drop vs digital test Dice in brackets)\n"
    )
    headers = [
        "network",
        "digital Dice",
        "1 month, no HWA",
        "1 month, digital control",
        "1 month, HWA",
        "s / drift eval",
        "HWA train s",
        "total s",
    ]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(" --- " for _ in headers) + "|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
