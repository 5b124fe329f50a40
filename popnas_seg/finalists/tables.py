"""The finalists stage's tables and figures: final/finalists.csv rows, final/drift.csv, and the stage's plots.

Plain functions of the journal's records and the run folder's files (the report re-draws from the same files).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.drift import DriftReport
from popnas_seg.finalists.context import Finalist
from popnas_seg.results import TrainingResult


def learning_histories(final_dir: Path, names: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """final/<name>/training/history.csv rows of each finalist that has one (the learning curves)."""
    from popnas_seg.runlog.tables import read_csv

    out = {}
    for name in names:
        rows = read_csv(Path(final_dir) / str(name) / "training" / "history.csv")
        if rows:
            out[str(name)] = rows
    return out


def finalist_row(
    f: Finalist, trained: dict[str, Any], exported: dict[str, Any] | None, drift: DriftReport | None
) -> dict[str, Any]:
    """The finalist's row of final/finalists.csv: training, test, export and (when scored) analog columns."""
    result = TrainingResult.from_dict(trained["result"])
    row: dict[str, Any] = {
        "network": f.name,
        "network_id": f.network_id,
        "encoding": f.encoding,
        "filters": f.arch.filters,
        "motifs": f.arch.motifs,
        "status": result.status,
        "epochs": result.epochs,
        "val_dice": result.dice,
        "test_dice": trained.get("test_dice"),
        "test_miou": trained.get("test_miou"),
        "params": result.params,
        "flops": result.flops,
        "latency_ms": result.inference_time_ms,
        "onnxruntime_latency_ms": (exported or {}).get("onnxruntime_latency_ms"),
        "export_equivalent": (exported or {}).get("equivalent"),
        "torch_max_abs_diff": (exported or {}).get("torch_max_abs_diff"),
    }
    if drift is not None:
        row["analog_coverage"] = drift.weights_analog_fraction()
        for r in drift.rows(f.name):
            kind = {"after": "hwa", "control": "control"}.get(r["hwa"], "nohwa")
            key = f"analog_dice_{kind}_{_time_key(r['time'])}"
            row[key] = r["mean"]
            row[key + "_std"] = r["std"]
        row["analog_mac_fraction"] = drift.coverage.get("macs_analog_fraction")
        row["drift_eval_s"] = drift.seconds_per_eval()
        row["hwa_train_s"] = drift.timings.get("hwa_train_s")
        row["hwa_best_epoch"] = drift.hwa_best_epoch
        row["control_best_epoch"] = drift.control_best_epoch
    return row


def write_tables(
    final_dir: Path, plots_dir: Path, rows: list[dict[str, Any]], reports: dict[str, DriftReport], log: logging.Logger
) -> None:
    """final/finalists.csv, final/drift.csv and the stage's figures (a failing figure is logged, not raised)."""
    from popnas_seg.runlog.tables import write_csv

    write_csv(final_dir / "finalists.csv", rows)
    drift_table = [r for name, report in reports.items() for r in report.rows(name)]
    write_csv(final_dir / "drift.csv", drift_table, ["network", "hwa", "time", "mean", "std"])
    from popnas_seg import plots

    try:
        digital = {r["network"]: r["test_dice"] for r in rows if r.get("test_dice") is not None}
        plots.plot_drift_curves(drift_table, Path(plots_dir) / "drift_curves.png", digital=digital)
        plots.plot_learning_curves(
            learning_histories(final_dir, [r["network"] for r in rows]),
            Path(plots_dir) / "learning_curves.png",
        )
        sample_plot(final_dir, plots_dir, reports)
    except Exception as exc:  # a figure must not fail the stage; the report can redraw it
        log.warning("finalist plots failed: %s", exc)


def sample_plot(final_dir: Path, plots_dir: Path, reports: dict[str, DriftReport]) -> None:
    """Sample grid of the first finalist: analog prediction at 1 month when the drift step saved one."""
    from popnas_seg import plots

    for name in reports:
        samples = final_dir / name / "samples.npz"
        if not samples.exists():
            continue
        with np.load(samples) as npz:
            images, truth, digital = npz["images"], npz["truth"], npz["digital"]
        analog = _analog_samples(final_dir / name, len(images))
        label = "analog prediction (1 month" + (", HWA)" if (final_dir / name / "analog_hwa.pt").exists() else ")")
        plots.plot_sample_predictions(
            images,
            truth,
            digital,
            analog,
            Path(plots_dir) / "sample_predictions.png",
            analog_label=label,
            title=f"finalist {name}: test images",
        )
        return


def _time_key(seconds: float) -> str:
    """Column-friendly time label: 1s, 1h, 1d, 30d, 365d ..."""
    if seconds < 3600:
        return f"{seconds:g}s"
    if seconds < 86400:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 86400:g}d"


def _analog_samples(folder: Path, n: int) -> np.ndarray | None:
    """Analog label maps of the sample images at 1 month, if the drift step saved them (analog_samples.npz)."""
    path = folder / "analog_samples.npz"
    if not path.exists():
        return None
    with np.load(path) as npz:
        return np.asarray(npz["predictions"])[:n] if "predictions" in npz.files else None
