"""The search loop: ask the strategy what to train, train and probe it, log it; resume by replaying the journal.

The strategy decides *what* (search/strategies.py); evaluation/evaluator.py knows *how* (build, train, save,
analog probe: one `Trial` -> one `TrainingResult`); this module orders the work and keeps the run folder
consistent. The journal (restore/journal.jsonl) is the source of truth:

- ``step_planned``    the networks of a step with their ids, written before any of them trains, so a resumed run
                      never re-plans a step (re-planning could pick other cells if a score changed);
- ``network_started`` / ``network_finished``  one trial's attempt and its result (states: runlog/trials.py);
                      a network that started but never finished is trained again from scratch (its next
                      `attempt`: retried); a finished one, ok or failed, is never trained again;
- ``rung_promoted``    multi-fidelity (search/promotion.py): after every network of a step finished rung r - 1, the
                      ones that train on to rung r; their continuations are trials with ``rung`` r
                      (``network_started`` / ``network_finished`` carry it; the result is the network's whole record
                      after that rung), so a resume trains exactly the rungs that never finished, each from the rung
                      below's model;
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from popnas_seg.analog.probe import ROBUSTNESS_MIN_DIGITAL_DICE
from popnas_seg.config import RunConfig
from popnas_seg.evaluation.evaluator import PROBE_DICE_TOLERANCE, NetworkEvaluator, Trial, trial_blocks
from popnas_seg.evaluation.executor import Executor, InProcessExecutor
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
from popnas_seg.runlog.trials import trial_attempts
from popnas_seg.search.calibration import on_top_scale
from popnas_seg.search.eta import NetworkTimes, format_eta, search_remaining
from popnas_seg.search.promotion import rung_record, rung_seed, select_promoted
from popnas_seg.search.strategies import strategy_objectives

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

    def __init__(
        self, run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
    ) -> None:
        self.run = run
        self.config = config
        self.data = data
        self.log = logger or logging.getLogger("popnas_seg")
        self.objectives = strategy_objectives(config)
        self._network_evaluator: NetworkEvaluator | None = None
        self._executor: Executor | None = None  # started by the first trial, stopped by `close`
        # The search's bookkeeping, shared by `run_search` and `run_trials`: results by network id (None: not
        # read from the journal yet), the planned steps, the ETA model.
        self._finished: dict[int, TrainingResult] | None = None
        self._planned: dict[int, dict] = {}
        self._progress = _Progress(planned_total=0)

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
        self._finished, self._planned, self._progress = finished, planned, progress

        step = 1
        while True:
            if step in planned:
                networks = planned[step]["networks"]
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
            self.run_trials(step, [self.search_trial(net, step) for net in networks])
            if step not in finished_steps:
                self._run_rungs(step, networks)
                self._finish_step(step, planned[step], finished)
                journal.append(StepFinished(step=step))
                finished_steps.add(step)
            step += 1

        self._finish_search(finished)
        journal.append(SearchFinished(networks=len(finished)))
        self.run.update_state(stage="search_done")
        return sorted(finished.values(), key=lambda r: r.network_id)

    # ------------------------------------------------------------------ trials
    def run_trials(self, step: int, trials: Sequence[Trial]) -> dict[int, TrainingResult]:
        """Train `trials` of `step` on this run's executor; returns their results by network id.

        The one loop every trained network of the search goes through: each trial is journaled as running
        (`network_started`, with its attempt number: a trial interrupted before is retried from scratch) when
        the executor starts it, and as finished (`network_finished`, status ok / nan / failed) as soon as its
        result arrives, in completion order; the ETA, training_results.csv and the log follow each result.
        Trials already finished in the journal are not trained again. A trial of `rung` > 0 (multi-fidelity) is
        the network's continuation: it is done once the journal holds that rung's result, and its result is
        journaled as the network's record across rungs (`rung_record`).
        """
        finished = self._finished_so_far()
        reached = self._rungs_reached()
        todo = [
            t
            for t in trials
            if (t.network_id not in finished if t.rung == 0 else reached.get(t.network_id, 0) < t.rung)
        ]
        if todo:
            executor = self._executor_()
            started_events = self.run.journal.events(NetworkStarted)
            attempts = {rung: trial_attempts(started_events, rung) for rung in {t.rung for t in todo}}
            running: set[int] = set()
            pool = not isinstance(executor, InProcessExecutor)  # several at once: a line per result too
            if pool:
                self.log.info(
                    "step %d | %d networks on %d Ray workers | %d/%d done",
                    step,
                    len(todo),
                    executor.slots,
                    len(finished),
                    self._progress.planned_total,
                )

            def started(trial: Trial) -> None:
                attempt = attempts[trial.rung].get(trial.network_id, 0) + 1
                if trial.rung == 0:
                    running.add(trial.network_id)
                    self._log_start(step, trial, len(finished) + len(running), attempt)
                else:
                    self._log_continuation(step, trial, attempt)
                self.run.journal.append(
                    NetworkStarted(
                        network_id=trial.network_id,
                        encoding=trial.encoding,
                        step=step,
                        attempt=attempt,
                        rung=trial.rung,
                    )
                )

            for trial, result in executor.map_unordered(todo, on_start=started):
                result = self._journal_result(trial, result)
                running.discard(trial.network_id)
                if trial.rung > 0:  # logged by _journal_result; the ETA model counts networks from scratch
                    continue
                self._progress.network_done(trial_blocks(trial.encoding))  # with workers: the pool's pace
                if pool:
                    eta_step, eta_search = self._etas(step)
                    self.log.info(
                        "step %d | network id %d (%s) %s finished | %d/%d done | ETA step %s, search %s",
                        step,
                        trial.network_id,
                        trial.origin,
                        trial.encoding,
                        len(finished),
                        self._progress.planned_total,
                        eta_step,
                        eta_search,
                    )
                self._write_results_csv(finished)
                self._log_result(result, finished)
        return {t.network_id: finished[t.network_id] for t in trials}

    def _journal_result(self, trial: Trial, result: TrainingResult) -> TrainingResult:
        """Journal `trial`'s result as its network's record (with several rungs: across rungs), keep it as the
        network's result and, for a continuation, refresh the CSV and log it; returns the record."""
        finished = self._finished_so_far()
        budgets = self.config.rung_budgets
        result.network_id, result.rung = trial.network_id, trial.rung  # a Ray task's failure row lacks the rung
        record = result
        if len(budgets) > 1:
            record = rung_record(finished.get(trial.network_id) if trial.rung else None, result, budgets[trial.rung])
        self.run.journal.append(NetworkFinished(network_id=trial.network_id, result=Result.of(record), rung=trial.rung))
        finished[trial.network_id] = record
        if trial.rung > 0:
            self._write_results_csv(finished)
            if record.rung == trial.rung:
                self._log_result(record, finished)
            else:
                self.log.warning(
                    "network %d: its rung %d training failed (%s); it keeps its rung %d scores",
                    trial.network_id,
                    trial.rung,
                    record.rung_error,
                    record.rung,
                )
        return record

    # ------------------------------------------------------------------ rungs (multi-fidelity)
    def network_dir(self, network_id: int, rung: int = 0) -> Path:
        """A network's folder at `rung`: sampled_models/<id>/ for rung 0, sampled_models/<id>/rung<r>/ above
        (each holds that rung's history, TensorBoard events and model.keras, which the next rung starts from)."""
        folder = self.run.models_dir / str(network_id)
        return folder if rung == 0 else folder / f"rung{rung}"

    def _rungs_reached(self) -> dict[int, int]:
        """Network id -> the highest rung whose training finished (successfully or not), from the journal."""
        reached: dict[int, int] = {}
        for event in self.run.journal.events(NetworkFinished):
            i = int(event["network_id"])
            reached[i] = max(reached.get(i, 0), int(event.get("rung", 0)))
        return reached

    def _run_rungs(self, step: int, networks: list[dict]) -> None:
        """Successive halving within `step`: promote and continue, rung by rung, what the journal lacks."""
        budgets = self.config.rung_budgets
        if len(budgets) == 1:
            return
        finished = self._finished_so_far()
        journal = self.run.journal
        decided = {(int(e["step"]), int(e["rung"])): e["network_ids"] for e in journal.events(RungPromoted)}
        by_id = {int(n["network_id"]): n for n in networks}
        for rung in range(1, len(budgets)):
            chosen = decided.get((step, rung))
            if chosen is None:
                level = [finished[i] for i in by_id if i in finished and finished[i].rung == rung - 1]
                chosen = select_promoted(level, self.objectives, self.config.search_strategy.promotion_eta)
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
            reached = self._rungs_reached()
            trials = [self.continuation_trial(by_id[i], step, rung) for i in chosen if reached.get(i, 0) < rung]
            for trial in trials:
                if trial.warm_start is None or not Path(trial.warm_start).is_file():  # sampled_models/ edited
                    self.run.journal.append(
                        NetworkStarted(network_id=trial.network_id, encoding=trial.encoding, step=step, rung=rung)
                    )
                    gone = dataclasses.replace(
                        finished[trial.network_id],
                        status="failed",
                        train_time_s=0.0,
                        error=f"no rung {rung - 1} model to continue from ({trial.warm_start})",
                    )
                    self._journal_result(trial, gone)
            self.run_trials(step, [t for t in trials if t.warm_start is not None and Path(t.warm_start).is_file()])

    def continuation_trial(self, net: dict, step: int, rung: int) -> Trial:
        """Network `net`'s training from its rung `rung - 1` model up to rung `rung`'s budget: its own weights
        (a continuation), a fresh cosine schedule over the extra epochs, the start kept unless an epoch beats it."""
        budgets = self.config.rung_budgets
        base = self.search_trial(net, step)
        net_id = int(net["network_id"])
        return dataclasses.replace(
            base,
            rung=rung,
            epochs=budgets[rung] - budgets[rung - 1],
            seed=rung_seed(base.seed, rung),
            out_dir=str(self.network_dir(net_id, rung).absolute()),
            warm_start=str((self.network_dir(net_id, rung - 1) / "model.keras").absolute()),
            keep_initial=True,
        )

    def _log_continuation(self, step: int, trial: Trial, attempt: int) -> None:
        self.log.info(
            "step %d | rung %d: network id %d (%s) %s, %d more epochs from its rung %d model%s",
            step,
            trial.rung,
            trial.network_id,
            trial.origin,
            trial.encoding,
            trial.epochs or 0,
            trial.rung - 1,
            "" if attempt == 1 else f" | attempt {attempt} (the last one was interrupted)",
        )

    def _finished_so_far(self) -> dict[int, TrainingResult]:
        """The results the journal holds (read once; `run_trials` adds each new one)."""
        if self._finished is None:
            self._finished = self.finished_results()
        return self._finished

    def _etas(self, step: int) -> tuple[str, str]:
        """(this step, whole search) remaining time as text; "?" for trials outside a planned step."""
        if step not in self._planned:
            return "?", "?"
        return self._progress.etas(self.config, step, self._planned, self._finished_so_far())

    def _log_start(self, step: int, trial: Trial, position: int, attempt: int) -> None:
        eta_step, eta_search = self._etas(step)
        self.log.info(
            "step %d | network %d/%d (id %d, %s, %d blocks) %s | ETA step %s, search %s%s",
            step,
            position,
            max(self._progress.planned_total, position),
            trial.network_id,
            trial.origin,
            trial_blocks(trial.encoding),
            trial.encoding,
            eta_step,
            eta_search,
            "" if attempt == 1 else f" | attempt {attempt} (the last one was interrupted)",
        )

    def _evaluator(self) -> NetworkEvaluator:
        if self._network_evaluator is None:
            self._network_evaluator = NetworkEvaluator(self.config, self.data, self.log)
        return self._network_evaluator

    def _executor_(self) -> Executor:
        """In process for `others.workers` = 1, else a Ray pool (started on first use, stopped by `close`)."""
        if self._executor is None:
            if self.config.others.workers == 1:
                self._executor = InProcessExecutor(self._evaluator())
            else:
                from popnas_seg.evaluation.parallel import RayExecutor

                height, width, channels = self.data.input_shape
                shape = (int(height), int(width), int(channels))
                self._executor = RayExecutor(self.config, shape, self.data.classes_count, self.log)
        return self._executor

    def search_trial(self, net: dict, step: int) -> Trial:
        """The plain-data description of planned network `net` (journal `step_planned` entry) of `step`."""
        cfg = self.config
        seed, probe_seed = search_network_seeds(cfg.network_seed, net["encoding"], cfg.search_strategy.network_seeding)
        # Absolute: a Ray worker's working folder is its node's `ray start` folder, not the driver's (-> README).
        out_dir = self.run.models_dir.absolute() / str(net["network_id"])
        return Trial(
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
        )

    def close(self) -> None:
        """Stop this run's executor (a Ray instance of its own; a joined cluster is only disconnected)."""
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
            for folder in self.run.models_dir.iterdir():
                if folder.is_dir() and folder.name.isdigit() and int(folder.name) not in keep:
                    for rung_folder in [folder, *sorted(folder.glob("rung*"))]:
                        for name in ("model.keras", "model.onnx"):
                            (rung_folder / name).unlink(missing_ok=True)
        self._plots()


def run_search(
    run: RunFolder, config: RunConfig, data: SegmentationData, logger: logging.Logger | None = None
) -> list[TrainingResult]:
    """Run or resume the search stage of `run`; returns every trained network's result."""
    runner = SearchRunner(run, config, data, logger)
    try:
        return runner.run_search()
    finally:
        runner.close()
