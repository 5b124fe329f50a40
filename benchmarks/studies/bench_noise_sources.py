"""Which analog non-ideality costs a network its Dice: one PCM / converter noise source switched off at a time.

Why: on the issue-10 folder the 13k-param searched cell loses 0.10-0.14 Dice from digital to 1 year on analog
tiles without HWA (0.05 after HWA), the 110k U-Net less. Whether that is programming noise, read noise,
conductance drift (its device-to-device spread: global drift compensation removes the mean), the ADC's
output noise or the DAC/ADC resolution decides what could help (more HWA noise, wider layers, a finer
ADC, per-column compensation). For each network this trains it with the finalists' rules
(`bench_analog.py --study` settings: same folder, same seeds), converts it to analog tiles without HWA and
scores the whole test images at 1 day and 1 year over 5 programmings under:

- `full`: the run's inference tiles (PCMLikeNoiseModel(g_max), global drift compensation, inp/out_res,
  out_noise, layer-Gaussian clipping);
- `no prog noise`, `no read noise`, `no drift`: PCMLikeNoiseModel with that scale at 0;
- `no out noise`: ADC output noise 0; `ideal DAC/ADC`: no input / output quantisation;
- `no clipping`: weights not clipped at `clip_sigma` layer standard deviations before programming;
- `all off`: every source above off (what is left: the tiling, the conductance mapping and the ADC bound;
  this should be the digital Dice, and is the check that the ablations reach every source).

    python -m benchmarks.studies.bench_noise_sources OUT --data folder --seeds 1 2 3 --networks cell unet \
        --weight-scaling none column --threads 1

`--weight-scaling` scores the same trained networks under each `analog.weight_scaling` (how weights are
mapped onto conductances). Trained networks are kept as OUT/<data>/seed<S>/<net>.onnx (+ .json), scores as
<net>.noise.<weight scaling>.json, so a rerun only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.studies import bench_analog  # noqa: E402

ABLATIONS = [
    "full",
    "no prog noise",
    "no read noise",
    "no drift",
    "no out noise",
    "ideal DAC/ADC",
    "no clipping",
    "all off",
]
TIMES = [bench_analog.DAY_S, bench_analog.YEAR_S]


def _rpu(cfg: Any, ablation: str) -> Any:
    """The run's inference tiles with the sources of `ablation` switched off."""
    from aihwkit.inference import PCMLikeNoiseModel
    from aihwkit.simulator.configs import WeightClipType

    from popnas_seg.analog.rpu import inference_rpu_config

    rpu = inference_rpu_config(cfg)
    off = set(ABLATIONS[1:-1]) if ablation == "all off" else {ablation} - {"full"}
    rpu.noise_model = PCMLikeNoiseModel(
        g_max=float(cfg.g_max),
        prog_noise_scale=0.0 if "no prog noise" in off else 1.0,
        read_noise_scale=0.0 if "no read noise" in off else 1.0,
        drift_scale=0.0 if "no drift" in off else 1.0,
    )
    if "no out noise" in off:
        rpu.forward.out_noise = 0.0
    if "ideal DAC/ADC" in off:
        rpu.forward.inp_res = rpu.forward.out_res = -1.0
    if "no clipping" in off:
        rpu.clip.type = WeightClipType.NONE
    return rpu


def train_unit(out: Path, data_name: str, seed: int, net: str) -> Path:
    """Train (finalists' rules) and export `net`; returns the unit folder holding <net>.onnx and the test set."""
    import numpy as np

    from popnas_seg.analog.export import keras_to_onnx
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.imaging.tiling import pack_images
    from popnas_seg.training.trainer import Trainer

    unit = out / data_name / f"seed{seed}"
    unit.mkdir(parents=True, exist_ok=True)
    cfg = bench_analog._study_config(data_name, out, seed, {})
    data = load_data(cfg.dataset, seed)
    model, digital = bench_analog._train(Trainer(cfg, data), cfg, data, net, bench_analog.STUDY_CELL, seed, 1)
    keras_to_onnx(model, unit / f"{net}.onnx")
    if not (unit / "test.npz").exists():  # one test split per (data, seed), shared by its networks
        x, y, sizes = pack_images(*data.test_images())
        np.savez(unit / "test.npz", x=x, y=y, sizes=sizes)
    atomic_write_json(
        unit / f"{net}.json",
        {
            **digital,
            "classes": data.classes_count,
            "tile": list(data.input_shape[:2]),
            "analog": cfg.analog.model_dump(mode="json"),
        },
    )
    return unit


