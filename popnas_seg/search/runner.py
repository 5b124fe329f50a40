"""The search loop: ask the strategy what to train, train and probe it, log it; resume by replaying the journal.

The strategy decides *what* (search/strategies.py); evaluation/evaluator.py knows *how* (build, train, save,
analog probe: one `NetworkJob` -> one `TrainingResult`); this module orders the work and keeps the run folder
consistent. The journal (restore/journal.jsonl) is the source of truth:

- ``step_planned``    the networks of a step with their ids, written before any of them trains, so a resumed run
                      never re-plans a step (re-planning could pick other cells if a score changed);
- ``network_started`` / ``network_finished``  a network that started but never finished is trained again from
                      scratch; a finished one is never trained again;
- ``rung_promoted``    multi-fidelity (search/promotion.py): after every network of a step finished rung r - 1, the
                      ones that train on to rung r; their continuations are ``network_started`` /
                      ``network_finished`` with ``rung`` r (the result is the network's whole record after that rung),
                      so a resume trains exactly the rungs that never finished, from the rung below's checkpoint;
- ``step_finished`` / ``search_finished``.

CSVs and plots are derived from the journal and rewritten atomically, so a kill at any moment leaves a folder
that ``python run.py -r`` continues.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.analog.probe import ROBUSTNESS_MIN_DIGITAL_DICE
from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import PROBE_DICE_TOLERANCE, NetworkEvaluator, NetworkJob
from popnas_seg.objectives import OBJECTIVES
from popnas_seg.results import TrainingResult, backfill_analog_scores
from popnas_seg.runlog.events import (
    NetworkFinished,
    NetworkStarted,
    Result,
    RungPromoted,
    SearchFinished,
    StepFinished,
    StepPlanned,
)
from popnas_seg.runlog.folder import RunFolder
from popnas_seg.runlog.tables import read_csv, write_csv
from popnas_seg.search.calibration import on_top_scale
from popnas_seg.search.eta import NetworkTimes, format_eta, search_remaining
from popnas_seg.search.promotion import rung_record, rung_seed, select_promoted
from popnas_seg.search.strategies import strategy_objectives

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


def network_seed(base_seed: int, encoding_key: str) -> int:
    """A per-network seed that depends on the cell, not on the order of training, so resume reproduces scores."""
    return (base_seed * 1_000_003 + zlib.crc32(encoding_key.encode())) % (2**31 - 1)


def search_network_seeds(base_seed: int, encoding: str, seeding: str) -> tuple[int, int]:
    """(training seed, probe seed) of a searched network.

    "common" gives every network of a run the same seeds (common random numbers): the same batches,
    augmentations and probe programmings, so the Dice the search and its predictors see differ by cell, not by
    SGD luck. "per_network" (the old behaviour) derives both from the cell. Neither depends on the order of
    training, so a resumed run reproduces its scores.
    """
    from popnas_seg.search_space.encoding import Cell

    if seeding == "common":
        seed = network_seed(base_seed, "")
        return seed, seed
    if seeding == "per_network":
        return network_seed(base_seed, Cell.from_string(encoding).key()), network_seed(base_seed, encoding)
    raise ValueError(f"unknown network_seeding {seeding!r}")


@dataclass
class _Progress:
    """Terminal progress: networks done/planned, the best so far, and an ETA from measured times (search/eta.py)."""

    planned_total: int
    times: NetworkTimes = field(default_factory=NetworkTimes)
    last_mark: float = field(default_factory=time.monotonic)

    def network_done(self, blocks: int) -> None:
        """Record one finished network: its wall time is the time since the previous one finished (or the start)."""
        now = time.monotonic()
        self.times.add(blocks, now - self.last_mark)
        self.last_mark = now

    def etas(
        self, config: RunConfig, step: int, planned: dict[int, dict], finished: dict[int, TrainingResult]
    ) -> tuple[str, str]:
        """(this step, whole search) remaining time as text: '?' before any measurement, '≥' for a lower bound."""

        def todo(step_no: int) -> list[int]:
            return [int(n.get("blocks", 0)) for n in planned[step_no]["networks"] if n["network_id"] not in finished]

        step_left = self.times.remaining(todo(step))
        later = [b for s in sorted(planned) if s > step for b in todo(s)]
        planned_count = sum(len(e["networks"]) for e in planned.values())
        search_left = search_remaining(
            self.times, config, todo(step), later, max(planned), self.planned_total - planned_count
        )
        return format_eta(step_left), format_eta(search_left)


class SearchRunner:
    """Runs (or resumes) the search of one run folder."""

    def __init__(self, run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger | None = None) -> None:
        self.run = run
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self.objectives = strategy_objectives(config)
        self._network_evaluator: NetworkEvaluator | None = None
        self._executor: Any = None  # evaluation.parallel.RayExecutor once a step runs with others.workers > 1

    # ------------------------------------------------------------------ journal replay
    def finished_results(self) -> dict[int, TrainingResult]:
        out: dict[int, TrainingResult] = {}
        for event in self.run.journal.events(NetworkFinished):
            result = TrainingResult.from_dict(event["result"])
            out[result.network_id] = result
        backfill_analog_scores(list(out.values()), self.config.analog.risk_k)  # journals from before issue 34
        return out

    def _planned_steps(self) -> dict[int, dict]:
        return {int(e["step"]): e for e in self.run.journal.events(StepPlanned)}

    # ------------------------------------------------------------------ the loop
    def run_search(self) -> list[TrainingResult]:
        from popnas_seg.search.strategies import make_strategy

        journal = self.run.journal
        if journal.events(SearchFinished):
            self.log.info("search already finished in %s; skipping to the next stage", self.run.path)
            return sorted(self.finished_results().values(), key=lambda r: r.network_id)

        strategy = make_strategy(
            self.config, self.data.input_shape, self.data.classes_count, self.run.predictors_dir, self.log
        )
        finished = self.finished_results()
        planned = self._planned_steps()
        finished_steps = {int(e["step"]) for e in journal.events(StepFinished)}
        progress = _Progress(planned_total=max(strategy.planned_total(), len(finished)))
        if finished:
            self.log.info(
                "resuming: %d networks already trained, %d steps planned, %d finished",
                len(finished),
                len(planned),
                len(finished_steps),
            )
        self.run.update_state(stage="search")

        step = 1
        while True:
            if step in planned:
                event = planned[step]
                networks = event["networks"]
            else:
                history = sorted(finished.values(), key=lambda r: r.network_id)
                self.log.info("step %d: planning (%d networks trained so far)", step, len(history))
                plan = strategy.plan_step(step, history)
                if plan is None:
                    break
                first_id = 1 + max([n["network_id"] for e in planned.values() for n in e["networks"]] + [0])
                networks = [
                    {
                        "network_id": first_id + i,
                        "encoding": str(p.cell),
                        "origin": p.origin,
                        "blocks": len(p.cell.blocks),
                    }
                    for i, p in enumerate(plan.networks)
                ]
                predicted_times = self._predicted_times(plan.predictions, networks)
                self._write_plan_tables(step, plan)
                journal.append(StepPlanned(step=step, networks=networks, predicted_times=predicted_times))
                planned[step] = {"step": step, "networks": networks, "predicted_times": predicted_times}
                progress.planned_total = max(progress.planned_total, sum(len(e["networks"]) for e in planned.values()))

            self.run.update_state(stage="search", step=step)
            if self.config.others.workers != 1:  # Ray tasks; the loop below then finds every network finished
                self._run_step_parallel(step, networks, planned, finished, progress)
            for net in networks:
                if net["network_id"] in finished:
                    continue
                eta_step, eta_search = progress.etas(self.config, step, planned, finished)
                self.log.info(
                    "step %d | network %d/%d (id %d, %s, %d blocks) %s | ETA step %s, search %s",
                    step,
                    len(finished) + 1,
                    progress.planned_total,
                    net["network_id"],
                    net["origin"],
                    net["blocks"],
                    net["encoding"],
                    eta_step,
                    eta_search,
                )
                journal.append(NetworkStarted(network_id=net["network_id"], encoding=net["encoding"], step=step))
                result = self._rung0_record(self.train_network(net, step))
                journal.append(NetworkFinished(network_id=result.network_id, result=Result.of(result)))
                finished[result.network_id] = result
                progress.network_done(int(net.get("blocks", 0)))
                self._write_results_csv(finished)
                self._log_result(result, finished)

            if step not in finished_steps:
                self._run_rungs(step, networks, finished)
                self._finish_step(step, planned[step], finished)
                journal.append(StepFinished(step=step))
                finished_steps.add(step)
            step += 1

        self._finish_search(finished)
        journal.append(SearchFinished(networks=len(finished)))
        self.run.update_state(stage="search_done")
        return sorted(finished.values(), key=lambda r: r.network_id)

    # ------------------------------------------------------------------ one network
    def _evaluator(self) -> NetworkEvaluator:
        if self._network_evaluator is None:
            self._network_evaluator = NetworkEvaluator(self.config, self.data, self.log)
        return self._network_evaluator

    def network_job(self, net: dict, step: int) -> NetworkJob:
        """The plain-data description of planned network `net` (journal `step_planned` entry) of `step`."""
        cfg = self.config
        seed, probe_seed = search_network_seeds(cfg.network_seed, net["encoding"], cfg.search_strategy.network_seeding)
        # Absolute: a Ray worker's working folder is its node's `ray start` folder, not the driver's (-> README).
        out_dir = self.run.models_dir.absolute() / str(net["network_id"])
        return NetworkJob(
            network_id=int(net["network_id"]),
            encoding=net["encoding"],
            architecture=cfg.architecture_hyperparameters.model_dump(mode="json"),
            seed=seed,
            out_dir=str(out_dir),
            origin=net["origin"],
            step=step,
            save=True,
            probe=cfg.analog.probe,
            probe_seed=probe_seed,
            keep_weights=len(cfg.rung_budgets) > 1,  # the checkpoint rung 1 continues from
        )

    def train_network(self, net: dict, step: int) -> TrainingResult:
        """Build, train, save and (if configured) analog-probe one network; failures become result rows."""
        return self._evaluator().evaluate(self.network_job(net, step))

    def _run_step_parallel(
        self,
        step: int,
        networks: list[dict],
        planned: dict[int, dict],
        finished: dict[int, TrainingResult],
        progress: _Progress,
    ) -> None:
        """Every unfinished network of `step` as a Ray task; the driver journals each result as it arrives."""
        todo = [net for net in networks if net["network_id"] not in finished]
        if not todo:
            return
        executor = self._ray_executor()
        journal = self.run.journal
        jobs = []
        for net in todo:
            journal.append(NetworkStarted(network_id=net["network_id"], encoding=net["encoding"], step=step))
            jobs.append(self.network_job(net, step))
        self.log.info(
            "step %d | %d networks on %d Ray workers | %d/%d done",
            step,
            len(jobs),
            executor.slots,
            len(finished),
            progress.planned_total,
        )
        blocks = {int(net["network_id"]): int(net.get("blocks", 0)) for net in todo}
        for job, result in executor.map_unordered(jobs):
            result = self._rung0_record(result)
            journal.append(NetworkFinished(network_id=result.network_id, result=Result.of(result)))
            finished[result.network_id] = result
            progress.network_done(blocks.get(job.network_id, 0))  # wall time between results: the pool's pace
            eta_step, eta_search = progress.etas(self.config, step, planned, finished)
            self.log.info(
                "step %d | network id %d (%s) %s finished | %d/%d done | ETA step %s, search %s",
                step,
                job.network_id,
                job.origin,
                job.encoding,
                len(finished),
                progress.planned_total,
                eta_step,
                eta_search,
            )
            self._write_results_csv(finished)
            self._log_result(result, finished)

    def _ray_executor(self) -> Any:
        """The run's Ray executor, started on first use (others.workers > 1)."""
        if self._executor is None:
            from popnas_seg.evaluation.parallel import RayExecutor

            self._executor = RayExecutor(self.config, tuple(self.data.input_shape), self.data.classes_count, self.log)
        return self._executor

    # ------------------------------------------------------------------ rungs (multi-fidelity)
    def network_dir(self, network_id: int, rung: int = 0) -> Path:
        """A network's folder at `rung`: sampled_models/<id>/ for rung 0, sampled_models/<id>/rung<r>/ above
        (each holds that rung's history, TensorBoard events, model.keras and, below the top, model.weights.h5)."""
        folder = self.run.models_dir / str(network_id)
        return folder if rung == 0 else folder / f"rung{rung}"

    def _rung0_record(self, result: TrainingResult) -> TrainingResult:
        """A rung-0 result as the network's record: with several rungs it carries its rung-0 scores in `rungs`."""
        budgets = self.config.rung_budgets
        return result if len(budgets) == 1 else rung_record(None, result, budgets[0])

    def _rungs_reached(self) -> dict[int, int]:
        """Network id -> the highest rung whose training finished (successfully or not), from the journal."""
        reached: dict[int, int] = {}
        for event in self.run.journal.events(NetworkFinished):
            i = int(event["network_id"])
            reached[i] = max(reached.get(i, 0), int(event.get("rung", 0)))
        return reached

    def _run_rungs(self, step: int, networks: list[dict], finished: dict[int, TrainingResult]) -> None:
        """Successive halving within `step`: promote and continue, rung by rung, what the journal lacks."""
        budgets = self.config.rung_budgets
        if len(budgets) == 1:
            return
        journal = self.run.journal
        eta = self.config.search_strategy.promotion_eta
        decided = {
            (int(e["step"]), int(e["rung"])): [int(i) for i in e["network_ids"]] for e in journal.events(RungPromoted)
        }
        reached = self._rungs_reached()
        by_id = {int(n["network_id"]): n for n in networks}
        for rung in range(1, len(budgets)):
            chosen = decided.get((step, rung))
            if chosen is None:
                level = [finished[i] for i in by_id if i in finished and finished[i].rung == rung - 1]
                chosen = select_promoted(level, self.objectives, eta)
                journal.append(RungPromoted(step=step, rung=rung, network_ids=chosen))
                self.log.info(
                    "step %d: %d of %d networks promoted to rung %d (%d epochs): ids %s",
                    step,
                    len(chosen),
                    len(level),
                    rung,
                    budgets[rung],
                    chosen,
                )
            todo = [i for i in chosen if reached.get(i, 0) < rung and i in finished]
            jobs = [self._continuation_job(by_id[i], step, rung) for i in todo]
            for net_id in todo:
                journal.append(
                    NetworkStarted(network_id=net_id, encoding=by_id[net_id]["encoding"], step=step, rung=rung)
                )
            for job, result in self._evaluate_jobs([j for j in jobs if j.initial_weights is not None]):
                self._finish_rung(job.network_id, rung, result, finished)
            for job in jobs:
                if job.initial_weights is None:  # its checkpoint is gone (sampled_models/ edited): it stays
                    failed = dataclasses.replace(
                        finished[job.network_id],
                        status="failed",
                        rung=rung,
                        train_time_s=0.0,
                        error=f"no rung {rung - 1} checkpoint to continue from",
                    )
                    self._finish_rung(job.network_id, rung, failed, finished)

    def _continuation_job(self, net: dict, step: int, rung: int) -> NetworkJob:
        """Network `net`'s training from its rung `rung - 1` weights up to rung `rung`'s budget."""
        budgets = self.config.rung_budgets
        base = self.network_job(net, step)
        net_id = int(net["network_id"])
        checkpoint = self.network_dir(net_id, rung - 1) / "model.weights.h5"
        return dataclasses.replace(
            base,
            rung=rung,
            epochs=budgets[rung] - budgets[rung - 1],
            seed=rung_seed(base.seed, rung),
            out_dir=str(self.network_dir(net_id, rung).absolute()),
            initial_weights=checkpoint.read_bytes() if checkpoint.is_file() else None,
            keep_weights=rung < len(budgets) - 1,
        )

    def _evaluate_jobs(self, jobs: list[NetworkJob]) -> Any:
        """(job, result) for every job: in this process, or as Ray tasks in completion order (others.workers > 1)."""
        if not jobs:
            return
        if self.config.others.workers != 1:
            yield from self._ray_executor().map_unordered(jobs)
            return
        for job in jobs:
            self.log.info(
                "step %d | rung %d: network id %d %s (+%d epochs)",
                job.step,
                job.rung,
                job.network_id,
                job.encoding,
                job.epochs,
            )
            yield job, self._evaluator().evaluate(job)

    def _finish_rung(self, net_id: int, rung: int, result: TrainingResult, finished: dict[int, TrainingResult]) -> None:
        """Journal network `net_id`'s record after its training at `rung`, refresh the CSV and log it."""
        result.network_id, result.rung = net_id, rung  # a Ray task's failure row does not know its rung
        record = rung_record(finished[net_id], result, self.config.rung_budgets[rung])
        self.run.journal.append(NetworkFinished(network_id=net_id, result=Result.of(record), rung=rung))
        finished[net_id] = record
        self._write_results_csv(finished)
        if record.rung == rung:
            self._log_result(record, finished)
        else:
            self.log.warning(
                "network %d: its rung %d training failed (%s); it keeps its rung %d scores",
                net_id,
                rung,
                record.rung_error,
                record.rung,
            )

    def close(self) -> None:
        """Stop the Ray instance of this run (a joined cluster is only disconnected)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

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
            names = ["model.keras", "model.onnx"]
            if not self.config.others.save_children_weights:
                names.append("model.weights.h5")  # rung checkpoints: no rung continues from them any more
            for folder in self.run.models_dir.iterdir():
                if folder.is_dir() and folder.name.isdigit() and int(folder.name) not in keep:
                    for rung_folder in [folder, *sorted(folder.glob("rung*"))]:
                        for name in names:
                            (rung_folder / name).unlink(missing_ok=True)
        self._plots()


def run_search(
    run: RunFolder, config: RunConfig, data: Any, logger: logging.Logger | None = None
) -> list[TrainingResult]:
    """Run or resume the search stage of `run`; returns every trained network's result."""
    runner = SearchRunner(run, config, data, logger)
    try:
        return runner.run_search()
    finally:
        runner.close()
