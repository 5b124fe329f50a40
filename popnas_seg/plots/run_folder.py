"""The search figures of a run folder re-drawn from its CSVs alone (`plot_search`), and the rows they read.

Safe on an old run or one still being written: each figure needs only its own CSV.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from popnas_seg.plots.search import (
    ok_results,
    operator_counts,
    plot_dice_params_analog,
    plot_front_projections,
    plot_hypervolume,
    plot_operator_frequency,
    plot_predicted_vs_measured,
)
from popnas_seg.plots.style import time_label
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.tables import finite_float


def _read_rows(path: Path) -> list[dict[str, str]]:
    from popnas_seg.runlog.tables import read_csv

    return read_csv(path)


def load_results(run_path: Path) -> list[TrainingResult]:
    """Rows of csv/training_results.csv as TrainingResult records."""
    return [TrainingResult.from_dict(r) for r in _read_rows(run_path / "csv" / "training_results.csv")]


def measured_front_ids(run_path: Path, results: Sequence[TrainingResult]) -> list[int]:
    """Ids of the measured front: the search's csv/measured_front.csv; else recomputed on Dice/params/analog."""
    rows = _read_rows(run_path / "csv" / "measured_front.csv")
    if rows:
        return [int(float(r["network_id"])) for r in rows]
    ok = ok_results(results)
    probed = [r for r in ok if r.analog_dice is not None]
    pool = probed or ok
    ids = []
    for r in pool:
        dominated = any(
            o is not r
            and o.dice >= r.dice
            and o.params <= r.params
            and (o.analog_dice or 0) >= (r.analog_dice or 0)
            and (o.dice > r.dice or o.params < r.params or (o.analog_dice or 0) > (r.analog_dice or 0))
            for o in pool
        )
        if not dominated:
            ids.append(r.network_id)
    return ids


def _strategy_name(run_path: Path) -> str:
    try:
        cfg = json.loads((run_path / "restore" / "config.json").read_text())
        return str(cfg["search_strategy"]["strategy"])
    except (OSError, ValueError, KeyError, TypeError):
        return run_path.name


def _probe_label(run_path: Path) -> str:
    try:
        cfg = json.loads((run_path / "restore" / "config.json").read_text())
        return time_label(float(cfg["analog"]["t_inference"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "1 day"


def hypervolume_series(run_path: Path) -> list[tuple[float, float]]:
    """(networks trained, hypervolume) per finished step from csv/search_progress.csv."""
    out = []
    for row in _read_rows(run_path / "csv" / "search_progress.csv"):
        n, hv = finite_float(row.get("networks_trained")), finite_float(row.get("hypervolume"))
        if n is not None and hv is not None:
            out.append((n, hv))
    return out


def predicted_vs_measured(run_path: Path, results: Sequence[TrainingResult]) -> dict[int, dict[str, tuple[list, list]]]:
    """Per step: objective label -> (predicted, measured) for networks that were predicted and then trained."""
    out: dict[int, dict[str, tuple[list, list]]] = {}
    columns = (
        ("Dice", "predicted_dice", "dice"),
        ("analog score", "predicted_analog_dice", "analog_objective"),
        ("training time (s)", "predicted_time", "train_time_s"),
    )
    for csv_path in sorted((run_path / "csv").glob("predictions_b*.csv")):
        match = re.fullmatch(r"predictions_b(\d+)\.csv", csv_path.name)
        if not match:
            continue
        step = int(match.group(1))
        preds = {row.get("encoding"): row for row in _read_rows(csv_path)}
        trained = [r for r in ok_results(results) if r.step == step and r.encoding in preds]
        panels: dict[str, tuple[list, list]] = {}
        for label, pcol, field in columns:
            pairs = [(finite_float(preds[r.encoding].get(pcol)), finite_float(getattr(r, field))) for r in trained]
            pairs = [(p, m) for p, m in pairs if p is not None and m is not None]
            if pairs:
                panels[label] = ([p for p, _ in pairs], [m for _, m in pairs])
        if panels:
            out[step] = panels
    return out


def plot_search(run_folder: Any) -> list[Path]:
    """Re-draw every search figure of a run folder (a RunFolder or its path) from its CSVs; returns the files.

    Safe on an old run or one still being written: each figure only needs its own CSV and is skipped
    when that CSV does not exist yet.
    """
    run_path = Path(getattr(run_folder, "path", run_folder))
    plots_dir = run_path / "plots"
    results = load_results(run_path)
    written: list[Path] = []
    if ok_results(results):
        front = measured_front_ids(run_path, results)
        probe_label = _probe_label(run_path)
        written.append(
            plot_front_projections(results, front, plots_dir / "front_projections.png", probe_time_label=probe_label)
        )
        written.append(
            plot_dice_params_analog(
                results, plots_dir / "dice_params_analog.png", probe_time_label=probe_label, front_ids=front
            )
        )
        front_set = set(front)
        counts = operator_counts(r.encoding for r in results if r.network_id in front_set)
        written.append(plot_operator_frequency(counts, plots_dir / "front_operators.png"))
        for step, panels in sorted(predicted_vs_measured(run_path, results).items()):
            written.append(
                plot_predicted_vs_measured(panels, plots_dir / f"predicted_vs_measured_b{step}.png", step=step)
            )
    series = hypervolume_series(run_path)
    if series:
        written.append(plot_hypervolume({_strategy_name(run_path): series}, plots_dir / "hypervolume.png"))
    return written