def score_unit(unit: Path, net: str, seed: int, repetitions: int, weight_scaling: str) -> dict[str, Any]:
    """Dice of the exported `net` at TIMES under every ablation (torch only: run in its own process)."""
    import numpy as np

    from popnas_seg.analog.export import onnx_to_torch
    from popnas_seg.analog.rpu import to_analog
    from popnas_seg.analog.scoring import analog_dice, score_repetitions
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.config import AnalogConfig

    meta = json.loads((unit / f"{net}.json").read_text())
    cfg = AnalogConfig.model_validate({**meta["analog"], "weight_scaling": weight_scaling})
    test = np.load(unit / "test.npz")
    x, y, sizes, tile, classes = test["x"], test["y"], test["sizes"], meta["tile"], meta["classes"]
    digital = onnx_to_torch(unit / f"{net}.onnx")
    path = unit / f"{net}.noise.{weight_scaling}.json"
    result: dict[str, Any] = (
        json.loads(path.read_text())
        if path.exists()
        else {
            "digital_torch": analog_dice(digital, x, y, classes, None, 16, tile, sizes),
            "keras_test_dice": meta["test_dice"],
            "params": meta["params"],
            "scores": {},
        }
    )
    t0 = time.perf_counter()
    for ablation in [a for a in ABLATIONS if a not in result["scores"]]:
        module = to_analog(digital, _rpu(cfg, ablation))
        result["scores"][ablation] = [
            float(np.mean(score_repetitions(module, x, y, t, repetitions, seed + 1000, classes, None, 16, tile, sizes)))
            for t in TIMES
        ]
    result["score_s"] = result.get("score_s", 0.0) + time.perf_counter() - t0
    atomic_write_json(path, result)
    return result


def report(out: Path) -> None:
    import statistics

    rows: dict[tuple[str, str, str], list[dict]] = {}  # (data, network, weight scaling) -> one per seed
    for path in sorted(out.glob("*/seed*/*.noise.*.json")):
        net, _, scaling, _ = path.name.split(".")
        rows.setdefault((path.parts[-3], net, scaling), []).append(json.loads(path.read_text()))
    if not rows:
        print(f"no results under {out} yet")
        return
    print(
        "Dice at 1 day / 1 year without HWA (mean over seeds of the mean of the programmings); "
        "in brackets the loss from the network's digital torch Dice\n"
    )
    print("| data | network | weight scaling | seeds | digital | " + " | ".join(ABLATIONS) + " |")
    print("|" + " --- |" * (5 + len(ABLATIONS)))
    for (data_name, net, scaling), rs in sorted(rows.items()):
        d = statistics.mean(r["digital_torch"] for r in rs)
        cells = []
        for ablation in ABLATIONS:
            if not all(ablation in r["scores"] for r in rs):
                cells.append("-")
                continue
            day, year = (statistics.mean(r["scores"][ablation][i] for r in rs) for i in (0, 1))
            cells.append(f"{day:.3f} / {year:.3f} ({d - year:+.3f})")
        print(f"| {data_name} | {net} | {scaling} | {len(rs)} | {d:.3f} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", nargs="+", choices=sorted(bench_analog.STUDY_DATA), default=["folder"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--networks", nargs="+", choices=["cell", "unet"], default=["cell", "unet"])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--weight-scaling",
        nargs="+",
        choices=["column", "layer", "none"],
        default=["column"],
        help="analog.weight_scaling values to score (the trained networks are shared)",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--report", action="store_true", help="print the table only")
    parser.add_argument("--stage", nargs=5, metavar=("KIND", "DATA", "SEED", "NET", "SCALING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:  # one child process per stage: TensorFlow (training) and torch (scoring) never share one
        kind, data_name, seed, net, scaling = args.stage
        if kind == "train":
            bench_analog._pin_threads(args.threads)
            train_unit(args.out, data_name, int(seed), net)
        else:
            import torch

            if args.threads > 0:
                torch.set_num_threads(args.threads)
            score_unit(args.out / data_name / f"seed{seed}", net, int(seed), args.repetitions, scaling)
        return 0
    if not args.report:
        for data_name in args.data:
            for seed in args.seeds:
                for net in args.networks:
                    unit = args.out / data_name / f"seed{seed}"
                    stages = [("train", "-", unit / f"{net}.json")] + [
                        ("score", ws, unit / f"{net}.noise.{ws}.json") for ws in args.weight_scaling
                    ]
                    for kind, scaling, done in stages:
                        if done.exists() and (
                            kind == "train" or set(ABLATIONS) <= set(json.loads(done.read_text())["scores"])
                        ):
                            continue
                        print(
                            f"[{time.strftime('%H:%M:%S')}] {kind} {data_name} seed {seed} {net} {scaling}", flush=True
                        )
                        subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "benchmarks.studies.bench_noise_sources",
                                str(args.out),
                                "--stage",
                                kind,
                                data_name,
                                str(seed),
                                net,
                                scaling,
                                "--threads",
                                str(args.threads),
                                "--repetitions",
                                str(args.repetitions),
                            ],
                            check=True,
                        )
    report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
