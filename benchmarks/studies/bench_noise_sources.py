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

`--spread` (issue 34: why the small networks' spread over programmings grows with drift) scores instead the
std over programmings at 1 s, 1 h, 1 day, 1 month and 1 year (each programming read at every time, so the
stds at 1 s and 1 year are over the same chips), column mapping, without HWA, under SPREAD_ABLATIONS: `full`;
`no nu spread` (each device's drift exponent nu at the PCM model's conductance-dependent mean, no
device-to-device spread); `uniform nu` (one nu for all devices: drift is then a single factor per tile that
global compensation undoes); `no prog noise`; `no read noise`; `no out noise`; `no drift compensation`.
`--hwa V ...` then runs the finalists' HWA job per variant V ("E": E epochs; "E-multS": E epochs of
multiplicative weight noise of std S, drift-like) and scores before / after HWA at the same times
(<net>.spread.json, <net>.hwa<V>.json). `small` is a 3,450-param cell, `cell` the 13k finalist:

    python -m benchmarks.studies.bench_noise_sources OUT --spread --seeds 1 --networks small cell unet \
        --repetitions 24 --hwa 2 8 2-mult0.2 --threads 1
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
# network name -> cell encoding (None: the U-Net): the issue-10 finalist, a ~3k-param cell, the 110k U-Net
NETWORKS: dict[str, str | None] = {
    "cell": bench_analog.STUDY_CELL,
    "small": "[(-2,identity,-1,identity)]",
    "unet": None,
}


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


# --spread (issue 34): the std over programmings from 1 s to 1 year, one source off at a time
SPREAD_TIMES = [1.0, 3600.0, bench_analog.DAY_S, bench_analog.MONTH_S, bench_analog.YEAR_S]
SPREAD_ABLATIONS = [
    "full",
    "no nu spread",
    "no prog noise",
    "no read noise",
    "no out noise",
    "no drift compensation",
    "uniform nu",
]
NU_UNIFORM = 0.06  # one drift exponent for every device: inside the model's per-device mean range 0.049-0.1


def _pcm_drift_variant(g_max: float, variant: str) -> Any:
    """PCMLikeNoiseModel whose drift exponents nu lose their device-to-device spread (`"no nu spread"`: each
    device keeps the model's conductance-dependent mean) or all variation (`"uniform nu"`: one nu for every
    device, so drift is one factor per tile and global compensation undoes it exactly, read noise aside).
    Programming and read noise are unchanged."""
    import torch
    from aihwkit.inference import PCMLikeNoiseModel

    class _Drift(PCMLikeNoiseModel):  # type: ignore[misc]
        @torch.no_grad()
        def generate_drift_coefficients(self, g_target: torch.Tensor) -> torch.Tensor:
            if variant == "uniform nu":
                return torch.full_like(g_target, NU_UNIFORM * self.drift_scale)
            g_relative = torch.clamp(torch.abs(g_target / self.g_max), min=1e-7)
            mu = (-0.0155 * torch.log(g_relative) + 0.0244).clamp(min=0.049, max=0.1)  # pcm.py's mean, no spread
            return mu * self.drift_scale

    return _Drift(g_max=g_max)


def _spread_rpu(cfg: Any, ablation: str) -> Any:
    """The run's inference tiles with the one source of `ablation` (SPREAD_ABLATIONS) switched off."""
    rpu = _rpu(cfg, "full") if ablation not in ABLATIONS else _rpu(cfg, ablation)
    if ablation in ("no nu spread", "uniform nu"):
        rpu.noise_model = _pcm_drift_variant(float(cfg.g_max), ablation)
    if ablation == "no drift compensation":
        rpu.drift_compensation = None
    return rpu


def spread_scores(module: Any, x: Any, y: Any, reps: int, seed: int, classes: int, tile: Any, sizes: Any) -> list:
    """Dice [time][programming]: each programming (seeded seed + r) read at every SPREAD_TIMES, so the std over
    programmings at 1 s and at 1 year is over the same simulated chips."""
    import torch

    from popnas_seg.analog.rpu import analog_layers
    from popnas_seg.analog.scoring import analog_dice

    dice = [[0.0] * reps for _ in SPREAD_TIMES]
    module.eval()
    for r in range(reps):
        torch.manual_seed(seed + r)
        for _, layer in analog_layers(module):
            layer.program_analog_weights()
        for i, t in enumerate(SPREAD_TIMES):
            for _, layer in analog_layers(module):
                layer.drift_analog_weights(float(t))  # from the programmed state, not cumulative
            dice[i][r] = analog_dice(module, x, y, classes, None, 16, tile, sizes)
    return dice


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
    model, digital = bench_analog._train(
        Trainer(cfg, data), cfg, data, net, NETWORKS[net] or bench_analog.STUDY_CELL, seed, 1
    )
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


