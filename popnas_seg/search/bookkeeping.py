"""The search's per-network and per-step outputs: the result log lines, csv/training_results.csv,
probe_integrity.csv, the plan's predictions and predicted front, predictor_quality.csv, search_progress.csv, the
measured front and its hypervolume, the figures, and best_model/ when the search ends.

Everything here is derived from the results the journal holds and rewritten atomically (runlog/tables.py), so
it is a mixin of the runner (search/runner.py) that only reads the run's state and writes files.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.analog.probe import ROBUSTNESS_MIN_DIGITAL_DICE
from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import PROBE_DICE_TOLERANCE
from popnas_seg.objectives import OBJECTIVES
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.runlog.tables import read_csv, write_csv
from popnas_seg.search.calibration import on_top_scale

if TYPE_CHECKING:
    from popnas_seg.data.pipeline import SegmentationData

# Objective name -> column of the strategy's predictions rows holding the predicted value.
PREDICTED_COLUMN = {
    "dice": "predicted_dice",
    "mean_iou": "predicted_dice",
    "analog_dice": "predicted_analog_dice",
    "time": "predicted_time",
}


PROBE_INTEGRITY_COLUMNS = ("network_id", "origin", "status", "keras_dice", "torch_dice", "difference", "probe_error")


def probe_integrity_rows(results: Any) -> list[dict]:
    """csv/probe_integrity.csv: per trained network, the probe's status and Keras vs torch digital Dice.

    status: "ok", "failed" (the probe raised; probe_error says why) or "mismatch" (torch and Keras digital
    Dice differ by more than PROBE_DICE_TOLERANCE). Networks that failed training are not probed and not listed.
    """
    rows = []
    for r in sorted(results, key=lambda r: r.network_id):
        if r.status != "ok":
            continue
        keras_dice, torch_dice = r.probe_digital_dice, r.probe_digital_dice_torch
        diff = None if keras_dice is None or torch_dice is None else abs(float(torch_dice) - float(keras_dice))
        if r.probe_error is not None:
            status = "failed"
        elif diff is not None and diff > PROBE_DICE_TOLERANCE:
            status = "mismatch"
        else:
            status = "ok"
        rows.append(
            {
                "network_id": r.network_id,
                "origin": r.origin,
                "status": status,
                "keras_dice": keras_dice,
                "torch_dice": torch_dice,
                "difference": diff,
                "probe_error": r.probe_error or "",
            }
        )
    return rows


def _horizon_label(seconds: float) -> str:
    """The probe horizon for log lines: 30s, 1h, 1d, 30d ..."""
    for unit, name in ((86400.0, "d"), (3600.0, "h")):
        if seconds >= unit:
            return f"{seconds / unit:g}{name}"
    return f"{seconds:g}s"


class SearchBookkeeping:
    """The runner's tables, log lines, front and figures (mixed into `TrialRunner` / `SearchRunner`)."""

    run: RunFolder
    config: RunConfig
    data: SegmentationData
    log: logging.Logger
    objectives: list[str]

    def network_dir(self, network_id: int, rung: int = 0) -> Path:
        """A network's folder at `rung`: sampled_models/<id>/ for rung 0, sampled_models/<id>/rung<r>/ above
        (each holds that rung's history, TensorBoard events and model.keras, which the next rung starts from)."""
        folder = self.run.models_dir / str(network_id)
        return folder if rung == 0 else folder / f"rung{rung}"

    def _log_result(self, result: TrainingResult, finished: dict[int, TrainingResult]) -> None:
        analog = "-" if result.analog_dice is None else f"{result.analog_dice:.3f}±{result.analog_dice_std or 0:.3f}"
        if result.analog_score is not None:
            analog += f" (score {result.analog_score:.3f})"
        if result.robustness is not None:
            ratio = f"{result.robustness:.2f}"
        elif result.analog_dice is not None and result.dice < ROBUSTNESS_MIN_DIGITAL_DICE:
            ratio = f"n/a (digital Dice < {ROBUSTNESS_MIN_DIGITAL_DICE:g})"
        else:
            ratio = "-"
        self.log.info(
            "  -> %s dice %.3f miou %.3f params %s analog(%s) %s analog/digital %s train %.1fs",
            result.status,
            result.dice,
            result.miou,
            f"{result.params:,}",
            _horizon_label(self.config.analog.t_inference),
            analog,
            ratio,
            result.train_time_s,
        )
        ok = [r for r in finished.values() if r.status == "ok"]
        if ok:
            best = max(ok, key=lambda r: r.dice)
            smallest = min(ok, key=lambda r: r.params)
            analog_best = max(
                (r for r in ok if r.analog_objective is not None),
                key=lambda r: r.analog_objective if r.analog_objective is not None else -math.inf,
                default=None,
            )
            self.log.info(
                "  best so far: dice %.3f (id %d) | smallest %s params (id %d) | analog score %s",
                best.dice,
                best.network_id,
                f"{smallest.params:,}",
                smallest.network_id,
                "-" if analog_best is None else f"{analog_best.analog_objective:.3f} (id {analog_best.network_id})",
            )

    # ------------------------------------------------------------------ tables, quality, front
    @staticmethod
    def _predicted_times(predictions: list[dict], networks: list[dict]) -> list[float | None] | None:
        by_encoding = {}
        for row in predictions:
            t = row.get("predicted_time")
            if t is not None and not (isinstance(t, float) and math.isnan(t)):
                by_encoding[str(row.get("encoding"))] = float(t)
        if not by_encoding:
            return None
        return [by_encoding.get(n["encoding"]) for n in networks]

    def _write_plan_tables(self, step: int, plan: Any) -> None:
        if plan.predictions:
            write_csv(self.run.csv_dir / f"predictions_b{step}.csv", plan.predictions)
        if plan.front:
            write_csv(self.run.csv_dir / f"pareto_front_b{step}.csv", plan.front)

    def _write_results_csv(self, finished: dict[int, TrainingResult]) -> None:
        rows = [finished[k].to_row() for k in sorted(finished)]
        columns = [*TrainingResult.COLUMNS, *TrainingResult.rung_columns(len(self.config.rung_budgets))]
        write_csv(self.run.csv_dir / "training_results.csv", rows, columns)
        if self.config.analog.probe:
            write_csv(
                self.run.csv_dir / "probe_integrity.csv",
                probe_integrity_rows(finished.values()),
                PROBE_INTEGRITY_COLUMNS,
            )

    def measured_front(self, results: list[TrainingResult]) -> tuple[list[TrainingResult], float]:
        """Non-dominated measured networks over the search objectives, and their hypervolume in the region users
        care about (search/user_region.py: log-params axis up to the run's U-Net, score floors), in [0, 1]."""
        from popnas_seg.search.pareto import objective_matrix, pareto_mask
        from popnas_seg.search.user_region import region_hypervolume, run_region

        ok = [r for r in results if r.status == "ok"]
        if "analog_dice" in self.objectives:
            ok = [r for r in ok if r.analog_objective is not None]
        if not ok:
            return [], 0.0
        values, maximise = objective_matrix(ok, self.objectives)
        mask = pareto_mask(values, maximise)
        region = run_region(self.config, self.data.input_shape, self.data.classes_count, values, self.objectives)
        return [r for r, m in zip(ok, mask) if m], float(region_hypervolume(values, self.objectives, region))

    def _finish_step(self, step: int, planned: dict, finished: dict[int, TrainingResult]) -> None:
        from popnas_seg.predictors.quality import mape, rank_quality

        ids = [n["network_id"] for n in planned["networks"]]
        # on the top rung's scale, as the predictors were fitted (one rung: the records themselves)
        scaled = {r.network_id: r for r in on_top_scale(list(finished.values()), len(self.config.rung_budgets) - 1)}
        trained = [scaled[i] for i in ids if i in scaled and scaled[i].status == "ok"]
        predictions = {row["encoding"]: row for row in read_csv(self.run.csv_dir / f"predictions_b{step}.csv")}
        quality_rows: list[dict[str, Any]] = [
            r for r in read_csv(self.run.csv_dir / "predictor_quality.csv") if int(r["step"]) != step
        ]
        for objective, column in PREDICTED_COLUMN.items():
            if objective not in self.objectives and not (objective == "time" and trained):
                continue
            pairs = []
            for r in trained:
                row = predictions.get(r.encoding)
                measured = getattr(r, OBJECTIVES[objective][0])
                if row is None or measured is None or row.get(column) in (None, ""):
                    continue
                pairs.append((float(row[column]), float(measured)))
            if len(pairs) < 2:
                continue
            pred, meas = np.array(pairs).T
            q = rank_quality(pred, meas)
            quality_rows.append(
                {
                    "step": step,
                    "objective": objective,
                    "n": len(pairs),
                    "spearman": q["spearman"],
                    "kendall": q["kendall"],
                    "mape": mape(pred, meas) if objective == "time" else None,
                }
            )
        if quality_rows:
            write_csv(
                self.run.csv_dir / "predictor_quality.csv",
                quality_rows,
                ["step", "objective", "n", "spearman", "kendall", "mape"],
            )

        results = list(finished.values())
        front, hv = self.measured_front(results)
        ok = [r for r in results if r.status == "ok"]
        progress_rows: list[dict[str, Any]] = [
            r for r in read_csv(self.run.csv_dir / "search_progress.csv") if int(r["step"]) != step
        ]
        elapsed = sum(r.train_time_s for r in results)
        progress_rows.append(
            {
                "step": step,
                "networks_trained": len(results),
                "hypervolume": hv,
                "best_dice": max((r.dice for r in ok), default=0.0),
                "best_analog_dice": max((r.analog_dice for r in ok if r.analog_dice is not None), default=None),
                "front_size": len(front),
                "train_time_s": elapsed,
                "failed_probes": sum(1 for r in results if r.probe_error is not None),
            }
        )
        write_csv(self.run.csv_dir / "search_progress.csv", progress_rows)
        write_csv(self.run.csv_dir / "measured_front.csv", [r.to_row() for r in front], TrainingResult.COLUMNS)
        self.log.info(
            "step %d done: %d networks, measured front %d, hypervolume %.4g", step, len(results), len(front), hv
        )
        self._plots()

    def _plots(self) -> None:
        try:
            from popnas_seg.plots import plot_search

            plot_search(self.run)
        except Exception as exc:  # a plot must never stop a long search; the report re-draws them
            self.log.warning("plotting failed (the search goes on): %s", exc)

    def _finish_search(self, finished: dict[int, TrainingResult]) -> None:
        """best_model/ = the best-Dice network of the measured front; drop unrequested child models."""
        front, _ = self.measured_front(list(finished.values()))
        ok = [r for r in finished.values() if r.status == "ok"]
        pool = front or ok
        if pool:
            best = max(pool, key=lambda r: r.dice)
            src = self.network_dir(best.network_id, best.rung)
            dest = self.run.best_model_dir
            tmp = dest.with_name(dest.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            for name in ("model.keras", "model.onnx"):
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
            from popnas_seg.atomic import atomic_write_json

            atomic_write_json(tmp / "result.json", best.to_dict())
            if dest.exists():
                shutil.rmtree(dest)
            tmp.replace(dest)
            self.log.info(
                "best model: network %d (%s) dice %.3f -> %s", best.network_id, best.encoding, best.dice, dest
            )
        if not self.config.others.save_children_models:
            keep = {r.network_id for r in front}
            for folder in self.run.models_dir.iterdir():
                if folder.is_dir() and folder.name.isdigit() and int(folder.name) not in keep:
                    for rung_folder in [folder, *sorted(folder.glob("rung*"))]:
                        for name in ("model.keras", "model.onnx"):
                            (rung_folder / name).unlink(missing_ok=True)
        self._plots()
