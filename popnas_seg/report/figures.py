"""The figures report.md links, re-drawn from the run folder's CSVs before the report is written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from popnas_seg.plots import plot_drift_curves, plot_search
from popnas_seg.runlog.tables import read_csv


def redraw_figures(run_path: Path, log: logging.Logger) -> None:
    """Re-create the search figures and the drift curves from the CSVs (the report links them)."""
    try:
        plot_search(run_path)
    except Exception as exc:
        log.warning("report: search plots failed: %s", exc)
    finalists = [r["network"] for r in read_csv(run_path / "final" / "finalists.csv")]
    if finalists:
        from popnas_seg.finalists.tables import learning_histories
        from popnas_seg.plots import plot_learning_curves

        try:
            plot_learning_curves(
                learning_histories(run_path / "final", finalists), run_path / "plots" / "learning_curves.png"
            )
        except Exception as exc:
            log.warning("report: learning-curve plot failed: %s", exc)
    drift = read_csv(run_path / "final" / "drift.csv")
    if drift:
        digital = {
            r["network"]: float(r["test_dice"])
            for r in read_csv(run_path / "final" / "finalists.csv")
            if r.get("test_dice") not in (None, "")
        }
        try:
            plot_drift_curves(drift, run_path / "plots" / "drift_curves.png", digital=digital)
            _finalists_size_plot(run_path, drift)
        except Exception as exc:
            log.warning("report: drift plot failed: %s", exc)


def _finalists_size_plot(run_path: Path, drift: list[dict[str, str]]) -> None:
    """plots/finalists_size_analog.png: finalists and U-Net, params vs analog Dice at analog.t_inference."""
    from popnas_seg.plots import plot_finalists_size_analog

    config = json.loads((run_path / "restore" / "config.json").read_text(encoding="utf-8"))
    plot_finalists_size_analog(
        read_csv(run_path / "final" / "finalists.csv"),
        drift,
        float(config["analog"]["t_inference"]),
        run_path / "plots" / "finalists_size_analog.png",
    )