def score_spread(unit: Path, net: str, seed: int, repetitions: int) -> dict[str, Any]:
    """Dice per (SPREAD_ABLATIONS, SPREAD_TIMES, programming) of the exported `net`, mapped tiles without HWA
    (torch only: run in its own process); resumable per ablation."""
    import numpy as np

    from popnas_seg.analog.export import onnx_to_torch
    from popnas_seg.analog.rpu import to_analog
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.config import AnalogConfig

    meta = json.loads((unit / f"{net}.json").read_text())
    cfg = AnalogConfig.model_validate({**meta["analog"], "weight_scaling": "column"})
    test = np.load(unit / "test.npz")
    digital = onnx_to_torch(unit / f"{net}.onnx")
    path = unit / f"{net}.spread.json"
    result: dict[str, Any] = (
        json.loads(path.read_text())
        if path.exists()
        else {"times": SPREAD_TIMES, "params": meta["params"], "keras_test_dice": meta["test_dice"], "dice": {}}
    )
    for ablation in [a for a in SPREAD_ABLATIONS if a not in result["dice"]]:
        t0 = time.perf_counter()
        module = to_analog(digital, _spread_rpu(cfg, ablation))
        result["dice"][ablation] = spread_scores(
            module, test["x"], test["y"], repetitions, seed + 1000, meta["classes"], meta["tile"], test["sizes"]
        )
        result.setdefault("score_s", {})[ablation] = time.perf_counter() - t0
        atomic_write_json(path, result)  # after every ablation: an interrupted study keeps what finished
        print(f"[{time.strftime('%H:%M:%S')}] {net} {ablation}: {time.perf_counter() - t0:.0f} s", flush=True)
    return result


def hwa_overrides(variant: str) -> dict[str, Any]:
    """The analog settings of an HWA variant: "E" (E epochs, the default additive noise) or "E-multS" (E epochs
    of multiplicative noise of std S: `analog.hwa_noise_type` multiplicative, `hwa_noise_std` S)."""
    epochs, _, noise = variant.partition("-mult")
    out: dict[str, Any] = {"hwa_epochs": int(epochs)}
    if noise:
        out.update(hwa_noise_type="multiplicative", hwa_noise_std=float(noise))
    return out


def hwa_unit(unit: Path, data_name: str, seed: int, net: str, variant: str, repetitions: int) -> Path:
    """The finalists' HWA (analog/drift.py, its worker) of the exported `net` under `variant` (`hwa_overrides`),
    then the no-HWA and HWA drift curves at SPREAD_TIMES over `repetitions` programmings (no digital control)."""
    from popnas_seg.analog.drift import hwa_and_drift
    from popnas_seg.atomic import atomic_write_json
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.imaging.tiling import pack_images

    overrides = {
        "eval_times": SPREAD_TIMES,
        "repetitions": repetitions,
        "hwa_digital_control": False,
        **hwa_overrides(variant),
    }
    cfg = bench_analog._study_config(data_name, unit.parent.parent, seed, overrides)
    data = load_data(cfg.dataset, seed)
    hp = cfg.training_hyperparameters
    test_x, test_y, sizes = pack_images(*data.test_images())
    val_x, val_y = data.val_arrays()
    t0 = time.perf_counter()
    report = hwa_and_drift(
        unit / f"{net}.onnx",
        *data.train_arrays(),
        test_x,
        test_y,
        cfg.analog,
        data.classes_count,
        data.ignore_class,
        unit / f"{net}.hwa{variant}.scratch",
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
    )
    path = unit / f"{net}.hwa{variant}.json"
    atomic_write_json(
        path,
        {
            "times": report.times,
            "variant": variant,
            "hwa_best_epoch": report.hwa_best_epoch,
            "before_hwa": report.before_hwa.dice,
            "after_hwa": report.after_hwa.dice if report.after_hwa else None,
            "analog_s": time.perf_counter() - t0,
        },
    )
    return path


def _std_ratio(dice: list[list[float]]) -> tuple[list[float], list[float], float, tuple[float, float]]:
    """Mean and std over programmings per time, std at the last time / std at the first, and a 90 % bootstrap
    interval of that ratio (programmings resampled together across times: each is one chip)."""
    import numpy as np

    d = np.asarray(dice)  # [time][programming]
    means, stds = d.mean(axis=1).tolist(), d.std(axis=1).tolist()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, d.shape[1], size=(2000, d.shape[1]))
    boot = d[-1][idx].std(axis=1) / np.maximum(d[0][idx].std(axis=1), 1e-9)
    low, high = np.percentile(boot, [5, 95])
    return means, stds, stds[-1] / max(stds[0], 1e-9), (float(low), float(high))


