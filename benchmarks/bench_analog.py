"""Analog benchmark of a finished run: Dice drop from digital to 1 month, with and without HWA, and its cost.

For every exported network of `RUN/final/` (the finalists and the U-Net baseline) it re-runs hardware-aware
training and drift scoring (analog/drift.py) into a scratch folder, on the run's own data and analog settings
(optionally fewer programmings / HWA epochs), and prints a markdown table:

    network | digital test Dice | 1 month: no HWA / digital control / HWA (drop) | s per drift evaluation

A "drift evaluation" is one (programming, time) scoring of the test images. `--from-results` skips the re-run
and summarises the drift_report.json files the finalists stage already wrote (its timings included).

    python benchmarks/bench_analog.py logs/exp1 [--repetitions 3] [--hwa-epochs 1] [--from-results]

Run it on a small run: the analog simulation runs on the CPU (several seconds per evaluation at 64x64).
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MONTH_S = 2592000.0


def _at(rows: list[dict[str, Any]], hwa: str, t: float) -> tuple[float | None, float | None]:
    for r in rows:
        if r["hwa"] == hwa and math.isclose(r["time"], t, rel_tol=1e-6):
            return r["mean"], r["std"]
    return None, None


def _seed(base: int, encoding: str) -> int:
    """The seed the finalists stage used for this network's analog scoring (same chips, comparable numbers)."""
    from popnas_seg.search.runner import network_seed

    return network_seed(base, encoding + "analog")


def _seconds(report: dict[str, Any]) -> tuple[float | None, float | None]:
    """(seconds per drift evaluation, HWA training seconds) from the report's timings."""
    from popnas_seg.finalists import seconds_per_drift_eval

    hwa_s = (report.get("timings") or {}).get("hwa_train_s")
    return seconds_per_drift_eval(report), (None if hwa_s is None else float(hwa_s))


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _cell(mean: float | None, std: float | None, digital: float | None) -> str:
    if mean is None:
        return "-"
    drop = "" if digital is None else f" ({mean - digital:+.3f})"
    return f"{mean:.3f} ± {_fmt(std)}{drop}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder (logs/<name>) whose finalists stage has run")
    parser.add_argument("--repetitions", type=int, default=None, help="programmings per time (default: config)")
    parser.add_argument("--hwa-epochs", type=int, default=None, help="HWA epochs (default: config)")
    parser.add_argument("--hwa-lr", type=float, default=None, help="HWA learning rate (default: config)")
    parser.add_argument("--from-results", action="store_true", help="summarise final/*/drift.json, no re-run")
    args = parser.parse_args(argv)

    from popnas_seg.config import load_config
    from popnas_seg.errors import UserError
    from popnas_seg.finalists import drift_rows

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
            report = json.loads(path.read_text())
        else:
            from popnas_seg.analog.drift import hwa_and_drift
            from popnas_seg.data.pipeline import load_data

            if data is None:
                data = load_data(config.dataset, config.others.seed)
                train_x, train_y = data.train_arrays()
                val_x, val_y = data.val_arrays()  # HWA / control checkpoint selection, as in the finalists stage
                test_x, test_y = data.test_arrays()
                if len(test_x) == 0:
                    test_x, test_y = val_x, val_y
            with tempfile.TemporaryDirectory(prefix=f"bench_analog_{name}_") as scratch:
                t0 = time.perf_counter()
                report = hwa_and_drift(final / name / "model.onnx", train_x, train_y, test_x, test_y, analog,
                                       data.classes_count, data.ignore_class, Path(scratch),
                                       _seed(config.others.seed, encodings.get(name, name)),
                                       config.dataset.batch_size, val_x=val_x, val_y=val_y).to_dict()
                wall = time.perf_counter() - t0
        rows = drift_rows(name, report)
        before = _at(rows, "before", MONTH_S)
        control = _at(rows, "control", MONTH_S)
        after = _at(rows, "after", MONTH_S)
        per_eval, hwa_s = _seconds(report)
        d = digital.get(name)
        table.append([name, _fmt(d), _cell(*before, d), _cell(*control, d), _cell(*after, d), _fmt(per_eval, 2),
                      _fmt(hwa_s, 1), _fmt(wall, 1)])

    print(f"Analog benchmark of {args.run} ({'stored results' if args.from_results else 're-run'}, "
          f"{analog.repetitions} programmings, {analog.hwa_epochs} HWA epoch(s) at lr {analog.hwa_learning_rate:g}; "
          f"Dice at 1 month = 30 days, "
          f"drop vs digital test Dice in brackets)\n")
    headers = ["network", "digital Dice", "1 month, no HWA", "1 month, digital control", "1 month, HWA",
               "s / drift eval", "HWA train s", "total s"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(" --- " for _ in headers) + "|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