def report_spread(out: Path) -> None:
    rows = sorted(out.glob("*/seed*/*.spread.json"))
    hwa = sorted(out.glob("*/seed*/*.hwa*.json"))
    if not rows and not hwa:
        print(f"no spread results under {out} yet")
        return
    labels = ["1 s", "1 h", "1 d", "1 mo", "1 y"]
    print(
        "Std over programmings (mean Dice in brackets) per drift time, mapped tiles without HWA; ratio: std 1 y / "
        "1 s\n(in brackets its 90 % bootstrap interval, programmings resampled)\n"
    )
    print("| network | params | ablation | programmings | " + " | ".join(labels) + " | ratio 1 y / 1 s |")
    print("|" + " --- |" * (5 + len(labels)))
    for path in rows:
        r = json.loads(path.read_text())
        net = path.name.split(".")[0]
        for ablation in [a for a in SPREAD_ABLATIONS if a in r["dice"]]:
            dice = r["dice"][ablation]
            means, stds, ratio, (low, high) = _std_ratio(dice)
            cells = [f"{sd:.4f} ({m:.3f})" for m, sd in zip(means, stds, strict=True)]
            print(
                f"| {net} | {r['params']:,} | {ablation} | {len(dice[0])} | "
                + " | ".join(cells)
                + f" | {ratio:.1f} ({low:.1f}-{high:.1f}) |"
            )
    if hwa:
        print("\nHWA (the finalists' job): mean ± std over programmings\n")
        print("| network | HWA variant (best epoch) | weights | " + " | ".join(labels) + " | ratio 1 y / 1 s |")
        print("|" + " --- |" * (4 + len(labels)))
        for path in hwa:
            r = json.loads(path.read_text())
            net = path.name.split(".")[0]
            for variant in ("before_hwa", "after_hwa"):
                if r[variant] is None:
                    continue
                means, stds, ratio, (low, high) = _std_ratio(r[variant])
                cells = [f"{m:.3f} ± {sd:.4f}" for m, sd in zip(means, stds, strict=True)]
                print(
                    f"| {net} | {r['variant']} ({r['hwa_best_epoch']}) | {variant} | "
                    + " | ".join(cells)
                    + f" | {ratio:.1f} ({low:.1f}-{high:.1f}) |"
                )


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


def _stages(args: argparse.Namespace, unit: Path, net: str) -> list[tuple[str, str, Path]]:
    """(kind, argument, result file) of one unit's stages, in order: the training, then the scorings asked for."""
    stages = [("train", "-", unit / f"{net}.json")]
    if args.spread:
        stages.append(("spread", "-", unit / f"{net}.spread.json"))
        stages += [("hwa", v, unit / f"{net}.hwa{v}.json") for v in args.hwa]
    else:
        stages += [("score", ws, unit / f"{net}.noise.{ws}.json") for ws in args.weight_scaling]
    return stages


def _done(kind: str, path: Path) -> bool:
    if not path.exists():
        return False
    if kind == "score":
        return set(ABLATIONS) <= set(json.loads(path.read_text())["scores"])
    if kind == "spread":
        return set(SPREAD_ABLATIONS) <= set(json.loads(path.read_text())["dice"])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", nargs="+", choices=sorted(bench_analog.STUDY_DATA), default=["folder"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["cell", "unet"])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--weight-scaling",
        nargs="+",
        choices=["column", "layer", "none"],
        default=["column"],
        help="analog.weight_scaling values to score (the trained networks are shared)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="issue 34: std over programmings at SPREAD_TIMES under SPREAD_ABLATIONS (column mapping), then HWA",
    )
    parser.add_argument(
        "--hwa",
        nargs="*",
        default=[],
        help='with --spread: HWA variants, "E" epochs or "E-multS" (multiplicative noise S)',
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--report", action="store_true", help="print the table only")
    parser.add_argument("--stage", nargs=5, metavar=("KIND", "DATA", "SEED", "NET", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:  # one child process per stage: TensorFlow (training) and torch (scoring) never share one
        kind, data_name, seed, net, arg = args.stage
        unit = args.out / data_name / f"seed{seed}"
        if kind in ("train", "hwa"):  # TensorFlow; HWA's torch runs in the analog worker
            bench_analog._pin_threads(args.threads)
            if kind == "train":
                train_unit(args.out, data_name, int(seed), net)
            else:
                hwa_unit(unit, data_name, int(seed), net, arg, args.repetitions)
        else:
            import torch

            if args.threads > 0:
                torch.set_num_threads(args.threads)
            if kind == "spread":
                score_spread(unit, net, int(seed), args.repetitions)
            else:
                score_unit(unit, net, int(seed), args.repetitions, arg)
        return 0
    if not args.report:
        for data_name in args.data:
            for seed in args.seeds:
                for net in args.networks:
                    unit = args.out / data_name / f"seed{seed}"
                    for kind, arg, done in _stages(args, unit, net):
                        if _done(kind, done):
                            continue
                        print(f"[{time.strftime('%H:%M:%S')}] {kind} {data_name} seed {seed} {net} {arg}", flush=True)
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
                                arg,
                                "--threads",
                                str(args.threads),
                                "--repetitions",
                                str(args.repetitions),
                            ],
                            check=True,
                        )
    if args.spread:
        report_spread(args.out)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
